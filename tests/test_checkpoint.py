"""Checkpoints verify their digest on restore and fall back to the newest intact one."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_deep import cli
from fedjax_deep.checkpoint import (
    Checkpointer,
    CheckpointError,
    incomplete_rounds,
    saved_rounds,
    state_digest,
)

TINY = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")


def _state(x):
    return {"w": jnp.full((64, 64), x, jnp.float32), "round": jnp.int32(x)}


def _flip_bytes(step_dir: pathlib.Path, n: int = 1) -> None:
    """Flips ``n`` bytes in the middle of the largest data file of a checkpoint."""
    files = [p for p in step_dir.rglob("*") if p.is_file() and "digest" not in p.parts]
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    for i in range(n):
        data[len(data) // 2 + i] ^= 0xFF
    target.write_bytes(bytes(data))


def test_digest_changes_with_any_byte():
    a = _state(1.0)
    b = {**a, "w": a["w"].at[17, 3].set(np.nextafter(np.float32(1.0), np.float32(2.0)))}
    assert state_digest(a) == state_digest(jax.tree.map(jnp.copy, a))
    assert state_digest(a) != state_digest(b)


@pytest.mark.parametrize("flips", [1, 64])
def test_a_changed_checkpoint_is_skipped_for_the_newest_intact_one(tmp_path, flips):
    key = jax.random.key(0)
    ckpt = Checkpointer(tmp_path / "ckpt", keep=3)
    for r in (1, 2, 3):
        ckpt.save(r, _state(float(r)), key)
    _flip_bytes(tmp_path / "ckpt" / "3", flips)
    round_, state, skipped = ckpt.restore_latest(_state(0.0), key)
    assert round_ == 2 and float(state["w"][0, 0]) == 2.0
    assert len(skipped) == 1 and "round 3" in skipped[0]
    assert "digest" in skipped[0] or "cannot be read" in skipped[0]
    ckpt.discard_after(2)
    assert saved_rounds(tmp_path / "ckpt") == [1, 2]
    ckpt.save(3, _state(3.0), key)  # the round is written again
    assert ckpt.restore_latest(_state(0.0), key)[0] == 3
    ckpt.close()


def test_an_incomplete_round_folder_is_skipped_with_one_line_and_not_counted(tmp_path):
    key = jax.random.key(0)
    ckpt = Checkpointer(tmp_path / "ckpt", keep=3)
    ckpt.save(1, _state(1.0), key)
    (tmp_path / "ckpt" / "2").mkdir()  # what a crash during a write can leave
    assert saved_rounds(tmp_path / "ckpt") == [1] and incomplete_rounds(tmp_path / "ckpt") == [2]
    round_, state, skipped = ckpt.restore_latest(_state(0.0), key)
    assert round_ == 1 and float(state["w"][0, 0]) == 1.0
    assert skipped == [f"checkpoint folder {tmp_path / 'ckpt' / '2'} is incomplete (what a crash "
                       "during a write leaves)"]  # fmt: skip
    ckpt.discard_after(1)
    assert not (tmp_path / "ckpt" / "2").exists()
    ckpt.close()


def test_another_seed_is_refused_not_skipped(tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, _state(1.0), jax.random.key(0))
    with pytest.raises(CheckpointError, match="another seed"):
        ckpt.restore_latest(_state(0.0), jax.random.key(1))
    ckpt.close()


def _rows(workdir):
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_flipped_checkpoint_bytes_resume_from_the_previous_round_bit_identically(tmp_path, capsys):
    base = ["train", "--config", TINY, "--no-progress", "--config.fl.num_clients=3"]
    assert cli.main([*base, "--workdir", str(tmp_path / "ref"), "--config.num_rounds=3"]) == 0
    run = tmp_path / "run"
    assert cli.main([*base, "--workdir", str(run), "--config.num_rounds=2"]) == 0
    _flip_bytes(run / "checkpoints" / "2")
    capsys.readouterr()
    assert cli.main([*base, "--workdir", str(run), "--config.num_rounds=3"]) == 0
    err = capsys.readouterr().err
    assert "warning: checkpoint of round 2" in err and "skipped it" in err
    log = [json.loads(x) for x in (run / "resume_log.jsonl").read_text().splitlines()]
    assert log[-1]["resumed_at_round"] == 1 and "round 2" in log[-1]["skipped"][0]

    def strip(rows):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    assert strip(_rows(run)) == strip(_rows(tmp_path / "ref"))
