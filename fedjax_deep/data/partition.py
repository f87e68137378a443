"""Partitions of a training set into clients: lists of example indices, one array per client.

Every partition takes a ``numpy.random.Generator`` so that the same seed gives the same clients.
Non-IID partitions (Dirichlet, shards) join this module in the data issue.
"""

from __future__ import annotations

import numpy as np


def iid(num_examples: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniformly random split into ``num_clients`` shards whose sizes differ by at most one.

    No example is dropped: with ``num_examples % num_clients != 0`` the first shards hold one more
    example, and the round weights clients by their example counts.
    """
    if not 1 <= num_clients <= num_examples:
        raise ValueError(
            f"num_clients={num_clients}: must be between 1 and the {num_examples} training examples"
        )
    return [np.sort(s) for s in np.array_split(rng.permutation(num_examples), num_clients)]
