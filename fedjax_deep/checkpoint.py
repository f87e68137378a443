"""The one orbax wrapper: atomic, self-checking checkpoints of everything a run needs to continue.

A checkpoint at round ``r`` holds the :class:`~fedjax_deep.fl.state.SimState` after ``r`` rounds
(server parameters, BatchNorm statistics, the server rule's optimizer state, the round counter and
every piece of per-client state that persists across rounds), the run key, and a SHA-256 digest of
all of it. The PRNG stream and the data sampler are pure functions of the seed and the round
(``fold_in(run_key, round)``), so the round counter restores them exactly.

Writes are atomic (orbax writes a temporary directory and renames it), the last ``keep`` are kept,
and a failed write (full or read-only disk) never touches the checkpoints already there. Restoring
recomputes the digest: a checkpoint that cannot be read or whose bytes changed is skipped in favour
of the newest intact one, and the caller is told which (:meth:`Checkpointer.restore_latest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

from fedjax_deep.errors import RunFault


class CheckpointError(RunFault):
    """A checkpoint could not be written or read (one line)."""


class SeedMismatchError(CheckpointError):
    """The checkpoint belongs to a run with another seed: refused, never skipped."""


def state_digest(tree) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes (gathered to the host)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            leaf = multihost_utils.process_allgather(leaf, tiled=True)
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax and asyncio log whole tracebacks on a failed write; our one line says it all."""
    loggers = [logging.getLogger(n) for n in ("absl", "orbax", "asyncio", "jax")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _reason(e: BaseException) -> str:
    """The innermost cause's one line: orbax wraps an OSError in several types."""
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    text = (str(e).splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {text}"


def _round_folders(directory: str | pathlib.Path) -> list[pathlib.Path]:
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.name.isdigit() and p.is_dir()),
                  key=lambda p: int(p.name))  # fmt: skip


def _complete(folder: pathlib.Path) -> bool:
    """Orbax renames a checkpoint's temporary folder to its round once both items are in it; a
    round folder without them (empty, say) is what a crash or a hand can leave."""
    return (folder / "state").is_dir() and (folder / "digest").is_dir()


def saved_rounds(directory: str | pathlib.Path) -> list[int]:
    """Rounds with a complete checkpoint under ``directory``, read from the folders alone (no
    digest check: :meth:`Checkpointer.restore_latest` does that)."""
    return [int(p.name) for p in _round_folders(directory) if _complete(p)]


def incomplete_rounds(directory: str | pathlib.Path) -> list[int]:
    """Round folders under ``directory`` that do not hold a whole checkpoint (a stray ``5/``)."""
    return [int(p.name) for p in _round_folders(directory) if not _complete(p)]


class Checkpointer:
    """Saves and restores ``{'state': SimState, 'run_key': uint32 array}`` by round."""

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=False,  # a round is not done until its checkpoint is
        )
        with _quiet_orbax():
            self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_round(self) -> int | None:
        return self._manager.latest_step()

    def all_rounds(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def describe_latest(self) -> str:
        """'the last good checkpoint (round 7) is intact' or 'no checkpoint was written yet'."""
        latest = self.latest_round()
        if latest is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (round {latest}) is intact"

    def save(self, round_: int, state, run_key: jax.Array) -> None:
        item = {"state": state, "run_key": jax.random.key_data(run_key)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(item),
            digest=ocp.args.JsonSave({"sha256": state_digest(item), "round": round_}),
        )
        try:
            with _quiet_orbax():
                self._manager.save(round_, args=args, force=True)
                self._manager.wait_until_finished()
        except Exception as e:
            raise CheckpointError(
                f"checkpoint of round {round_} could not be written under {self.directory} "
                f"({_reason(e)}); {self.describe_latest()}"
            ) from None

    def restore(self, round_: int, state_template, run_key: jax.Array):
        """The state saved at ``round_``, shaped and placed like ``state_template``, after its
        digest was checked. Raises :class:`CheckpointError`."""
        template = {"state": state_template, "run_key": jax.random.key_data(run_key)}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), digest=ocp.args.JsonRestore()
        )
        try:
            with _quiet_orbax():
                restored = self._manager.restore(round_, args=args)
        except Exception as e:
            raise CheckpointError(
                f"checkpoint of round {round_} under {self.directory} cannot be read ({_reason(e)})"
            ) from None
        saved = (restored["digest"] or {}).get("sha256")
        if saved != state_digest(restored["state"]):
            raise CheckpointError(
                f"checkpoint of round {round_} under {self.directory} fails its digest check "
                "(its bytes changed since it was written)"
            )
        if not np.array_equal(np.asarray(restored["state"]["run_key"]), template["run_key"]):
            raise SeedMismatchError(
                f"checkpoint under {self.directory} was written by a run with another seed"
            )
        return restored["state"]["state"]

    def restore_latest(self, state_template, run_key: jax.Array, *, at_most: int | None = None):
        """The newest intact checkpoint (at most round ``at_most``).

        Returns:
          ``(round, state, skipped)``: ``round`` 0 and the template when none is intact;
          ``skipped`` lists one line per newer checkpoint that failed to read or to verify.
        """
        skipped = []
        incomplete = set(incomplete_rounds(self.directory))
        for round_ in sorted(set(self.all_rounds()) | incomplete, reverse=True):
            if at_most is not None and round_ > at_most:
                continue
            if round_ in incomplete:
                skipped.append(f"checkpoint folder {self.directory / str(round_)} is incomplete "
                               "(what a crash during a write leaves)")  # fmt: skip
                continue
            try:
                return round_, self.restore(round_, state_template, run_key), skipped
            except SeedMismatchError:
                raise
            except CheckpointError as e:
                skipped.append(str(e))
        return 0, state_template, skipped

    def discard_after(self, round_: int) -> None:
        """Deletes the checkpoints after ``round_`` (ones that failed to verify, and incomplete
        round folders): the resumed run writes those rounds again."""
        incomplete = incomplete_rounds(self.directory)
        for step in self.all_rounds():
            if step > round_ and step not in incomplete:
                with _quiet_orbax():
                    self._manager.delete(step)
        for step in incomplete:  # not orbax's to delete: it may not list them
            if step > round_:
                shutil.rmtree(self.directory / str(step), ignore_errors=True)
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()
