"""The round's rate under each precision policy (``config.precision``), measured side by side.

    python benchmarks/bench_precision.py [--clients 64] [--steps 4] [--repeats 5] [--tiny] [--out DIR]

The same clients (a CIFAR-shape plain CNN with BatchNorm, batch 32, or with ``--model resnet18``
the CIFAR ResNet-18) train the same local steps from the same start under ``default`` (the
backend's float32 matmul: TF32 on recent NVIDIA GPUs), ``highest`` (exact float32 products) and
``bf16`` (bfloat16 activations and products, float32 parameters, optimizer state and loss), the
backend's ``auto`` execution, divergence metrics off. Rounds are timed round-robin (best of
``--repeats``); prints examples per second and each policy's rate over ``default``'s, and the
round-1 training loss of each (bf16 should stay close). Writes ``bench_precision.{json,md}``
under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

from fedjax_deep.config import default_config
from fedjax_deep.experiment import make_algorithm, with_precision
from fedjax_deep.fl import init_sim_state, injected_hparams, make_round
from fedjax_deep.fl.execution import choose_execution
from fedjax_deep.models import build_model
from fedjax_deep.optimizers import make_client_optimizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
from common import random_clients, round_robin_seconds, write_result  # noqa: E402

POLICIES = ("default", "highest", "bf16")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="cnn", choices=("cnn", "resnet18"))
    parser.add_argument("--tiny", action="store_true", help="an 8x8 input and a depth-2 CNN")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    num, steps, batch = args.clients, args.steps, 32
    config = default_config()
    cfg = config.model
    shape = (32, 32, 3)
    if args.tiny:
        cfg.depth, cfg.width, cfg.norm, shape = 2, 8, "batch", (8, 8, 1)
    elif args.model == "resnet18":
        cfg.name, cfg.depth, cfg.norm = "resnet", 18, "batch"
    else:
        cfg.depth, cfg.widths, cfg.strides, cfg.norm = 4, (32, 64, 128, 128), (1, 2, 2, 2), "batch"
    model, params, state = build_model(cfg, shape, 10, jax.random.key(0))
    data = random_clients(num, steps, batch, shape)
    opt = make_client_optimizer(config.client_opt)
    algorithm = make_algorithm(config, state)
    execution, why = choose_execution("auto", num)
    rounds, states, losses = {}, {}, {}
    for policy in POLICIES:
        m = model.with_compute_dtype(jax.numpy.bfloat16) if policy == "bf16" else model
        fn = make_round(m, opt, algorithm, batch_size=batch, num_local_steps=steps,
                        divergence=False, execution=execution)  # fmt: skip
        rounds[policy] = jax.jit(with_precision(fn, policy), donate_argnums=0)
        start = init_sim_state(params, state, algorithm,
                                  client_hparams=injected_hparams(opt, params))  # fmt: skip
        states[policy], metrics = rounds[policy](
            jax.tree.map(jax.numpy.copy, start), data, jax.random.key(0)
        )  # compile + round 1
        losses[policy] = float(metrics["train/loss"])
        jax.block_until_ready(states[policy])
    seconds = round_robin_seconds(rounds, states, data, args.repeats)
    examples = num * steps * batch
    rows = [{"precision": p, "seconds_per_round": min(seconds[p]),
             "examples_per_s": examples / min(seconds[p]),
             "x_default": min(seconds["default"]) / min(seconds[p]),
             "round1_train_loss": losses[p]} for p in POLICIES]  # fmt: skip
    device = f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    name = "tiny CNN 8x8x1" if args.tiny else (
        "ResNet-18 (CIFAR stem)" if args.model == "resnet18" else "CIFAR-shape CNN")  # fmt: skip
    lines = [
        f"Precision policies, {name} with BatchNorm, {num} clients x {steps} steps x {batch}, "
        f"{device}, jax {jax.__version__}, {time.strftime('%Y-%m-%d')}, execution {why}; "
        f"best of {args.repeats}, round-robin.",
        "",
        "| precision | s / round | examples / s | x default | round-1 train loss |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['precision']} | {r['seconds_per_round']:.4f} | {r['examples_per_s']:,.0f} | "
              f"{r['x_default']:.2f} | {r['round1_train_loss']:.4f} |" for r in rows]  # fmt: skip
    write_result(
        args.out, "bench_precision", {"device": device, "model": name, "rows": rows}, lines
    )


if __name__ == "__main__":
    main()
