"""Helpers the benchmark scripts share: random client data of a fixed shape, round-robin timing of
several compiled rounds, and writing a result as ``<name>.json`` plus the markdown table ``<name>.md`` (the scripts import it from beside them)."""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from fedjax_deep.data import stack_clients


def random_clients(num_clients: int, steps: int, batch: int, shape: tuple, seed: int = 0):
    """``num_clients`` clients of ``steps * batch`` standard-normal examples of ``shape`` with
    labels in 0..9: a :class:`~fedjax_deep.data.ClientData` (``x: [C, S * B, *shape]``)."""
    rng = np.random.default_rng(seed)
    n = steps * batch
    x = rng.standard_normal((num_clients * n, *shape), dtype=np.float32)
    y = rng.integers(0, 10, num_clients * n).astype(np.int32)
    return stack_clients(x, y, np.split(np.arange(num_clients * n), num_clients))


def write_result(out: str, name: str, payload: dict, lines: list[str]) -> None:
    """Prints the table, and with ``out`` writes ``out/name.json`` (``payload``) and ``out/name.md``."""
    print("\n".join(lines))
    if not out:
        return
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(payload, f, indent=2)
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def round_robin_seconds(rounds: dict, states: dict, data, repeats: int) -> dict:
    """Times ``rounds[name](states[name], data, key)`` for every arm in turn, ``repeats`` times
    (round-robin, so the machine's drift hits every arm alike): ``{name: [seconds, ...]}``.
    ``states`` is advanced in place; every round is compiled already."""
    seconds = {name: [] for name in rounds}
    for r in range(repeats):
        for name, round_fn in rounds.items():
            t0 = time.perf_counter()
            states[name], metrics = round_fn(states[name], data, jax.random.key(r + 1))
            jax.block_until_ready((states[name], metrics))
            seconds[name].append(time.perf_counter() - t0)
    return seconds
