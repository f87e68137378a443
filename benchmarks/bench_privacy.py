"""The cost of DP-FedAvg: clipping and noise per round against plain FedAvg, and a sweep of noise
multipliers x seeds in one compiled program against separate runs, measured side by side.

    python benchmarks/bench_privacy.py [--clients 16] [--steps 4] [--repeats 7] [--rounds 3] [--out benchmarks/results]

Part 1: every arm trains the same clients (a plain CNN on 8x8 digit-shaped inputs, batch 32) for
the same local steps without divergence metrics; rounds are timed round-robin (best of
``repeats``): FedAvg, DP-FedAvg with a flat clip, per-layer clip, adaptive clipping, and a Poisson
cohort (expected size half the clients, in its fixed slots).

Part 2: 3 noise multipliers x 3 seeds. One program: the nine members' states stacked on the sweep
axis (``lax.map`` on CPU, ``vmap`` elsewhere, as ``config.sweep_axis=auto`` chooses), compiled once
and run for ``rounds`` rounds. Nine runs: nine programs, each traced and compiled afresh (as nine
processes would) and run for the same rounds. Both include compilation: that is what a sweep costs.
Writes ``bench_privacy.json`` and ``bench_privacy.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import optax

from fedjax_deep.config import default_config
from fedjax_deep.fl import algorithms, init_sim_state, make_round, privacy
from fedjax_deep.fl.members import stack_members, sweep_over_members
from fedjax_deep.models import build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
from common import random_clients, round_robin_seconds, write_result  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    num, steps, batch = args.clients, args.steps, 32
    cfg = default_config().model
    cfg.depth, cfg.width = 2, 16
    model, params, stats = build_model(cfg, (8, 8, 1), 10, jax.random.key(0))
    data = random_clients(num, steps, batch, (8, 8, 1))
    opt = optax.sgd(0.05)

    def dp(**kw):
        return privacy.private(algorithms.fedavg(), noise_multiplier=1.0, clip_norm=1.0,
                               expected_cohort=kw.pop("expected", num), **kw)  # fmt: skip

    arms = {
        "fedavg": (algorithms.fedavg(), {}),
        "dp flat clip": (dp(), {}),
        "dp per-layer clip": (dp(per_layer=True), {}),
        "dp adaptive clip": (dp(adaptive_quantile=0.5, adaptive_count_stddev=1.0), {}),
        "dp poisson cohort": (dp(expected=num // 2), {"cohort_size": num, "poisson_rate": 0.5}),
    }

    def compiled(alg, **kw):
        return jax.jit(make_round(model, opt, alg, batch_size=batch, num_local_steps=steps,
                                  divergence=False, **kw))  # fmt: skip

    # -- part 1: per-round cost ----------------------------------------------------------------
    rounds, states = {}, {}
    for name, (alg, kw) in arms.items():
        rounds[name] = compiled(alg, **kw)
        states[name] = init_sim_state(params, stats, alg, num_clients=num)
        states[name], _ = rounds[name](states[name], data, jax.random.key(0))  # compile
        jax.block_until_ready(states[name])
    seconds = round_robin_seconds(rounds, states, data, args.repeats)
    best = {k: min(v) for k, v in seconds.items()}

    # -- part 2: a 3 x 3 sweep in one program against nine runs --------------------------------
    zs, seeds = (0.5, 1.0, 2.0), (0, 1, 2)
    how = "map" if jax.default_backend() == "cpu" else "vmap"

    def member_state(z, seed):
        alg = dp()
        _, p, s = build_model(cfg, (8, 8, 1), 10, jax.random.key(seed))
        state = init_sim_state(p, s, alg, num_clients=num)
        return state.replace(
            rule_state={**state.rule_state, "noise_multiplier": jax.numpy.float32(z)}
        )

    members = [(z, seed) for z in zs for seed in seeds]
    t0 = time.perf_counter()
    fn = jax.jit(sweep_over_members(make_round(model, opt, dp(), batch_size=batch,
                                               num_local_steps=steps, divergence=False),
                                    how, (0, None, 0)))  # fmt: skip
    state = stack_members([member_state(z, s) for z, s in members])
    for r in range(args.rounds):
        keys = stack_members([jax.random.fold_in(jax.random.key(s), r) for _, s in members])
        state, metrics = fn(state, data, keys)
    jax.block_until_ready(state)
    together = time.perf_counter() - t0
    t0 = time.perf_counter()
    for z, s in members:
        one = compiled(dp())
        st = member_state(z, s)
        for r in range(args.rounds):
            st, _ = one(st, data, jax.random.fold_in(jax.random.key(s), r))
        jax.block_until_ready(st)
    apart = time.perf_counter() - t0

    rows = [{"arm": name, "seconds_per_round": best[name], "ratio_to_fedavg": best[name] /
             best["fedavg"]} for name in arms]  # fmt: skip
    device = f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    lines = [
        f"DP-FedAvg, {num} clients x {steps} steps x {batch}, plain CNN (depth 2, width 16) on "
        f"8x8 inputs, {device}; best of {args.repeats}, round-robin.",
        "",
        "| arm | s / round | x FedAvg |",
        "|---|---|---|",
    ]
    lines += [f"| {r['arm']} | {r['seconds_per_round']:.4f} | {r['ratio_to_fedavg']:.2f} |"
              for r in rows]  # fmt: skip
    lines += [
        "",
        f"Sweep of 3 noise multipliers x 3 seeds, {args.rounds} rounds each, compilation "
        f"included (one program: {how} over the members).",
        "",
        "| how | seconds | x one program |",
        "|---|---|---|",
        f"| one program, 9 members | {together:.2f} | 1.00 |",
        f"| 9 separate runs | {apart:.2f} | {apart / together:.2f} |",
    ]
    payload = {"device": device, "rows": rows,
               "sweep": {"members": 9, "rounds": args.rounds, "member_axis": how,
                         "one_program_seconds": together, "separate_runs_seconds": apart,
                         "ratio": apart / together}}  # fmt: skip
    write_result(args.out, "bench_privacy", payload, lines)


if __name__ == "__main__":
    main()
