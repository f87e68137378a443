"""Each federated algorithm's cost per round against FedAvg, measured side by side.

    python benchmarks/bench_algorithms.py [--clients 16] [--steps 4] [--repeats 7] [--out benchmarks/results]

Every algorithm trains the same clients (a CIFAR-shape plain CNN, batch 32) for the same local
steps under the backend's ``auto`` execution, without divergence metrics; rounds are timed
round-robin (best of ``repeats``), so machine noise hits every algorithm alike. Prints seconds per
round, the ratio to FedAvg, and the per-client state each algorithm keeps across rounds (bytes for
the whole population: SCAFFOLD's c_i and FedDyn's h_i are one model each per client). Writes
``bench_algorithms.json`` and ``bench_algorithms.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import optax

from fedjax_deep.config import default_config
from fedjax_deep.fl import algorithms, init_sim_state, make_round
from fedjax_deep.fl.execution import choose_execution
from fedjax_deep.models import build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
from common import random_clients, round_robin_seconds, write_result  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    num, steps, batch = args.clients, args.steps, 32
    cfg = default_config().model
    cfg.depth, cfg.widths, cfg.strides, cfg.norm = 4, (32, 64, 128, 128), (1, 2, 2, 2), "batch"
    model, params, state = build_model(cfg, (32, 32, 3), 10, jax.random.key(0))
    data = random_clients(num, steps, batch, (32, 32, 3))
    opt = optax.sgd(0.01, momentum=0.9)
    server = optax.sgd(1.0)
    arms = {
        "fedavg": algorithms.fedavg(server),
        "fedadam": algorithms.fedavg(optax.adam(0.01)),
        "fedprox": algorithms.fedprox(0.01, server),
        "scaffold": algorithms.scaffold(0.01, num, server),
        "fednova": algorithms.fednova(0.9, server),
        "feddyn": algorithms.feddyn(0.01, num),
        "fedbn": algorithms.fedbn(state, server),
    }
    execution, why = choose_execution("auto", num)
    rounds, states = {}, {}
    for name, alg in arms.items():
        rounds[name] = jax.jit(make_round(model, opt, alg, batch_size=batch, num_local_steps=steps,
                                          divergence=False, execution=execution))  # fmt: skip
        states[name] = init_sim_state(params, state, alg, num_clients=num,
                                         local_model_state=name == "fedbn")  # fmt: skip
        states[name], _ = rounds[name](states[name], data, jax.random.key(0))  # compile
        jax.block_until_ready(states[name])
    seconds = round_robin_seconds(rounds, states, data, args.repeats)
    best = {k: min(v) for k, v in seconds.items()}
    rows = []
    for name in arms:
        kept = sum(x.nbytes for x in jax.tree.leaves(states[name].clients))
        rows.append({"algorithm": name, "seconds_per_round": best[name],
                     "ratio_to_fedavg": best[name] / best["fedavg"],
                     "client_state_bytes": int(kept)})  # fmt: skip
    device = f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    lines = [
        f"Algorithms, {num} clients x {steps} steps x {batch}, CIFAR-shape CNN with BatchNorm, "
        f"{device}, execution {why}; best of {args.repeats}, round-robin.",
        "",
        "| algorithm | s / round | x FedAvg | per-client state kept (MiB) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['algorithm']} | {r['seconds_per_round']:.4f} | {r['ratio_to_fedavg']:.2f} | "
              f"{r['client_state_bytes'] / 2**20:.2f} |" for r in rows]  # fmt: skip
    payload = {"device": device, "execution": why, "rows": rows}
    write_result(args.out, "bench_algorithms", payload, lines)


if __name__ == "__main__":
    main()
