"""The run directory: the one owner of a run's files, its lock and its resume rules.

A run (one point of a sweep, or a config without a sweep) writes into its directory:

| file | what | written |
|---|---|---|
| ``config.json`` | the resolved config | atomically, before round 1 and at each resume |
| ``run_info.json`` | dataset, model size, layer order, ``S`` and ``B``, execution, compile time | the same |
| ``metrics.jsonl`` | one JSON object per round (non-finite values as ``null``) | appended, flushed and fsynced as each round ends |
| ``checkpoints/<round>/`` | the state, the run key and their SHA-256 digest (:mod:`fedjax_deep.checkpoint`) | atomically, every ``checkpoint.every_rounds`` |
| ``summary.json`` | final and first-round figures, wall time | atomically, at the end (removed when a resume trains more rounds) |
| ``stopped.json`` | the round and line of a stop on non-finite values (a sweep point stays stopped) | when it stops |
| ``resume_log.jsonl`` | each resume: the round, the harmless config changes, skipped checkpoints | appended |
| ``partition.json``, ``partition.png`` | client sizes and class histograms | before round 1 |
| ``tensorboard/`` | the same scalars as event files, when tensorboardX is installed | with each row |
| ``lock.json`` | the process holding the run (pid, host, start, command) | while it runs |

A sweep's directory holds its ``config.json`` (with the sweep), one such directory per point, and
the report. The file names and their readers (``read_run``, ``read_config``, re-exported here) are
:mod:`fedjax_deep.runfiles`'s, so that reading runs back needs neither JAX nor orbax.

The rules (each refusal is one line and exit code 2, before anything is written):

- **One process per directory**: a run holds an exclusive ``flock`` on its directory (and a sweep on
  its root) for its whole life, taken before any check (a new workdir is made empty to be locked,
  and removed if the run is refused); a second process is refused with the holder's pid, host and
  command.
  The lock is released by the kernel when the process dies, so a crash never leaves a stale lock.
- **One experiment per directory**: a single run is refused in a sweep's directory and a sweep in a
  single run's; a sweep is refused in another sweep's directory (other swept fields, or another
  base config). A sweep may add values to its own fields.
- **Resume verifies**: a directory with progress (rows or checkpoints) must hold a readable
  ``config.json`` and ``run_info.json``; only the fields in :data:`RESUME_HARMLESS` may change;
  ``metrics.jsonl`` must hold exactly rounds ``1..N`` of the checkpoint resumed (rows after it, and a
  last row cut by a crash, are dropped); a checkpoint whose digest fails, or a round folder without
  a whole checkpoint, is skipped for the newest intact one, and the skip is printed and logged;
  a ``checkpoints`` that is not a folder is refused before anything is touched; ``num_rounds`` may
  grow (the run is extended) but not drop below the rounds the run holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import pathlib
import shlex
import socket
import sys
import time
from typing import Any

import numpy as np

from fedjax_deep.checkpoint import saved_rounds
from fedjax_deep.errors import RunFault, WorkdirError
from fedjax_deep.runfiles import FILES, read_config, read_json, read_rows, read_run

__all__ = ["FILES", "RESUME_HARMLESS", "RunDir", "check_workdir_path", "config_changes",
           "config_json", "jsonable", "read_config", "read_run"]  # fmt: skip

# Fields a resumed run may change: they do not change what is computed (or only its float order).
RESUME_HARMLESS = (
    "num_rounds",
    "sweep_axis",
    "compile_cache",
    "fl.nonfinite",  # 'skip' only acts on rounds that 'stop' would have ended
    "eval.every_rounds",
    "eval.batch_size",
    "checkpoint.every_rounds",
    "checkpoint.keep",
    "fl.execution",
    "fl.chunk_size",
    "data.placement",
    "data.data_dir",
    "data.manual_dir",
    "log.tensorboard",
    "sweep",
    # They add metrics and leave the trajectory bit for bit (tests/test_forks.py): a resumed run
    # may fork at its new last round.
    "fl.averaging_penalty",
    "fl.fork_rounds",
    "fl.fork_last",
    "fl.fork_mix_clients",
)


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """Fields whose values differ between two configs' JSON: ``{field: (old, new)}``.

    A field the old config lacks because the library added it after that run was written is not
    a change when the new config leaves it at its default: the run behaved as the default does.
    """
    from fedjax_deep.config import FIELDS

    a, b = _flat(old), _flat(new)
    changes = {}
    for f in sorted(set(a) | set(b)):
        if a.get(f) == b.get(f):
            continue
        if f not in a and f in FIELDS and _same(b[f], FIELDS[f].default):
            continue
        changes[f] = (a.get(f), b.get(f))
    return changes


def _same(json_value: Any, default: Any) -> bool:
    """A config.json value equals a field's default (JSON turns tuples into lists)."""
    return json.loads(json.dumps(default, default=str)) == json_value


def jsonable(value: Any) -> Any:
    """A metric value as JSON: scalars and lists, non-finite floats as ``None``."""
    value = np.asarray(value)
    if value.ndim == 0:
        v = value.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    return [jsonable(v) for v in value]


def config_json(config) -> dict:
    """An ml_collections config as the dict ``config.json`` holds."""
    return json.loads(config.to_json_best_effort())


def check_workdir_path(workdir: str | os.PathLike) -> pathlib.Path:
    """The workdir as a path, or a :class:`WorkdirError` if it is empty, a file or not writable."""
    if not str(workdir).strip():
        raise WorkdirError("--workdir='': give a directory for the run, e.g. --workdir runs/x")
    workdir = pathlib.Path(workdir)
    check_name_lengths(workdir, "--workdir")
    existing = workdir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise WorkdirError(f"--workdir={str(workdir)!r}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f"--workdir={str(workdir)!r}: {existing} is not writable")
    return workdir


def check_name_lengths(path: pathlib.Path, what: str) -> None:
    """A :class:`WorkdirError` for a path component longer than the file system allows (255
    bytes on most): a directory that could never be made is bad input, not a fault mid-run."""
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise WorkdirError(
                f"{what}={str(path)[:80]!r}...: the name {part[:40]!r}... is "
                f"{len(os.fsencode(part))} bytes, more than the {NAME_MAX} a file system allows; "
                "use a shorter name"
            )


NAME_MAX = 255


class RunDir:
    """One run's (or a sweep root's) directory: its lock, its files, its resume checks.

    ``writer=False`` (processes other than 0 of a multi-host run) reads but never writes or locks.
    Use as a context manager, or call :meth:`close` to release the lock.
    """

    def __init__(self, path: str | os.PathLike, *, writer: bool = True, claim: bool = False):
        """``claim=True`` (a workdir given on the command line): a directory that does not exist
        yet is made empty and locked at once, before any check, so that no other process can
        start in it meanwhile; it is removed again if the run is refused before :meth:`create`."""
        self.path = pathlib.Path(path)
        self.writer = writer
        self._lock_fd: int | None = None
        self._metrics = None
        self._tensorboard = None
        self._made: list[pathlib.Path] = []  # directories made by the claim, deepest first
        self._created = False
        if writer and claim and not self.path.exists():
            missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
            try:
                self.path.mkdir(parents=True)
            except OSError as e:
                raise WorkdirError(f"--workdir={str(self.path)!r} cannot be created "
                                   f"({e.strerror or e}); pass another --workdir") from None  # fmt: skip
            self._made = missing
        if writer and self.path.is_dir():
            self._lock()  # lock what exists at once; a new directory is locked when created

    # -- lock ------------------------------------------------------------------------------------
    def _lock(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirError(
                f"{self.path} is in use by another run ({self._holder()}); wait for it to end or "
                "pass another --workdir"
            ) from None
        self._lock_fd = fd

    def _holder(self) -> str:
        try:
            h = json.loads((self.path / "lock.json").read_text())
            return f"pid {h['pid']} on {h['host']} since {h['started']}: {h['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that is still starting"

    def create(self) -> None:
        """Creates the directory (after validation passed), locks it and names the holder."""
        if not self.writer:
            return
        self._created = True
        self._write(lambda: self.path.mkdir(parents=True, exist_ok=True), self.path)
        if self._lock_fd is None:
            self._lock()
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": shlex.join(["fedjax-deep", *sys.argv[1:]])[:300],
        }
        self.write_json("lock.json", holder)

    def close(self) -> None:
        self.close_metrics()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                (self.path / "lock.json").unlink()
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        if not self._created:  # refused before anything was written: leave no trace
            for p in self._made:
                with contextlib.suppress(OSError):
                    p.rmdir()
        self._made = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading ---------------------------------------------------------------------------------
    def read_json(self, name: str, *, required: str = "") -> dict | None:
        """A JSON file of the run; None if absent, or a :class:`WorkdirError` saying why it is
        ``required`` (:func:`fedjax_deep.runfiles.read_json`)."""
        return read_json(self.path / name, required=required)

    def read_rows(self, *, allow_cut_last: bool = True) -> list[dict]:
        """``metrics.jsonl``'s rows (:func:`fedjax_deep.runfiles.read_rows`)."""
        return read_rows(self.path / "metrics.jsonl", allow_cut_last=allow_cut_last)

    def has_progress(self) -> bool:
        metrics = self.path / "metrics.jsonl"
        checkpoints = self.path / "checkpoints"
        return (metrics.exists() and metrics.stat().st_size > 0) or (
            checkpoints.is_dir() and any(checkpoints.iterdir())
        )

    # -- resume rules ----------------------------------------------------------------------------
    def check_kind(self, config: dict) -> None:
        """Refuses a single run in a sweep's directory, a sweep in a run's, or another sweep."""
        saved = self.read_json("config.json")
        if saved is None:
            return
        old_sweep, new_sweep = saved.get("sweep") or [], config.get("sweep") or []
        fix = "pass another --workdir"
        if old_sweep and not new_sweep:
            raise WorkdirError(f"{self.path} holds a sweep, not a single run; {fix}")
        if new_sweep and not old_sweep and self.has_progress():
            raise WorkdirError(f"{self.path} holds a single run, not a sweep; {fix}")
        if old_sweep and new_sweep:
            fields = [json.dumps(entry[0]) for entry in old_sweep]
            if fields != [json.dumps(entry[0]) for entry in new_sweep]:
                raise WorkdirError(
                    f"{self.path} holds another sweep (over {', '.join(fields)}); {fix}"
                )
            changed = [f for f in config_changes(saved, config) if f not in RESUME_HARMLESS]
            if changed:
                raise WorkdirError(f"{self.path} holds another sweep ({changed[0]} differs); {fix}")

    def check_compatible(self, config: dict) -> dict[str, tuple]:
        """The harmless changes a resume makes; a :class:`WorkdirError` for any other change, for
        run files a resume needs that are missing, unreadable or not what they should be, and for
        a ``num_rounds`` below the rounds the run already holds (a run is extended, never cut)."""
        checkpoints = self.path / "checkpoints"
        if checkpoints.exists() and not checkpoints.is_dir():
            raise WorkdirError(
                f"{checkpoints} is a file, not the run's checkpoint folder, so the run cannot be "
                "resumed; restore the folder, or pass another --workdir"
            )
        if not self.has_progress():
            return {}
        why = (
            "a resume cannot be checked against the run it continues; restore the file or pass "
            "another --workdir"
        )
        saved = self.read_json("config.json", required=why)
        self.read_json("run_info.json", required=why)
        changes = config_changes(saved, config)
        for field, (old, new) in changes.items():
            if field not in RESUME_HARMLESS:
                raise WorkdirError(
                    f"config.{field}={new!r} differs from the run being resumed in {self.path} "
                    f"({old!r}); that would change the experiment: pass another --workdir"
                )
        held = max(saved_rounds(checkpoints), default=0)
        summary = self.read_json("summary.json") or {}
        held_rounds = max(held, summary.get("rounds") or 0)
        wanted = config.get("num_rounds")
        if isinstance(wanted, int) and wanted < held_rounds:
            raise WorkdirError(
                f"config.num_rounds={wanted} is below the {held_rounds} rounds {self.path} already "
                f"holds; a run is extended, never cut: pass num_rounds >= {held_rounds}, or "
                "another --workdir"
            )
        self.check_rows(held)
        return changes

    def check_rows(self, checkpoint_round: int) -> list[dict]:
        """Rounds ``1..checkpoint_round`` of ``metrics.jsonl``; a :class:`WorkdirError` if any of
        them is missing (rows after it, left by a crash before its checkpoint, are allowed)."""
        kept = [r for r in self.read_rows() if r["round"] <= checkpoint_round]
        rounds = [r["round"] for r in kept]
        if rounds != list(range(1, checkpoint_round + 1)):
            path, fix = self.path / "metrics.jsonl", "restore the file, or pass another --workdir"
            twice = sorted({r for r in rounds if rounds.count(r) > 1})
            missing = sorted(set(range(1, checkpoint_round + 1)) - set(rounds))
            need = f"rounds 1..{checkpoint_round} of the checkpoint being resumed"
            if missing:
                what = (f"does not hold {need} ({_ranges(missing)} missing; it holds "
                        f"{_ranges(sorted(set(rounds)))})")  # fmt: skip
            elif twice:
                what = f"holds {_ranges(twice)} more than once ({need} are needed once each)"
            else:
                what = f"holds {need} out of order"
            raise WorkdirError(f"{path} {what}; {fix}")
        return kept

    def rows_for_resume(self, checkpoint_round: int) -> list[dict]:
        """Rounds ``1..checkpoint_round`` of ``metrics.jsonl``, rewritten without later rows; a
        :class:`WorkdirError` if any of them is missing."""
        kept = self.check_rows(checkpoint_round)
        path = self.path / "metrics.jsonl"
        # check_rows accepted every line but a cut last one: more lines than rows means rows to drop.
        if path.exists() and len(path.read_text().splitlines()) != len(kept):
            self.write_text("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    # -- writing ---------------------------------------------------------------------------------
    def _write(self, fn, path: pathlib.Path):
        try:
            return fn()
        except OSError as e:
            raise RunFault(
                f"{path} cannot be written ({e.strerror or type(e).__name__}); free space or fix "
                "permissions, then run the same command to resume"
            ) from None

    def write_text(self, name: str, text: str) -> None:
        """Writes a file atomically (a temporary file renamed over it)."""
        if not self.writer:
            return
        path = self.path / name
        tmp = path.with_name(path.name + ".tmp")

        def write():
            tmp.write_text(text)
            os.replace(tmp, path)

        try:
            self._write(write, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def remove(self, name: str) -> None:
        """Deletes a run file if present (a summary that an extended run no longer agrees with)."""
        if self.writer:
            self._write(lambda: (self.path / name).unlink(missing_ok=True), self.path / name)

    def write_json(self, name: str, value: dict) -> None:
        self.write_text(name, json.dumps(value, indent=2) + "\n")

    def append_jsonl(self, name: str, value: dict) -> None:
        if not self.writer:
            return
        path = self.path / name

        def append():
            with open(path, "a") as f:
                f.write(json.dumps(value) + "\n")

        self._write(append, path)

    def open_metrics(self, start_round: int, tensorboard: str = "auto") -> None:
        """Opens ``metrics.jsonl`` for appending, and TensorBoard event files (``'auto'``: when
        tensorboardX is installed), dropping any events after ``start_round``."""
        if not self.writer:
            return
        path = self.path / "metrics.jsonl"
        self._metrics = self._write(lambda: open(path, "a"), path)
        if tensorboard != "off":
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                if tensorboard == "on":
                    raise WorkdirError(
                        "config.log.tensorboard='on': tensorboardX is not installed; "
                        "pip install 'fedjax_deep[tensorboard]' or set it to auto"
                    ) from None
                return
            self._tensorboard = SummaryWriter(
                str(self.path / "tensorboard"), purge_step=start_round + 1, flush_secs=10
            )

    def write_row(self, row: dict) -> None:
        """Appends one round's row and makes it durable before the round counts as done."""
        if not self.writer:
            return
        path = self.path / "metrics.jsonl"

        def append():
            self._metrics.write(json.dumps(row) + "\n")
            self._metrics.flush()
            os.fsync(self._metrics.fileno())

        self._write(append, path)
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "round" and isinstance(value, int | float) and math.isfinite(value):
                    self._tensorboard.add_scalar(key, value, row["round"])

    def close_metrics(self) -> None:
        if self._metrics is not None:
            with contextlib.suppress(OSError):
                self._metrics.close()
            self._metrics = None
        if self._tensorboard is not None:
            with contextlib.suppress(Exception):
                self._tensorboard.close()
            self._tensorboard = None


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``'rounds 1..3, round 5'``."""
    if not values:
        return "no rows"
    runs = [[values[0], values[0]]]
    for v in values[1:]:
        if v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"round {a}" if a == b else f"rounds {a}..{b}" for a, b in runs)
