"""CsvExampleGen for real-world CSV files: TFX's FileBasedExampleGen with our executor."""
