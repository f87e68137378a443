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

import dataclasses
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
from fedjax_deep.checkpoint import Checkpointer, CheckpointError
from fedjax_deep.config import ConfigError
from fedjax_deep.data import (
    make_augment,
    make_partition,
    num_local_steps,
    partition_stats,
    plot_partition,
    stack_clients,
)
from fedjax_deep.data import sources as data_sources
from fedjax_deep.fl import (
    ClientState,
    init_server_state,
    make_client_update,
    make_round,
    make_seeded_round,
    sample_cohort,
    stack_seeds,
)
from fedjax_deep.fl.execution import (
    Execution,
    available_memory_bytes,
    choose_execution,
    estimate_bytes_per_client,
    fetch,
    pad_clients,
    place_round_inputs,
    replicate,
    shard_clients,
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


def _prepare(config: ml_collections.ConfigDict, cache: dict | None = None):
    """Everything that can fail on bad input, done before the workdir is touched."""
    rng = np.random.default_rng(config.seed)
    data_key = (config.data.to_json(), config.seed)
    if cache is not None and data_key in cache:
        # The points of a sweep share a loaded dataset; the generator resumes where loading left it.
        dataset, state_after_load = cache[data_key]
        rng.bit_generator.state = state_after_load
    else:
        dataset = data_sources.load(config.data.name, config.data, rng)
        if cache is not None:
            cache[data_key] = (dataset, rng.bit_generator.state)
    check_model_config(config.model, dataset.input_shape)
    # The federated partition is drawn in both modes: centralized training sees the same examples
    # per round as the federated run it is compared with.
    fl_partition = make_partition(config.data, dataset.train_y, config.fl.num_clients, rng)
    if config.mode == "centralized":
        partition = [np.arange(len(dataset.train_y))]
    else:
        partition = fl_partition
    max_examples = max(len(p) for p in partition)
    batch_size = min(config.fl.batch_size, max_examples)
    return dataset, partition, fl_partition, batch_size


def _centralized_steps(config, fl_partition, batch_size: int) -> int:
    """Local steps per round that give one learner the examples a federated round sees."""
    cohort = config.fl.cohort_size or config.fl.num_clients
    if config.fl.local_steps > 0:
        fl_batch = min(config.fl.batch_size, max(len(p) for p in fl_partition))
        examples = config.fl.local_steps * fl_batch * cohort
    else:
        sizes = [len(p) for p in fl_partition]
        examples = config.fl.local_epochs * sum(sizes) * cohort / len(sizes)
    return max(1, round(examples / batch_size))


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, progress: bool = True):
    """Runs an experiment (or every point of its sweep) into ``workdir``.

    Raises :class:`ConfigError` before anything is written if the config or the workdir is bad.

    Returns:
      the summary dict (for a sweep: ``{point name: summary}``).
    """
    workdir = pathlib.Path(workdir)
    points = config_lib.expand_sweep(config)
    _check_workdir(workdir)
    for name, point in points:
        check_resume_compatible(point, workdir / name if name else workdir)
    cache: dict = {}
    prepared = [(name, point, _prepare(point, cache)) for name, point in points]
    if len(prepared) == 1 and not prepared[0][0]:
        return _run_one(config, workdir, prepared[0][2], progress=progress)
    summaries = {}
    for i, group in enumerate(_seed_groups(prepared)):
        names = [name for name, _, _ in group]
        if progress:
            print(f"[{i + 1}] {', '.join(names)}", file=sys.stderr, flush=True)
        if _seed_axis_wanted([point for _, point, _ in group]):
            runs = [_build(point, workdir / name, prep) for name, point, prep in group]
            if _seed_axis_ok(runs):
                results = _train(runs, progress=progress)
            else:
                results = [_train([run], progress=progress)[0] for run in runs]
        else:  # build each run only when its turn comes (its data, its wall clock)
            results = [_run_one(point, workdir / name, prep, progress=progress)
                       for name, point, prep in group]  # fmt: skip
        summaries.update(zip(names, results, strict=True))
    from fedjax_deep import report

    if _is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
        report.write_sweep_report(workdir)
    return summaries


# Fields a resumed run may change: they do not change what is computed (or only its float order).
RESUME_HARMLESS = (
    "num_rounds",
    "fl.seed_axis",
    "eval.every_rounds",
    "eval.batch_size",
    "checkpoint.every_rounds",
    "checkpoint.keep",
    "fl.execution",
    "fl.chunk_size",
    "data.placement",
    "data.data_dir",
    "data.manual_dir",
    "sweep",
)


def _flat_json(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat_json(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: dict, new: ml_collections.ConfigDict) -> dict[str, tuple]:
    """Fields whose values differ between a run's saved config and ``new``: ``{field: (old, new)}``."""
    new_flat = _flat_json(json.loads(new.to_json_best_effort()))
    old_flat = _flat_json(old)
    return {
        f: (old_flat.get(f), new_flat.get(f))
        for f in sorted(set(old_flat) | set(new_flat))
        if old_flat.get(f) != new_flat.get(f)
    }


def check_resume_compatible(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
    """Raises :class:`ConfigError` if ``workdir`` holds a run whose meaning ``config`` would change
    (model, data, clients, optimizers, seed, ...); returns the harmless changes (may be empty)."""
    saved = workdir / "config.json"
    if not saved.exists() or not (workdir / "run_info.json").exists():
        return {}
    changes = config_changes(json.loads(saved.read_text()), config)
    for field, (old, new) in changes.items():
        if field not in RESUME_HARMLESS:
            raise ConfigError(
                field,
                new,
                f"differs from the run being resumed in {workdir} ({old!r}); that would change "
                "the experiment: pass a new --workdir",
            )
    return changes


def _check_workdir(workdir: pathlib.Path) -> None:
    """Fails early (nothing written) if ``workdir`` cannot be created or written."""
    existing = workdir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError("workdir", str(workdir), f"{existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError("workdir", str(workdir), f"{existing} is not writable")


def _truncate_metrics(path: pathlib.Path, last_round: int) -> list[dict]:
    """Keeps the rows of rounds <= ``last_round`` (the checkpoint's), atomically; returns them."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
        if row.get("round", 0) <= last_round:
            rows.append(row)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)
    return rows


class NumericError(RuntimeError):
    """A round produced non-finite parameters or loss (one line, names round and layer)."""


def _first_nonfinite(params) -> int:
    """Index of the first parameter leaf with a non-finite value, -1 if none (jit-friendly)."""
    flags = jnp.stack([~jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])
    return jnp.where(jnp.any(flags), jnp.argmax(flags), -1)


def _seed_groups(prepared):
    """Sweep points that differ only in their seed, in sweep order (candidates for a seed axis)."""
    groups: dict = {}
    for name, point, prep in prepared:
        key = json.dumps({**json.loads(point.to_json_best_effort()), "seed": None})
        groups.setdefault(key, []).append((name, point, prep))
    return list(groups.values())


def _is_writer() -> bool:
    """Every process of a multi-host run computes; only process 0 writes files and progress."""
    return jax.process_index() == 0


def _data_on_host(config, dataset, partition) -> bool:
    """``data.placement``: ``auto`` keeps client data on the device when it takes less than half
    of the device's free memory."""
    if config.data.placement != "auto":
        return config.data.placement == "host"
    bytes_needed = sum(len(p) for p in partition) * dataset.train_x[0].nbytes
    free = available_memory_bytes()
    return free is not None and bytes_needed > 0.5 * free


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
        config.fl.cohort_size or client_data.num_clients,
        chunk_size=config.fl.chunk_size,
        bytes_per_client=bytes_per_client,
    )


@dataclasses.dataclass
class _Run:
    """One experiment, built and ready to train (several may train together on a seed axis)."""

    config: Any
    workdir: pathlib.Path
    changes: dict
    state: Any
    round_fn: Any
    round_inputs: Any
    evaluate_fn: Any
    eval_batches: Any
    run_key: Any
    run_info: dict
    leaf_names: list
    build_seconds: float  # data placement, model init, round construction
    mesh: Any
    on_host: bool


def _build(config, workdir: pathlib.Path, prepared) -> _Run:
    changes = check_resume_compatible(config, workdir)
    dataset, partition, fl_partition, batch_size = prepared
    start = time.time()
    key = jax.random.key(config.seed)
    model_key, run_key = jax.random.split(key)
    model, params, model_state = build_model(
        config.model, dataset.input_shape, dataset.num_classes, model_key
    )
    centralized = config.mode == "centralized"
    on_host = _data_on_host(config, dataset, partition)
    client_data = stack_clients(dataset.train_x, dataset.train_y, partition, on_device=not on_host)
    if centralized:
        num_steps = _centralized_steps(config, fl_partition, batch_size)
    else:
        num_steps = num_local_steps(
            client_data.max_examples, batch_size, config.fl.local_epochs, config.fl.local_steps
        )
    cohort_size = 0 if centralized else config.fl.cohort_size
    if cohort_size == client_data.num_clients:
        cohort_size = 0
    client_opt = make_client_optimizer(config.client_opt)
    server_rule = fedavg(make_server_optimizer(config.server_opt))
    # Independent runs (E7's null reference) are never averaged: each keeps its model, optimizer
    # state and BatchNorm statistics; there is no shared point for a gradient divergence.
    independent = config.mode == "independent"
    divergence = config.fl.divergence and not centralized
    execution, why = _choose_execution(
        config, model, client_opt, client_data, params, model_state, batch_size, num_steps
    )
    mesh = execution.mesh
    if mesh is not None and cohort_size % execution.num_shards:
        raise ConfigError(
            "fl.cohort_size",
            cohort_size,
            f"must be a multiple of the {execution.num_shards} devices the clients are sharded over",
        )
    population = client_data
    if mesh is not None:
        population = pad_clients(population, execution.num_shards, on_device=not on_host)
    round_fn = make_round(
        model,
        client_opt,
        server_rule,
        batch_size=batch_size,
        num_local_steps=num_steps,
        divergence=divergence,
        grad_divergence=config.fl.grad_divergence and not independent,
        execution=execution,
        augment=make_augment(config.data.augment),
        # On the host the cohort is drawn (with the same key) and copied over before the round.
        cohort_size=0 if on_host else cohort_size,
        skip_nonfinite=config.fl.nonfinite == "skip",
    )
    state = init_server_state(
        params,
        model_state,
        server_rule,
        client_optimizer=client_opt if (centralized or independent) else None,
        num_clients=population.num_clients,
        local_model_state=(config.fl.bn_stats == "local" or independent) and bool(model_state),
        independent=independent,
    )
    state, device_data = place_round_inputs(execution, state, None if on_host else population)

    def round_inputs(r):
        """This round's client data and key (a host-side cohort is drawn and copied here)."""
        key_ = jax.random.fold_in(run_key, r)
        data = device_data
        if on_host:
            ids = np.arange(population.num_clients)
            if cohort_size:
                key_, cohort_key = jax.random.split(key_)
                ids = np.asarray(
                    sample_cohort(cohort_key, jnp.asarray(population.num_examples), cohort_size)
                )
            data = jax.tree.map(lambda a: jnp.asarray(a[ids]), population)
            if mesh is not None:
                data = shard_clients(pad_clients(data, execution.num_shards), mesh)
        return data, key_ if mesh is None else replicate(key_, mesh)

    eval_batches = batch_eval_data(dataset.test_x, dataset.test_y, config.eval.batch_size)
    if mesh is not None:
        eval_batches = replicate(eval_batches, mesh)
    evaluate_one = make_evaluate(model)
    if independent:
        # Each run is evaluated with its own statistics; the row reports their mean and spread.
        def evaluate_fn(s, batches):
            stats = s.client_model_state if s.client_model_state is not None else s.model_state
            axes = 0 if s.client_model_state is not None else None
            per_run = jax.vmap(evaluate_one, in_axes=(0, axes, None))(
                s.client_params, stats, batches
            )
            out = {k: jnp.mean(v) for k, v in per_run.items()}
            out["eval/accuracy_std_over_runs"] = jnp.std(per_run["eval/accuracy"])
            return out
    else:

        def evaluate_fn(s, batches):
            return evaluate_one(s.params, s.model_state, batches)

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
        "receptive_field": model.receptive_field,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "processes": jax.process_count(),
        "execution": why,
        "data_placement": "host (cohort copied per round)" if on_host else "device",
        "cohort_size": cohort_size or len(partition),
        "partition": config.data.partition,
    }
    if _is_writer() and not centralized:
        workdir.mkdir(parents=True, exist_ok=True)
        stats = partition_stats(partition, dataset.train_y, dataset.num_classes)
        (workdir / "partition.json").write_text(json.dumps(stats) + "\n")
        plot_partition(stats, workdir / "partition.png")
    leaf_names = [
        "/".join(str(getattr(k, "key", k)) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]
    return _Run(
        config, workdir, changes, state, round_fn, round_inputs, evaluate_fn, eval_batches,
        run_key, run_info, leaf_names, time.time() - start, mesh, on_host,
    )  # fmt: skip


def _shape_signature(run: _Run):
    data, key = run.round_inputs(0)
    return jax.tree.map(
        lambda x: (x.shape, str(x.dtype)), (run.state, data, key, run.eval_batches)
    ), jax.tree.structure((run.state, data))


def _seed_axis_wanted(configs) -> bool:
    """Whether a seed group should try one compiled program (``fl.seed_axis`` and the backend)."""
    if len(configs) < 2:
        return False
    setting = configs[0].fl.seed_axis
    return setting == "on" or (setting == "auto" and jax.default_backend() != "cpu")


def _seed_axis_ok(runs: list[_Run]) -> bool:
    """Seeds share one compiled program when shapes agree, no mesh or host copies are involved,
    and the cadences match (``fl.seed_axis``: 'auto' = on GPU/TPU, where a wider program fills the
    device; off on CPU, where vmap over clients was slower than one client at a time in
    scripts/bench_clients.py; seeds themselves were not benchmarked)."""
    if not _seed_axis_wanted([r.config for r in runs]):
        return False
    if any(r.mesh is not None or r.on_host for r in runs):
        return False
    cadence = {
        (r.config.num_rounds, r.config.eval.every_rounds, r.config.checkpoint.every_rounds)
        for r in runs
    }
    return len(cadence) == 1 and len({str(_shape_signature(r)) for r in runs}) == 1


def _run_one(config, workdir: pathlib.Path, prepared, *, progress: bool):
    return _train([_build(config, workdir, prepared)], progress=progress)[0]


def _train(runs: list[_Run], *, progress: bool) -> list[dict]:
    """Trains ``runs`` (one, or several seeds together on a leading seed axis) with checkpoints,
    exact resume, the numeric guard and per-run metrics files."""
    batched = len(runs) > 1
    stack = stack_seeds if batched else (lambda trees: trees[0])
    round_fn = make_seeded_round(runs[0].round_fn) if batched else runs[0].round_fn
    evaluate_fn = jax.vmap(runs[0].evaluate_fn) if batched else runs[0].evaluate_fn
    first = runs[0]
    config = first.config
    writer = _is_writer()
    progress = progress and writer

    def inputs(r):
        pairs = [run.round_inputs(r) for run in runs]
        return stack([p[0] for p in pairs]), stack([p[1] for p in pairs])

    state = stack([run.state for run in runs])
    eval_batches = stack([run.eval_batches for run in runs])
    compile_start = train_start = time.time()
    round_step = jax.jit(round_fn, donate_argnums=0).lower(state, *inputs(0)).compile()
    evaluate = jax.jit(evaluate_fn).lower(state, eval_batches).compile()
    compile_s = time.time() - compile_start

    checkpointers = [
        Checkpointer(run.workdir / "checkpoints", keep=run.config.checkpoint.keep) for run in runs
    ]
    common = set.intersection(*(set(c.all_rounds()) for c in checkpointers))
    start_round = max(common, default=0)
    if start_round:
        state = stack(
            [c.restore(start_round, run.state, run.run_key) for c, run in zip(checkpointers, runs,
                                                                                strict=True)]
        )  # fmt: skip
    all_rows = []
    for run in runs:
        run.run_info["compile_seconds"] = round(compile_s, 3)
        run.run_info["seed_axis"] = len(runs) if batched else None
        if writer:
            run.workdir.mkdir(parents=True, exist_ok=True)
            text = run.config.to_json_best_effort(indent=2) + "\n"
            (run.workdir / "config.json").write_text(text)
            (run.workdir / "run_info.json").write_text(json.dumps(run.run_info, indent=2) + "\n")
            if run.changes:
                with open(run.workdir / "resume_log.jsonl", "a") as f:
                    record = {"resumed_at_round": start_round, "changes": run.changes}
                    f.write(json.dumps(record) + "\n")
        all_rows.append(_truncate_metrics(run.workdir / "metrics.jsonl", start_round) if writer
                        else [])  # fmt: skip
    if progress:
        names = ", ".join(run.workdir.name or str(run.workdir) for run in runs)
        how = f"{len(runs)} seeds on one seed axis; " if batched else ""
        print(f"{names}: {how}{first.run_info['execution']}", file=sys.stderr, flush=True)
        if start_round:
            print(f"{names}: resuming after round {start_round}", file=sys.stderr)

    first_nonfinite = jax.jit(jax.vmap(_first_nonfinite) if batched else _first_nonfinite)
    every = config.checkpoint.every_rounds
    bar = tqdm(
        range(start_round, config.num_rounds),
        initial=start_round,
        total=config.num_rounds,
        desc=f"{config.mode} {first.workdir.name}" + (f" (+{len(runs) - 1} seeds)" * batched),
        disable=not progress,
        unit="round",
        file=sys.stderr,
    )
    logs = [open(run.workdir / "metrics.jsonl" if writer else os.devnull, "a") for run in runs]
    try:
        for r in bar:
            t0 = time.time()
            state, metrics = round_step(state, *inputs(r))
            bad = np.atleast_1d(fetch(first_nonfinite(state.params)))
            losses = np.atleast_1d(fetch(metrics["train/loss"]))
            for i, run in enumerate(runs):
                if bad[i] >= 0 or not math.isfinite(losses[i]):
                    where = run.leaf_names[bad[i]] if bad[i] >= 0 else "the training loss"
                    last = checkpointers[i].latest_round()
                    raise NumericError(
                        f"round {r + 1}: non-finite values in {where} (train/loss {losses[i]}) "
                        f"of {run.workdir}; the last good checkpoint (round {last}) is intact. "
                        "Lower the learning rate, or set fl.nonfinite=skip to drop such client "
                        "updates"
                    )
            if r == 0 or (r + 1) % config.eval.every_rounds == 0 or r + 1 == config.num_rounds:
                metrics.update(evaluate(state, eval_batches))
            metrics = fetch(metrics)
            seconds = round(time.time() - t0, 4)
            for i, (log, rows) in enumerate(zip(logs, all_rows, strict=True)):
                values = {k: (v[i] if batched else v) for k, v in metrics.items()}
                row = {"round": r + 1, **{k: _jsonable(v) for k, v in sorted(values.items())}}
                row["time/round_seconds"] = seconds
                log.write(json.dumps(row) + "\n")
                log.flush()
                os.fsync(log.fileno())
                rows.append(row)
            if (every and (r + 1) % every == 0) or r + 1 == config.num_rounds:
                for i, (run, ckpt) in enumerate(zip(runs, checkpointers, strict=True)):
                    one = jax.tree.map(lambda x, i=i: x[i], state) if batched else state
                    ckpt.save(r + 1, one, run.run_key)
            postfix = {"loss": f"{float(np.mean(losses)):.3f}"}
            if all_rows[0][-1].get("eval/accuracy") is not None:
                postfix["acc"] = f"{all_rows[0][-1]['eval/accuracy']:.3f}"
            bar.set_postfix(postfix)
    finally:
        bar.close()
        for log in logs:
            log.close()
        for ckpt in checkpointers:
            ckpt.close()
    return [
        _summarize(run, rows, start_round, compile_s, writer, train_start)
        for run, rows in zip(runs, all_rows, strict=True)
    ]


def _summarize(
    run: _Run, rows: list[dict], start_round: int, compile_s: float, writer: bool, train_start
):
    config, workdir = run.config, run.workdir
    if not rows:
        raise CheckpointError(f"{workdir}: no metrics rows to summarize")
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
        "resumed_at_round": start_round or None,
        # Its own build plus the (possibly shared) training: never the runs trained before it.
        "wall_seconds": round(run.build_seconds + time.time() - train_start, 2),
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
