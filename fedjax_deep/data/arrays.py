"""Your own data in memory: features, labels and optional client ids as a :class:`Dataset`.

:func:`from_arrays` checks the arrays (lengths, label range, client-id type) and returns a
:class:`~fedjax_deep.data.embedded.Dataset` whose ``train_clients`` carries the ids, so the
library's partitions (``iid``, ``dirichlet``, ``shards``) or the natural one (``natural``: one
client per id) apply, padded and masked as for the built-in data. :func:`register_arrays` puts it
in the dataset table under a name, so a config (``data.name``) and :func:`fedjax_deep.run` use it.
:func:`client_codes` is the one check every source (arrays, tfds, LEAF) applies to client ids.
"""

from __future__ import annotations

import numpy as np

from fedjax_deep.data.embedded import Dataset
from fedjax_deep.errors import DataError


def client_codes(ids, where: str) -> np.ndarray:
    """``ids [N]`` (integers or strings) -> ``[N]`` int32 codes, in the ids' sorted order.

    Raises :class:`DataError` (one line) for ids of another type (floats, booleans, nested).
    """
    ids = np.asarray(ids)
    kind = ids.dtype.kind
    if kind == "O" and all(isinstance(v, str | bytes) for v in ids.tolist()):
        kind = "U"
    if ids.ndim != 1 or kind not in "iuUS":
        raise DataError(
            f"{where}: client ids of dtype {ids.dtype} and shape {ids.shape}; a client id must be "
            "one integer or string per example (cast them, e.g. ids.astype(int) or ids.astype(str))"
        )
    return np.unique(ids, return_inverse=True)[1].astype(np.int32).reshape(-1)


def _features(x, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind in "iu":
        return x.astype(np.int32)  # token ids
    if x.dtype.kind != "f":
        raise DataError(f"{where}: features of dtype {x.dtype}; give numbers (float or int)")
    return x.astype(np.float32)


def _targets(y, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return y.astype(np.int32)
    if y.dtype.kind in "fb":
        return y.astype(np.float32)
    raise DataError(f"{where}: labels of dtype {y.dtype}; give integer classes or float targets")


def check_labels(y: np.ndarray, num_classes: int, where: str) -> None:
    """Integer labels must lie in ``[0, num_classes)``: one line naming the label and the fix."""
    if y.dtype.kind not in "iu" or not len(y):
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise DataError(
            f"{where}: label {bad} is out of range for {num_classes} classes; labels must be "
            f"integers in [0, {num_classes}) (pass num_classes={hi + 1} or fix the labels)"
        )


def from_arrays(
    x,
    y,
    *,
    client_ids=None,
    test_x=None,
    test_y=None,
    num_classes: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str = "arrays",
) -> Dataset:
    """Arrays in memory as a :class:`Dataset`.

    Args:
      x: ``[N, ...]`` features (float, or int token ids); y: ``[N]`` int class labels, or float
        targets ``[N, ...]`` (regression, multi-label: pair with a loss that reads them).
      client_ids: optional ``[N]`` integer or string id of each example's client (for the
        ``natural`` partition).
      test_x, test_y: a test split; None holds out ``test_fraction`` of the examples at random
        (seeded by ``seed``).
      num_classes: the number of classes (default: the largest label + 1); for float targets, the
        model's number of outputs (default: ``y``'s trailing size, 1 for ``[N]``).

    Raises :class:`DataError` (one line) for mismatched lengths, labels out of range or client ids
    of the wrong type.
    """
    x, y = _features(x, name), _targets(y, name)
    if len(x) != len(y) or not len(x):
        raise DataError(f"{name}: {len(x)} features and {len(y)} labels; give one label per "
                        "example (and at least one example)")  # fmt: skip
    codes = None
    if client_ids is not None:
        codes = client_codes(client_ids, name)
        if len(codes) != len(x):
            raise DataError(f"{name}: {len(codes)} client ids for {len(x)} examples; give one "
                            "client id per example")  # fmt: skip
    if test_x is None:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"{name}: test_fraction={test_fraction}; use a share in (0, 1)")
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = max(1, int(round(len(x) * test_fraction)))
        if n_test >= len(x):
            raise DataError(f"{name}: {len(x)} examples leave none for training; give more")
        test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        test_x, test_y = x[test_idx], y[test_idx]
        x, y = x[train_idx], y[train_idx]
        codes = None if codes is None else codes[train_idx]
    else:
        test_x, test_y = _features(test_x, f"{name} test"), _targets(test_y, f"{name} test")
        if len(test_x) != len(test_y) or not len(test_x):
            raise DataError(f"{name}: {len(test_x)} test features and {len(test_y)} test labels; "
                            "give one label per example")  # fmt: skip
    if y.dtype.kind == "i":
        if num_classes is None:
            num_classes = int(max(y.max(), test_y.max())) + 1
        check_labels(y, num_classes, name)
        check_labels(test_y, num_classes, f"{name} test")
    elif num_classes is None:
        num_classes = int(np.prod(y.shape[1:], dtype=np.int64)) if y.ndim > 1 else 1
    return Dataset(name, x, y, test_x, test_y, int(num_classes), train_clients=codes)


def register_arrays(name: str, x, y, **kwargs) -> Dataset:
    """:func:`from_arrays` (checked now), then registered as dataset ``name``: a config with
    ``data.name=name`` trains on it (``data.partition`` as usual, ``natural`` with
    ``client_ids``). Returns the dataset."""
    from fedjax_deep.data.sources import register_dataset

    dataset = from_arrays(x, y, name=name, **kwargs)
    register_dataset(name, lambda data_config, rng: dataset)
    return dataset
