"""Compression: from the teacher to the deployable model.

- `distillation`: the smallest student within the budget, from softened teacher logits.
- `pruning`: magnitude pruning (Model Optimization Toolkit), fine-tuned by the loop.
- `quantization`: TFLite conversion in every mode of `modules.verdict.candidates.MODES`,
  and running the result with the TFLite interpreter.
"""
