"""Unequal local work: FedNova against FedAvg's objective inconsistency, and what the masks cost.

    python benchmarks/bench_heterogeneity.py [--clients 8] [--steps 4] [--repeats 5] [--rounds 300] [--out benchmarks/results]

1. Objective inconsistency (float64, full batch, plain gradient descent): four least-squares
   clients of 6, 20, 9 and 40 rows (``fedjax_deep.fl.least_squares``) with step budgets 1, 2, 4
   and 8; the distance of the server model to the example-weighted minimizer after each round,
   for FedAvg and FedNova (at two client learning rates: FedNova's residual is the O(lr) drift of
   local steps, FedAvg's is a different objective, ``sum_i n_i k_i L_i``).
2. The cost of the masks: one round of a CIFAR-shape plain CNN (batch 32) with every client doing
   all ``--steps`` steps, against the same round with budgets drawn each round (uniform in
   ``[S/2, S]``, 20% stragglers at half their budget, 10% dropouts); the masked steps still run
   (``S`` is static), so the ratio is the price of the ``where`` on the state. Rounds are timed
   round-robin (best of ``--repeats``) so machine noise hits both arms alike.

Writes ``bench_heterogeneity.json`` and ``bench_heterogeneity.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np
import optax

from fedjax_deep.config import default_config
from fedjax_deep.fl import algorithms, init_sim_state, least_squares, make_round
from fedjax_deep.fl.execution import choose_execution
from fedjax_deep.fl.heterogeneity import Heterogeneity
from fedjax_deep.models import build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
from common import random_clients, round_robin_seconds, write_result  # noqa: E402

SIZES, BUDGETS = (6, 20, 9, 40), (1, 2, 4, 8)
SHOWN = (1, 5, 10, 25, 50, 100, 200, 300)


def inconsistency(num_rounds: int) -> dict:
    """Distances to the example-weighted minimizer per round, FedAvg and FedNova, two rates."""
    with jax.enable_x64(True):
        data = least_squares.make_clients(np.random.default_rng(0), SIZES, 3)
        optimum = least_squares.minimizer(data, "examples")
        out = {"uniform_minus_examples": float(
            np.linalg.norm(least_squares.minimizer(data, "uniform") - optimum))}  # fmt: skip
        for lr in (0.05, 0.025):
            for name, alg in (("fedavg", algorithms.fedavg()), ("fednova", algorithms.fednova(0))):
                path, _ = least_squares.run(alg, data, BUDGETS, lr, num_rounds)
                dist = np.linalg.norm(np.asarray(path) - optimum, axis=1)
                out[f"{name}@{lr}"] = [float(d) for d in dist]
    return out


def mask_cost(num: int, steps: int, repeats: int) -> dict:
    """Seconds per round with equal work and with drawn budgets, dropouts and stragglers."""
    batch = 32
    cfg = default_config().model
    cfg.depth, cfg.widths, cfg.strides = 4, (32, 64, 128, 128), (1, 2, 2, 2)
    model, params, state = build_model(cfg, (32, 32, 3), 10, jax.random.key(0))
    data = random_clients(num, steps, batch, (32, 32, 3))
    opt = optax.sgd(0.01, momentum=0.9)
    alg = algorithms.fednova(0.9)
    execution, why = choose_execution("auto", num)
    arms = {
        "equal work": None,
        "budgets + stragglers + dropouts": Heterogeneity(
            budget_dist="uniform", budget_min_fraction=0.5, straggler_rate=0.2,
            straggler_fraction=0.5, dropout_rate=0.1,
        ),
    }  # fmt: skip
    rounds, states, steps_taken = {}, {}, {}
    for name, spec in arms.items():
        rounds[name] = jax.jit(make_round(model, opt, alg, batch_size=batch, num_local_steps=steps,
                                          divergence=False, execution=execution,
                                          heterogeneity=spec))  # fmt: skip
        states[name] = init_sim_state(params, state, alg, num_clients=num)
        states[name], metrics = rounds[name](states[name], data, jax.random.key(0))  # compile
        steps_taken[name] = float(metrics.get("train/steps_mean", steps))
        jax.block_until_ready(states[name])
    seconds = round_robin_seconds(rounds, states, data, repeats)
    best = {k: min(v) for k, v in seconds.items()}
    return {"execution": why, "seconds": best, "steps_mean_round0": steps_taken,
            "ratio": best["budgets + stragglers + dropouts"] / best["equal work"]}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    dist = inconsistency(args.rounds)
    cost = mask_cost(args.clients, args.steps, args.repeats)
    device = f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    shown = [r for r in SHOWN if r <= args.rounds]
    arms = [k for k in dist if "@" in k]
    lines = [
        f"Objective inconsistency: 4 least-squares clients ({', '.join(map(str, SIZES))} rows), "
        f"step budgets {BUDGETS}, float64 full-batch GD; distance to the example-weighted "
        f"minimizer (the uniform-mean minimizer is "
        f"{dist['uniform_minus_examples']:.3f} away from it).",
        "",
        "| round | " + " | ".join(arms) + " |",
        "|---|" + "---|" * len(arms),
    ]
    lines += [f"| {r} | " + " | ".join(f"{dist[a][r - 1]:.2e}" for a in arms) + " |"
              for r in shown]  # fmt: skip
    lines += [
        "",
        f"Cost of the masks: {args.clients} clients x {args.steps} steps x 32, CIFAR-shape CNN, "
        f"FedNova, {device}, execution {cost['execution']}; best of {args.repeats}, round-robin; "
        f"load average {load:.1f} when it ended ({os.cpu_count()} CPUs).",
        "",
        "| arm | s / round | x equal work | mean steps taken (round 1) |",
        "|---|---|---|---|",
    ]
    for name, s in cost["seconds"].items():
        lines.append(f"| {name} | {s:.4f} | {s / cost['seconds']['equal work']:.2f} | "
                     f"{cost['steps_mean_round0'][name]:.2f} |")  # fmt: skip
    payload = {"device": device, "load_average": load, "budgets": BUDGETS, "sizes": SIZES,
               "distances": dist, "mask_cost": cost}  # fmt: skip
    write_result(args.out, "bench_heterogeneity", payload, lines)


if __name__ == "__main__":
    main()
