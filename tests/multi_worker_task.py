"""One training task of tests/test_multi_worker.py: the Trainer's run_fn, as each worker of a
Kubeflow training job runs it (the cluster and this task's place in it come from TF_CONFIG).

    python tests/multi_worker_task.py FN_ARGS.json REPORT.json

FN_ARGS.json holds the FnArgs fields; REPORT.json receives what this task's training did: the
optimizer steps it took, its replicas, epochs and validation metrics.
"""
import json
import sys

import modules  # noqa: F401  (tf_keras before tensorflow)

from tfx.components.trainer.fn_args_utils import FnArgs

from modules.learning import trainer, training


def main(fn_args_path: str, report_path: str) -> None:
    trained = []
    train_model = training.train_model

    def recording(*args, **kwargs):
        trained.append(train_model(*args, **kwargs))
        return trained[-1]

    training.train_model = recording  # run_fn calls it through the module
    with open(fn_args_path) as f:
        trainer.run_fn(FnArgs(**json.load(f)))
    result, = trained
    with open(report_path, "w") as f:
        json.dump({"steps": int(result.model.optimizer.iterations.numpy()),
                   "replicas": result.model.distribute_strategy.num_replicas_in_sync,
                   "epochs_trained": result.epochs_trained, "best_epoch": result.best_epoch,
                   "history": result.history, "eval_metrics": result.eval_metrics}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
