"""The model: its hyperparameters, the core they build, its custom layers and the files a
Model artifact holds.

- `hyperparameters`: `ModelConfig` and the tuner's search space over it (no TensorFlow).
- `model`: the core (preprocessed vector -> logits) and `Towers` of cores trained side by side.
- `layers`: the custom layers (`DenseBlock`, `FeatureCross`), initializers per activation.
- `batchnorm`: batch normalization statistics that match the data.
- `export`: writing and reading Model artifacts (SavedModel signatures, core, JSON files).
- `trees`: gradient-boosted trees (TF Decision Forests) as a model core.
"""
