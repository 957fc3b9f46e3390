"""Evaluation and blessing: one evaluation path for every candidate, and the verdict.

- `candidates`: every model the Evaluator measures, the quantization modes and the quantized
  artifact's files (no TensorFlow).
- `evaluation`: metrics, size and latency of a candidate.
- `intervals`: bootstrap intervals and paired differences.
- `blessing`: whether the deployable model may be pushed, one reason per criterion.
- `sliced_metrics`: TensorFlow Model Analysis per slice of a raw feature.
"""
