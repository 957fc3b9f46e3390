"""Every setting of the pipeline, owned by one stage config.

A stage config is a frozen dataclass whose fields are made with `setting(...)`: the default,
the command-line flag and its help text, the check and the `--quick` value, in one place.
Both runners build their flags from the stages (`add_flags`, `from_flags`); `create_pipeline`
hands each component its stage as one execution property (`to_json`), and the executor reads
it back (`from_json`), checked again by the same code. A new setting is a field here (and a
line in the README); a new flag is `flag=True` on it.

No TensorFlow here: the runners parse and check flags before anything heavy is imported.
"""
import argparse
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

from modules.errors import UserError
from modules.models.hyperparameters import PRECISIONS, check_search_space
from modules.reading.csvfile import PANDAS_NA_VALUES
from modules.verdict import candidates

STRATEGIES = ("none", "mirrored", "multi_worker")
TUNERS = ("random", "hyperband", "bayesian", "none")
QUANTIZATION_MODES = candidates.NAMES


class SettingError(UserError):
    """A setting out of its range: the message names the flag, the value and what to do."""


Check = Callable[[Any], Optional[str]]  # the problem with a value, or None


def setting(default: Any, help: str, *, flag: Any = False, parse: Optional[Callable] = None,
            check: Optional[Check] = None, quick: Any = None, metavar: Optional[str] = None):
    """A stage field. `flag`: True for `--field-name`, a string for another name, False for
    none. `parse` turns the flag's text into the value; `check` returns what is wrong with a
    value (None when it is fine); `quick` is the value under --quick (None: the default)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "flag": flag, "parse": parse, "check": check, "quick": quick,
        "metavar": metavar})


# -- checks and parsers ----------------------------------------------------------------------
def one_of(choices: Sequence[str]) -> Check:
    return lambda v: None if v in choices else f"unknown value; use one of {', '.join(choices)}"


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be at least {low:g}"


def between(low: float, high: float, *, high_open: bool = False, low_open: bool = False) -> Check:
    def check(value):
        ok_low = value > low if low_open else value >= low
        ok_high = value < high if high_open else value <= high
        if ok_low and ok_high:
            return None
        return (f"must be in {'(' if low_open else '['}{low:g}, {high:g}"
                f"{')' if high_open else ']'}")
    return check


def split_proportions(text: str) -> Tuple[int, ...]:
    """--splits: "70,15,15" -> (70, 15, 15); anything else is left for the check to name."""
    try:
        return tuple(int(part) for part in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text}: three whole numbers (train, validation, test), e.g. 70,15,15") from None


def greater_than(low: float) -> Check:
    return lambda v: None if v > low else f"must be greater than {low:g}"


def comma_list(text: str) -> Tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def read_search_space(path: str) -> Dict[str, Any]:
    """A --search-space JSON file, checked against the model's hyperparameters."""

    try:
        with open(path) as f:
            space = json.load(f)
        if not isinstance(space, dict):
            raise ValueError("the file must hold a JSON object")
        check_search_space(space)
    except (OSError, ValueError) as e:  # argparse names the flag
        raise argparse.ArgumentTypeError(f"{path}: {e}") from None
    return space


class FlagParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (SettingError), like every other bad
    input, instead of printing its usage."""

    def error(self, message: str):
        raise SettingError(message)


# -- the base of every stage -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Stage:
    KEY: ClassVar[str] = ""  # its execution property and JSON key

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            check = field.metadata.get("check")
            problem = check(value) if check and value is not None else None
            if problem:
                raise SettingError(
                    f"{self.name_of(field.name)} {value_text(value)}: {problem}")
        self.check_together()

    def check_together(self) -> None:
        """Checks across fields; raises SettingError."""

    @classmethod
    def name_of(cls, name: str) -> str:
        """The flag of a field, or its name where it has none (in messages)."""
        field = {f.name: f for f in dataclasses.fields(cls)}[name]
        flag = field.metadata.get("flag")
        if flag is True:
            return "--" + name.replace("_", "-")
        return flag or f"{cls.KEY}.{name}"

    @classmethod
    def flagged(cls) -> List[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.metadata.get("flag")]

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group(cls.KEY)
        for field in cls.flagged():
            meta = field.metadata
            default = field.default
            if meta["quick"] is not None:
                default = f"{value_text(default)}; {value_text(meta['quick'])} with --quick"
            group.add_argument(cls.name_of(field.name), dest=f"{cls.KEY}.{field.name}",
                               type=meta["parse"] or _kind(field), default=None,
                               metavar=meta["metavar"] or field.name.upper(),
                               help=meta["help"] if "default:" in meta["help"]
                               else f"{meta['help']} (default: {value_text(default)})")

    @classmethod
    def from_flags(cls, args: argparse.Namespace, quick: bool = False, **fixed) -> "Stage":
        """The stage from parsed flags: a flag given wins, then `fixed` (a runner's choice),
        then the --quick value, then the default."""
        values = {}
        for field in dataclasses.fields(cls):
            given = getattr(args, f"{cls.KEY}.{field.name}", None)
            if given is not None:
                values[field.name] = given
            elif field.name in fixed:
                values[field.name] = fixed[field.name]
            elif quick and field.metadata.get("quick") is not None:
                values[field.name] = field.metadata["quick"]
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "Stage":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(fields[k].default, tuple) else v
                      for k, v in values.items() if k in fields})

    @classmethod
    def from_json(cls, text: str) -> "Stage":
        return cls.from_dict(json.loads(text))


def _kind(field: dataclasses.Field):
    if isinstance(field.default, bool):
        return None
    if isinstance(field.default, (int, float, str)):
        return type(field.default)
    hint = str(field.type)
    return float if "float" in hint else int if "int" in hint else str


def value_text(value: Any) -> str:
    """A setting's value as a user writes it: "a,b" for a list, "none", 0.005 not 0.005000."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def na_list(text: str) -> Tuple[str, ...]:
    """--na-values: comma-separated markers; empty for none (only empty fields are missing)."""
    return tuple(part.strip() for part in text.split(","))  if text.strip() else ()


def delimiter(text: str) -> str:
    """--delimiter: one character; "tab" or "\\t" for a tab."""
    return "\t" if text in ("tab", "\\t", "TAB") else text


# -- the stages ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Csv(Stage):
    """How CSV files are read: by the preflight check and by CsvExampleGen
    (modules.reading.csvfile)."""
    KEY: ClassVar[str] = "csv"
    na_values: Tuple[str, ...] = setting(
        PANDAS_NA_VALUES, "text that marks a missing value in any column, comma-separated "
        "(default: pandas' list: NA, N/A, NULL, NaN, None, #N/A, nan, null, ...); "
        "--na-values= for none, so that only empty fields are missing", flag=True,
        parse=na_list, metavar="TEXT[,TEXT...]")
    delimiter: str = setting(",", "the field separator: one character, e.g. ';' or tab",
                             flag=True, parse=delimiter, metavar="CHAR",
                             check=lambda v: None if len(v) == 1 and v not in '"\r\n' else
                             "must be one character other than a quote or a line break "
                             "(tab: --delimiter tab)")
    decimal: str = setting(".", "the decimal mark of numbers, as pandas' decimal: '.' or ',' "
                           "(European spreadsheets: --delimiter ';' --decimal ,); with ',' a "
                           "'.' makes a value text, thousands separators are not read",
                           flag=True, metavar="CHAR", check=one_of((".", ",")))
    keep: Tuple[str, ...] = setting(
        (), "columns used as features even though they look like identifiers (a different "
        "value in nearly every row), which are otherwise left out", flag=True,
        parse=comma_list, metavar="COL[,COL...]")



@dataclasses.dataclass(frozen=True)
class Splits(Stage):
    """How CsvExampleGen splits the rows: train, validation and test, by hash of the row.
    Every step that selects (tuner trials, early stopping, student size, alpha and
    temperature, pruning ladder, QAT) scores on validation; only the Evaluator reads test."""
    KEY: ClassVar[str] = "splits"
    proportions: Tuple[int, ...] = setting(
        (70, 15, 15), "relative sizes of the train, validation and test splits (hash buckets)",
        flag="--splits", parse=split_proportions, metavar="TRAIN,VALIDATION,TEST",
        check=lambda v: None if len(v) == 3 and all(p >= 1 for p in v) and sum(v) <= 1000
        else "three whole numbers of at least 1 (train, validation, test), e.g. 70,15,15")


@dataclasses.dataclass(frozen=True)
class Training(Stage):
    """What every training step shares: Tuner trials, Trainer, Distiller, Pruner, QAT."""
    KEY: ClassVar[str] = "training"
    seed: int = setting(42, "seed of every random choice", flag=True)
    strategy: str = setting("none", "tf.distribute strategy: none, mirrored or multi_worker "
                            "(reads TF_CONFIG)", flag=True, check=one_of(STRATEGIES))
    precision: str = setting("float32", "float32, mixed_float16 or mixed_bfloat16",
                             flag=True, check=one_of(PRECISIONS))
    cache_mb: int = setting(128, "a prepared split up to this many MB is held in memory "
                            "(expanded when that fits, else encoded); larger splits stream "
                            "from a local snapshot (modules/reading/splits.py)", flag=True,
                            check=at_least(0))


@dataclasses.dataclass(frozen=True)
class Tuning(Stage):
    """Keras Tuner's search for the teacher's hyperparameters (modules.learning.tuner)."""
    KEY: ClassVar[str] = "tuning"
    tuner: str = setting("hyperband", "hyperparameter search: random, hyperband, bayesian or "
                         "none", flag=True, check=one_of(TUNERS))
    trials: int = setting(10, "tuner trials", flag=True, check=at_least(1), quick=2)
    max_epochs: int = setting(9, "epochs of the longest trial (Hyperband's max_epochs)",
                              check=at_least(1), quick=2)
    epoch_steps: int = setting(100, "optimizer steps in each epoch of a trial, at least (a "
                               "small training split is repeated): Hyperband's unit of budget",
                               check=at_least(1), quick=32)
    search_space: Optional[Dict[str, Any]] = setting(
        None, "a JSON file replacing the tuner's search space (format: DEFAULT_SEARCH_SPACE "
        "in modules/models/hyperparameters.py)", flag=True, parse=read_search_space,
        metavar="JSON_FILE")
    workers: int = setting(2, "tuner trials running at once, each on its own thread (one "
                           "traces its new model while another's steps run); the same trials "
                           "and results as 1, one after another", flag="--tuner-workers",
                           check=at_least(1))
    sample_rows: int = setting(100_000, "tuner trials train on a random sample of at most this "
                               "many training rows (0: all); the Trainer uses every row",
                               flag="--tuner-sample-rows", check=at_least(0))


@dataclasses.dataclass(frozen=True)
class Teacher(Stage):
    """The Trainer: retrains the teacher with the best hyperparameters."""
    KEY: ClassVar[str] = "teacher"
    epochs: Optional[int] = setting(None, "teacher training epochs (none: the tuned or "
                                    "built-in value)", flag=True, check=at_least(1), quick=3)


@dataclasses.dataclass(frozen=True)
class Baselines(Stage):
    """The baselines and the choice of the teacher (modules.learning.baselines)."""
    KEY: ClassVar[str] = "baselines"
    trees_sample_rows: int = setting(100_000, "the gradient-boosted trees train on a uniform "
                                     "sample of at most this many training rows (0: all)",
                                     flag="--trees-sample-rows", check=at_least(0))


@dataclasses.dataclass(frozen=True)
class Distillation(Stage):
    """The Distiller: the smallest student within the budget (modules.compression.distillation)."""
    KEY: ClassVar[str] = "distillation"
    student_layers: Optional[int] = setting(
        None, "student depth (DenseBlocks; 0: linear); none: searched, the smallest within "
        "budget", flag=True, check=at_least(0))
    student_units: Optional[int] = setting(None, "student width; none: searched", flag=True,
                                           check=at_least(1))
    alpha: Optional[float] = setting(
        None, "weight of the label cross-entropy, 1 - alpha weighs the teacher's soft "
        "targets; none: chosen on the validation split from a small grid", flag=True,
        check=between(0.0, 1.0))
    temperature: Optional[float] = setting(
        None, "temperature T that softens the logits; none: chosen with alpha", flag=True,
        check=greater_than(0.0))
    epochs: int = setting(20, "epochs of each student", check=at_least(1), quick=12)


@dataclasses.dataclass(frozen=True)
class Pruning(Stage):
    """The Pruner (modules.compression.pruning)."""
    KEY: ClassVar[str] = "pruning"
    sparsity: float = setting(0.8, "pruning target: fraction of the student's weights set to "
                              "zero", flag=True, check=between(0.0, 1.0, high_open=True))
    epochs: int = setting(6, "fine-tuning epochs while pruning", flag="--prune-epochs",
                          check=at_least(1), quick=4)


@dataclasses.dataclass(frozen=True)
class Quantization(Stage):
    """The Quantizer (modules.compression.quantization)."""
    KEY: ClassVar[str] = "quantization"
    modes: Tuple[str, ...] = setting(
        ("dynamic", "float16", "int8"), "TFLite models to produce: " + "; ".join(
            f"{mode.name} ({mode.help})" for mode in candidates.MODES), flag="--quantize",
        parse=comma_list, metavar="MODE[,MODE...]",
        check=lambda modes: (None if modes and set(modes) <= set(QUANTIZATION_MODES) else
                             f"unknown mode(s) {', '.join(sorted(set(modes) - set(QUANTIZATION_MODES))) or '(none given)'}; "
                             f"choose from {', '.join(QUANTIZATION_MODES)}"))
    deploy_mode: str = setting("int8", "the TFLite model that is blessed and pushed (one of "
                               "--quantize)", flag=True)
    qat_epochs: int = setting(2, "fine-tuning epochs of quantization-aware training",
                              check=at_least(1))

    def check_together(self):
        if self.deploy_mode not in self.modes:
            raise SettingError(f"--deploy-mode {self.deploy_mode}: not among --quantize "
                               f"({', '.join(self.modes)}); add it there")


@dataclasses.dataclass(frozen=True)
class Blessing(Stage):
    """The Evaluator's blessing (modules.verdict.blessing); the Distiller and Pruner compress within
    the same budget."""
    KEY: ClassVar[str] = "blessing_thresholds"  # "blessing" is the Evaluator's output
    min_auc: Optional[float] = setting(
        None, "an absolute floor: the deployable model is blessed only with at least this "
        "ROC AUC on test (none: no floor; the model must beat the class prior instead)",
        flag=True, check=between(0.0, 1.0))
    max_auc_drop: float = setting(0.005, "the deployable model's ROC AUC may be at most this "
                                  "much below the teacher's, beyond noise (the paired 95%% "
                                  "interval's low end)", flag=True, check=at_least(0.0))
    max_accuracy_drop: float = setting(0.01, "... and its accuracy at most this much below "
                                       "the teacher's, beyond noise", flag=True,
                                       check=at_least(0.0))
    slice_features: Tuple[str, ...] = setting(("payment_type",), "TFMA slices, where the "
                                              "column exists")
    slice_rows: int = setting(20_000, "TFMA's sliced metrics use a uniform sample of at most "
                              "this many test rows (0: all); the blessing always uses every "
                              "test row", flag="--slice-rows", check=at_least(0),
                              quick=5_000)


STAGES: Tuple[Type[Stage], ...] = (Csv, Splits, Training, Tuning, Teacher, Baselines,
                                   Distillation, Pruning, Quantization, Blessing)


def add_stage_flags(parser: argparse.ArgumentParser) -> None:
    for stage in STAGES:
        stage.add_flags(parser)


def stages_from_flags(args: argparse.Namespace, quick: bool = False) -> Dict[str, Stage]:
    """{"training": Training(...), "tuning": ..., ...} from parsed flags (the names of
    PipelineConfig's fields); raises SettingError naming the flag."""
    return {stage.__name__.lower(): stage.from_flags(args, quick) for stage in STAGES}


# -- what every model component is told ------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The label, dropped columns and training settings, and where resumable state lives:
    given to every component that trains or evaluates a model (JSON, as execution property
    or custom_config entry `KEY`)."""
    KEY: ClassVar[str] = "run_settings"
    label: str
    drop: Tuple[str, ...] = ()
    training: Training = Training()
    work_dir: Optional[str] = None  # checkpoints and the tuner's trials, kept across runs
    verbose: bool = True

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "training": self.training.to_dict()},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunSettings":
        values = json.loads(text)
        return cls(label=values["label"], drop=tuple(values.get("drop", ())),
                   training=Training.from_dict(values.get("training", {})),
                   work_dir=values.get("work_dir"), verbose=values.get("verbose", True))

    def work_subdir(self, component: str, *keys: Any) -> Optional[str]:
        """A directory that is the same whenever `keys` are, so a rerun finds its state."""
        if not self.work_dir:
            return None
        digest = hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode())
        return os.path.join(self.work_dir, component, digest.hexdigest()[:16])
