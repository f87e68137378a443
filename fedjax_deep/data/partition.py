"""Partitions of a training set into clients: lists of example indices, one array per client.

Every partition takes a ``numpy.random.Generator`` so that the same seed gives the same clients.

| name | what each client holds |
|---|---|
| ``iid`` | a uniformly random shard; sizes differ by at most one |
| ``dirichlet`` | per class, a Dirichlet(alpha) share of that class's examples (alpha -> inf: IID label proportions; small alpha: few classes per client) |
| ``shards`` | exactly ``classes_per_client`` classes; each class split evenly among the clients holding it (the pathological non-IID split) |
| ``full`` | the whole training set (the reviewers' control: every client holds as much data as CL) |
| ``natural`` | the clients the data names (LEAF's users, a tfds client feature, ids given with arrays): the first ``fl.num_clients`` of them in id order |

``data.max_client_examples`` (> 0) caps every client at that many examples (a seeded random subset),
so the padded ``[C, N_max]`` client data stays within memory when a few clients are very large.

Unequal client sizes are handled downstream by padding and masks. :func:`partition_stats` gives the
sizes and class histograms a run saves (``partition.json`` and ``partition.png``).
"""

from __future__ import annotations

import numpy as np

from fedjax_deep.errors import PartitionError

PARTITIONS = ("iid", "dirichlet", "shards", "full", "natural")


def iid(num_examples: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniformly random split into ``num_clients`` shards whose sizes differ by at most one.

    No example is dropped: with ``num_examples % num_clients != 0`` the first shards hold one more
    example, and the round weights clients by their example counts.
    """
    if not 1 <= num_clients <= num_examples:
        raise PartitionError(
            "fl.num_clients",
            num_clients,
            f"must be between 1 and the {num_examples} training examples",
        )
    return [np.sort(s) for s in np.array_split(rng.permutation(num_examples), num_clients)]


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    *,
    min_size: int = 1,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Per class, splits that class's examples among clients in Dirichlet(alpha) proportions.

    Redraws (up to ``max_tries`` times) until every client holds at least ``min_size`` examples.
    """
    if alpha <= 0:
        raise PartitionError("data.dirichlet_alpha", alpha, "must be > 0 (e.g. 0.1 or 1.0)")
    if num_clients > len(labels):
        raise PartitionError(
            "fl.num_clients", num_clients, f"more clients than the {len(labels)} training examples"
        )
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for k, piece in enumerate(np.split(idx, cuts)):
                parts[k].append(piece)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_size:
            return out
    raise PartitionError(
        "data.dirichlet_alpha",
        alpha,
        f"{max_tries} draws left a client with fewer than {min_size} examples; use a larger alpha "
        "or fewer clients",
    )


def shards(
    labels: np.ndarray, num_clients: int, classes_per_client: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Each client holds exactly ``classes_per_client`` classes; each class's examples are split
    evenly among the clients that hold it. Every class is held by someone."""
    classes = np.unique(labels)
    k = classes_per_client
    if not 1 <= k <= len(classes):
        raise PartitionError(
            "data.classes_per_client", k, f"must be between 1 and the {len(classes)} classes"
        )
    if num_clients * k < len(classes):
        raise PartitionError(
            "data.classes_per_client",
            k,
            f"{num_clients} clients x {k} classes cannot cover {len(classes)} classes; use >= "
            f"{-(-len(classes) // num_clients)}",
        )
    order = rng.permutation(classes)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for client in range(num_clients):
        for j in range(k):
            holders[int(order[(client * k + j) % len(order)])].append(client)
    parts = [[] for _ in range(num_clients)]
    for c, clients in holders.items():
        idx = rng.permutation(np.flatnonzero(labels == c))
        for client, piece in zip(clients, np.array_split(idx, len(clients)), strict=True):
            parts[client].append(piece)
    out = [np.sort(np.concatenate(p)) for p in parts]
    if min(len(p) for p in out) == 0:
        raise PartitionError(
            "data.classes_per_client", k, "a client got no examples; use fewer clients"
        )
    return out


def full(num_examples: int, num_clients: int) -> list[np.ndarray]:
    """Every client holds the whole training set (in its own shuffled order each round)."""
    return [np.arange(num_examples) for _ in range(num_clients)]


def natural(client_ids: np.ndarray | None, num_clients: int) -> list[np.ndarray]:
    """The clients the data names: ``client_ids [N]`` int, one client per distinct id, the first
    ``num_clients`` ids in increasing order (each client's examples in data order)."""
    if client_ids is None:
        raise PartitionError(
            "data.partition", "natural",
            "this dataset names no clients; use data.name=leaf, data.client_key (tfds) or "
            "client ids with your arrays, or another partition (iid, dirichlet, shards)",
        )  # fmt: skip
    ids, inverse = np.unique(client_ids, return_inverse=True)
    if not 1 <= num_clients <= len(ids):
        raise PartitionError("fl.num_clients", num_clients,
                             f"the data names {len(ids)} clients; use at most {len(ids)}")  # fmt: skip
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(num_clients + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(num_clients)]


def cap_clients(partition: list[np.ndarray], cap: int, rng: np.random.Generator):
    """Every client with more than ``cap`` examples keeps a random ``cap`` of them (in data
    order); ``cap`` 0 keeps everything (and draws nothing)."""
    if not cap:
        return partition
    return [np.sort(rng.choice(p, cap, replace=False)) if len(p) > cap else p for p in partition]


def make_partition(
    data_config,
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    client_ids: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The partition named by ``data_config.partition`` (``client_ids``: the dataset's natural
    clients, for ``natural``), each client capped at ``data_config.max_client_examples``."""
    return cap_clients(
        _partition(data_config, labels, num_clients, rng, client_ids),
        data_config.get("max_client_examples", 0),
        rng,
    )


def _partition(data_config, labels, num_clients, rng, client_ids):
    kind = data_config.partition
    if kind == "iid":
        if num_clients > len(labels):
            raise PartitionError(
                "fl.num_clients",
                num_clients,
                f"more clients than the {len(labels)} training examples; use at most {len(labels)}",
            )
        return iid(len(labels), num_clients, rng)
    if kind == "dirichlet":
        return dirichlet(labels, num_clients, data_config.dirichlet_alpha, rng)
    if kind == "shards":
        return shards(labels, num_clients, data_config.classes_per_client, rng)
    if kind == "full":
        return full(len(labels), num_clients)
    if kind == "natural":
        return natural(client_ids, num_clients)
    raise PartitionError("data.partition", kind, f"use one of {', '.join(PARTITIONS)}")


def partition_stats(partition: list[np.ndarray], labels: np.ndarray, num_classes: int) -> dict:
    """Per-client sizes and class histograms ``[C, K]`` (JSON-ready; targets that are not class
    labels, regression or multi-label, count as one class)."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        labels, num_classes = np.zeros(len(labels), np.int64), 1
    hist = np.stack([np.bincount(labels[p], minlength=num_classes) for p in partition])
    return {
        "num_clients": len(partition),
        "sizes": [int(len(p)) for p in partition],
        "class_histogram": hist.tolist(),
        "classes_per_client": [int(np.count_nonzero(h)) for h in hist],
    }


def plot_partition(stats: dict, path) -> None:
    """A stacked bar chart: per client, its examples split by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = np.asarray(stats["class_histogram"])
    num_clients, num_classes = hist.shape
    fig, ax = plt.subplots(figsize=(min(2 + 0.25 * num_clients, 16), 4))
    bottom = np.zeros(num_clients)
    cmap = plt.get_cmap("tab20" if num_classes <= 20 else "viridis")
    for k in range(num_classes):
        ax.bar(np.arange(num_clients), hist[:, k], bottom=bottom, width=0.9,
               color=cmap(k / max(num_classes - 1, 1)), linewidth=0)  # fmt: skip
        bottom += hist[:, k]
    ax.set_xlabel("client")
    ax.set_ylabel("examples (stacked by class)")
    ax.set_title(f"{num_clients} clients, {num_classes} classes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
