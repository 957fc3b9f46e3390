"""One prepared split (preprocessed feature vectors, class ids, any per-row targets) read as
`tf.data` batches, held in memory when small and streamed from local disk when not.

Prepared splits are kept compact: `FeaturePreprocessor.encode`'s one number per feature (17
float64 per taxi row), expanded into the model's input (`FeaturePreprocessor.expand`: 445
float32) as they are read. Expanding costs time on every batch, so a split whose expanded
rows fit `cache_mb` is expanded once and held so.

Every step that trains, calibrates or evaluates reads its splits through `Split.dataset`:
- in memory (`from_arrays`, or a prepared split of at most `cache_mb`: expanded when that
  fits, else compact): tensors, shuffled whole every epoch;
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
import threading
import weakref
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from modules.learning import loop

BLOCK_ROWS = 1024  # rows per block read from the examples, and per block in row order
SHARD_ROWS = 8192  # rows per random shard of a streamed split, on average
SHUFFLE_ROWS = 2 * SHARD_ROWS  # at most this many rows are permuted at once (a shard)
MAX_SHARDS = 1024  # past SHARD_ROWS * MAX_SHARDS rows (8.4M), shards grow (permuted in parts)
STORE_BLOCK_BYTES = 16 * 2 ** 20  # at most this much of a split is scattered at once
DEFAULT_CACHE_MB = 128  # prepared rows held in memory up to this size (as stored)

Targets = Dict[str, np.ndarray]
Expand = Callable[[tf.Tensor], tf.Tensor]


class Split:
    """Prepared rows: features float32 [rows, dim] and targets {"label": int64, ...}.

    Build one with `from_arrays` or `from_blocks`; read it with `dataset` (training and
    evaluation batches), `features` (features alone) or `blocks` (numpy, for metrics). A split
    from blocks is stored on first read that needs it (`dataset`, `blocks`, `with_targets`):
    a step that only samples it, or reads its first row, never stores it whole. With
    `expand`, the rows are stored as given (e.g. [rows, width] float64) and every read
    returns `expand(stored batch)`: float32 [batch, dim].
    """

    def __init__(self, rows: int, dim: int,
                 arrays: Optional[Tuple[tf.Tensor, Dict[str, tf.Tensor]]] = None,
                 pending: Optional[tf.data.Dataset] = None,
                 cache_mb: float = DEFAULT_CACHE_MB, expand: Optional[Expand] = None):
        self.rows, self.dim = int(rows), int(dim)
        self._arrays, self._pending, self._cache_mb = arrays, pending, cache_mb
        self._expand = expand
        self._samples: Dict[Tuple[int, int, float], "Split"] = {}
        self._path = self._spec = None
        self._shards = 0
        self._storing = threading.Lock()

    def __len__(self) -> int:
        return self.rows

    @property
    def _row_bytes(self) -> int:
        """Bytes of one stored row's features."""
        x = self._arrays[0] if self._arrays is not None else self._pending.element_spec[0]
        return int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.size

    @property
    def in_memory(self) -> bool:
        """Whether the rows are (or will be) held in memory rather than streamed."""
        return self._arrays is not None or (
            self._pending is not None
            and self.rows * self._row_bytes <= self._cache_mb * 2 ** 20)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, features: np.ndarray, targets: Targets) -> "Split":
        """Held in memory: `features` float32 [rows, dim]."""
        features = np.asarray(features, np.float32)
        return cls(len(features), features.shape[1] if features.ndim == 2 else 0,
                   arrays=_tensors(features, targets))

    @classmethod
    def from_blocks(cls, blocks: tf.data.Dataset, dim: int, rows: int,
                    cache_mb: float = DEFAULT_CACHE_MB,
                    expand: Optional[Expand] = None) -> "Split":
        """From a dataset of (stored features [n, ...], targets) blocks holding `rows` rows in
        all: in memory when they take at most `cache_mb`, else written to a local snapshot
        (removed when the Split is). `blocks` is read when the split is first needed. Reads
        give `expand(stored features)` ([n, dim]), or the stored features without it."""
        return cls(rows, dim, pending=blocks, cache_mb=cache_mb, expand=expand)

    def _store(self) -> None:
        """Reads the pending blocks once, into memory or a local snapshot. Threads may ask at
        once (the Tuner's concurrent trials): one reads, the others wait for it; `_pending`
        becomes None only once the rows are stored."""
        with self._storing:
            if self._pending is not None:
                self._store_pending()
                self._pending = None

    def _store_pending(self) -> None:
        blocks = self._pending
        if not self.in_memory:
            row_bytes = self._row_bytes
            path = tempfile.mkdtemp(prefix="split-")
            weakref.finalize(self, shutil.rmtree, path, True)
            shards = min(MAX_SHARDS, max(1, -(-self.rows // SHARD_ROWS)))
            pieces = _scatter(blocks, shards, row_bytes)
            pieces.save(path, shard_func=lambda shard, x, targets: shard)
            self._path, self._shards, self._spec = path, shards, pieces.element_spec
            return
        expand = self._expand
        expanded = expand is not None and self.rows * self.dim * 4 <= self._cache_mb * 2 ** 20
        if expanded:  # small enough to hold expanded: expanded once here, not every batch
            blocks = blocks.map(lambda x, targets: (expand(x), targets))
        # Filled in place (not a list of blocks concatenated: twice the memory at the end),
        # then held as tensors that every dataset of the split shares.
        stored = tf.nest.map_structure(
            lambda spec: np.empty((self.rows, *spec.shape[1:]), spec.dtype.as_numpy_dtype),
            blocks.element_spec)
        filled = 0
        for block in blocks:
            count = int(tf.shape(block[0])[0])
            if filled + count > self.rows:
                raise ValueError(f"a split said to hold {self.rows} rows holds more")
            for array, values in zip(tf.nest.flatten(stored), tf.nest.flatten(block)):
                array[filled:filled + count] = values.numpy()
            filled += count
        self.rows = filled
        x, targets = tf.nest.map_structure(lambda array: array[:filled], stored)
        self._arrays = _tensors(x, targets)
        if expanded:
            self._expand = None

    def _shard(self, index: tf.Tensor) -> tf.data.Dataset:
        """The (features, targets) pieces of one stored shard (the index-th listed)."""
        return tf.data.Dataset.load(
            self._path, element_spec=self._spec,
            reader_func=lambda shards: shards.skip(index).take(1).flat_map(lambda d: d),
        ).map(lambda shard, x, targets: (x, targets))

    def with_targets(self, name: str, compute: Callable[[tf.Tensor], tf.Tensor]) -> "Split":
        """The same rows with one more target, `compute(features block)`, computed once and
        stored as this split is (in memory, or streamed from a new snapshot)."""
        blocks = self._blocks(store=False).map(
            lambda x, t: (x, {**t, name: compute(self._expanded(x))}))
        return Split.from_blocks(blocks, self.dim, self.rows,
                                 self._cache_mb if self.in_memory else 0, self._expand)

    def sample(self, rows: int, seed: int = 0, cache_mb: float = DEFAULT_CACHE_MB) -> "Split":
        """A uniform random subset of at most `rows` rows (kept: the same arguments give the
        same sample without another pass). A streamed split is sampled in one pass (each row
        kept with probability rows / len, seeded by its position), so the sample is spread
        over the whole split and never held beyond `cache_mb`."""
        if rows >= self.rows:
            return self
        key = (rows, seed, cache_mb)
        if key not in self._samples:
            self._samples[key] = self._sample(rows, seed, cache_mb)
        return self._samples[key]

    def _sample(self, rows: int, seed: int, cache_mb: float) -> "Split":
        if self.in_memory:
            if self._pending is not None:
                self._store()
            index = np.sort(np.random.default_rng(seed).choice(self.rows, rows, replace=False))
            return Split(rows, self.dim, tf.nest.map_structure(
                lambda t: tf.gather(t, index), self._arrays), expand=self._expand)
        keep = rows / self.rows

        def kept(position, row):
            return tf.random.stateless_uniform([], seed=tf.stack(
                [tf.constant(seed, tf.int64), position])) < keep

        sampled = (self._blocks(store=False).unbatch().enumerate().filter(kept)
                   .map(lambda position, row: row).take(rows))
        count = int(sampled.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
        return Split.from_blocks(sampled.batch(BLOCK_ROWS), self.dim, count, cache_mb,
                                 self._expand)

    # -- reading --------------------------------------------------------------------------
    def _expanded(self, x: tf.Tensor) -> tf.Tensor:
        return x if self._expand is None else self._expand(x)

    def _blocks(self, store: bool = True) -> tf.data.Dataset:
        """(stored features, targets) blocks, each row once: in row order while the split is in
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
                                     shuffle=shuffle, seed=seed, repeat=repeat,
                                     transform=self._expand)
        blocks = self._shuffled_blocks(seed) if shuffle else self._blocks()
        if features_only:
            blocks = blocks.map(lambda x, targets: x)
        if repeat != 1:
            blocks = blocks.repeat(repeat or None)
        batches = blocks.rebatch(batch_size)
        if self._expand is not None:
            batches = batches.map(
                self._expand if features_only else lambda x, targets: (self._expand(x), targets),
                num_parallel_calls=tf.data.AUTOTUNE)
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
            yield self._expanded(x).numpy(), {k: v.numpy() for k, v in targets.items()}

    def first_row(self) -> np.ndarray:
        """One row's features, the first in row order (read without storing the split)."""
        for x, _ in self._blocks(store=False).unbatch().take(1):
            return self._expanded(x[None]).numpy()[0]
        return np.zeros(self.dim, np.float32)

    def arrays(self) -> Tuple[np.ndarray, Targets]:
        """The whole split as numpy arrays (features expanded): for tests and small
        in-memory data only."""
        if not self.in_memory:
            raise ValueError("a streamed split is not held in memory; read it with dataset()")
        if self._pending is not None:
            self._store()
        x, targets = self._arrays
        return (self._expanded(x).numpy(), {k: v.numpy() for k, v in targets.items()})

    def class_counts(self, num_classes: int) -> np.ndarray:
        counts = np.zeros(num_classes, np.int64)
        for _, targets in self._blocks(store=False):
            counts += np.bincount(targets["label"].numpy(), minlength=num_classes)[:num_classes]
        return counts


def _tensors(features, targets: Targets) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """An in-memory split's rows, as the tensors its datasets gather from (one copy, shared
    by every dataset: converting the arrays for each one held a copy per dataset)."""
    return (tf.convert_to_tensor(features),
            {k: tf.convert_to_tensor(np.asarray(v)) for k, v in targets.items()})


def _scatter(blocks: tf.data.Dataset, shards: int, row_bytes: int,
             seed: int = 0) -> tf.data.Dataset:
    """(features, targets) blocks -> (shard, features, targets) pieces, each row sent to one
    of `shards` shards drawn uniformly (seeded by its block and place). Blocks are regrouped
    to about 16 rows per shard (at most STORE_BLOCK_BYTES of features) so that a piece is
    not a single row."""
    rows = max(BLOCK_ROWS, min(16 * shards, STORE_BLOCK_BYTES // max(1, row_bytes)))

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
