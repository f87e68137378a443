"""Crashes and resumes: SIGKILL at random rounds, config changes, numeric and disk faults, bad input."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from fedjax_deep import cli, experiment
from fedjax_deep.checkpoint import Checkpointer, CheckpointError
from fedjax_deep.config import apply_overrides, load_config

HERE = pathlib.Path(__file__).parent
CONFIG = str(HERE / "resume_worker_config.py")
TINY = str(HERE.parent / "configs" / "digits_tiny.py")


def _rows(workdir):
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def _without_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def _final_state(workdir):
    config = load_config(CONFIG)
    ckpt = Checkpointer(workdir / "checkpoints")
    latest = ckpt.latest_round()
    path = workdir / "checkpoints" / str(latest) / "state"
    ckpt.close()
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as reader:
        restored = reader.restore(path)
    del config
    return latest, restored


def _start(workdir, *extra):
    # Restarts share JAX's persistent compilation cache (as a user's restarts would): each restart
    # then loads the compiled round instead of compiling it again.
    cache = pathlib.Path(workdir).parent / "jax_cache"
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "fedjax_deep.cli", "train", "--config", CONFIG,
         "--workdir", str(workdir), "--no-progress", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    "kill_seed",
    [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)],
)
def test_sigkill_at_random_rounds_then_resume_is_bit_identical(tmp_path, kill_seed):
    """Kill points are drawn from a fixed seed, so a failure replays (run the slow seeds with
    -m slow); the timing of a kill within a round still varies with the machine."""
    reference = tmp_path / "reference"
    proc = _start(reference, "--config.num_rounds=12")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()

    rng = np.random.default_rng(kill_seed)
    crashed = tmp_path / "crashed"
    kills, done = [], 0
    while len(kills) < 6:
        target = done + int(rng.integers(1, 3))  # kill once this many rounds are logged
        proc = _start(crashed, "--config.num_rounds=12")
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            path = crashed / "metrics.jsonl"
            rows = len(path.read_text().splitlines()) if path.exists() else 0
            if rows >= target:
                time.sleep(float(rng.uniform(0, 0.3)))  # sometimes mid-checkpoint
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
        if proc.returncode == 0:  # finished before the kill landed: start over from scratch
            break
        kills.append(target)
        done = Checkpointer(crashed / "checkpoints").latest_round() or 0
        if done >= 10:
            break
    proc = _start(crashed, "--config.num_rounds=12")
    assert proc.wait(timeout=600) == 0, (kills, proc.stderr.read())
    assert len(kills) >= 5, f"the run finished before 5 kills landed: {kills}"

    assert [r["round"] for r in _rows(crashed)] == list(range(1, 13)), kills
    assert _without_time(_rows(crashed)) == _without_time(_rows(reference)), kills
    round_a, state_a = _final_state(reference)
    round_b, state_b = _final_state(crashed)
    assert round_a == round_b == 12
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(kills))


def _run_in_process(workdir, *overrides):
    return cli.main(["train", "--config", CONFIG, "--workdir", str(workdir), "--no-progress",
                     *overrides])  # fmt: skip


def test_incompatible_and_compatible_changes_on_resume(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert _run_in_process(workdir, "--config.num_rounds=2") == 0
    before = (workdir / "metrics.jsonl").read_text()
    for override, field in [
        ("--config.model.depth=4", "config.model.depth=4"),
        ("--config.fl.num_clients=5", "config.fl.num_clients=5"),
        ("--config.data.name=mnist1d", "config.data.name='mnist1d'"),
        ("--config.seed=1", "config.seed=1"),
    ]:
        assert _run_in_process(workdir, "--config.num_rounds=3", override) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {field}") and "resumed" in err and len(err.splitlines()) == 1
        assert (workdir / "metrics.jsonl").read_text() == before
    assert _run_in_process(workdir, "--config.num_rounds=3", "--config.eval.every_rounds=2") == 0
    assert [r["round"] for r in _rows(workdir)] == [1, 2, 3]
    log = [json.loads(x) for x in (workdir / "resume_log.jsonl").read_text().splitlines()]
    assert log[-1]["resumed_at_round"] == 2
    assert set(log[-1]["changes"]) == {"num_rounds", "eval.every_rounds"}
    assert json.loads((workdir / "summary.json").read_text())["resumed_at_round"] == 2


def test_nonfinite_round_stops_with_round_and_layer_and_keeps_checkpoint(tmp_path, monkeypatch,
                                                                         capsys):  # fmt: skip
    workdir = tmp_path / "run"
    assert _run_in_process(workdir, "--config.num_rounds=2") == 0
    real_make_round = experiment.make_round

    def poisoned(*args, **kwargs):
        round_fn = real_make_round(*args, **kwargs)

        def wrapped(state, data, key):
            new, metrics = round_fn(state, data, key)
            bad = jax.numpy.where(new.round == 4, jax.numpy.nan, 1.0)
            params = dict(new.params)
            params["conv_1"] = {"kernel": new.params["conv_1"]["kernel"] * bad}
            return new.replace(params=params), metrics

        return wrapped

    monkeypatch.setattr(experiment, "make_round", poisoned)
    assert _run_in_process(workdir, "--config.num_rounds=6") == 1
    err = capsys.readouterr().err.strip()
    assert "round 4" in err and "conv_1/kernel" in err and "round 3) is intact" in err, err
    assert len(err.splitlines()) == 1
    assert [r["round"] for r in _rows(workdir)] == [1, 2, 3]
    assert Checkpointer(workdir / "checkpoints").latest_round() == 3


def test_absurd_learning_rate_stops_the_run(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
                     "--config.client_opt.learning_rate=1e5"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and "round 1: non-finite" in err and len(err.splitlines()) == 1
    assert "no checkpoint was written yet" in err and "new --workdir" in err
    assert Checkpointer(workdir / "checkpoints").latest_round() is None
    assert not (workdir / "metrics.jsonl").read_text()


def test_skip_mode_with_every_client_skipped_stops_instead_of_reporting_a_loss(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
                     "--config.client_opt.learning_rate=1e5", "--config.fl.nonfinite=skip"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "round 1: every client's update" in err and "skipped" in err
    assert not (workdir / "metrics.jsonl").read_text()


def test_skip_mode_drops_only_the_nonfinite_clients(tmp_path, monkeypatch):
    """One poisoned client of four is skipped each round; the run goes on with the other three."""
    real_make_round = experiment.make_round

    def poisoned(*args, **kwargs):
        round_fn = real_make_round(*args, **kwargs)

        def wrapped(state, data, key):
            x = data.x.at[0].multiply(jax.numpy.nan)  # client 0's data is NaN
            return round_fn(state, data.replace(x=x), key)

        return wrapped

    monkeypatch.setattr(experiment, "make_round", poisoned)
    code = cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "run"),
                     "--no-progress", "--config.fl.nonfinite=skip"])  # fmt: skip
    assert code == 0
    rows = _rows(tmp_path / "run")
    assert [r["train/skipped_clients"] for r in rows] == [1, 1]
    assert all(np.isfinite(r["train/loss"]) and r["eval/accuracy"] > 0.5 for r in rows)


def test_real_write_failure_is_caught_by_the_checkpointer(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ckpt = Checkpointer.__new__(Checkpointer)
    ckpt.directory = blocker / "checkpoints"

    class Broken:
        def save(self, *a, **k):
            raise OSError(28, "No space left on device")

        def latest_step(self):
            return 7

    ckpt._manager = Broken()
    with pytest.raises(CheckpointError, match=r"round 8 .*No space left.*round 7\) is intact"):
        ckpt.save(8, {"a": np.zeros(2)}, jax.random.key(0))


def test_apply_overrides_roundtrip():
    config = apply_overrides(load_config(TINY), ["--config.fl.num_clients=7"])
    assert config.fl.num_clients == 7
