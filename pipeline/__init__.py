"""The DAG, defined once (`pipeline.pipeline.create_pipeline`), and its defaults."""
import modules  # noqa: F401  (selects tf_keras before TensorFlow loads)
