"""Datasets, client partitions, on-device augmentation and the per-round batch layout."""

from fedjax_deep.data.arrays import client_codes, from_arrays, register_arrays
from fedjax_deep.data.augment import AUGMENTATIONS, crop_flip, make_augment
from fedjax_deep.data.batching import (
    ClientData,
    client_batch_indices,
    num_local_steps,
    round_batch_indices,
    stack_clients,
    steps_per_epoch,
)
from fedjax_deep.data.embedded import Dataset, load_digits, split_validation
from fedjax_deep.data.partition import (
    PARTITIONS,
    PartitionError,
    dirichlet,
    full,
    iid,
    make_partition,
    natural,
    partition_stats,
    plot_partition,
    shards,
)
from fedjax_deep.data.sources import (
    DATASETS,
    INPUT_SHAPES,
    NORMALIZATION,
    NUM_CLASSES,
    DataError,
    load,
    load_mnist1d,
    register_dataset,
)

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "INPUT_SHAPES",
    "NORMALIZATION",
    "NUM_CLASSES",
    "PARTITIONS",
    "ClientData",
    "DataError",
    "Dataset",
    "split_validation",
    "PartitionError",
    "client_batch_indices",
    "client_codes",
    "from_arrays",
    "natural",
    "register_arrays",
    "register_dataset",
    "crop_flip",
    "dirichlet",
    "full",
    "iid",
    "load",
    "load_digits",
    "load_mnist1d",
    "make_augment",
    "make_partition",
    "num_local_steps",
    "partition_stats",
    "plot_partition",
    "round_batch_indices",
    "shards",
    "stack_clients",
    "steps_per_epoch",
]
