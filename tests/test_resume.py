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

from fedjax_deep import cli, train
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
    path = workdir / "checkpoints" / str(latest) / "default"
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


def test_sigkill_at_random_rounds_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    proc = _start(reference, "--config.num_rounds=12")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()

    rng = np.random.default_rng(int(time.time()))  # random kill points, printed on failure
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
    real_make_round = train.make_round

    def poisoned(*args, **kwargs):
        round_fn = real_make_round(*args, **kwargs)

        def wrapped(state, data, key):
            new, metrics = round_fn(state, data, key)
            bad = jax.numpy.where(new.round == 4, jax.numpy.nan, 1.0)
            params = dict(new.params)
            params["conv_1"] = {"kernel": new.params["conv_1"]["kernel"] * bad}
            return new.replace(params=params), metrics

        return wrapped

    monkeypatch.setattr(train, "make_round", poisoned)
    assert _run_in_process(workdir, "--config.num_rounds=6") == 1
    err = capsys.readouterr().err.strip()
    assert "round 4" in err and "conv_1/kernel" in err and "round 3) is intact" in err, err
    assert len(err.splitlines()) == 1
    assert [r["round"] for r in _rows(workdir)] == [1, 2, 3]
    assert Checkpointer(workdir / "checkpoints").latest_round() == 3


def test_absurd_learning_rate_stops_the_run(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
                     "--config.client_opt.learning_rate=1e30"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and "round 1: non-finite" in err and len(err.splitlines()) == 1
    assert Checkpointer(workdir / "checkpoints").latest_round() is None
    assert not (workdir / "metrics.jsonl").read_text()


def test_skip_mode_drops_nonfinite_clients_and_counts_them(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
                     "--config.client_opt.learning_rate=1e30", "--config.fl.nonfinite=skip"])  # fmt: skip
    assert code == 0
    rows = _rows(workdir)
    assert rows[0]["train/skipped_clients"] == 4  # every client blew up: the model is kept
    assert all(np.isfinite(r["eval/accuracy"]) for r in rows)


def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    workdir = tmp_path / "run"
    real_save = Checkpointer.save
    calls = {"n": 0}

    def failing_save(self, round_, state, run_key):
        calls["n"] += 1
        if calls["n"] == 3:
            raise CheckpointError(
                f"checkpoint of round {round_} could not be written under {self.directory} "
                f"(OSError: [Errno 28] No space left on device); the last good checkpoint "
                f"(round {self.latest_round()}) is intact"
            )
        return real_save(self, round_, state, run_key)

    monkeypatch.setattr(Checkpointer, "save", failing_save)
    assert _run_in_process(workdir, "--config.num_rounds=5") == 1
    err = capsys.readouterr().err.strip()
    assert "No space left" in err and "round 2) is intact" in err
    ckpt = Checkpointer(workdir / "checkpoints")
    assert ckpt.latest_round() == 2
    monkeypatch.setattr(Checkpointer, "save", real_save)
    assert _run_in_process(workdir, "--config.num_rounds=5") == 0  # resumes from round 2
    assert [r["round"] for r in _rows(workdir)] == [1, 2, 3, 4, 5]


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


BAD_INPUTS = [
    # (extra argv, text expected in the one-line error)
    (["--config.fl.num_clients=0"], "config.fl.num_clients=0"),
    (["--config.fl.num_clients=-3"], "config.fl.num_clients=-3"),
    (["--config.fl.batch_size=0"], "config.fl.batch_size=0"),
    (["--config.fl.local_epochs=0"], "config.fl.local_epochs=0"),
    (["--config.fl.local_steps=-1"], "config.fl.local_steps=-1"),
    (["--config.num_rounds=0"], "config.num_rounds=0"),
    (["--config.seed=-1"], "config.seed=-1"),
    (["--config.mode=cl"], "config.mode='cl'"),
    (["--config.client_opt.momentum=1.5"], "config.client_opt.momentum=1.5"),
    (["--config.client_opt.weight_decay=-1"], "config.client_opt.weight_decay=-1.0"),
    (["--config.server_opt.learning_rate=0"], "config.server_opt.learning_rate=0.0"),
    (["--config.server_opt.name=adam"], "config.server_opt.name='adam'"),
    (["--config.model.kernel_size=4"], "config.model.kernel_size=4"),
    (["--config.model.depth=0"], "config.model.depth=0"),
    (["--config.model.widths=(8, 8, 8)"], "config.model.widths=(8, 8, 8)"),
    (["--config.model.head=gap"], "config.model.head='gap'"),
    (["--config.fl.execution=pmap"], "config.fl.execution='pmap'"),
    (["--config.fl.chunk_size=-2"], "config.fl.chunk_size=-2"),
    (["--config.fl.bn_stats=sync"], "config.fl.bn_stats='sync'"),
    (["--config.fl.nonfinite=ignore"], "config.fl.nonfinite='ignore'"),
    (["--config.checkpoint.keep=0"], "config.checkpoint.keep=0"),
    (["--config.checkpoint.every_rounds=-1"], "config.checkpoint.every_rounds=-1"),
    (["--config.eval.batch_size=0"], "config.eval.batch_size=0"),
    (["--config.data.test_fraction=1.5"], "config.data.test_fraction=1.5"),
    (["--config.data.placement=gpu"], "config.data.placement='gpu'"),
    (["--config.fl.divergence=maybe"], "config.fl.divergence='maybe'"),
    (["--config.model"], "config.model=None"),
    (["--config.sweep=((1, 2),)"], "config.sweep=(1, 2)"),
    (["--config.sweep=(('model.nope', (1,)),)"], "config.sweep='model.nope'"),
]


@pytest.mark.parametrize("extra,expected", BAD_INPUTS, ids=[e[0][0] for e in BAD_INPUTS])
def test_bad_input_leaves_the_workdir_as_it_was(tmp_path, capsys, extra, expected):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine")
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert sorted(os.listdir(workdir)) == ["notes.txt"]


@pytest.mark.parametrize(
    "content,expected",
    [
        ("def get_config(:\n", "SyntaxError"),
        ("x = 1\n", "defines no get_config"),
        ("def get_config():\n    return 3\n", "must return an ml_collections.ConfigDict"),
        ("def get_config():\n    raise KeyError('boom')\n", "get_config() failed"),
    ],
)
def test_bad_config_files(tmp_path, capsys, content, expected):
    path = tmp_path / "cfg.py"
    path.write_text(content)
    code = cli.main(["train", "--config", str(path), "--workdir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_unwritable_workdir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = cli.main(["train", "--config", TINY, "--workdir", str(blocker / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is a file, not a directory" in err
    assert blocker.read_text() == "x"


def test_apply_overrides_roundtrip():
    config = apply_overrides(load_config(TINY), ["--config.fl.num_clients=7"])
    assert config.fl.num_clients == 7
