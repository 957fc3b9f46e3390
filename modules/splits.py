"""One prepared split (preprocessed feature vectors, class ids, any per-row targets) read as
`tf.data` batches, held in memory when small and streamed from local disk when not.

Every step that trains, calibrates or evaluates reads its splits through `Split.dataset`:
- in memory (`from_arrays`, or a prepared split of at most `cache_mb` of features): numpy
  arrays, shuffled whole every epoch, exactly as small data was always read;
- streamed (larger): the prepared rows are written once to a local `tf.data` snapshot
  (`Dataset.save`, in blocks of BLOCK_ROWS) and read back block by block every epoch,
  shuffled through a bounded buffer (SHUFFLE_BUFFER rows). Memory then holds a few blocks and
  the buffer, whatever the number of rows.
Targets computed from the features (a teacher's logits for distillation) are added with
`with_targets`: once per row, batch by batch, stored like the rest of the split.
"""
import shutil
import tempfile
import weakref
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from modules import loop

BLOCK_ROWS = 1024  # rows per stored block of a streamed split
SHUFFLE_BUFFER = 16384  # rows in the shuffle buffer of a streamed split
DEFAULT_CACHE_MB = 128  # prepared features held in memory up to this size

Targets = Dict[str, np.ndarray]


class Split:
    """Prepared rows: features float32 [rows, dim] and targets {"label": int64, ...}.

    Build one with `from_arrays` or `from_blocks`; read it with `dataset` (training and
    evaluation batches), `features` (features alone) or `blocks` (numpy, for metrics). A split
    from blocks is stored on first read that needs it (`dataset`, `blocks`, `with_targets`):
    a step that only samples it, or reads its first row, never stores it whole.
    """

    def __init__(self, rows: int, dim: int, arrays: Optional[Tuple[np.ndarray, Targets]] = None,
                 pending: Optional[tf.data.Dataset] = None,
                 cache_mb: float = DEFAULT_CACHE_MB):
        self.rows, self.dim = int(rows), int(dim)
        self._arrays, self._pending, self._cache_mb = arrays, pending, cache_mb
        self._path = self._spec = None

    def __len__(self) -> int:
        return self.rows

    @property
    def in_memory(self) -> bool:
        """Whether the rows are (or will be) held in memory rather than streamed."""
        return self._arrays is not None or (
            self._pending is not None and self.rows * self.dim * 4 <= self._cache_mb * 2 ** 20)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, features: np.ndarray, targets: Targets) -> "Split":
        features = np.asarray(features, np.float32)
        return cls(len(features), features.shape[1] if features.ndim == 2 else 0,
                   arrays=(features, {k: np.asarray(v) for k, v in targets.items()}))

    @classmethod
    def from_blocks(cls, blocks: tf.data.Dataset, dim: int, rows: int,
                    cache_mb: float = DEFAULT_CACHE_MB) -> "Split":
        """From a dataset of (features [n, dim], targets) blocks holding `rows` rows in all:
        in memory when the features take at most `cache_mb`, else written to a local snapshot
        (removed when the Split is). `blocks` is read when the split is first needed."""
        return cls(rows, dim, pending=blocks, cache_mb=cache_mb)

    def _store(self) -> None:
        """Reads the pending blocks once, into memory or a local snapshot."""
        blocks, self._pending = self._pending, None
        if self.rows * self.dim * 4 <= self._cache_mb * 2 ** 20:
            chunks = [(x.numpy(), {k: v.numpy() for k, v in t.items()}) for x, t in blocks]
            if chunks:
                self._arrays = (np.concatenate([x for x, _ in chunks]), {
                    k: np.concatenate([t[k] for _, t in chunks]) for k in chunks[0][1]})
            else:
                self._arrays = (np.zeros((0, self.dim), np.float32), {
                    k: np.zeros((0, *spec.shape[1:]), spec.dtype.as_numpy_dtype)
                    for k, spec in blocks.element_spec[1].items()})
            return
        self._path = tempfile.mkdtemp(prefix="split-")
        weakref.finalize(self, shutil.rmtree, self._path, True)
        blocks.rebatch(BLOCK_ROWS).save(self._path,
                                        shard_func=lambda *_: tf.constant(0, tf.int64))
        self._spec = blocks.element_spec

    def with_targets(self, name: str, compute: Callable[[tf.Tensor], tf.Tensor]) -> "Split":
        """The same rows with one more target, `compute(features block)`, computed once and
        stored as this split is (in memory, or streamed from a new snapshot)."""
        blocks = self._blocks(store=False).map(lambda x, t: (x, {**t, name: compute(x)}))
        return Split.from_blocks(blocks, self.dim, self.rows,
                                 float("inf") if self.in_memory else 0)

    def sample(self, rows: int, seed: int = 0, cache_mb: float = DEFAULT_CACHE_MB) -> "Split":
        """A uniform random subset of at most `rows` rows. A streamed split is sampled in one
        pass (each row kept with probability rows / len, seeded by its position), so the
        sample is spread over the whole split and never held beyond `cache_mb`."""
        if rows >= self.rows:
            return self
        if self.in_memory:
            x, targets = self.arrays()
            index = np.sort(np.random.default_rng(seed).choice(self.rows, rows, replace=False))
            return Split.from_arrays(x[index], {k: v[index] for k, v in targets.items()})
        keep = rows / self.rows

        def kept(position, row):
            return tf.random.stateless_uniform([], seed=tf.stack(
                [tf.constant(seed, tf.int64), position])) < keep

        sampled = (self._blocks(store=False).unbatch().enumerate().filter(kept)
                   .map(lambda position, row: row).take(rows))
        count = int(sampled.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
        return Split.from_blocks(sampled.batch(BLOCK_ROWS), self.dim, count, cache_mb)

    # -- reading --------------------------------------------------------------------------
    def _blocks(self, store: bool = True) -> tf.data.Dataset:
        """(features, targets) blocks in row order; without `store`, a split not yet stored
        is computed from its source instead (one more pass, nothing kept)."""
        if self._pending is not None:
            if not store:
                return self._pending
            self._store()
        if self._arrays is not None:
            x, targets = self._arrays
            return tf.data.Dataset.from_tensor_slices((x, targets)).batch(BLOCK_ROWS)
        return tf.data.Dataset.load(self._path, element_spec=self._spec)

    def _rows(self, shuffle: bool, seed: Optional[int]) -> tf.data.Dataset:
        """The rows of a streamed split, through the bounded shuffle buffer."""
        rows = self._blocks().unbatch()
        if shuffle:
            rows = rows.shuffle(min(max(1, self.rows), SHUFFLE_BUFFER), seed=seed,
                                reshuffle_each_iteration=True)
        return rows

    def dataset(self, batch_size: int, shuffle: bool = False, seed: Optional[int] = None,
                repeat: int = 1, features_only: bool = False) -> tf.data.Dataset:
        """(features, targets) batches (features alone with `features_only`); with `repeat`,
        one iteration makes that many passes over the rows, each in a new order (0: endless).
        Its cardinality is known (the training loop counts steps with it)."""
        if self._pending is not None:
            self._store()
        if self._arrays is not None:
            x, targets = self._arrays
            return loop.make_dataset(x, None if features_only else targets, batch_size,
                                     shuffle=shuffle, seed=seed, repeat=repeat)
        rows = self._rows(shuffle, seed)
        if features_only:
            rows = rows.map(lambda x, t: x)
        if repeat == 0:
            return rows.repeat().batch(batch_size).prefetch(tf.data.AUTOTUNE)
        if repeat > 1:
            rows = rows.repeat(repeat)
        batches = -(-self.rows * repeat // batch_size)
        return (rows.batch(batch_size)
                .apply(tf.data.experimental.assert_cardinality(batches))
                .prefetch(tf.data.AUTOTUNE))

    def features(self, batch_size: int = BLOCK_ROWS) -> tf.data.Dataset:
        """Feature batches in row order."""
        return self.dataset(batch_size, features_only=True)

    def blocks(self) -> Iterator[Tuple[np.ndarray, Targets]]:
        """(features, targets) as numpy blocks in row order."""
        for x, targets in self._blocks():
            yield x.numpy(), {k: v.numpy() for k, v in targets.items()}

    def first_row(self) -> np.ndarray:
        """The first row's features (read without storing the split)."""
        for x, _ in self._blocks(store=False).unbatch().take(1):
            return x.numpy()
        return np.zeros(self.dim, np.float32)

    def arrays(self) -> Tuple[np.ndarray, Targets]:
        """The whole split as numpy arrays: for tests and small in-memory data only."""
        if not self.in_memory:
            raise ValueError("a streamed split is not held in memory; read it with dataset()")
        if self._pending is not None:
            self._store()
        return self._arrays

    def class_counts(self, num_classes: int) -> np.ndarray:
        counts = np.zeros(num_classes, np.int64)
        for _, targets in self._blocks(store=False):
            counts += np.bincount(targets["label"].numpy(), minlength=num_classes)[:num_classes]
        return counts
