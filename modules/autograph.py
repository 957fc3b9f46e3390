"""AutoGraph leaves tf_keras' own code alone, as TensorFlow's rules do for `keras`.

TensorFlow 2.16's AutoGraph never converts the modules its rules list, `keras` among them,
but not `tf_keras`, where Keras 2 lives under TF_USE_LEGACY_KERAS=1. So every function that
AutoGraph converts and that calls a Keras model (a tf.data map computing a teacher's logits,
the signature tf.saved_model.save traces for a Keras model) converted Keras' own code again,
statement by statement: 10 s of the Baselines' 25 s on 569 rows went into converting the
functional model's call. Importing this module adds the missing rule, once; our layers'
`call`s are still converted where Keras converts them. Imported by the modules that define
Keras layers: `modules.reading.preprocessing` (which `modules.models.layers` imports) and
`modules.models.trees`.
"""
from tensorflow.python.autograph.core import config, config_lib

if not any(isinstance(rule, config_lib.DoNotConvert) and rule.matches("tf_keras")
           for rule in config.CONVERSION_RULES):
    config.CONVERSION_RULES = ((config_lib.DoNotConvert("tf_keras"),)
                               + tuple(config.CONVERSION_RULES))
