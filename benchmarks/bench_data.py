"""The data path's cost: rounds per second with the real path against batches already on device.

    python benchmarks/bench_data.py [--clients 16] [--repeats 7] [--out benchmarks/results]

Both variants train the same clients for the same local steps with the same execution strategy
(``auto``) and no divergence metrics:

- real data path: ``make_round`` as training runs it: client data resident on the device, shuffled
  batch indices drawn on the device each round, each local step gathering its batch (plus random
  crops and flips on the device for the CIFAR-shape model);
- batches already on device: the ``[C, S, B, ...]`` batches materialized beforehand and fed straight
  to the same client update and FedAvg (no index draw, no gather, no augmentation).

Target: real >= 90% of pre-batched rounds per second. Timing is best-of-repeats, round-robin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import optax

from fedjax_deep.config import default_config
from fedjax_deep.data import crop_flip, round_batch_indices
from fedjax_deep.fl import ClientState, clients, init_sim_state, make_client_update, make_round
from fedjax_deep.fl.algorithms import fedavg
from fedjax_deep.fl.clients import normalized_weights, weighted_mean
from fedjax_deep.fl.execution import choose_execution
from fedjax_deep.models import build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
from common import random_clients  # noqa: E402

MODELS = {
    "digits": ((8, 8, 1), dict(depth=4, width=32), None),
    "cifar": (
        (32, 32, 3),
        dict(depth=4, widths=(32, 64, 128, 128), strides=(1, 2, 2, 2)),
        crop_flip,
    ),
}


def bench(name, num_clients, steps, batch, repeats):
    shape, overrides, augment = MODELS[name]
    cfg = default_config().model
    for k, v in overrides.items():
        cfg[k] = v
    model, params, state = build_model(cfg, shape, 10, jax.random.key(0))
    n = steps * batch
    data = random_clients(num_clients, steps, batch, shape)
    opt = optax.sgd(0.01, momentum=0.9)
    rule = fedavg(optax.sgd(1.0))
    execution, _ = choose_execution("auto", num_clients)
    real = jax.jit(
        make_round(model, opt, rule, batch_size=batch, num_local_steps=steps, divergence=False,
                   execution=execution, augment=augment)
    )  # fmt: skip
    client_update = make_client_update(model, opt)

    @jax.jit
    def prebatched(server, batches, keys, num_examples):
        def train(b, k):
            start = ClientState(server.params, server.model_state, opt.init(server.params))
            return client_update(start, b, k)

        trained, _ = clients.map(train, (batches, keys), execution.chunk_size)
        w = normalized_weights(num_examples)
        params, rule_state = rule.server_apply(server.params, server.rule_state, trained.params, w)
        return server.replace(params=params, model_state=weighted_mean(trained.model_state, w),
                              rule_state=rule_state, round=server.round + 1)  # fmt: skip

    keys = jax.random.split(jax.random.key(1), num_clients)
    idx, mask = round_batch_indices(keys, data.num_examples, n, batch, steps)
    batches = {
        "x": jax.vmap(lambda a, i: a[i])(data.x, idx),
        "y": jax.vmap(lambda a, i: a[i])(data.y, idx),
        "mask": mask,
    }
    server = init_sim_state(params, state, rule)
    holders = {"real": server, "pre": server}

    def run_real():
        holders["real"], m = real(holders["real"], data, jax.random.key(0))
        jax.block_until_ready(m)

    def run_pre():
        holders["pre"] = prebatched(holders["pre"], batches, keys, data.num_examples)
        jax.block_until_ready(holders["pre"].params)

    runs = {"real data path": run_real, "batches already on device": run_pre}
    for f in runs.values():
        f()
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    rps = {k: 1.0 / min(v) for k, v in times.items()}
    return {
        "rounds_per_second": rps,
        "ratio": rps["real data path"] / rps["batches already on device"],
        "augment": augment is not None,
        "times": times,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--local-steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    results = {
        name: bench(name, args.clients, args.local_steps, args.batch_size, args.repeats)
        for name in MODELS
    }
    lines = [
        f"# Data path benchmark ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"`python benchmarks/bench_data.py --clients {args.clients} --local-steps "
        f"{args.local_steps} --batch-size {args.batch_size} --repeats {args.repeats}` on "
        f"{jax.default_backend()} ({os.cpu_count()} CPUs). Rounds per second, best of repeats.",
        "",
        "| model | real data path | batches already on device | ratio (target >= 0.90) |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        rps = r["rounds_per_second"]
        label = f"{name}" + (" (with crop+flip)" if r["augment"] else "")
        lines.append(
            f"| {label} | {rps['real data path']:.2f} | {rps['batches already on device']:.2f} | "
            f"{r['ratio']:.2f} |"
        )
    md = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_data.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "bench_data.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
