"""Embedded datasets that need no download: scikit-learn's 8x8 handwritten digits.

The 1,797 digits ship inside scikit-learn (``sklearn/datasets/data/digits.csv.gz``), so a fresh
install can run a real experiment with no network. Pixels (0..16) are standardized with the
training split's mean and standard deviation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fedjax_deep.errors import FieldError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled train/test split held in host memory.

    Attributes:
      train_x: ``[N_train, *input_shape]`` float32, channels last.
      train_y: ``[N_train]`` int32.
      test_x, test_y: the same for the test split.
      num_classes: number of labels.
      name: the dataset's registry name.
      val_x, val_y: a validation split carved from the training data (:func:`split_validation`),
        or None.
      train_clients: ``[N_train]`` int32 natural client of each training example (partition
        ``natural``: LEAF's users, a tfds client feature, ids given with arrays), or None.
      train_groups: ``[N_train]`` int32 class of each training example where ``train_y`` holds no
        class labels (a sequence's topic: ``fedjax_deep.data.sequences``), or None; see
        :attr:`strata`.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None
    train_clients: np.ndarray | None = None
    train_groups: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def strata(self) -> np.ndarray:
        """``[N_train]`` int: the class each training example counts as for the label-based
        partitions (dirichlet, shards), their statistics and the stratified validation split:
        ``train_groups`` when given, else ``train_y`` when it holds one class label per example,
        else one class for all (regression, multi-label or sequence targets)."""
        if self.train_groups is not None:
            return self.train_groups
        y = self.train_y
        if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
            return y
        return np.zeros(len(y), np.int32)


def split_validation(dataset: Dataset, fraction: float, rng: np.random.Generator) -> Dataset:
    """``dataset`` with ``fraction`` of each class's training examples moved to a validation split
    (seeded by ``rng``; the test split is untouched). Tuning choices read the validation split only,
    so the test split stays unseen until the report."""
    if not 0.0 < fraction < 1.0:
        raise FieldError("data.validation_fraction", fraction, "use a share in (0, 1), e.g. 0.1")
    val_idx, strata = [], dataset.strata
    for label in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == label))
        val_idx.append(idx[: int(round(len(idx) * fraction))])
    val_mask = np.zeros(len(dataset.train_y), bool)
    val_mask[np.concatenate(val_idx)] = True
    if not val_mask.any() or val_mask.all():
        raise FieldError(
            "data.validation_fraction", fraction,
            f"leaves an empty split of {len(dataset.train_y)} training examples; use a share "
            "between them",
        )  # fmt: skip
    return dataclasses.replace(
        dataset,
        train_x=dataset.train_x[~val_mask],
        train_y=dataset.train_y[~val_mask],
        val_x=dataset.train_x[val_mask],
        val_y=dataset.train_y[val_mask],
        train_clients=None if dataset.train_clients is None else dataset.train_clients[~val_mask],
        train_groups=None if dataset.train_groups is None else dataset.train_groups[~val_mask],
    )


def load_digits(rng: np.random.Generator, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's digits as ``[N, 8, 8, 1]`` images with a seeded, class-stratified split.

    Args:
      rng: draws the split; the same generator state gives the same split.
      test_fraction: share of each class held out for the test split.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    raw = _sk_load_digits()
    images = raw.images.astype(np.float32)[..., None]
    labels = raw.target.astype(np.int32)
    test_idx = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        idx = rng.permutation(idx)
        test_idx.append(idx[: int(round(len(idx) * test_fraction))])
    test_mask = np.zeros(len(labels), bool)
    test_mask[np.concatenate(test_idx)] = True
    if not test_mask.any() or test_mask.all():
        n = len(labels)
        raise FieldError(
            "data.test_fraction",
            test_fraction,
            f"leaves {int(test_mask.sum())} of {n} digits for testing; use a value in "
            f"[{1.5 / (n / 10):.3g}, 0.9]",
        )
    train_idx = rng.permutation(np.flatnonzero(~test_mask))
    test_idx = np.flatnonzero(test_mask)
    train_x, test_x = images[train_idx], images[test_idx]
    mean, std = train_x.mean(), train_x.std()
    return Dataset(
        name="digits",
        train_x=(train_x - mean) / std,
        train_y=labels[train_idx],
        test_x=(test_x - mean) / std,
        test_y=labels[test_idx],
        num_classes=10,
    )
