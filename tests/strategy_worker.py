"""Runs two rounds under one execution strategy and saves the result (a subprocess of the tests).

Multi-device and multi-process runs need XLA flags and ``jax.distributed`` set up before JAX starts,
so tests/test_execution.py runs this file as a separate process:

    python tests/strategy_worker.py OUT.npz STRATEGY [CHUNK] [--process-id I --num-processes N
                                                         --coordinator HOST:PORT]

STRATEGY is vmap, chunked or sharded; ``--algorithm scaffold`` adds per-client control variates. Process 0 (or the only process) writes OUT.npz with the final
server parameters (flattened, keys are leaf paths) and the round metrics.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedjax_deep.config import default_config
from fedjax_deep.data import load_digits, stack_clients
from fedjax_deep.fl import algorithms, init_sim_state, make_round
from fedjax_deep.fl.execution import (
    Execution,
    client_mesh,
    fetch,
    pad_clients,
    place_round_inputs,
    replicate,
)
from fedjax_deep.models import build_model
from fedjax_deep.optimizers import make_client_optimizer

SIZES = (14, 11, 9, 12, 8, 13)  # 6 unequal clients: padded to 8 on 4 devices


def run(
    strategy: str, chunk: int = 0, persist: bool = False, algorithm: str = "fedavg"
) -> dict[str, np.ndarray]:
    """Two rounds under ``strategy``; returns flattened final params and last-round metrics."""
    ds = load_digits(np.random.default_rng(0))
    start = np.cumsum([0, *SIZES])
    partition = [np.arange(start[i], start[i + 1]) for i in range(len(SIZES))]
    client_data = stack_clients(ds.train_x, ds.train_y, partition)
    cfg = default_config().model
    cfg.depth, cfg.width, cfg.norm = 2, 4, "batch"
    model, params, model_state = build_model(cfg, ds.input_shape, 10, jax.random.key(0))
    # The CLI's client optimizer: its injected hyper-parameters carry a step count made fresh for
    # each client, which inside shard_map must vary over the client axis like the rest.
    opt_cfg = default_config().client_opt
    opt_cfg.learning_rate, opt_cfg.momentum, opt_cfg.weight_decay = 0.05, 0.9, 1e-3
    client_opt = make_client_optimizer(opt_cfg)
    rule = algorithms.fedavg(optax.sgd(1.0, momentum=0.5))
    if algorithm == "scaffold":  # per-client control variates, sharded with the clients
        rule = algorithms.scaffold(0.05, len(SIZES), optax.sgd(1.0, momentum=0.5))

    mesh = client_mesh() if strategy == "sharded" else None
    execution = Execution(chunk if strategy != "vmap" else 0, mesh)
    if mesh is not None:
        client_data = pad_clients(client_data, mesh.devices.size)
    num_clients = client_data.num_clients
    state = init_sim_state(
        params,
        model_state,
        rule,
        client_optimizer=client_opt if persist else None,
        num_clients=num_clients,
    )
    state, client_data = place_round_inputs(execution, state, client_data)
    round_fn = jax.jit(
        make_round(
            model,
            client_opt,
            rule,
            batch_size=5,
            num_local_steps=4,
            execution=execution,
            cka_probe=jnp.asarray(ds.test_x[:16]),
        ),  # fmt: skip
        donate_argnums=0,
    )
    for r in range(2):
        key = jax.random.key(r)
        if mesh is not None:
            key = replicate(key, mesh)
        state, metrics = round_fn(state, client_data, key)
    params = fetch(state.params)
    metrics = fetch(metrics)
    flat = {
        "/".join(str(k.key) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    flat.update({f"metric:{k}": np.asarray(v) for k, v in metrics.items()})
    if algorithm == "scaffold":
        for name, tree in (("c", state.rule_state["c"]), ("c_i", state.clients["algorithm"])):
            for path, v in jax.tree_util.tree_flatten_with_path(fetch(tree))[0]:
                v = np.asarray(v)[: len(SIZES)] if name == "c_i" else np.asarray(v)
                flat[f"{name}:" + "/".join(str(k.key) for k in path)] = v
    return flat


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("strategy", choices=["vmap", "chunked", "sharded"])
    parser.add_argument("chunk", nargs="?", type=int, default=0)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--coordinator")
    parser.add_argument("--persist", action="store_true", help="keep client optimizer state")
    parser.add_argument("--algorithm", default="fedavg", choices=["fedavg", "scaffold"])
    args = parser.parse_args()
    if args.coordinator:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    flat = run(args.strategy, args.chunk, args.persist, args.algorithm)
    if jax.process_index() == 0:
        flat["devices"] = np.asarray(len(jax.devices()))
        flat["processes"] = np.asarray(jax.process_count())
        np.savez(args.out, **flat)
    if args.coordinator:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
