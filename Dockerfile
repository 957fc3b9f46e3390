# The pipeline image every Kubeflow task runs (kubeflow_runner.py --image ...).
#
#   make image IMAGE=REGISTRY/tfx-compress:TAG && docker push REGISTRY/tfx-compress:TAG
#
# Same pins as the development venv: requirements.lock with --no-deps, then this project's
# packages (pipeline, components, modules) from setup.py. Debian 12 (bookworm) base, like the
# machines the lock was made on.

# --- build stage: a venv with the locked dependencies and this project -------------------------
FROM python:3.10-slim-bookworm AS build
# pyfarmhash (in the lock, through tfx-bsl) has no wheel: it compiles C++ at install time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock /src/requirements.lock
RUN pip install --no-deps -r /src/requirements.lock
COPY setup.py /src/setup.py
COPY pipeline /src/pipeline
COPY components /src/components
COPY modules /src/modules
# A regular (not editable) install into site-packages; setuptools and wheel come from the lock.
RUN pip install --no-deps --no-build-isolation /src && pip check

# --- runtime stage: the venv without compilers ------------------------------------------------
FROM python:3.10-slim-bookworm
COPY --from=build /opt/venv /opt/venv
# TF_USE_LEGACY_KERAS: tf.keras is tf_keras (Keras 2) in every process, including the ones
# TFX starts before our `modules` package is imported (the Model Optimization Toolkit needs it).
ENV PATH=/opt/venv/bin:$PATH \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1
WORKDIR /pipeline
# The default --data-root of kubeflow_runner.py: the Chicago taxi CSV that ships inside tfx.
RUN tfx_dir="$(python -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("tfx").origin))')" \
 && mkdir -p /pipeline/data/taxi \
 && cp "$tfx_dir/examples/chicago_taxi_pipeline/data/big_tipper_label/data.csv" /pipeline/data/taxi/
# Fail the build, not the first pipeline run, if an executor or the entrypoint cannot import.
RUN python -c "import importlib; [importlib.import_module(m) for m in ( \
      'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor', \
      'tfx.orchestration.kubeflow.v2.file_based_example_gen.driver', \
      'components.csv_example_gen.executor', \
      'components.data_validator.executor', 'components.tuner.executor', \
      'components.trainer.executor', \
      'components.distiller.executor', 'components.pruner.executor', \
      'components.quantizer.executor', 'components.evaluator.executor', \
      'components.pusher.executor', 'modules.learning.trainer', 'modules.learning.tuner')]; \
      import tensorflow as tf; assert tf.keras.__name__.startswith('tf_keras'), tf.keras"
# What KubeflowV2DagRunner puts in each task's container command (KUBEFLOW_TFX_CMD); the
# compiled spec sets it explicitly, so this entrypoint only matters when running by hand.
ENTRYPOINT ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
