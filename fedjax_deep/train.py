"""``run(config, workdir)``: builds the parts of an experiment, loops over rounds, logs.

One experiment (one point of a sweep) writes into its workdir:

- ``config.json``: the resolved config;
- ``run_info.json``: model size, layer order (for divergence profiles), ``S`` and ``B``, compile time;
- ``metrics.jsonl``: one JSON object per round, appended and flushed as the round finishes, so a
  crash never loses finished rounds; non-finite values are written as ``null``;
- ``summary.json``: final accuracy and loss, first-round figures, wall time.

A config with a ``sweep`` runs each point into ``workdir/<point name>/`` (all points are validated
first) and then writes the sweep's markdown report and plots (``fedjax_deep.report``).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from fedjax_deep import config as config_lib
from fedjax_deep.aggregation import fedavg
from fedjax_deep.config import ConfigError
from fedjax_deep.data import DATASETS, iid, num_local_steps, stack_clients
from fedjax_deep.fl import ClientState, init_server_state, make_client_update, make_round
from fedjax_deep.fl.execution import (
    Execution,
    choose_execution,
    estimate_bytes_per_client,
    fetch,
    pad_clients,
    place_round_inputs,
    replicate,
)
from fedjax_deep.metrics import batch_eval_data, make_evaluate
from fedjax_deep.models import build_model, check_model_config


def make_client_optimizer(opt_config) -> optax.GradientTransformation:
    """SGD with momentum and (coupled, PyTorch-style) weight decay."""
    return optax.chain(
        optax.add_decayed_weights(opt_config.weight_decay),
        optax.sgd(opt_config.learning_rate, momentum=opt_config.momentum or None),
    )


def make_server_optimizer(opt_config) -> optax.GradientTransformation:
    """SGD on the FedAvg pseudo-gradient: learning rate 1 and no momentum is plain FedAvg."""
    return optax.sgd(opt_config.learning_rate, momentum=opt_config.momentum or None)


def _jsonable(value: Any) -> Any:
    value = np.asarray(value)
    if value.ndim == 0:
        v = value.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    return [_jsonable(v) for v in value]


def _prepare(config: ml_collections.ConfigDict):
    """Everything that can fail on bad input, done before the workdir is touched."""
    rng = np.random.default_rng(config.seed)
    dataset = DATASETS[config.data.name](rng, config.data.test_fraction)
    num_train = len(dataset.train_y)
    if config.mode == "centralized":
        partition = [np.arange(num_train)]
    else:
        if config.fl.num_clients > num_train:
            raise ConfigError(
                "fl.num_clients",
                config.fl.num_clients,
                f"more clients than the {num_train} training examples of {config.data.name}; "
                f"use at most {num_train}",
            )
        partition = iid(num_train, config.fl.num_clients, rng)
    check_model_config(config.model, dataset.input_shape)
    max_examples = max(len(p) for p in partition)
    batch_size = min(config.fl.batch_size, max_examples)
    return dataset, partition, batch_size


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, progress: bool = True):
    """Runs an experiment (or every point of its sweep) into ``workdir``.

    Raises :class:`ConfigError` before anything is written if the config or the workdir is bad.

    Returns:
      the summary dict (for a sweep: ``{point name: summary}``).
    """
    workdir = pathlib.Path(workdir)
    points = config_lib.expand_sweep(config)
    prepared = [(name, point, _prepare(point)) for name, point in points]
    for name, _, _ in prepared:
        target = workdir / name if name else workdir
        if (target / "metrics.jsonl").exists():
            raise ConfigError(
                "workdir",
                str(target),
                "already holds a run; pass a new --workdir (resuming arrives with checkpoints)",
            )
    if len(prepared) == 1 and not prepared[0][0]:
        return _run_one(config, workdir, prepared[0][2], progress=progress)
    summaries = {}
    for i, (name, point, prep) in enumerate(prepared):
        if progress:
            print(f"[{i + 1}/{len(prepared)}] {name}", file=sys.stderr, flush=True)
        summaries[name] = _run_one(point, workdir / name, prep, progress=progress)
    from fedjax_deep import report

    if _is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
        report.write_sweep_report(workdir)
    return summaries


def _is_writer() -> bool:
    """Every process of a multi-host run computes; only process 0 writes files and progress."""
    return jax.process_index() == 0


def _choose_execution(
    config, model, client_opt, client_data, params, model_state, batch_size, num_steps
):
    """The run's client-axis strategy (``config.fl.execution``) and why it was chosen."""
    if config.mode == "centralized":
        return Execution(), "centralized: one learner, no client axis to split"
    bytes_per_client = None
    if config.fl.execution == "auto" and jax.default_backend() != "cpu":
        # Measure one client's local training (arguments + temporaries) with XLA's analysis.
        client_update = make_client_update(model, client_opt)
        one = ClientState(params, model_state, client_opt.init(params))
        steps = {
            "idx": jnp.zeros((num_steps, batch_size), jnp.int32),
            "mask": jnp.ones((num_steps, batch_size), bool),
        }
        data = {"x": client_data.x[0], "y": client_data.y[0]}
        bytes_per_client = estimate_bytes_per_client(
            client_update, one, steps, jax.random.key(0), data
        )
    return choose_execution(
        config.fl.execution,
        client_data.num_clients,
        chunk_size=config.fl.chunk_size,
        bytes_per_client=bytes_per_client,
    )


def _run_one(config, workdir: pathlib.Path, prepared, *, progress: bool):
    dataset, partition, batch_size = prepared
    start = time.time()
    key = jax.random.key(config.seed)
    model_key, run_key = jax.random.split(key)
    model, params, model_state = build_model(
        config.model, dataset.input_shape, dataset.num_classes, model_key
    )
    client_data = stack_clients(dataset.train_x, dataset.train_y, partition)
    num_steps = num_local_steps(
        client_data.max_examples, batch_size, config.fl.local_epochs, config.fl.local_steps
    )
    centralized = config.mode == "centralized"
    client_opt = make_client_optimizer(config.client_opt)
    server_rule = fedavg(make_server_optimizer(config.server_opt))
    divergence = config.fl.divergence and not centralized
    execution, why = _choose_execution(
        config, model, client_opt, client_data, params, model_state, batch_size, num_steps
    )
    if execution.mesh is not None:
        client_data = pad_clients(client_data, execution.num_shards)
    round_fn = make_round(
        model,
        client_opt,
        server_rule,
        batch_size=batch_size,
        num_local_steps=num_steps,
        divergence=divergence,
        grad_divergence=config.fl.grad_divergence,
        execution=execution,
    )
    state = init_server_state(
        params,
        model_state,
        server_rule,
        client_optimizer=client_opt if centralized else None,
        num_clients=client_data.num_clients,
        local_model_state=config.fl.bn_stats == "local" and bool(model_state),
    )
    state, client_data = place_round_inputs(execution, state, client_data)

    def round_key(r):
        key_ = jax.random.fold_in(run_key, r)
        return key_ if execution.mesh is None else replicate(key_, execution.mesh)

    compile_start = time.time()
    round_step = jax.jit(round_fn, donate_argnums=0).lower(state, client_data, round_key(0))
    round_step = round_step.compile()
    eval_batches = batch_eval_data(dataset.test_x, dataset.test_y, config.eval.batch_size)
    if execution.mesh is not None:
        eval_batches = replicate(eval_batches, execution.mesh)
    evaluate = jax.jit(make_evaluate(model))
    evaluate = evaluate.lower(state.params, state.model_state, eval_batches).compile()
    compile_s = time.time() - compile_start

    writer = _is_writer()
    progress = progress and writer
    if writer:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    run_info = {
        "dataset": dataset.name,
        "input_shape": list(dataset.input_shape),
        "num_train": int(len(dataset.train_y)),
        "num_test": int(len(dataset.test_y)),
        "num_clients": len(partition),
        "client_sizes": [int(len(p)) for p in partition],
        "batch_size": int(batch_size),
        "num_local_steps": int(num_steps),
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
        "layers": list(model.layers),
        "compile_seconds": round(compile_s, 3),
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "processes": jax.process_count(),
        "execution": why,
    }
    if writer:
        (workdir / "run_info.json").write_text(json.dumps(run_info, indent=2) + "\n")
    if progress:
        print(f"{workdir.name or workdir}: {why}", file=sys.stderr, flush=True)

    rows = []
    bar = tqdm(
        range(config.num_rounds),
        desc=f"{config.mode} {workdir.name}",
        disable=not progress,
        unit="round",
        file=sys.stderr,
    )
    with open(workdir / "metrics.jsonl" if writer else os.devnull, "a") as log:
        for r in bar:
            t0 = time.time()
            state, metrics = round_step(state, client_data, round_key(r))
            if (r + 1) % config.eval.every_rounds == 0 or r + 1 == config.num_rounds:
                metrics.update(evaluate(state.params, state.model_state, eval_batches))
            metrics = fetch(metrics)
            row = {"round": r + 1, **{k: _jsonable(v) for k, v in sorted(metrics.items())}}
            row["time/round_seconds"] = round(time.time() - t0, 4)
            log.write(json.dumps(row) + "\n")
            log.flush()
            rows.append(row)
            postfix = {
                "loss": f"{row['train/loss']:.3f}" if row["train/loss"] is not None else "nan"
            }
            if row.get("eval/accuracy") is not None:
                postfix["acc"] = f"{row['eval/accuracy']:.3f}"
            bar.set_postfix(postfix)
    bar.close()

    summary = {
        "mode": config.mode,
        "rounds": config.num_rounds,
        "final_accuracy": rows[-1].get("eval/accuracy"),
        "final_loss": rows[-1].get("eval/loss"),
        "final_train_loss": rows[-1].get("train/loss"),
        "first_round_accuracy": next(
            (row["eval/accuracy"] for row in rows if "eval/accuracy" in row), None
        ),
        "examples_seen": int(sum(row["train/num_examples"] for row in rows)),
        "wall_seconds": round(time.time() - start, 2),
        "compile_seconds": round(compile_s, 3),
    }
    for key_ in ("divergence/mean/relative", "divergence/mean/update", "divergence/mean/grad"):
        if key_ in rows[0]:
            summary[f"first_round_{key_}"] = rows[0][key_]
            summary[f"final_{key_}"] = rows[-1][key_]
    if not writer:
        return summary
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    acc = summary["final_accuracy"]
    print(
        f"{workdir}: {config.mode} test accuracy "
        + (f"{acc:.4f}" if acc is not None else "nan")
        + f" after {config.num_rounds} rounds ({summary['examples_seen']} examples, "
        f"{summary['wall_seconds']:.1f}s, compile {compile_s:.1f}s)",
        flush=True,
    )
    return summary
