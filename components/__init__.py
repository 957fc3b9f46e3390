"""The project's own TFX components, one folder each (ComponentSpec + component + executor)."""
import modules  # noqa: F401  (selects tf_keras before TensorFlow loads)

from components.artifacts import JsonReport  # noqa: E402,F401  (Kubeflow imports components.JsonReport)
