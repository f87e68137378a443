"""Digits loading, the IID partition and the on-device batch layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_deep.data import (
    client_batch_indices,
    iid,
    load_digits,
    num_local_steps,
    round_batch_indices,
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
