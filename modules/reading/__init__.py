"""Reading data: the CSV files as users write them, ExampleGen's tf.Examples as columns,
the preprocessing learned from the training split, and the prepared splits every step trains
and scores on.

- `csvfile`: reading a CSV file (delimiter, decimal mark, missing markers, identifiers), the
  same way in the preflight check and in CsvExampleGen's Beam executor.
- `data`: the schema's columns, the class vocabulary, parsing tf.Examples.
- `preprocessing`: numeric z-scores, missing indicators, piecewise-linear encodings and
  vocabularies fitted on StatisticsGen's statistics, exported inside every model.
- `splits`: one prepared split (feature vectors, class ids, per-row targets), in memory when
  small, streamed from a local snapshot when not.
"""
