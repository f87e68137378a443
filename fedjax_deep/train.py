"""``run(config, workdir)``: the loop, read top to bottom.

config -> sweep points -> run directories (lock, resume checks) -> data (``experiment.prepare``,
nothing written until every point passed) -> groups of points that share one compiled program
(``sweep.sweep_groups``, the sweep axis) -> model, stacked state and round (``experiment.build``)
-> compile once (JAX's persistent cache: a rerun does not compile again) -> restore -> loop: round,
guard, eval, log, checkpoint -> summary. The run directory's files and rules belong to
:mod:`fedjax_deep.runlog`; sweeps to :mod:`fedjax_deep.sweep`. The sweep's report is written by the
caller (``fedjax-deep train`` does).

The sweep axis: the members of a group are stacked on a leading axis ``[R, ...]`` of the state and
one compiled round advances all of them (``jax.vmap`` on GPU/TPU; ``lax.map``, one member after
another inside the program, on CPU: ``config.sweep_axis``). Their hyper-parameters live in the state
(``optax.inject_hyperparams``, the algorithms' coefficients), so each member trains with its own.
Each member writes its own run directory and checkpoints; one that goes non-finite stops alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from fedjax_deep import experiment as experiment_lib
from fedjax_deep import sweep as sweep_lib
from fedjax_deep.checkpoint import Checkpointer, saved_rounds
from fedjax_deep.errors import Interrupted, RunFault
from fedjax_deep.experiment import Experiment
from fedjax_deep.fl import stack_members, sweep_over_members
from fedjax_deep.fl.execution import available_memory_bytes, fetch
from fedjax_deep.runlog import RunDir, check_workdir_path, config_json, jsonable


class NumericError(RunFault):
    """A round produced non-finite parameters or loss (one line, names round and layer)."""


def is_writer() -> bool:
    """Every process of a multi-host run computes; only process 0 writes files and progress."""
    return jax.process_index() == 0


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, progress: bool = True):
    """Runs an experiment (or every point of its sweep) into ``workdir``.

    Raises ``ConfigError``, ``DataError`` or ``WorkdirError`` before anything is written if the
    config, the data or the workdir is bad; ``RunFault`` or ``Interrupted`` mid-run.

    Returns:
      the summary dict (for a sweep: ``{point name: summary}``).
    """
    workdir = check_workdir_path(workdir)
    points = sweep_lib.expand(config)
    enable_compile_cache(config.compile_cache)
    writer = is_writer()
    with contextlib.ExitStack() as stack:
        # -- run directories: locks and resume checks (nothing is written yet) -------------------
        root = stack.enter_context(RunDir(workdir, writer=writer))
        root.check_kind(config_json(config))
        dirs, changes = [], []
        for point in points:
            d = root
            if point.name:
                d = stack.enter_context(RunDir(sweep_lib.point_dir(workdir, point.name),
                                               writer=writer))  # fmt: skip
                d.check_kind(config_json(point.config))
            dirs.append(d)
            changes.append(d.check_compatible(config_json(point.config)))
        # -- data: every point loads and checks its data and memory before any file is written --
        cache: dict = {}
        show = progress and writer and len(points) > 1
        prepared = [experiment_lib.prepare(point.config, cache)
                    for point in tqdm(points, desc="checking data and memory", unit="point",
                                      file=sys.stderr, disable=not show, leave=False)]  # fmt: skip
        device_cache: dict = {}  # client and test data shared by the members of a group
        root.create()
        if config.sweep:
            root.write_json("config.json", config_json(config))
        todo = {p.name: (p, d, c, prep) for p, d, c, prep in zip(points, dirs, changes, prepared,
                                                                   strict=True)}  # fmt: skip
        summaries = {}
        groups = sweep_lib.sweep_groups(points)
        for i, group in enumerate(groups):
            if progress and config.sweep and writer:
                names = [p.name for p in group]
                if len(names) > 3:
                    names = [f"{len(names)} points", names[0], "...", names[-1]]
                print(f"[{i + 1}/{len(groups)}] {', '.join(names)}", file=sys.stderr, flush=True)
            items = []
            for p in group:
                _, d, c, _ = todo[p.name]
                if not c and _finished(d, p.config):  # nothing to do: keep its files as they are
                    summaries[p.name] = d.read_json("summary.json")
                    if writer:
                        print(
                            f"{d.path}: already finished ({p.config.num_rounds} rounds)", flush=True
                        )
                else:
                    items.append(todo[p.name])
            for batch in _batches(items, device_cache):
                results = train([member for _, member in batch], progress=progress)
                for (name, _), result in zip(batch, results, strict=True):
                    if isinstance(result, NumericError):
                        if not config.sweep:
                            raise result
                        result = {"status": "stopped", "error": str(result)}
                    summaries[name] = result
        if not config.sweep:
            return next(iter(summaries.values()))
        return summaries


def train(members: list[tuple[Experiment, RunDir, dict]], *, progress: bool) -> list:
    """Trains one experiment, or several on a leading sweep axis (one compiled program), into
    their run directories: compile once, restore, then round, guard, eval, log, checkpoint.

    Returns per member its summary dict, or the :class:`NumericError` that stopped it alone (the
    other members go on)."""
    runs = [m[0] for m in members]
    dirs = [m[1] for m in members]
    num_members = len(runs)
    batched = num_members > 1
    first, config = runs[0], runs[0].config
    writer = dirs[0].writer
    progress = progress and writer
    how = _member_execution(config) if batched else None

    # -- the round and the evaluation, compiled once ---------------------------------------------
    # Client and test data the members share (same data, seed and partition) are passed once.
    data0 = runs[0].round_inputs(0)[0]
    shared_data = all(run.round_inputs(0)[0] is data0 for run in runs)
    shared_eval = all(run.eval_batches is first.eval_batches for run in runs)

    # Members hold their data on the device (host-side data runs alone): it never changes between
    # rounds, so it is stacked once; only the keys are per round.
    members_data = None
    if batched:
        members_data = data0 if shared_data else stack_members([r.round_inputs(0)[0] for r in runs])

    def inputs(r):
        if not batched:
            return first.round_inputs(r)
        return members_data, stack_members([run.round_inputs(r)[1] for run in runs])

    if batched:
        round_fn = sweep_over_members(first.round_fn, how, (0, None if shared_data else 0, 0))
        evaluate_fn = sweep_over_members(first.evaluate_fn, how, (0, None if shared_eval else 0))
        state = stack_members([run.state for run in runs])
        eval_batches = (first.eval_batches if shared_eval
                        else stack_members([run.eval_batches for run in runs]))  # fmt: skip
    else:
        round_fn, evaluate_fn = first.round_fn, first.evaluate_fn
        state, eval_batches = first.state, first.eval_batches
    train_start = time.time()
    hits_before = compile_cache_hits()
    round_step = jax.jit(round_fn, donate_argnums=0).lower(state, *inputs(0)).compile()
    evaluate = jax.jit(evaluate_fn).lower(state, eval_batches).compile()
    compile_s = time.time() - train_start
    cache_hits = compile_cache_hits() - hits_before
    first_nonfinite = jax.jit(jax.vmap(_first_nonfinite) if batched else _first_nonfinite)
    stack = stack_members if batched else (lambda trees: trees[0])

    # -- restore: the newest checkpoint every member holds intact, and its rows ------------------
    for d in dirs:
        d.create()
    ckpts = [Checkpointer(d.path / "checkpoints", keep=run.config.checkpoint.keep)
             for d, run in zip(dirs, runs, strict=True)]  # fmt: skip
    try:
        start_round, states, skipped = _restore(ckpts, runs)
        if start_round:
            state = stack(states)
        all_rows = [d.rows_for_resume(start_round) if writer else [] for d in dirs]
        for d, run, ckpt, skip, (_, _, changes) in zip(dirs, runs, ckpts, skipped, members,
                                                       strict=True):  # fmt: skip
            ckpt.discard_after(start_round)
            run.run_info.update(
                compile_seconds=round(compile_s, 3),
                compile_cache={"dir": _cache_dir(), "hits": cache_hits},
                sweep_axis={"members": num_members, "execution": how,
                            "shared": [d.path.name for d in dirs]} if batched else None,
            )  # fmt: skip
            d.write_json("config.json", config_json(run.config))
            d.write_json("run_info.json", run.run_info)
            if run.partition_stats is not None:
                d.write_json("partition.json", run.partition_stats)
                _plot_partition(run, d)
            if changes or skip:
                d.append_jsonl("resume_log.jsonl", {"resumed_at_round": start_round,
                                                    "changes": changes, "skipped": skip})  # fmt: skip
            d.open_metrics(start_round, config.log.tensorboard)
        names = ", ".join(d.path.name or str(d.path) for d in dirs)
        if progress:
            axis = f"{num_members} members on one sweep axis ({how}); " if batched else ""
            print(f"{names}: {axis}{first.run_info['execution']}", file=sys.stderr, flush=True)
        if writer:
            for line in sorted({s for skip in skipped for s in skip}):
                print(f"warning: {line}; skipped it", file=sys.stderr, flush=True)
        if progress and start_round:
            print(f"{names}: resuming after round {start_round}", file=sys.stderr, flush=True)

        # -- the loop ----------------------------------------------------------------------------
        every = config.checkpoint.every_rounds
        alive = [True] * num_members
        results: list = [None] * num_members
        unit = "member-round" if batched else "round"
        desc = f"{config.mode} {dirs[0].path.name}" + f" ({num_members} members)" * batched
        bar = tqdm(total=config.num_rounds * num_members, initial=start_round * num_members,
                   unit=unit, file=sys.stderr, disable=not progress, desc=desc)  # fmt: skip
        with _graceful_signals() as stop:
            for r in range(start_round, config.num_rounds):
                t0 = time.time()
                try:
                    state, metrics = round_step(state, *inputs(r))
                    for i, error in _guard(r, state, metrics, first_nonfinite, runs, dirs, ckpts):
                        if alive[i]:
                            alive[i], results[i] = False, error
                            dirs[i].close_metrics()
                            if batched and writer:
                                print(f"error: {error} (the other members go on)",
                                      file=sys.stderr, flush=True)  # fmt: skip
                    if not any(alive):
                        break
                    if (
                        r == 0
                        or (r + 1) % config.eval.every_rounds == 0
                        or r + 1 == config.num_rounds
                    ):
                        metrics.update(evaluate(state, eval_batches))
                    metrics = fetch(metrics)
                except KeyboardInterrupt:
                    raise _interrupted(stop.signum or signal.SIGINT, r, ckpts[0]) from None
                seconds = round(time.time() - t0, 4)
                for i, (d, rows) in enumerate(zip(dirs, all_rows, strict=True)):
                    if not alive[i]:
                        continue
                    values = {k: (v[i] if batched else v) for k, v in metrics.items()}
                    row = {"round": r + 1, **{k: jsonable(v) for k, v in sorted(values.items())}}
                    row["time/round_seconds"] = seconds
                    try:
                        d.write_row(row)
                    except RunFault as e:
                        raise RunFault(
                            f"round {r + 1}: {e} ({ckpts[i].describe_latest()})"
                        ) from None
                    rows.append(row)
                if (every and (r + 1) % every == 0) or r + 1 == config.num_rounds or stop.signum:
                    for i, (run, ckpt) in enumerate(zip(runs, ckpts, strict=True)):
                        if alive[i]:
                            one = jax.tree.map(lambda x, i=i: x[i], state) if batched else state
                            ckpt.save(r + 1, one, run.run_key)
                if stop.signum:
                    raise _interrupted(stop.signum, r + 1, ckpts[0])
                bar.update(sum(alive))
                live = next((rows for rows, a in zip(all_rows, alive, strict=True) if a), None)
                if live:
                    bar.set_postfix(_postfix(live[-1]))
        bar.close()
    except BaseException:
        # The error in flight is the one to report: orbax may fail again while closing after a
        # failed write (a full disk), which must not replace it.
        for ckpt in ckpts:
            with contextlib.suppress(Exception):
                ckpt.close()
        raise
    finally:
        for d in dirs:
            d.close_metrics()
    for ckpt in ckpts:
        ckpt.close()
    return [
        results[i]
        if not alive[i]
        else _summarize(run, d, rows, start_round, compile_s, train_start)
        for i, (run, d, rows) in enumerate(zip(runs, dirs, all_rows, strict=True))
    ]


def _finished(d: RunDir, config) -> bool:
    """A run that already holds every round: its checkpoint, rows and summary."""
    summary = d.read_json("summary.json")
    rounds = saved_rounds(d.path / "checkpoints")
    return (
        summary is not None
        and summary.get("rounds") == config.num_rounds
        and bool(rounds)
        and max(rounds) == config.num_rounds
    )


def _batches(items, device_cache: dict):
    """A group's members in the batches that train together: those whose state shapes agree share
    one program (``config.sweep_axis``), else one at a time, each built only when its turn comes
    (its memory, its wall clock). Members with a mesh or host-side data always run alone."""
    if len(items) < 2 or items[0][0].config.sweep_axis == "off":
        for p, d, c, prep in items:
            yield [(p.name, (experiment_lib.build(p.config, prep, device_cache), d, c))]
        return
    # At most as many members as fit in memory are built at once; among them, those whose state
    # shapes agree share a program.
    need = max(prep.memory["total"] for *_, prep in items)
    size = _members_that_fit(len(items), need)
    for start in range(0, len(items), size):
        batches: dict[str, list] = {}
        for p, d, c, prep in items[start : start + size]:
            run = experiment_lib.build(p.config, prep, device_cache)
            key = _signature(run) if run.mesh is None and not run.on_host else f"alone {p.name}"
            batches.setdefault(key, []).append((p.name, (run, d, c)))
        yield from batches.values()


def _members_that_fit(count: int, need_per_member: int) -> int:
    """How many members of a group one program may hold: each member's estimated need
    (``experiment.estimate_memory``: under ``vmap`` everything is per member; under ``lax.map``
    that bounds it from above) against the memory available; the rest run in further programs of
    the same shape (the compilation cache loads them)."""
    free = available_memory_bytes()
    if free is None or need_per_member <= 0:
        return count
    return max(1, min(count, int(free * 0.8) // need_per_member))


def _member_execution(config) -> str:
    """How the members of a sweep axis run: ``vmap`` (one batched program: GPU/TPU, or
    ``sweep_axis=on``) or ``map`` (``lax.map``: one member after another inside the program, on
    CPU, where a batched program was not faster: scripts/bench_sweep.py)."""
    if config.sweep_axis == "on" or jax.default_backend() != "cpu":
        return "vmap"
    return "map"


def _signature(run: Experiment) -> str:
    """Shapes, dtypes and structure of everything the compiled round and evaluation take, and the
    cadences of the loop: members that agree on it can share one program."""
    data, key = run.round_inputs(0)
    tree = (run.state, data, key, run.eval_batches)
    shapes = jax.tree.map(lambda x: (x.shape, str(x.dtype)), tree)
    c = run.config
    cadence = (c.num_rounds, c.eval.every_rounds, c.checkpoint.every_rounds)
    return f"{jax.tree.structure(tree)} {jax.tree.leaves(shapes)} {cadence}"


def _cache_dir() -> str | None:
    return jax.config.jax_compilation_cache_dir if jax.config.jax_enable_compilation_cache else None


def enable_compile_cache(setting: str) -> str | None:
    """Turns JAX's persistent compilation cache on (``config.compile_cache``): ``auto`` uses a
    per-user directory ($FEDJAX_DEEP_COMPILE_CACHE, else $XDG_CACHE_HOME or ~/.cache, then
    fedjax_deep/jax) unless JAX already has one; ``off`` turns it off; anything else is the
    directory. Returns the directory in use (None: off). Programs that compiled in under a second
    are not cached (JAX's ``jax_persistent_cache_min_compile_time_secs``)."""
    from jax.experimental.compilation_cache import compilation_cache

    if setting == "off":
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if setting == "auto":
        path = jax.config.jax_compilation_cache_dir or os.environ.get("FEDJAX_DEEP_COMPILE_CACHE")
        if not path:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
                os.path.expanduser("~"), ".cache"
            )
            path = os.path.join(base, "fedjax_deep", "jax")
    else:
        path = os.path.expanduser(setting)
    jax.config.update("jax_enable_compilation_cache", True)
    if path != jax.config.jax_compilation_cache_dir:
        compilation_cache.reset_cache()  # the cache is opened once per process: reopen it here
        compilation_cache.set_cache_dir(path)
    return path


_CACHE_HITS = [0]


def _count_hits(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _CACHE_HITS[0] += 1


jax.monitoring.register_event_listener(_count_hits)


def compile_cache_hits() -> int:
    """Programs this process loaded from the persistent compilation cache so far."""
    return _CACHE_HITS[0]


def _restore(ckpts: list[Checkpointer], runs: list[Experiment]):
    """The newest round at which every member holds an intact checkpoint, their states, and per
    member the lines of the newer checkpoints skipped (unreadable, or failing their digest)."""
    target = min((c.latest_round() or 0) for c in ckpts)
    skipped = [[] for _ in ckpts]
    while True:
        found = []
        for i, (ckpt, run) in enumerate(zip(ckpts, runs, strict=True)):
            round_, state, skip = ckpt.restore_latest(run.state, run.run_key, at_most=target)
            skipped[i] += [s for s in skip if s not in skipped[i]]
            found.append((round_, state))
        rounds = {r for r, _ in found}
        if len(rounds) == 1:
            round_ = rounds.pop()
            return round_, [s for _, s in found], skipped
        target = min(rounds)


def _first_nonfinite(params) -> int:
    """Index of the first parameter leaf with a non-finite value, -1 if none (jit-friendly)."""
    flags = jnp.stack([~jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])
    return jnp.where(jnp.any(flags), jnp.argmax(flags), -1)


def _guard(r, state, metrics, first_nonfinite, runs, dirs, ckpts) -> list[tuple[int, Exception]]:
    """The members to stop, each with its :class:`NumericError`: non-finite parameters or loss
    (the last good checkpoint is kept), or every client of the round skipped under
    ``fl.nonfinite=skip``."""
    bad = np.atleast_1d(fetch(first_nonfinite(state.params)))
    losses = np.atleast_1d(fetch(metrics["train/loss"]))
    skipped = metrics.get("train/skipped_clients")
    skipped = np.atleast_1d(fetch(skipped)) if skipped is not None else np.zeros(len(runs))
    fix = ("lower client_opt.learning_rate in a new --workdir, or resume this one with "
           "--config.fl.nonfinite=skip to drop such client updates")  # fmt: skip
    stopped = []
    for i, (run, d) in enumerate(zip(runs, dirs, strict=True)):
        if skipped[i] and skipped[i] >= run.run_info["cohort_size"]:
            stopped.append((i, NumericError(
                f"round {r + 1}: every client's update of {d.path} was non-finite and skipped, so "
                f"the model cannot move; {ckpts[i].describe_latest()}; lower "
                "client_opt.learning_rate in a new --workdir"
            )))  # fmt: skip
        elif bad[i] >= 0 or not math.isfinite(losses[i]):
            where = run.leaf_names[bad[i]] if bad[i] >= 0 else "the training loss"
            stopped.append((i, NumericError(
                f"round {r + 1}: non-finite values in {where} (train/loss {losses[i]}) of "
                f"{d.path}; {ckpts[i].describe_latest()}; {fix}"
            )))  # fmt: skip
    return stopped


class _Stop:
    signum: int | None = None


@contextlib.contextmanager
def _graceful_signals():
    """The first Ctrl-C or SIGTERM ends the run after the current round and its checkpoint; a
    second one interrupts the round at once."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, _frame):
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.signum = signum
        print(f"\n{signal.Signals(signum).name}: finishing this round and its checkpoint "
              "(again to stop at once)", file=sys.stderr, flush=True)  # fmt: skip

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _interrupted(signum: int, rounds_done: int, ckpt: Checkpointer) -> Interrupted:
    latest = ckpt.latest_round()
    saved = f"checkpointed through round {latest}" if latest else "no round was checkpointed"
    return Interrupted(
        f"{signal.Signals(signum).name}: stopped after round {rounds_done}, {saved}", signum
    )


def _postfix(row: dict) -> dict:
    out = {"loss": f"{row['train/loss']:.3f}" if row.get("train/loss") is not None else "nan"}
    if row.get("eval/accuracy") is not None:
        out["acc"] = f"{row['eval/accuracy']:.3f}"
    return out


def _plot_partition(run: Experiment, d: RunDir) -> None:
    from fedjax_deep.data import plot_partition

    try:
        plot_partition(run.partition_stats, d.path / "partition.png")
    except OSError as e:
        raise RunFault(f"{d.path / 'partition.png'} cannot be written ({e.strerror})") from None


def _summarize(run: Experiment, d: RunDir, rows, start_round, compile_s, train_start) -> dict:
    config = run.config
    summary = {
        "mode": config.mode,
        "rounds": config.num_rounds,
        "final_accuracy": rows[-1].get("eval/accuracy") if rows else None,
        "final_loss": rows[-1].get("eval/loss") if rows else None,
        "final_val_accuracy": rows[-1].get("val/accuracy") if rows else None,
        "final_train_loss": rows[-1].get("train/loss") if rows else None,
        "first_round_accuracy": next(
            (row["eval/accuracy"] for row in rows if "eval/accuracy" in row), None
        ),
        "examples_seen": int(sum(row["train/num_examples"] for row in rows)),
        "resumed_at_round": start_round or None,
        # Its own build plus the (possibly shared) training: never the runs trained before it.
        "wall_seconds": round(run.build_seconds + time.time() - train_start, 2),
        "compile_seconds": round(compile_s, 3),
    }
    for key in ("divergence/mean/relative", "divergence/mean/update", "divergence/mean/grad"):
        if rows and key in rows[0]:
            summary[f"first_round_{key}"] = rows[0][key]
            summary[f"final_{key}"] = rows[-1][key]
    if not d.writer:
        return summary
    d.write_json("summary.json", summary)
    acc = summary["final_accuracy"]
    print(
        f"{d.path}: {config.mode} test accuracy "
        + (f"{acc:.4f}" if acc is not None else "nan")
        + f" after {config.num_rounds} rounds ({summary['examples_seen']} examples, "
        f"{summary['wall_seconds']:.1f}s, compile {compile_s:.1f}s)",
        flush=True,
    )
    return summary
