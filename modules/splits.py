"""One prepared split (preprocessed feature vectors, class ids, any per-row targets) read as
`tf.data` batches, held in memory when small and streamed from local disk when not.

Every step that trains, calibrates or evaluates reads its splits through `Split.dataset`:
- in memory (`from_arrays`, or a prepared split of at most `cache_mb` of features): numpy
  arrays, shuffled whole every epoch, exactly as small data was always read;
- streamed (larger): the prepared rows are written once to a local `tf.data` snapshot
  (`Dataset.save`), each row to one of `rows / SHARD_ROWS` shards drawn at random, so every
  shard is a uniform random subset of the split whatever order the rows came in (a CSV
  sorted by label or by time; ExampleGen does not shuffle). An epoch reads the shards in a
  new random order, each shard whole and permuted (at most SHUFFLE_ROWS rows at once), and
  cuts the batches from them. Memory then holds a shard or two, whatever the number of
  rows.
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

BLOCK_ROWS = 1024  # rows per block read from the examples, and per block in row order
SHARD_ROWS = 8192  # rows per random shard of a streamed split, on average
SHUFFLE_ROWS = 2 * SHARD_ROWS  # at most this many rows are permuted at once (a shard)
MAX_SHARDS = 1024  # past SHARD_ROWS * MAX_SHARDS rows (8.4M), shards grow (permuted in parts)
STORE_BLOCK_BYTES = 16 * 2 ** 20  # at most this much of a split is scattered at once
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
        self._shards = 0

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
        self._shards = min(MAX_SHARDS, max(1, -(-self.rows // SHARD_ROWS)))
        pieces = _scatter(blocks, self._shards, self.dim)
        pieces.save(self._path, shard_func=lambda shard, x, targets: shard)
        self._spec = pieces.element_spec

    def _shard(self, index: tf.Tensor) -> tf.data.Dataset:
        """The (features, targets) pieces of one stored shard (the index-th listed)."""
        return tf.data.Dataset.load(
            self._path, element_spec=self._spec,
            reader_func=lambda shards: shards.skip(index).take(1).flat_map(lambda d: d),
        ).map(lambda shard, x, targets: (x, targets))

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
        """(features, targets) blocks, each row once: in row order while the split is in
        memory or not yet stored (without `store`, a split not yet stored is computed from
        its source instead: one more pass, nothing kept), shard by shard once it is stored."""
        if self._pending is not None:
            if not store:
                return self._pending
            self._store()
        if self._arrays is not None:
            x, targets = self._arrays
            return tf.data.Dataset.from_tensor_slices((x, targets)).batch(BLOCK_ROWS)
        return (tf.data.Dataset.range(self._shards).flat_map(self._shard)
                .rebatch(BLOCK_ROWS))

    def _shuffled_blocks(self, seed: Optional[int]) -> tf.data.Dataset:
        """The blocks of a streamed split in a new random order each pass: the shards in a
        random order, the rows of each permuted."""
        order = tf.data.Dataset.range(self._shards).shuffle(
            self._shards, seed=seed, reshuffle_each_iteration=True)
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        def permuted(shard, draw):
            def permute(part, block):
                x, targets = block
                index = tf.random.experimental.stateless_shuffle(
                    tf.range(tf.shape(x, out_type=tf.int64)[0]), seed=tf.stack([draw, part]))
                return (tf.gather(x, index),
                        {name: tf.gather(v, index) for name, v in targets.items()})

            return self._shard(shard).rebatch(SHUFFLE_ROWS).enumerate().map(permute)

        return tf.data.Dataset.zip((order, draws)).flat_map(permuted)

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
        blocks = self._shuffled_blocks(seed) if shuffle else self._blocks()
        if features_only:
            blocks = blocks.map(lambda x, targets: x)
        if repeat != 1:
            blocks = blocks.repeat(repeat or None)
        batches = blocks.rebatch(batch_size)
        if repeat:
            batches = batches.apply(tf.data.experimental.assert_cardinality(
                -(-self.rows * repeat // batch_size)))
        return batches.prefetch(tf.data.AUTOTUNE)

    def features(self, batch_size: int = BLOCK_ROWS) -> tf.data.Dataset:
        """Feature batches, each row once (`_blocks`' order)."""
        return self.dataset(batch_size, features_only=True)

    def blocks(self) -> Iterator[Tuple[np.ndarray, Targets]]:
        """(features, targets) as numpy blocks, each row once (`_blocks`' order)."""
        for x, targets in self._blocks():
            yield x.numpy(), {k: v.numpy() for k, v in targets.items()}

    def first_row(self) -> np.ndarray:
        """One row's features, the first in row order (read without storing the split)."""
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


def _scatter(blocks: tf.data.Dataset, shards: int, dim: int, seed: int = 0) -> tf.data.Dataset:
    """(features, targets) blocks -> (shard, features, targets) pieces, each row sent to one
    of `shards` shards drawn uniformly (seeded by its block and place). Blocks are regrouped
    to about 16 rows per shard (at most STORE_BLOCK_BYTES of features) so that a piece is
    not a single row."""
    rows = max(BLOCK_ROWS, min(16 * shards, STORE_BLOCK_BYTES // (4 * max(1, dim))))

    def pieces(position, block):
        x, targets = block
        shard = tf.random.stateless_uniform(
            tf.shape(x)[:1], seed=tf.stack([tf.constant(seed, tf.int64), position]),
            minval=0, maxval=shards, dtype=tf.int64)
        order = tf.argsort(shard, stable=True)
        x, targets = tf.gather(x, order), {k: tf.gather(v, order) for k, v in targets.items()}
        counts = tf.math.bincount(tf.cast(shard, tf.int32), minlength=shards,
                                  maxlength=shards, dtype=tf.int64)
        starts = tf.cumsum(counts, exclusive=True)
        used = tf.where(counts > 0)[:, 0]
        return tf.data.Dataset.from_tensor_slices(
            (used, tf.gather(starts, used), tf.gather(counts, used))).map(
            lambda k, start, count: (k, x[start:start + count],
                                     {name: v[start:start + count]
                                      for name, v in targets.items()}))

    return blocks.rebatch(rows).enumerate().flat_map(pieces)
