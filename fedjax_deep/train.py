"""``run(config, workdir)``: the loop, read top to bottom.

config -> sweep points -> run directories (lock, resume checks) -> data (``experiment.prepare``,
nothing written until every point passed) -> model, stacked state and round
(``experiment.build``) -> compile once -> restore -> loop: round, guard, eval, log, checkpoint ->
summary. The run directory's files and rules belong to :mod:`fedjax_deep.runlog`; sweeps to
:mod:`fedjax_deep.sweep`. The sweep's report is written by the caller (``fedjax-deep train`` does).
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
from fedjax_deep.fl import make_seeded_round, stack_seeds
from fedjax_deep.fl.execution import fetch
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
        prepared = [experiment_lib.prepare(point.config, cache) for point in points]
        root.create()
        if config.sweep:
            root.write_json("config.json", config_json(config))
        todo = {p.name: (p, d, c, prep) for p, d, c, prep in zip(points, dirs, changes, prepared,
                                                                   strict=True)}  # fmt: skip
        summaries = {}
        for i, group in enumerate(sweep_lib.seed_groups(points)):
            if progress and config.sweep and writer:
                names = ", ".join(p.name for p in group)
                print(f"[{i + 1}] {names}", file=sys.stderr, flush=True)
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
            for batch in _batches(items):
                results = train([member for _, member in batch], progress=progress)
                summaries.update(zip([name for name, _ in batch], results, strict=True))
        if not config.sweep:
            return next(iter(summaries.values()))
        return summaries


def train(members: list[tuple[Experiment, RunDir, dict]], *, progress: bool) -> list[dict]:
    """Trains one experiment, or several seeds together on a leading seed axis, into their run
    directories: compile once, restore, then round, guard, eval, log, checkpoint."""
    runs = [m[0] for m in members]
    dirs = [m[1] for m in members]
    batched = len(runs) > 1
    stack = stack_seeds if batched else (lambda trees: trees[0])
    first, config = runs[0], runs[0].config
    writer = dirs[0].writer
    progress = progress and writer

    # -- the round and the evaluation, compiled once ---------------------------------------------
    def inputs(r):
        pairs = [run.round_inputs(r) for run in runs]
        return stack([p[0] for p in pairs]), stack([p[1] for p in pairs])

    round_fn = make_seeded_round(first.round_fn) if batched else first.round_fn
    evaluate_fn = jax.vmap(first.evaluate_fn) if batched else first.evaluate_fn
    state = stack([run.state for run in runs])
    eval_batches = stack([run.eval_batches for run in runs])
    train_start = time.time()
    round_step = jax.jit(round_fn, donate_argnums=0).lower(state, *inputs(0)).compile()
    evaluate = jax.jit(evaluate_fn).lower(state, eval_batches).compile()
    compile_s = time.time() - train_start
    first_nonfinite = jax.jit(jax.vmap(_first_nonfinite) if batched else _first_nonfinite)

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
            run.run_info.update(compile_seconds=round(compile_s, 3),
                                seed_axis=len(runs) if batched else None)  # fmt: skip
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
            how = f"{len(runs)} seeds on one seed axis; " if batched else ""
            print(f"{names}: {how}{first.run_info['execution']}", file=sys.stderr, flush=True)
        if writer:
            for line in sorted({s for skip in skipped for s in skip}):
                print(f"warning: {line}; skipped it", file=sys.stderr, flush=True)
        if progress and start_round:
            print(f"{names}: resuming after round {start_round}", file=sys.stderr, flush=True)

        # -- the loop ----------------------------------------------------------------------------
        every = config.checkpoint.every_rounds
        bar = tqdm(range(start_round, config.num_rounds), initial=start_round,
                   total=config.num_rounds, unit="round", file=sys.stderr, disable=not progress,
                   desc=f"{config.mode} {dirs[0].path.name}" + f" (+{len(runs) - 1} seeds)" * batched)  # fmt: skip
        with _graceful_signals() as stop:
            for r in bar:
                t0 = time.time()
                try:
                    state, metrics = round_step(state, *inputs(r))
                    _guard(r, state, metrics, first_nonfinite, runs, dirs, ckpts, batched)
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
                        one = jax.tree.map(lambda x, i=i: x[i], state) if batched else state
                        ckpt.save(r + 1, one, run.run_key)
                if stop.signum:
                    raise _interrupted(stop.signum, r + 1, ckpts[0])
                if all_rows[0]:
                    bar.set_postfix(_postfix(all_rows[0][-1]))
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
    return [_summarize(run, d, rows, start_round, compile_s, train_start)
            for run, d, rows in zip(runs, dirs, all_rows, strict=True)]  # fmt: skip


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


def _batches(items):
    """A group's members in the batches that train together: all of them on one seed axis when
    it is wanted and their shapes agree, else one at a time, each built only when its turn comes
    (its memory, its wall clock)."""
    if _seed_axis_wanted([p.config for p, *_ in items]):
        built = [(p.name, (experiment_lib.build(p.config, prep), d, c)) for p, d, c, prep in items]
        if _seed_axis_ok([member[0] for _, member in built]):
            yield built
        else:
            yield from ([b] for b in built)
        return
    for p, d, c, prep in items:
        yield [(p.name, (experiment_lib.build(p.config, prep), d, c))]


def _seed_axis_wanted(configs) -> bool:
    """Whether a seed group should try one compiled program (``fl.seed_axis`` and the backend)."""
    if len(configs) < 2:
        return False
    setting = configs[0].fl.seed_axis
    return setting == "on" or (setting == "auto" and jax.default_backend() != "cpu")


def _seed_axis_ok(runs: list[Experiment]) -> bool:
    """Seeds share one compiled program when shapes agree, no mesh or host copies are involved,
    and the cadences match (``fl.seed_axis``: 'auto' = on GPU/TPU, where a wider program fills the
    device; off on CPU, where vmap over clients was slower than one client at a time in
    scripts/bench_clients.py; seeds themselves were not benchmarked)."""
    if any(r.mesh is not None or r.on_host for r in runs):
        return False
    cadence = {
        (r.config.num_rounds, r.config.eval.every_rounds, r.config.checkpoint.every_rounds)
        for r in runs
    }

    def signature(run):
        data, key = run.round_inputs(0)
        tree = (run.state, data, key, run.eval_batches)
        return str(jax.tree.map(lambda x: (x.shape, str(x.dtype)), tree)), jax.tree.structure(tree)

    return len(cadence) == 1 and len({str(signature(r)) for r in runs}) == 1


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


def _guard(r, state, metrics, first_nonfinite, runs, dirs, ckpts, batched) -> None:
    """Stops the run (keeping the last good checkpoint) on non-finite parameters or loss, or when
    ``fl.nonfinite=skip`` had to skip every client of the round."""
    bad = np.atleast_1d(fetch(first_nonfinite(state.params)))
    losses = np.atleast_1d(fetch(metrics["train/loss"]))
    skipped = metrics.get("train/skipped_clients")
    skipped = np.atleast_1d(fetch(skipped)) if skipped is not None else np.zeros(len(runs))
    fix = ("lower client_opt.learning_rate in a new --workdir, or resume this one with "
           "--config.fl.nonfinite=skip to drop such client updates")  # fmt: skip
    for i, (run, d) in enumerate(zip(runs, dirs, strict=True)):
        if skipped[i] and skipped[i] >= run.run_info["cohort_size"]:
            raise NumericError(
                f"round {r + 1}: every client's update of {d.path} was non-finite and skipped, so "
                f"the model cannot move; {ckpts[i].describe_latest()}; lower "
                "client_opt.learning_rate in a new --workdir"
            )
        if bad[i] >= 0 or not math.isfinite(losses[i]):
            where = run.leaf_names[bad[i]] if bad[i] >= 0 else "the training loss"
            raise NumericError(
                f"round {r + 1}: non-finite values in {where} (train/loss {losses[i]}) of "
                f"{d.path}; {ckpts[i].describe_latest()}; {fix}"
            )


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
