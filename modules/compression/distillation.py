"""Knowledge distillation into the smallest student the accuracy budget allows.

Loss per example (Hinton et al. 2015):
    alpha * CE(label, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
The T^2 factor keeps the soft term's gradients on the scale of the hard term's as T grows.
Teacher logits are computed once per example and stored next to the labels (block by block,
with the split: in memory or on local disk), so the teacher never runs inside the training
loop and none of its weights can change.

`search_student` sizes the student to the task: it trains the sizes (`STUDENT_SIZES`), a few
at a time and smallest first, and keeps the smallest whose validation scores stay within half
of the blessing budget of the teacher (accuracy and ROC AUC drops, paired on the same rows
and widened by their noise as the Evaluator's rule is: `modules.verdict.blessing.budget_left`),
leaving the other half to pruning and quantization.
At that size it picks alpha and temperature from a small grid and trains the same student
from scratch on the labels alone as the control (a linear student's control is the linear
baseline itself, `modules.learning.baselines`: one logistic regression, its weight decay
chosen on validation, not a second one trained with the students' settings); the student
handed on is the best of them, so distillation never ships worse than its control.

Where none of the first round's sizes fits the budget on the training rows alone (a teacher
the students cannot follow from a few thousand rows: on mlc_churn, trees whose validation
log loss is 0.129 against 0.201 for the tuned network), every size is searched again,
smallest first, with synthetic rows the teacher labels (`with_synthetic_rows`: MUNGE,
Bucilua, Caruana and Niculescu-Mizil, "Model compression", KDD 2006): each training row,
with each feature taken with probability 0.5 from its nearest neighbour, in up to 8 copies.
A student then learns the teacher's function where the data are, not only at the training
rows; at every size it followed the teacher at least as well as from the training rows alone
(mlc_churn, hpc_data), so the larger sizes are not tried without them. On mlc_churn (3,571
rows, trees teacher at test accuracy 0.952, AUC 0.910), 1x64 distilled: validation budget
left +0.28 -> +0.93, test accuracy 0.925 -> 0.942, AUC 0.882 -> 0.900; 1x16: test 0.914 ->
0.941 / 0.876 -> 0.903 (2 copies gave less: 1x64 0.929, and the same number of steps as
without them, worse: 0.897). The control still learns from the training rows alone.

The candidates of each round and of the grid train side by side, as towers of one model
(`modules.models.model.Towers`): each learns on its own loss exactly as alone (the same batches,
initial weights and steps), and they share the data pipeline, the per-step costs and the
graph tracing, which are most of a small model's training time (x10 taxi, --quick: the
search took 76-100 s for 8 students one after the other, 53 s for 10 as two tower models).
"""
import dataclasses
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from modules import memory
from modules.learning import loop, training
from modules.learning.loop import LossFn
from modules.models import export
from modules.models.hyperparameters import ModelConfig
from modules.models.model import Towers, build_core
from modules.reading import splits
from modules.settings import Blessing, Training
from modules.verdict import blessing, evaluation

log = logging.getLogger(__name__)

# (layers, units), smallest first: the size search keeps the first that fits the budget.
# It starts from the linear student (no hidden layer: logistic regression on the
# preprocessed features, which is all many business tables support). A second layer is
# tried where it adds capacity at a size's cost (2x32 is about 1x40).
LINEAR = (0, 1)
STUDENT_SIZES: Tuple[Tuple[int, int], ...] = (LINEAR, (1, 4), (1, 8), (1, 16), (1, 32),
                                              (2, 32), (1, 64))
# The sizes train this many at a time, smallest first, until a round holds one within the
# budget: the first within it is kept, so the larger sizes could not change the choice, and
# tracing costs by the tower (taxi: 7 towers 12 s to trace, 3 of them 5 s). Four, not
# three: the seven sizes take at most two rounds (mlc_churn, whose student is the fourth
# size: the Distiller 35.1 -> 26.0 s; taxi's first round holds one more tower, ~1.5 s).
SIZES_PER_ROUND = 4
# (alpha, temperature); the first is the one the size search uses.
DISTILLATION_GRID: Tuple[Tuple[float, float], ...] = ((0.3, 4.0), (0.1, 2.0), (0.1, 8.0),
                                                      (0.6, 2.0))
# The share of each blessing budget a student may use: the rest is left for pruning and
# quantization.
SEARCH_BUDGET_SHARE = 0.5
# Synthetic rows (`with_synthetic_rows`), where no size fits without them: about this many in
# all, in 1 to MAX_SYNTHETIC_COPIES copies of the training rows; each feature of a copy is its
# row's nearest neighbour's with probability SYNTHETIC_SWAP, the neighbour found among blocks
# of NEIGHBOUR_ROWS rows (bounded memory: a block's distances take NEIGHBOUR_ROWS^2 floats).
SYNTHETIC_ROWS = 32_768
MAX_SYNTHETIC_COPIES = 8
SYNTHETIC_SWAP = 0.5
NEIGHBOUR_ROWS = 4096
# Students learning from synthetic rows take batches of at least this many rows: an epoch
# holds (1 + copies) times the training rows, and the small batches tuned for a few
# thousand rows would multiply its steps by as much. On hpc_data (3,003 training rows, 7
# copies, tuned batch 64), a round of 1x16, 1x32, 2x32 and 1x64: 35 s at 64 rows a batch,
# test accuracy 0.827 / 0.843 / 0.840 / 0.845; 16 s at 256, 0.827 / 0.837 / 0.857 / 0.848
# (676 test rows: one row is 0.15 points).
SYNTHETIC_BATCH = 256
# The student keeps the tuned batch size (at least SYNTHETIC_BATCH on synthetic rows),
# activation and weight decay, not the tuned shape, dropout, cross layer or learning rate: a
# model this small underfits rather than overfits, and learns fast.
STUDENT_FIXED = {"cross_rank": 0, "dropout": 0.0, "learning_rate": 3e-3}


def distillation_loss(alpha: float, temperature: float) -> LossFn:
    """Per-example distillation loss; targets hold "label" and "teacher_logits".
    alpha in [0, 1] and temperature > 0 (modules.settings.Distillation checks them)."""

    def loss_fn(targets: Dict[str, tf.Tensor], logits: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(logits, tf.float32)
        hard = tf.nn.sparse_softmax_cross_entropy_with_logits(targets["label"], logits)
        teacher = tf.nn.softmax(targets["teacher_logits"] / temperature)
        soft = tf.reduce_sum(teacher * (tf.math.log(teacher + 1e-12)
                                        - tf.nn.log_softmax(logits / temperature)), axis=-1)
        return alpha * hard + (1.0 - alpha) * temperature ** 2 * soft

    return loss_fn


def with_teacher_logits(teacher: tf.keras.Model,
                        prepared: training.PreparedData) -> training.PreparedData:
    """Both splits with the teacher's logits (inference mode) next to the labels, computed
    once per row, block by block, and stored like the splits (`Split.with_targets`)."""
    def logits(x):
        return tf.cast(teacher(x, training=False), tf.float32)

    return dataclasses.replace(prepared,
                               train=prepared.train.with_targets("teacher_logits", logits),
                               held_out=prepared.held_out.with_targets("teacher_logits", logits))


def synthetic_copies(rows: int) -> int:
    """Copies of the training rows `with_synthetic_rows` adds: about SYNTHETIC_ROWS rows in
    all, at least one copy and at most MAX_SYNTHETIC_COPIES."""
    return max(1, min(MAX_SYNTHETIC_COPIES, SYNTHETIC_ROWS // max(1, rows)))


def feature_of_slots(prepared: training.PreparedData) -> np.ndarray:
    """For each slot of the preprocessed vector, the index of the feature it encodes (every
    slot its own feature where there is no preprocessor)."""
    if prepared.preprocessor is None:
        return np.arange(prepared.dim)
    layout = prepared.preprocessor.layout()
    index = {feature: i for i, feature in enumerate(dict.fromkeys(s["feature"] for s in layout))}
    owner = np.zeros(prepared.dim, np.int64)
    for slot in layout:
        owner[slot["offset"]:slot["offset"] + slot["width"]] = index[slot["feature"]]
    return owner


def with_synthetic_rows(distilled: training.PreparedData, teacher: tf.keras.Model, *,
                        copies: int, seed: int, swap: float = SYNTHETIC_SWAP,
                        cache_mb: float = splits.DEFAULT_CACHE_MB) -> training.PreparedData:
    """`distilled` (with its teacher logits) whose training split also holds `copies`
    synthetic rows per row (MUNGE): in each block of NEIGHBOUR_ROWS rows, every row's nearest
    neighbour (Euclidean, on the preprocessed vectors); a copy takes each feature (all of its
    slots: the encodings stay valid) from the neighbour with probability `swap`, else from
    the row. The teacher labels them: its logits, and its most likely class as the label.
    Stored as the splits are (in memory, or streamed from local disk); the held-out split is
    unchanged."""
    owner = feature_of_slots(distilled)
    num_features = int(owner.max()) + 1

    def synthesize(index, block):
        x, targets = block
        rows = tf.shape(x)[0]
        norms = tf.reduce_sum(tf.square(x), axis=1)
        distances = norms[:, None] + norms[None, :] - 2.0 * tf.matmul(x, x, transpose_b=True)
        distances = tf.linalg.set_diag(distances, tf.fill([rows], np.inf))
        neighbours = tf.gather(x, tf.argmin(distances, axis=1))
        draws = tf.random.stateless_uniform([copies, rows, num_features],
                                            seed=tf.stack([tf.cast(seed, tf.int64), index]))
        taken = tf.gather(draws < swap, owner, axis=2)  # [copies, rows, dim]
        made = tf.reshape(tf.where(taken, neighbours[None], x[None]), [-1, x.shape[1]])
        logits = tf.cast(teacher(made, training=False), tf.float32)
        labels = tf.argmax(logits, axis=1, output_type=targets["label"].dtype)
        return (tf.concat([x, made], axis=0),
                {"label": tf.concat([targets["label"], labels], axis=0),
                 "teacher_logits": tf.concat([targets["teacher_logits"], logits], axis=0)})

    train = distilled.train
    blocks = train.dataset(NEIGHBOUR_ROWS).enumerate().map(
        tf.autograph.experimental.do_not_convert(synthesize))
    return dataclasses.replace(distilled, train=splits.Split.from_blocks(
        blocks, train.dim, train.rows * (1 + copies), cache_mb))


def size_name(layers: int, units: int) -> str:
    """"linear" for no hidden layer, else "LAYERSxUNITS"."""
    return "linear" if layers == 0 else f"{layers}x{units}"


# The students are what devices run, and TFLite Micro has no GELU kernel: a gelu teacher's
# students use swish, the sibling it can run (x * sigmoid(x); gelu is close to x *
# sigmoid(1.702 x)).
DEVICE_ACTIVATION = {"gelu": "swish"}


def student_config(tuned: Dict[str, Any], precision: str, epochs: int) -> ModelConfig:
    """The students' training configuration (their size is set per candidate)."""
    config = ModelConfig.from_dict(tuned, **STUDENT_FIXED, precision=precision, epochs=epochs)
    return dataclasses.replace(config, activation=DEVICE_ACTIVATION.get(config.activation,
                                                                        config.activation))


def filter_choices(choices: Sequence[Tuple], *fixed: Optional[float]) -> List[Tuple]:
    """The entries of `choices` that agree with every fixed (not None) position; where a
    fixed value is in none of them, that value with each distinct value of the others."""
    kept = [c for c in choices if all(f is None or c[i] == f for i, f in enumerate(fixed))]
    if kept:
        return kept
    columns = [sorted({c[i] for c in choices}, key=[c[i] for c in choices].index)
               if f is None else [f] for i, f in enumerate(fixed)]
    combos: List[Tuple] = [()]
    for column in columns:
        combos = [combo + (value,) for combo in combos for value in column]
    return combos


def warm_start(students: Towers, teacher: tf.keras.Model, names: Sequence[str]) -> None:
    """Students of `names` with the teacher's very architecture (the same weight shapes: a
    linear teacher and the linear student) start from the teacher's weights: distilling a
    model into its own shape from scratch can only lose what it already has."""
    weights = teacher.get_weights()
    shapes = [w.shape for w in weights]
    for name in names:
        tower = students.towers[name]
        if weights and [w.shape for w in tower.get_weights()] == shapes:
            tower.set_weights(weights)


def size_choices(layers: Optional[int], units: Optional[int]) -> List[Tuple[int, int]]:
    """The student sizes to search given --student-layers / --student-units (None: free);
    a fixed hidden depth leaves the linear student out (its width means nothing)."""
    ladder = STUDENT_SIZES if not layers else [s for s in STUDENT_SIZES if s != LINEAR]
    return filter_choices(ladder, layers, units)


@dataclasses.dataclass
class Candidate:
    """One trained student: its size, how it learned, and its scores on validation."""
    layers: int
    units: int
    params: int
    origin: str  # "distilled" or "scratch"
    alpha: Optional[float]
    temperature: Optional[float]
    metrics: Dict[str, float]  # auc, accuracy, log_loss, ... (modules.verdict.evaluation)
    budget_left: float
    epochs_trained: int
    history: Dict[str, list]
    weights: List[np.ndarray] = dataclasses.field(repr=False)
    synthetic_rows: int = 0  # teacher-labeled rows it also learned from (with_synthetic_rows)
    baseline: Optional[str] = None  # the baseline model it is ("linear"), not trained here

    @property
    def size(self) -> str:
        return size_name(self.layers, self.units)

    @property
    def how(self) -> str:
        """How it learned, in words."""
        if self.origin == "scratch":
            return f"from scratch (the {self.baseline} baseline)" if self.baseline \
                else "from scratch"
        how = f"distilled, alpha {self.alpha:g}, T {self.temperature:g}"
        if self.synthetic_rows:
            how += f", on {self.synthetic_rows} synthetic rows more"
        return how

    def row(self) -> Dict[str, Any]:
        """What the report shows."""
        return {"size": self.size, "layers": self.layers, "units": self.units,
                "params": self.params, "origin": self.origin, "how": self.how, "alpha": self.alpha,
                "temperature": self.temperature, "budget_left": self.budget_left,
                "epochs_trained": self.epochs_trained, "synthetic_rows": self.synthetic_rows,
                "baseline": self.baseline, **{f"val_{k}": self.metrics[k] for k in ("accuracy", "auc", "log_loss")}}


def rank(candidate: Candidate) -> Tuple[float, float]:
    """Better students first: more budget left, then a lower log loss."""
    return candidate.budget_left, -candidate.metrics["log_loss"]


@dataclasses.dataclass
class StudentSearch:
    teacher_metrics: Dict[str, float]
    # the sizes, distilled at the first grid point, smallest first (the first round's, then,
    # where none of them was within the budget, every size again with synthetic rows)
    sizes: List[Candidate]
    grid: List[Candidate]  # every alpha/temperature at the chosen size
    scratch: Candidate  # the control: the chosen size on the labels alone
    selected: Candidate  # the best of grid and scratch: what the Pruner starts from
    budget_share: float

    def report(self) -> Dict[str, Any]:
        distilled = max(self.grid, key=rank)
        return {
            "teacher": self.teacher_metrics, "budget_share": self.budget_share,
            "sizes": [c.row() for c in self.sizes], "grid": [c.row() for c in self.grid],
            "scratch": self.scratch.row(), "selected": self.selected.row(),
            "size_within_budget": self.grid[0].budget_left >= self.budget_share,
            "distilled_minus_scratch": {
                k: distilled.metrics[k] - self.scratch.metrics[k] for k in ("accuracy", "auc")},
            "winner": self.selected.origin}


def search_student(prepared: training.PreparedData, teacher: tf.keras.Model,
                   config: ModelConfig, budget: Blessing, run: Training = Training(), *,
                   sizes: Sequence[Tuple[int, int]] = STUDENT_SIZES,
                   grid: Sequence[Tuple[float, float]] = DISTILLATION_GRID,
                   budget_share: float = SEARCH_BUDGET_SHARE,
                   run_dir: Optional[Callable[[str], str]] = None,
                   linear: Optional[export.ExportedModel] = None) -> StudentSearch:
    """The smallest student within `budget_share` of the blessing budget, its best alpha and
    temperature (or, where it learned from synthetic rows, the first grid point), and its
    scratch control; see the module docstring. `config` is the students' training
    configuration, `budget` the blessing's thresholds, `run` the run's seed, strategy and
    cache size; every candidate is compared with `teacher` on the held-out (validation) rows
    of `prepared`; `run_dir(name)` gives each training's log folder ("sizes", "synthetic",
    "synthetic2", ..., "grid"). `linear`, the linear baseline (logistic regression on the
    labels alone, its weight decay chosen on validation: `modules.learning.baselines`), is the
    control where the chosen size is linear: the same model, not trained a second time with
    other settings.
    Candidates train without progress bars: one line each reports them."""
    seed = run.seed
    distilled_data = with_teacher_logits(teacher, prepared)
    dim, classes = prepared.dim, prepared.num_classes
    teacher_scores = evaluation.keras_scores(teacher, prepared.held_out)

    def train(phase: str, candidates: Sequence[Tuple[int, int, Optional[float],
                                                     Optional[float]]],
              data: training.PreparedData = distilled_data,
              synthetic_rows: int = 0) -> List[Candidate]:
        """(layers, units, alpha, temperature) candidates (alpha None: from scratch, on the
        labels alone) trained side by side, as towers of one model on the same batches of
        `data` (`synthetic_rows` of its rows synthetic)."""
        memory.release()  # the previous training's graphs
        names = [f"{size_name(layers, units)}_alpha{alpha:g}_t{temperature:g}"
                 if alpha is not None else f"{size_name(layers, units)}_scratch"
                 for layers, units, alpha, temperature in candidates]
        trained = (dataclasses.replace(config, batch_size=max(config.batch_size,
                                                              SYNTHETIC_BATCH))
                   if synthetic_rows else config)
        sized = {name: dataclasses.replace(trained, num_layers=layers, units=units)
                 for name, (layers, units, _, _) in zip(names, candidates)}
        losses = {name: loop.cross_entropy if alpha is None
                  else distillation_loss(alpha, temperature)
                  for name, (_, _, alpha, temperature) in zip(names, candidates)}
        distilled = [name for name, (_, _, alpha, _) in zip(names, candidates)
                     if alpha is not None]
        result = training.train_model(
            lambda: Towers({name: build_core(dim, classes, sized[name], seed=seed, name=name)
                            for name in names}, name="students"),
            data, trained, run, verbose=False,
            run_dir=run_dir(phase) if run_dir else None, loss_fn=losses,
            restore_model=lambda model: warm_start(model, teacher, distilled))
        return [scored(result.model.towers[name], name, layers, units, alpha, temperature,
                       result.epochs_trained, training.tower_history(result.history, name),
                       synthetic_rows if alpha is not None else 0)
                for name, (layers, units, alpha, temperature) in zip(names, candidates)]

    def scored(core: tf.keras.Model, name: str, layers: int, units: int,
               alpha: Optional[float], temperature: Optional[float], epochs_trained: int,
               history: Dict[str, list], synthetic_rows: int = 0,
               baseline: Optional[str] = None) -> Candidate:
        """The trained `core` as a candidate, scored against the teacher on validation."""
        scores = evaluation.keras_scores(core, prepared.held_out)
        metrics = scores.metrics()
        candidate = Candidate(
            layers, units, core.count_params(), "scratch" if alpha is None else "distilled",
            alpha, temperature, metrics,
            blessing.budget_left(blessing.drops_from(teacher_scores, scores, seed=seed), budget),
            epochs_trained, history, core.get_weights(), synthetic_rows, baseline)
        log.info("distiller: %s%s: accuracy %.4f, AUC %.4f, budget left %+.2f", name,
                 f" (+{synthetic_rows} synthetic rows)" if synthetic_rows else "",
                 metrics["accuracy"], metrics["auc"], candidate.budget_left)
        return candidate

    def search(phase: str, rounds: Optional[int] = None,
               **on) -> Tuple[List[Candidate], List[Candidate]]:
        """(the sizes tried, smallest first, a round at a time (at most `rounds`) until
        one is within the budget; those within it)."""
        tried: List[Candidate] = []
        starts = range(0, len(sizes), SIZES_PER_ROUND)
        for first in starts[:rounds]:
            tried += train(phase + (f"{first // SIZES_PER_ROUND + 1}" if first else ""),
                           [(layers, units, *grid[0])
                            for layers, units in sizes[first:first + SIZES_PER_ROUND]], **on)
            within = [c for c in tried if c.budget_left >= budget_share]
            if within:
                return tried, within
        return tried, []

    tried, within = search("sizes", rounds=1)
    if not within:  # the teacher's function from the training rows alone is out of reach
        copies = synthetic_copies(prepared.train.rows)
        more, within = search("synthetic", data=with_synthetic_rows(
            distilled_data, teacher, copies=copies, seed=seed, cache_mb=run.cache_mb),
            synthetic_rows=copies * prepared.train.rows)
        tried += more
    chosen = within[0] if within else max(tried, key=rank)
    size = (chosen.layers, chosen.units)
    # The grid's other points, where the chosen student learned from the training rows alone
    # (with synthetic rows its data differ from the control's); then the control.
    points = [] if chosen.synthetic_rows else [(*size, *point) for point in grid[1:]]
    if linear is not None and size == LINEAR:
        others = train("grid", points) if points else []
        scratch = scored(linear.core, "linear baseline", *size, None, None,
                         linear.info.get("epochs_trained", 0), linear.info.get("history", {}),
                         baseline="linear")
    else:
        *others, scratch = train("grid", points + [(*size, None, None)])
    grid_candidates = [chosen] + others
    selected = max(grid_candidates + [scratch], key=rank)  # ties: distilled first
    return StudentSearch(teacher_scores.metrics(), tried, grid_candidates, scratch, selected,
                         budget_share)


def student_params(size: Tuple[int, int], prepared: training.PreparedData,
                   config: ModelConfig) -> int:
    """Parameters of a student of `size` (layers, units) on this data."""
    sized = dataclasses.replace(config, num_layers=size[0], units=size[1])
    return build_core(prepared.dim, prepared.num_classes, sized).count_params()


def rebuild(candidate: Candidate, prepared: training.PreparedData,
            config: ModelConfig) -> tf.keras.Model:
    """The candidate's trained model, from its weights."""
    sized = dataclasses.replace(config, num_layers=candidate.layers, units=candidate.units)
    model = build_core(prepared.dim, prepared.num_classes, sized, name="student")
    model.set_weights(candidate.weights)
    return model
