"""Digits loading, the IID partition and the on-device batch layout."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_deep.data import (
    PartitionError,
    client_batch_indices,
    crop_flip,
    dirichlet,
    full,
    iid,
    load_digits,
    num_local_steps,
    partition_stats,
    round_batch_indices,
    shards,
    stack_clients,
)


def test_digits_split_is_seeded_and_complete():
    a = load_digits(np.random.default_rng(0))
    b = load_digits(np.random.default_rng(0))
    c = load_digits(np.random.default_rng(1))
    assert a.train_x.shape[1:] == (8, 8, 1) and a.num_classes == 10
    assert len(a.train_y) + len(a.test_y) == 1797
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(a.train_y, c.train_y)
    assert abs(a.train_x.mean()) < 1e-4 and abs(a.train_x.std() - 1) < 1e-4
    assert set(np.unique(a.test_y)) == set(range(10))  # stratified: every class is tested


def test_iid_partition_covers_every_example_once(rng):
    parts = iid(103, 10, rng)
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(103))
    with pytest.raises(ValueError, match="num_clients=104"):
        iid(103, 104, rng)


def test_stack_clients_pads_and_counts(rng):
    x = np.arange(10, dtype=np.float32).reshape(10, 1) + 1
    y = np.arange(10, dtype=np.int32)
    data = stack_clients(x, y, [np.array([0, 1, 2, 3]), np.array([7, 9])])
    assert data.x.shape == (2, 4, 1)
    assert data.num_examples.tolist() == [4, 2]
    assert data.x[1, :, 0].tolist() == [8.0, 10.0, 0.0, 0.0]


def test_batch_indices_cover_each_real_example_once_per_epoch():
    n, max_n, batch, epochs = 7, 10, 3, 3
    steps = num_local_steps(max_n, batch, epochs, 0)
    assert steps == 12  # 4 steps per epoch
    idx, mask = client_batch_indices(jax.random.key(0), jnp.int32(n), max_n, batch, steps)
    assert idx.shape == mask.shape == (12, 3)
    idx, mask = np.asarray(idx), np.asarray(mask)
    for e in range(epochs):
        ei, em = idx[4 * e : 4 * e + 4].ravel(), mask[4 * e : 4 * e + 4].ravel()
        assert sorted(ei[em].tolist()) == list(range(n))
        assert em.sum() == n and em[:n].all()  # padding only at the epoch's end
    assert not np.array_equal(idx[:4], idx[4:8])  # reshuffled every epoch


def test_same_key_same_batches_and_fixed_local_steps():
    keys = jax.random.split(jax.random.key(5), 3)
    n = jnp.array([5, 9, 2], jnp.int32)
    a = round_batch_indices(keys, n, 9, 4, 5)
    b = round_batch_indices(keys, n, 9, 4, 5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (3, 5, 4)
    # 3 steps per epoch (12 slots); 5 steps = one epoch plus the first 8 slots of the next
    assert np.asarray(a[1]).sum(axis=(1, 2)).tolist() == [5 + 5, 9 + 8, 2 + 2]


def test_partitions_place_every_example_exactly_once(rng):
    labels = np.repeat(np.arange(10), 50)
    for parts in (
        iid(500, 7, rng),
        dirichlet(labels, 7, 0.3, rng),
        shards(labels, 7, 2, rng),
    ):
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(500))
    assert [len(p) for p in full(500, 3)] == [500] * 3


def test_dirichlet_alpha_controls_label_skew(rng):
    labels = np.repeat(np.arange(10), 300)
    uniform = np.full(10, 0.1)

    def mean_deviation(alpha):
        parts = dirichlet(labels, 10, alpha, rng)
        props = [np.bincount(labels[p], minlength=10) / len(p) for p in parts]
        return np.mean([np.abs(q - uniform).sum() for q in props])

    assert mean_deviation(1000.0) < 0.1  # close to IID label proportions
    assert mean_deviation(0.05) > 1.0  # concentrated on few classes
    with pytest.raises(PartitionError, match="dirichlet_alpha=0"):
        dirichlet(labels, 10, 0.0, rng)
    with pytest.raises(PartitionError, match="num_clients=4000"):
        dirichlet(labels, 4000, 1.0, rng)


def test_shards_give_exactly_k_classes(rng):
    labels = np.repeat(np.arange(10), 40)
    parts = shards(labels, 8, 3, rng)
    stats = partition_stats(parts, labels, 10)
    assert stats["classes_per_client"] == [3] * 8
    assert np.all(np.asarray(stats["class_histogram"]).sum(axis=0) == 40)
    with pytest.raises(PartitionError, match="classes_per_client=1"):
        shards(labels, 5, 1, rng)  # 5 clients x 1 class cannot cover 10 classes


def test_masks_cover_exactly_the_padding_of_unequal_clients(rng):
    labels = np.repeat(np.arange(4), 25)
    parts = dirichlet(labels, 5, 0.5, rng)
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    data = stack_clients(x, labels, parts)
    n = np.asarray(data.num_examples)
    idx, mask = round_batch_indices(
        jax.random.split(jax.random.key(0), 5),
        data.num_examples,
        data.max_examples,
        8,
        3 * -(-data.max_examples // 8),
    )
    idx, mask = np.asarray(idx), np.asarray(mask)
    for c in range(5):
        assert mask[c].sum() == 3 * n[c]  # 3 epochs of the client's real examples
        assert np.all(idx[c][mask[c]] < n[c])  # never a padded row
        real_x = np.asarray(data.x[c])[idx[c][mask[c]], 0]
        assert sorted(real_x.tolist()) == sorted(np.repeat(x[parts[c], 0], 3).tolist())


def test_crop_flip_is_keyed_and_keeps_content():
    x = jax.random.normal(jax.random.key(0), (6, 8, 8, 3))
    a = crop_flip(jax.random.key(1), x, pad=2)
    b = crop_flip(jax.random.key(1), x, pad=2)
    c = crop_flip(jax.random.key(2), x, pad=2)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and not np.allclose(a, c)
    # every output pixel is an input pixel or padding: values are a subset
    values = set(np.round(np.asarray(x), 5).ravel().tolist()) | {0.0}
    assert set(np.round(np.asarray(a), 5).ravel().tolist()) <= values


def test_validation_split_is_carved_from_training_data_and_evaluated(tmp_path):
    """``data.validation_fraction`` holds out a stratified share of the training examples (the
    test split untouched, the partition drawn over the rest) and logs ``val/accuracy``."""
    import json

    from fedjax_deep import cli
    from fedjax_deep.data import load_digits, split_validation

    ds = load_digits(np.random.default_rng(0))
    split = split_validation(ds, 0.1, np.random.default_rng(1))
    assert len(split.train_y) + len(split.val_y) == len(ds.train_y)
    np.testing.assert_array_equal(split.test_y, ds.test_y)
    assert set(np.unique(split.val_y)) == set(range(10))  # every class is represented
    # No example is in both splits.
    rows = {r.tobytes() for r in split.train_x}
    assert not any(r.tobytes() in rows for r in split.val_x)
    tiny = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")
    code = cli.main(["train", "--config", tiny, "--workdir", str(tmp_path), "--no-progress",
                     "--config.data.validation_fraction=0.1", "--config.compile_cache=off"])  # fmt: skip
    assert code == 0
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["num_validation"] == len(split.val_y)
    assert info["num_train"] == len(split.train_y)
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.5 < row["val/accuracy"] <= 1.0 and "eval/accuracy" in row
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_val_accuracy"] == row["val/accuracy"]
