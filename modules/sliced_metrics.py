"""TensorFlow Model Analysis over the SavedModel candidates: overall and per-slice metrics.

One Beam pipeline evaluates every SavedModel (TFMA multi-model evaluation) through its
`serving_default` signature on the eval split's tf.Examples, overall and sliced by a feature
(`payment_type` on the default data). TFMA reads the `score` output (P(second class)), so it
runs for two-class labels whose class names are 0 and 1, as stored in the examples.
"""
import math
from typing import Dict, List, Optional, Sequence

import tensorflow_model_analysis as tfma

METRICS = ("AUC", "BinaryAccuracy", "Precision", "Recall", "BinaryCrossentropy", "ExampleCount")
_NAMES = {"auc": "auc", "binary_accuracy": "accuracy", "precision": "precision",
          "recall": "recall", "binary_crossentropy": "log_loss", "example_count": "examples"}


def supported(classes: Sequence[str]) -> bool:
    return list(classes) == ["0", "1"]


def sliced_metrics(models: Dict[str, str], eval_pattern: str, label: str,
                   slice_features: Sequence[str], output_path: str,
                   beam_args: Optional[List[str]] = None) -> Dict[str, Dict[str, dict]]:
    """{model name: {slice name: {metric: value}}}; slice "overall" is the whole split.

    `models` maps names to SavedModel directories (the artifacts' Format-Serving).
    """
    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(name=name, signature_name="serving_default",
                                    label_key=label, prediction_key="score")
                     for name in models],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[feature])
                                              for feature in slice_features],
        metrics_specs=[tfma.MetricsSpec(
            metrics=[tfma.MetricConfig(class_name=m) for m in METRICS],
            model_names=list(models))])
    shared = [tfma.default_eval_shared_model(eval_saved_model_path=path, model_name=name,
                                             eval_config=eval_config)
              for name, path in models.items()]
    from apache_beam.options.pipeline_options import PipelineOptions

    tfma.run_model_analysis(
        eval_shared_model=shared, eval_config=eval_config, data_location=eval_pattern,
        output_path=output_path, pipeline_options=PipelineOptions(beam_args or []))
    out: Dict[str, Dict[str, dict]] = {}
    for name in models:
        result = tfma.load_eval_result(output_path, model_name=name)
        per_slice = {}
        for slice_key, metrics in result.slicing_metrics:
            slice_name = ("overall" if not slice_key else
                          ", ".join(f"{k}={_text(v)}" for k, v in slice_key))
            values = metrics.get("", {}).get("", {})
            per_slice[slice_name] = {_NAMES.get(k, k): _finite(v["doubleValue"])
                                     for k, v in values.items() if "doubleValue" in v}
        out[name] = per_slice
    return out


def _finite(value) -> Optional[float]:
    """TFMA reports undefined metrics (precision of a slice without positives) as NaN."""
    value = float(value)
    return value if math.isfinite(value) else None


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
