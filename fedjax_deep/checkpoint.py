"""The one orbax wrapper: atomic checkpoints of everything a run needs to continue exactly.

A checkpoint at round ``r`` holds the :class:`~fedjax_deep.fl.ServerState` after ``r`` rounds:
server parameters, BatchNorm statistics, the server rule's optimizer state, the round counter, and
every piece of per-client state that persists across rounds (client optimizer states in centralized
mode, clients' own BatchNorm statistics under FedBN). The PRNG stream and the data sampler are pure
functions of the seed and the round (``fold_in(run_key, round)``; batch order and cohorts are drawn
from it on the device), so the round counter restores them exactly; the run key's raw data is saved
as well and checked on restore.

Writes are atomic (orbax writes a temporary directory and renames it), the last ``keep`` are kept,
and a failed write (full or read-only disk) never touches the checkpoints already there.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read (one line)."""


class Checkpointer:
    """Saves and restores ``{'state': ServerState, 'run_key': uint32 array}`` by round."""

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=False,  # a round is not done until its checkpoint is
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_round(self) -> int | None:
        return self._manager.latest_step()

    def all_rounds(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, round_: int, state, run_key: jax.Array) -> None:
        item = {"state": state, "run_key": jax.random.key_data(run_key)}
        try:
            self._manager.save(round_, args=ocp.args.StandardSave(item), force=True)
            self._manager.wait_until_finished()
        except Exception as e:  # orbax wraps OSError in several types
            raise CheckpointError(
                f"checkpoint of round {round_} could not be written under {self.directory} "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); the last good checkpoint "
                f"(round {self.latest_round()}) is intact"
            ) from None

    def restore(self, round_: int, state_template, run_key: jax.Array):
        """The state saved at ``round_``, shaped and placed like ``state_template``."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        item = {
            "state": abstract,
            "run_key": ocp.utils.to_shape_dtype_struct(jax.random.key_data(run_key)),
        }
        try:
            restored = self._manager.restore(round_, args=ocp.args.StandardRestore(item))
        except Exception as e:
            raise CheckpointError(
                f"checkpoint of round {round_} under {self.directory} cannot be read "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            ) from None
        if not np.array_equal(np.asarray(restored["run_key"]), jax.random.key_data(run_key)):
            raise CheckpointError(
                f"checkpoint under {self.directory} was written by a run with another seed"
            )
        return restored["state"]

    def close(self) -> None:
        self._manager.close()
