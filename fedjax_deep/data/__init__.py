"""Datasets, client partitions and the on-device per-round batch layout."""

from fedjax_deep.data.batching import (
    ClientData,
    client_batch_indices,
    num_local_steps,
    round_batch_indices,
    stack_clients,
    steps_per_epoch,
)
from fedjax_deep.data.embedded import Dataset, load_digits
from fedjax_deep.data.partition import iid

DATASETS = {"digits": load_digits}

__all__ = [
    "DATASETS",
    "ClientData",
    "Dataset",
    "client_batch_indices",
    "iid",
    "load_digits",
    "num_local_steps",
    "round_batch_indices",
    "stack_clients",
    "steps_per_epoch",
]
