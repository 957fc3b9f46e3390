"""modules.reading.splits: a prepared split reads the same rows in memory and streamed from disk."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import glob
import os
import threading

import numpy as np
import pytest

from modules.reading import splits


@pytest.fixture(autouse=True)
def small_shards(monkeypatch):
    """Shards of 500 rows, permuted 1,000 at most at once, so that a few thousand rows stream from
    several random shards as millions would."""
    monkeypatch.setattr(splits, "SHARD_ROWS", 500)
    monkeypatch.setattr(splits, "SHUFFLE_ROWS", 1000)


def _split(n=3000, dim=6, seed=0, cache_mb=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:, 0] = np.arange(n)  # a row id, to check which rows come back
    y = rng.integers(0, 3, size=n)
    memory = splits.Split.from_arrays(x, {"label": y})
    streamed = splits.Split.from_blocks(memory._blocks(), dim, n, cache_mb)
    return x, y, memory, streamed


def _ids(dataset):
    return np.concatenate([x[:, 0].numpy() for x, _ in dataset]).astype(int)


def test_small_split_stays_in_memory_and_large_one_streams_from_a_snapshot():
    _, _, memory, streamed = _split()
    assert memory.in_memory and not streamed.in_memory
    next(streamed.blocks())
    assert os.listdir(streamed._path)  # a tf.data snapshot on local disk
    small = splits.Split.from_blocks(memory._blocks(), 6, 3000, cache_mb=1)
    assert small.in_memory  # 3000 x 6 floats: 72 KB


@pytest.mark.parametrize("where", ["memory", "streamed"])
def test_split_gives_every_row_once_per_pass_and_reshuffles(where):
    x, y, memory, streamed = _split()
    split = memory if where == "memory" else streamed
    first = split.dataset(256, shuffle=True, seed=1, repeat=2)
    assert int(first.cardinality()) == -(-2 * len(x) // 256)
    ids = _ids(first)
    assert sorted(ids) == sorted(list(range(len(x))) * 2)
    assert list(ids[:len(x)]) != list(range(len(x)))  # shuffled
    assert list(ids[:len(x)]) != list(ids[len(x):])  # each pass in a new order
    assert list(_ids(first)) != list(ids)  # a new order each iteration
    again = _ids(split.dataset(256, shuffle=True, seed=1, repeat=2))
    np.testing.assert_array_equal(again, ids)  # the same seed, the same order
    for features, targets in first.take(3):  # labels stay with their rows
        np.testing.assert_array_equal(targets["label"].numpy(),
                                      y[features[:, 0].numpy().astype(int)])
    unshuffled = streamed.dataset(500)  # every row once, labels with their rows
    labels = np.concatenate([t["label"].numpy() for _, t in unshuffled])
    ids = _ids(unshuffled)
    np.testing.assert_array_equal(np.sort(ids), np.arange(len(x)))
    np.testing.assert_array_equal(labels, y[ids])
    assert len(glob.glob(os.path.join(streamed._path, "*", "*.shard"))) == 6  # 3,000 / 500


def test_rows_sorted_by_label_still_train_in_mixed_batches():
    """A CSV sorted by its label (ExampleGen keeps the order): the stored shards are random
    subsets, so each shuffled batch holds both classes about as often as the split does."""
    n = 6000
    x = np.zeros((n, 2), np.float32)
    x[:, 0] = np.arange(n)
    y = (np.arange(n) >= n // 2).astype(np.int64)  # 3,000 zeros, then 3,000 ones
    streamed = splits.Split.from_blocks(splits.Split.from_arrays(x, {"label": y})._blocks(),
                                        2, n, cache_mb=0)
    for _, targets in streamed.dataset(100, shuffle=True, seed=0):
        assert 0.2 <= targets["label"].numpy().mean() <= 0.8


def test_streamed_and_in_memory_splits_hold_the_same_rows_and_counts():
    x, y, memory, streamed = _split()
    np.testing.assert_array_equal(streamed.first_row(), x[0])  # before it is stored
    for split in (memory, streamed):
        rows = np.concatenate([b for b, _ in split.blocks()])
        np.testing.assert_array_equal(rows[np.argsort(rows[:, 0])], x)
        np.testing.assert_array_equal(split.class_counts(3), np.bincount(y, minlength=3))
        assert split.first_row().tolist() in x.tolist()
    features = streamed.features(1000)
    assert [b.shape[0] for b in features.as_numpy_iterator()] == [1000, 1000, 1000]


@pytest.mark.parametrize("streamed_source", [False, True])
def test_sample_is_bounded_uniform_and_reproducible(streamed_source):
    x, _, memory, streamed = _split(n=6000)
    source = streamed if streamed_source else memory
    sample = source.sample(1000, seed=3)
    ids = np.concatenate([b[:, 0] for b, _ in sample.blocks()]).astype(int)
    assert 900 <= len(sample) <= 1000 and len(ids) == len(sample)
    assert len(set(ids)) == len(ids)
    assert ids.max() > 4500  # spread over the whole split, not its first rows
    again = np.concatenate([b[:, 0] for b, _ in source.sample(1000, seed=3).blocks()])
    np.testing.assert_array_equal(again.astype(int), ids)
    assert source.sample(10_000) is source


def test_a_split_only_sampled_or_peeked_at_is_never_stored():
    x, _, _, streamed = _split()
    np.testing.assert_array_equal(streamed.first_row(), x[0])
    assert len(streamed.sample(100)) > 0
    assert streamed._path is None and streamed._pending is not None


def test_snapshot_is_removed_with_its_split():
    _, _, _, streamed = _split()
    next(streamed.blocks())
    path = streamed._path
    del streamed
    import gc
    gc.collect()
    assert not os.path.exists(path)


@pytest.mark.parametrize("cache_mb,tier", [(1.0, "expanded"), (0.2, "compact"), (0, "streamed")])
def test_compact_rows_are_held_expanded_compact_or_streamed_and_read_the_same(cache_mb, tier):
    """Stored rows of 2 float64 expand to 40 float32 features (160 bytes): 4,000 rows are
    640 KB expanded and 64 KB compact, so the cache decides which form is kept; every form
    reads the same expanded rows, targets (a teacher's logits) and samples."""
    import tensorflow as tf

    n, dim = 4000, 40
    compact = np.stack([np.arange(n), np.random.default_rng(0).normal(size=n)], 1)
    y = (compact[:, 1] > 0).astype(np.int64)

    def expand(stored):  # the row id, then the value repeated
        ids, values = stored[:, :1], stored[:, 1:]
        return tf.cast(tf.concat([ids, tf.tile(values, [1, dim - 1])], 1), tf.float32)

    source = splits.Split.from_arrays(compact, {"label": y})
    split = splits.Split.from_blocks(source._blocks(), dim, n, cache_mb, expand=expand)
    assert split.in_memory == (tier != "streamed")
    rows = {}
    for x, targets in split.dataset(300, shuffle=True, seed=0):
        for row, label in zip(x.numpy(), targets["label"].numpy()):
            rows[int(row[0])] = (row, label)
    assert sorted(rows) == list(range(n))
    expected = expand(tf.constant(compact)).numpy()
    np.testing.assert_array_equal(np.stack([rows[i][0] for i in range(n)]), expected)
    np.testing.assert_array_equal([rows[i][1] for i in range(n)], y)
    if tier != "streamed":
        assert split._arrays[0].shape[1] == (dim if tier == "expanded" else 2)
    logits = split.with_targets("teacher_logits", lambda x: x[:, 1:3])
    for x, targets in logits.dataset(500).take(2):
        np.testing.assert_array_equal(targets["teacher_logits"].numpy(), x.numpy()[:, 1:3])
    sample = split.sample(100, seed=1)
    ids = np.concatenate([x[:, 0].numpy() for x, _ in sample.dataset(64)]).astype(int)
    assert len(ids) == len(set(ids)) and 0 < len(ids) <= 100
    np.testing.assert_array_equal(np.concatenate(list(sample.features(64))), expected[ids])
    first = split.first_row()  # a row, expanded (the first stored)
    np.testing.assert_array_equal(first, expected[int(first[0])])


@pytest.mark.parametrize("cache_mb", [0, 1])
def test_threads_reading_a_new_split_at_once_all_get_every_row(cache_mb):
    """The Tuner's concurrent trials ask for the same split's batches at the same time: the
    first stores it (in memory or a snapshot) while the others wait, and every one reads
    every row once."""
    for attempt in range(3):
        x, _, memory, _ = _split(seed=attempt)
        split = splits.Split.from_blocks(memory._blocks(), 6, len(x), cache_mb)
        start, read = threading.Barrier(4), []

        def reader():
            start.wait()
            read.append(np.sort(_ids(split.dataset(256, shuffle=True, seed=1))))

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(read) == 4
        for ids in read:
            np.testing.assert_array_equal(ids, np.arange(len(x)))
