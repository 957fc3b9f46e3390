"""The project's own TFX components, one folder each (ComponentSpec + component + executor)."""
import modules  # noqa: F401  (selects tf_keras before TensorFlow loads)
