"""``run(config, workdir)``: the loop, read top to bottom.

:func:`run`: config -> sweep points -> run directories (lock, resume checks) -> data
(``experiment.prepare``; nothing is written until every point passed) -> one
:class:`~fedjax_deep.sweep.Member` per point -> the groups and batches that share one compiled
program (:mod:`fedjax_deep.sweep`, the one owner of the sweep axis) -> :func:`train` per batch.
:func:`train`: compile once (JAX's persistent cache, :mod:`fedjax_deep.compile_cache`: a rerun does
not compile again) -> restore -> run files -> loop: round, guard, eval, log, checkpoint ->
summaries. The run directory's files and rules belong to :mod:`fedjax_deep.runlog`. The sweep's
report is written by the caller (``fedjax-deep train`` does).

The sweep axis: the ``R`` members of a batch are stacked on a leading axis ``[R, ...]`` of the state
and one compiled round advances all of them (``jax.vmap`` on GPU/TPU; ``lax.map``, one member after
another inside the program, on CPU: ``config.sweep_axis``). Their hyper-parameters live in the state
(``optax.inject_hyperparams``, the algorithms' coefficients), so each member trains with its own.
Each member writes its own run directory and checkpoints; one that goes non-finite stops alone. A
run without a sweep is the ``R = 1`` case, with no member axis in its program
(:class:`_MemberAxis`), so that its numbers are those of the round itself, bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fedjax_deep import compile_cache
from fedjax_deep import experiment as experiment_lib
from fedjax_deep import sweep as sweep_lib
from fedjax_deep.checkpoint import Checkpointer, saved_rounds
from fedjax_deep.config import FIELDS
from fedjax_deep.errors import Interrupted, RunFault
from fedjax_deep.experiment import Experiment
from fedjax_deep.fl import stack_members, sweep_over_members
from fedjax_deep.fl.execution import available_memory_bytes, fetch
from fedjax_deep.fl.forks import averaging_penalty, fork_start
from fedjax_deep.fl.privacy import noise_multiplier_of
from fedjax_deep.runfiles import STOPPED, SUMMARY
from fedjax_deep.runlog import RunDir, check_workdir_path, config_json, jsonable
from fedjax_deep.sweep import Batch, Member

WIDTH = 80  # progress and group lines fit a terminal this wide


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
    compile_cache.enable(config.compile_cache)
    writer = is_writer()
    with contextlib.ExitStack() as stack:
        # -- run directories: locks and resume checks (nothing is written yet) -------------------
        root = stack.enter_context(RunDir(workdir, writer=writer, claim=True))
        root.check_kind(config_json(config))
        dirs, changes = [], []
        for point in points:
            d = root
            if point.name:
                # Point names are cut to a safe length (sweep.MAX_NAME), so only the workdir
                # itself can be too long (check_workdir_path).
                d = stack.enter_context(RunDir(sweep_lib.point_dir(workdir, point.name),
                                               writer=writer))  # fmt: skip
                d.check_kind(config_json(point.config))
            dirs.append(d)
            changes.append(d.check_compatible(config_json(point.config)))

        # -- data: every point loads and checks its data and memory before any file is written --
        cache: dict = {}
        members = []
        show = progress and writer and len(points) > 1
        with _Progress(
            "checking data", len(points), unit="point", enabled=show, leave=False
        ) as bar:
            for point, d, c in zip(points, dirs, changes, strict=True):
                prepared = experiment_lib.prepare(point.config, cache)
                members.append(Member(point.name, d, point.config, c, prepared))
                bar.update(len(members))
        root.create()
        if config.sweep:
            root.write_json("config.json", config_json(config))

        # -- the sweep axis: groups that share a program, in batches that fit in memory ----------
        device_cache: dict = {}  # client and test data shared by the members of a group

        def build(m: Member) -> Experiment:
            return experiment_lib.build(m.config, m.prepared, device_cache)

        summaries = {}
        groups = sweep_lib.sweep_groups(members)
        for i, group in enumerate(groups):
            if progress and writer and config.sweep:
                where = f"[{i + 1}/{len(groups)}] "
                names = [m.name for m in group]
                print(where + sweep_lib.describe(names, WIDTH - len(where)),
                      file=sys.stderr, flush=True)  # fmt: skip
            todo = _unfinished(group, summaries)
            for batch in sweep_lib.batches(todo, build, free_bytes=available_memory_bytes()):
                for m, result in zip(batch.members, train(batch, progress=progress), strict=True):
                    if isinstance(result, NumericError):
                        if not m.name:  # a run without a sweep: the error is the run's
                            raise result
                        result = {"status": "stopped", "error": str(result)}
                    summaries[m.name] = result
    return summaries if config.sweep else summaries[""]


def train(batch: Batch, *, progress: bool) -> list:
    """Trains a batch's members (one experiment, or several on a leading sweep axis: one compiled
    program) into their run directories: compile once, restore, then round, guard, eval, log,
    checkpoint.

    Returns per member its summary dict, or the :class:`NumericError` that stopped it alone (the
    other members go on)."""
    runs, dirs = batch.experiments, [m.run_dir for m in batch.members]
    config, writer = runs[0].config, dirs[0].writer
    axis = _MemberAxis(len(runs), batch.execution)
    progress = progress and writer

    # -- the round and the evaluation, compiled once ---------------------------------------------
    train_start = time.time()
    program, state = _compile(runs, axis)

    with _checkpointers(batch) as ckpts:
        # -- restore: the newest checkpoint every member holds intact, and its rows --------------
        start_round, states, skipped = _restore(ckpts, runs)
        if start_round:
            state = axis.stack(states)
        all_rows = [d.rows_for_resume(start_round) if writer else [] for d in dirs]
        for ckpt in ckpts:
            ckpt.discard_after(start_round)

        # -- run files: config, run info, partition, resume log; metrics opened to append --------
        _write_run_files(batch, axis, program, start_round, skipped)
        _announce(batch, axis, start_round, skipped, progress)

        # -- the loop: round, guard, eval, log, checkpoint ---------------------------------------
        stopped: list = [None] * axis.size  # per member, the NumericError that stopped it
        budget = _Budget(batch, axis, state)  # DP-FedAvg's accountant, per member
        desc = config.mode + f" x{axis.size}" * (axis.size > 1)
        bar = _Progress(desc, config.num_rounds, initial=start_round, enabled=progress)
        with _graceful_signals() as stop, bar:
            for r in range(start_round, config.num_rounds):
                for i in budget.exhausted_before(r, stopped):
                    stopped[i] = _BUDGET  # its rows and checkpoint end at round r
                    if r > start_round and not _due(r - 1, config.checkpoint.every_rounds,
                                                    config.num_rounds):  # fmt: skip
                        ckpts[i].save(r, axis.member(state, i), runs[i].run_key)
                if all(error is not None for error in stopped):
                    break
                t0 = time.time()
                try:
                    data, key = program.inputs(r)
                    forking = program.fork is not None and r + 1 in runs[0].fork_rounds
                    start = fork_start(state) if forking else None  # the round donates state
                    state, metrics, *client_models = program.round_step(state, data, key)
                    for i, error in _guard(r, state, metrics, program, batch, ckpts):
                        stopped[i] = stopped[i] or _stop(batch.members[i], r + 1, error)
                    live = [i for i, error in enumerate(stopped) if error is None]
                    if not live:
                        break
                    if r == 0 or _due(r, config.eval.every_rounds, config.num_rounds):
                        metrics.update(program.evaluate(state, program.eval_batches))
                        if program.evaluate_clients is not None:
                            metrics.update(
                                program.evaluate_clients(client_models[0], program.eval_batches)
                            )
                            metrics.update(averaging_penalty(metrics))
                    if forking:
                        metrics.update(program.fork(start, client_models[0], program.fork_data,
                                                    key, program.eval_batches["eval"]))  # fmt: skip
                    del client_models, start  # the [C, ...] models go before the next round
                    metrics = fetch(metrics)
                except KeyboardInterrupt:
                    raise _interrupted(stop.signum or signal.SIGINT, r, ckpts[0]) from None
                seconds = round(time.time() - t0, 4)
                for i in live:
                    values = {**axis.member(metrics, i), **budget.metrics(i, r + 1)}
                    row = _write_row(dirs[i], r, values, seconds, ckpts[i])
                    all_rows[i].append(row)
                if _due(r, config.checkpoint.every_rounds, config.num_rounds) or stop.signum:
                    for i in live:
                        ckpts[i].save(r + 1, axis.member(state, i), runs[i].run_key)
                if stop.signum:
                    raise _interrupted(stop.signum, r + 1, ckpts[0])
                bar.update(r + 1, _postfix(all_rows[live[0]][-1]))

    # -- summaries -------------------------------------------------------------------------------
    return [
        (error if error is not _BUDGET else None)
        or _summarize(run, d, rows, start_round, program, train_start, budget.summary(i, rows))
        for i, (error, run, d, rows) in enumerate(zip(stopped, runs, dirs, all_rows, strict=True))
    ]


def _due(r: int, every: int, num_rounds: int) -> bool:
    """Whether round ``r`` (0-based) ends a cadence of ``every`` rounds (0: never) or the run."""
    return bool(every and (r + 1) % every == 0) or r + 1 == num_rounds


def _stop(member: Member, round_: int, error: NumericError) -> NumericError:
    """Stops one member: its metrics file is closed and ``stopped.json`` says at which round and
    why (a resumed sweep leaves the point stopped); a sweep point says so on stderr (a run without
    a sweep raises the error once the batch returns)."""
    member.run_dir.close_metrics()
    member.run_dir.write_json(STOPPED, {"round": round_, "error": str(error)})
    if member.run_dir.writer and member.name:
        print(f"error: {error} (the other members go on)", file=sys.stderr, flush=True)
    return error


@contextlib.contextmanager
def _checkpointers(batch: Batch):
    """The members' run directories created and their checkpointers open; on the way out their
    metrics files and checkpointers closed."""
    for m in batch.members:
        m.run_dir.create()
    ckpts = [Checkpointer(m.run_dir.path / "checkpoints", keep=m.config.checkpoint.keep)
             for m in batch.members]  # fmt: skip
    try:
        yield ckpts
    except BaseException:
        # The error in flight is the one to report: orbax may fail again while closing after a
        # failed write (a full disk), which must not replace it.
        for ckpt in ckpts:
            with contextlib.suppress(Exception):
                ckpt.close()
        raise
    finally:
        for m in batch.members:
            m.run_dir.close_metrics()
    for ckpt in ckpts:
        ckpt.close()


# -- the member axis and the compiled program ----------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _MemberAxis:
    """The leading member axis of a batch: ``size`` members stacked ``[R, ...]`` and run by one
    program (``how``: ``'vmap'`` or ``'map'``), or, for ``R = 1`` (``how`` None), no axis at all:
    stacking one member is the member itself and the program is the round's own."""

    size: int
    how: str | None

    def stack(self, trees):
        return stack_members(trees) if self.how else trees[0]

    def member(self, tree, i: int):
        return jax.tree.map(lambda x: x[i], tree) if self.how else tree

    def over(self, fn: Callable, in_axes) -> Callable:
        return sweep_over_members(fn, self.how, in_axes) if self.how else fn


@dataclasses.dataclass(frozen=True)
class _Program:
    """A batch's compiled round and evaluation, what they take, and what compiling them cost."""

    round_step: Callable  # (state, data, key) -> (state, metrics); donates the state
    evaluate: Callable  # (state, eval_batches) -> metrics
    first_nonfinite: Callable  # params -> index of the first non-finite leaf (per member), or -1
    inputs: Callable[[int], tuple]  # round r -> (data, key)
    eval_batches: Any
    compile_seconds: float
    cache_hits: int
    # fedjax_deep.fl.forks (None when off): jitted, each compiled at its first use.
    evaluate_clients: Callable | None = None  # (client_models, eval_batches) -> metrics
    fork: Callable | None = None  # (start, client_models, fork_data, key, test batches) -> metrics
    fork_data: Any = None


def _compile(runs: tuple[Experiment, ...], axis: _MemberAxis) -> tuple[_Program, Any]:
    """One round and one evaluation compiled for all the members, and their stacked initial state
    (apart: a resumed batch drops it for the restored one). Client and test data the members
    share (same data, seed and partition) are passed once."""
    first = runs[0]
    shared_eval = all(run.eval_batches is first.eval_batches for run in runs)
    # One member takes its inputs as they come (host-side data, which always runs alone, is drawn
    # anew each round); members hold device-side data, which never changes between rounds: it is
    # stacked once and only the keys are per round.
    inputs, shared_data = first.round_inputs, True
    if axis.size > 1:
        data = [run.round_inputs(0)[0] for run in runs]
        shared_data = all(d is data[0] for d in data)
        data = data[0] if shared_data else axis.stack(data)

        def inputs(r):
            return data, axis.stack([run.round_inputs(r)[1] for run in runs])

    round_fn = axis.over(first.round_fn, (0, None if shared_data else 0, 0))
    evaluate_fn = axis.over(first.evaluate_fn, (0, None if shared_eval else 0))
    state = axis.stack([run.state for run in runs])
    eval_batches = (first.eval_batches if shared_eval
                    else axis.stack([run.eval_batches for run in runs]))  # fmt: skip
    start, hits = time.time(), compile_cache.hits()
    round_step = jax.jit(round_fn, donate_argnums=0).lower(state, *inputs(0)).compile()
    evaluate = jax.jit(evaluate_fn).lower(state, eval_batches).compile()
    evaluate_clients = fork = fork_data = None
    if first.evaluate_clients_fn is not None:
        evaluate_clients = jax.jit(
            axis.over(first.evaluate_clients_fn, (0, None if shared_eval else 0))
        )
    if first.fork_fn is not None:
        shared_fork = all(run.fork_data is first.fork_data for run in runs)
        fork_data = first.fork_data if shared_fork else axis.stack([r.fork_data for r in runs])
        fork = jax.jit(axis.over(
            first.fork_fn, (0, 0, None if shared_fork else 0, 0, None if shared_eval else 0)
        ))  # fmt: skip
    program = _Program(
        round_step, evaluate, jax.jit(axis.over(_first_nonfinite, 0)), inputs, eval_batches,
        time.time() - start, compile_cache.hits() - hits, evaluate_clients, fork, fork_data,
    )  # fmt: skip
    return program, state


def _first_nonfinite(params) -> int:
    """Index of the first parameter leaf with a non-finite value, -1 if none (jit-friendly)."""
    flags = jnp.stack([~jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])
    return jnp.where(jnp.any(flags), jnp.argmax(flags), -1)


# -- run directories: what is done, what is restored, what is written ----------------------------
def _unfinished(group: list[Member], summaries: dict) -> list[Member]:
    """The members still to train; a finished one (every round, its checkpoint and summary, and no
    config change) keeps its files as they are and its summary goes to ``summaries``. A sweep point
    that stopped on non-finite values (``stopped.json``) stays stopped, with one line, unless the
    resume changes ``fl.nonfinite``: it would stop at the same round again, and training it would
    take its group-mates back to its last checkpoint."""
    todo = []
    for m in group:
        stopped = m.run_dir.read_json(STOPPED) if m.name else None
        if stopped is not None and "fl.nonfinite" not in m.changes:
            summaries[m.name] = {"status": "stopped", "error": stopped.get("error"),
                                 "earlier": True}  # fmt: skip
            if m.run_dir.writer:
                print(f"{m.run_dir.path}: stopped at round {stopped.get('round')} on non-finite "
                      "values in an earlier run; left stopped (stopped.json says why; resume "
                      "with --config.fl.nonfinite=skip to retry it)", file=sys.stderr,
                      flush=True)  # fmt: skip
        elif not m.changes and _finished(m.run_dir, m.config):
            summaries[m.name] = m.run_dir.read_json("summary.json")
            if m.run_dir.writer:
                print(f"{m.run_dir.path}: already finished ({m.config.num_rounds} rounds)",
                      flush=True)  # fmt: skip
        else:
            todo.append(m)
    return todo


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


def _restore(ckpts: list[Checkpointer], runs):
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


def _write_run_files(batch: Batch, axis: _MemberAxis, program: _Program, start_round, skipped):
    """Each member's config, run info and partition; the resume log of a resumed or changed run;
    its metrics file opened to append after ``start_round``."""
    shared = [m.run_dir.path.name for m in batch.members]
    for m, run, skip in zip(batch.members, batch.experiments, skipped, strict=True):
        d = m.run_dir
        run.run_info.update(
            compile_seconds=round(program.compile_seconds, 3),
            compile_cache={"dir": compile_cache.directory(), "hits": program.cache_hits},
            sweep_axis={"members": axis.size, "execution": axis.how,
                        "shared": shared} if axis.size > 1 else None,
        )  # fmt: skip
        d.write_json("config.json", config_json(run.config))
        d.write_json("run_info.json", run.run_info)
        # A summary or a stop of an earlier run no longer holds for the rounds to come.
        if start_round < run.config.num_rounds:
            d.remove(SUMMARY)
        d.remove(STOPPED)
        if run.partition_stats is not None:
            d.write_json("partition.json", run.partition_stats)
            _plot_partition(run, d)
        if m.changes or skip:
            d.append_jsonl("resume_log.jsonl", {"resumed_at_round": start_round,
                                                "changes": m.changes, "skipped": skip})  # fmt: skip
        d.open_metrics(start_round, run.config.log.tensorboard)


def _announce(batch: Batch, axis: _MemberAxis, start_round, skipped, progress: bool) -> None:
    """What the batch is about to do, on stderr: how it runs, checkpoints skipped, the resume."""
    names = [m.name or m.run_dir.path.name or str(m.run_dir.path) for m in batch.members]
    label = sweep_lib.describe(names, WIDTH // 2)
    if progress:
        how = f"{axis.size} members on one sweep axis ({axis.how}); " if axis.size > 1 else ""
        execution = batch.experiments[0].run_info["execution"]
        text = textwrap.fill(f"{label}: {how}{execution}", WIDTH, subsequent_indent="    ")
        print(text, file=sys.stderr, flush=True)
    if batch.members[0].run_dir.writer:
        for line in sorted({s for skip in skipped for s in skip}):
            print(f"warning: {line}; skipped it", file=sys.stderr, flush=True)
    if progress and start_round:
        print(f"{label}: resuming after round {start_round}", file=sys.stderr, flush=True)


def _write_row(d: RunDir, r: int, values: dict, seconds: float, ckpt: Checkpointer) -> dict:
    """Round ``r``'s metrics as one row of ``d``'s ``metrics.jsonl`` (returned)."""
    row = {"round": r + 1, **{k: jsonable(v) for k, v in sorted(values.items())}}
    row["time/round_seconds"] = seconds
    try:
        d.write_row(row)
    except RunFault as e:
        raise RunFault(f"round {r + 1}: {e} ({ckpt.describe_latest()})") from None
    return row


def _plot_partition(run: Experiment, d: RunDir) -> None:
    from fedjax_deep.data import plot_partition

    try:
        plot_partition(run.partition_stats, d.path / "partition.png")
    except OSError as e:
        raise RunFault(f"{d.path / 'partition.png'} cannot be written ({e.strerror})") from None


def _summarize(
    run: Experiment, d: RunDir, rows, start_round, program: _Program, train_start, privacy=None
):
    config = run.config
    compile_s = program.compile_seconds
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
    if privacy is not None:
        summary["privacy"] = privacy
    for key in ("divergence/mean/relative", "divergence/mean/update", "divergence/mean/grad"):
        if rows and key in rows[0]:
            summary[f"first_round_{key}"] = rows[0][key]
            summary[f"final_{key}"] = rows[-1][key]
    if not d.writer:
        return summary
    d.write_json("summary.json", summary)
    acc, loss = summary["final_accuracy"], summary["final_loss"]
    # A loss that reports no accuracy (a language model's, a regression's) ends on its test loss.
    what = (
        f"test accuracy {acc:.4f}"
        if acc is not None
        else (f"test loss {loss:.4f}" if loss is not None else "no test evaluation")
    )
    print(
        f"{d.path}: {config.mode} {what}"
        + f" after {config.num_rounds} rounds ({summary['examples_seen']} examples, "
        f"{summary['wall_seconds']:.1f}s, compile {compile_s:.1f}s)",
        flush=True,
    )
    return summary


# -- the privacy budget: a member stops before the round that would exceed it ---------------------
_BUDGET = "privacy budget"  # stopped[i] of a member whose budget ran out: it still gets a summary


class _Budget:
    """The members' accountants (:class:`fedjax_deep.accounting.Plan`, host-side): epsilon after
    each round, a pure function of the round count and the noise multiplier that the state holds
    (so a resumed run reports the same numbers, and one resumed with more rounds keeps the noise it
    was calibrated with), and the budget check before each round."""

    def __init__(self, batch: Batch, axis: _MemberAxis, state):
        self.batch, self.plans = batch, [run.privacy for run in batch.experiments]
        self.z = [None] * axis.size
        z = noise_multiplier_of(state.rule_state)
        if z is not None:
            z = np.atleast_1d(fetch(z))
            self.z = [float(z[i]) if p is not None else None for i, p in enumerate(self.plans)]
        self.stopped_at = [None] * axis.size

    def has_noise(self, i: int) -> bool:
        return self.z[i] is not None

    def exhausted_before(self, r: int, stopped: list) -> list[int]:
        """The members still running whose budget round ``r + 1`` would exceed (one line each)."""
        out = []
        for i, plan in enumerate(self.plans):
            if stopped[i] is not None or not self.has_noise(i) or plan.allows(r + 1, self.z[i]):
                continue
            m = self.batch.members[i]
            eps = plan.epsilon(r + 1, self.z[i])
            if m.run_dir.writer:
                print(f"{m.run_dir.path}: privacy budget: round {r + 1} would bring epsilon to "
                      f"{eps:.4g} > privacy.target_epsilon={plan.budget:g} at delta "
                      f"{plan.delta:g}; stopped after round {r}", file=sys.stderr, flush=True)  # fmt: skip
            self.stopped_at[i] = r
            out.append(i)
        return out

    def metrics(self, i: int, rounds: int) -> dict:
        """``privacy/epsilon`` after ``rounds`` rounds ({} without DP: Poisson cohorts alone)."""
        return self.plans[i].metrics(rounds, self.z[i]) if self.has_noise(i) else {}

    def summary(self, i: int, rows) -> dict | None:
        if not self.has_noise(i):
            return None
        plan, done = self.plans[i], (rows[-1]["round"] if rows else 0)
        values = {k.split("/")[1]: jsonable(v) for k, v in plan.metrics(done, self.z[i]).items()}
        return {
            **values,  # epsilon (None when infinite) and, for Poisson cohorts, delta_overflow
            "rounds_accounted": done,
            **plan.describe(),
            "noise_multiplier": self.z[i],
            "stopped_by_budget_after_round": self.stopped_at[i],
        }


# -- the guard: non-finite members stop alone ----------------------------------------------------
def _guard(
    r, state, metrics, program: _Program, batch: Batch, ckpts
) -> list[tuple[int, Exception]]:
    """The members to stop, each with its :class:`NumericError`: non-finite parameters or loss
    (the last good checkpoint is kept), or every client of the round skipped under
    ``fl.nonfinite=skip``."""
    bad = np.atleast_1d(fetch(program.first_nonfinite(state.params)))
    losses = np.atleast_1d(fetch(metrics["train/loss"]))
    skipped = metrics.get("train/skipped_clients")
    size = len(batch.members)
    skipped = np.atleast_1d(fetch(skipped)) if skipped is not None else np.zeros(size)
    stopped = []
    for i, (m, run) in enumerate(zip(batch.members, batch.experiments, strict=True)):
        path = m.run_dir.path
        fix = (f"lower {_suspects(run.config)} in a new --workdir, or resume this one with "
               "--config.fl.nonfinite=skip to drop such client updates")  # fmt: skip
        if skipped[i] and skipped[i] >= run.run_info["cohort_size"]:
            stopped.append((i, NumericError(
                f"round {r + 1}: every client's update of {path} was non-finite and skipped, so "
                f"the model cannot move; {ckpts[i].describe_latest()}; lower "
                f"{_suspects(run.config)} in a new --workdir"
            )))  # fmt: skip
        elif bad[i] >= 0 or not math.isfinite(losses[i]):
            where = run.leaf_names[bad[i]] if bad[i] >= 0 else "the training loss"
            stopped.append((i, NumericError(
                f"round {r + 1}: non-finite values in {where} (train/loss {losses[i]}) of "
                f"{path}; {ckpts[i].describe_latest()}; {fix}"
            )))  # fmt: skip
    return stopped


# An algorithm's coefficient that scales a term of the client loss: raised far enough, it
# diverges like a learning rate does.
_COEFFICIENTS = {"fedprox": "algorithm.mu", "feddyn": "algorithm.alpha"}


def _suspects(config) -> str:
    """The fields to lower after a divergence: the algorithm's coefficient first when it was
    raised above its default, then the learning rate."""
    field = _COEFFICIENTS.get(config.algorithm.name)
    if field:
        value = config.algorithm[field.split(".")[1]]
        if value > FIELDS[field].default:
            return f"{field} ({value:g}) or client_opt.learning_rate"
    return "client_opt.learning_rate"


# -- signals: the first one ends the run after its round and checkpoint --------------------------
class _Stop:
    signum: int | None = None


@contextlib.contextmanager
def _graceful_signals():
    """The first Ctrl-C or SIGTERM ends the run after the current round and its checkpoint; a
    second one stops the process at once, even inside a long round.

    Python runs signal handlers only between bytecodes, so a handler cannot act while the main
    thread waits on a compiled round. The C-level handler also writes each signal's number to a
    wakeup pipe, which a watcher thread reads at once: on the second signal it prints one line and
    ends the process with exit code 128 + the signal (the checkpoints already written are whole;
    the round in flight is lost, and the same command resumes)."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, _frame):
        if stop.signum is None:
            stop.signum = signum
            print(f"\n{signal.Signals(signum).name}: finishing this round and its checkpoint "
                  "(again to stop at once)", file=sys.stderr, flush=True)  # fmt: skip

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_second_signal_watcher, args=(read_fd,), daemon=True)
    watcher.start()
    try:
        yield stop
    finally:
        signal.set_wakeup_fd(previous_fd)
        for s, h in previous.items():
            signal.signal(s, h)
        os.close(write_fd)  # the watcher reads end-of-file and returns
        watcher.join(timeout=5)
        os.close(read_fd)


def _second_signal_watcher(read_fd: int) -> None:
    """Counts SIGINT and SIGTERM as they arrive (the wakeup pipe's bytes); the second one ends the
    process at once with that signal's default action."""
    seen = 0
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum not in (signal.SIGINT, signal.SIGTERM):
                continue
            seen += 1
            if seen >= 2:
                name = signal.Signals(signum).name
                line = (
                    f"\nstopped: {name} again: stopped at once, the round in flight is lost; "
                    "the checkpoints written are whole; run the same command to resume\n"
                )
                # os.write, not print: the main thread may hold sys.stderr's lock.
                with contextlib.suppress(OSError):
                    os.write(2, line.encode())
                os._exit(128 + signum)


def _interrupted(signum: int, rounds_done: int, ckpt: Checkpointer) -> Interrupted:
    latest = ckpt.latest_round()
    saved = f"checkpointed through round {latest}" if latest else "no round was checkpointed"
    return Interrupted(
        f"{signal.Signals(signum).name}: stopped after round {rounds_done}, {saved}", signum
    )


# -- progress: a bar on a terminal, a few plain lines in a log -----------------------------------
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}"


class _Progress:
    """Progress on stderr for a person: on a terminal, a tqdm bar at most :data:`WIDTH` columns
    wide whose short description leaves room for the percentage, the count and the time left;
    otherwise (a redirected log) no frames, one plain line per tenth of the total."""

    def __init__(self, desc: str, total: int, *, initial: int = 0, unit: str = "round",
                 enabled: bool = True, leave: bool = True):  # fmt: skip
        self.desc, self.total, self.unit = desc[:16], total, unit
        self.initial, self.start, self.enabled = initial, time.time(), enabled and total > 0
        self.printed = initial * 10 // total if total else 0
        self.file, self.bar = sys.stderr, None
        if self.enabled and getattr(self.file, "isatty", lambda: False)():
            from tqdm import tqdm  # the runner's, not the library's: imported when a bar is shown

            width = min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
            self.bar = tqdm(total=total, initial=initial, desc=self.desc, unit=unit,
                            file=self.file, ncols=width, bar_format=BAR_FORMAT,
                            leave=leave)  # fmt: skip

    def update(self, n: int, postfix: str = "") -> None:
        """``n`` done of the total (absolute, not an increment)."""
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(n - self.bar.n)
        elif self.enabled and (n * 10 // self.total > self.printed or n == self.total):
            self.printed = n * 10 // self.total
            elapsed = time.time() - self.start
            left = elapsed / (n - self.initial) * (self.total - n) if n > self.initial else 0.0
            line = (f"{self.desc}: {self.unit} {n}/{self.total} ({100 * n // self.total}%), "
                    f"{_clock(elapsed)} elapsed, {_clock(left)} left")  # fmt: skip
            print(line + (f", {postfix}" if postfix else ""), file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _postfix(row: dict) -> str:
    loss = row.get("train/loss")
    out = f"loss={loss:.3f}" if loss is not None else "loss=nan"
    if row.get("eval/accuracy") is not None:
        out += f" acc={row['eval/accuracy']:.3f}"
    return out
