"""Bad input and faults against the command line, as a hostile user would try them.

One table: each case runs ``fedjax-deep`` in-process and asserts its exit code, exactly one line on
stderr that names what is wrong, and that the workdir (and everything under it) is byte for byte as
it was. Faults that need real processes (a lock held by another run, signals, a full disk) follow
the table.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from fedjax_deep import cli
from fedjax_deep.runlog import RunDir

HERE = pathlib.Path(__file__).parent
TINY = str(HERE.parent / "configs" / "digits_tiny.py")
SLOW_CONFIG = str(HERE / "resume_worker_config.py")
RUN_ARGS = ["--config.fl.num_clients=3"]
SWEEP_ARGS = ["--config.num_rounds=1", "--config.fl.num_clients=2",
              "--config.sweep=(('seed', (0, 1)),)"]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished single run and a finished sweep, copied into each case that needs one."""
    base = tmp_path_factory.mktemp("finished")
    for name, args in (("run", RUN_ARGS), ("sweep", SWEEP_ARGS)):
        argv = ["train", "--config", TINY, "--workdir", str(base / name), "--no-progress", *args]
        assert cli.main(argv) == 0
    return base


def _snapshot(path: pathlib.Path) -> dict:
    try:
        if not path.exists():
            return {}
    except OSError:  # a name too long to exist
        return {}
    if path.is_file():
        return {".": hashlib.sha1(path.read_bytes()).hexdigest()}
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        out[rel] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


# -- workdir setups: (tmp_path, finished) -> (workdir, extra argv) ----------------------------
def fresh(tmp, finished):
    workdir = tmp / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine")
    return workdir, []


def absent(tmp, finished):
    return tmp / "new" / "run", []


def copy_of(name, edit: Callable | None = None, args=()):
    def setup(tmp, finished):
        workdir = tmp / name
        shutil.copytree(finished / name, workdir)
        if edit:
            edit(workdir)
        return workdir, list(args) or (RUN_ARGS if name == "run" else SWEEP_ARGS)

    return setup


def _checkpoints_a_file(w):
    shutil.rmtree(w / "checkpoints")
    (w / "checkpoints").write_text("x")


def _row_twice(w):
    lines = (w / "metrics.jsonl").read_text().splitlines()
    (w / "metrics.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")


def _report_a_directory(w):
    (w / "report.md").unlink()
    (w / "report.md").mkdir()


def _no_points(w):
    for p in w.iterdir():
        if p.is_dir():
            shutil.rmtree(p)


def _two_rates(w):
    """The sweep's second seed relabelled as another learning rate: two rates to tune over."""
    path = w / "seed-1" / "config.json"
    config = json.loads(path.read_text())
    config["client_opt"]["learning_rate"] = 0.1
    path.write_text(json.dumps(config))


def _write(rel, text):
    return lambda w: (w / rel).write_text(text)


def _unlink(rel):
    return lambda w: (w / rel).unlink()


def _drop_row(w):
    lines = (w / "metrics.jsonl").read_text().splitlines()
    (w / "metrics.jsonl").write_text(lines[1] + "\n")


def _corrupt_first_row(w):
    lines = (w / "metrics.jsonl").read_text().splitlines()
    (w / "metrics.jsonl").write_text("{broken\n" + lines[1] + "\n")


@dataclasses.dataclass
class Case:
    id: str
    argv: list
    expect: str
    code: int = 2
    setup: Callable = fresh
    config_text: str | None = None  # a config file written for the case instead of TINY
    command: str = "train"


NESTED = "(" * 5000 + ")" * 5000
# Five entries of 100 values: refused from the product of their lengths, before any point is built.
HUGE_SWEEP = "--config.sweep=" + repr(tuple(
    (field, tuple(round(scale * (i + 1), 6) for i in range(100)))
    for field, scale in (("seed", 1), ("client_opt.learning_rate", 1e-3), ("client_opt.momentum", 9e-3),
                         ("client_opt.weight_decay", 1e-3), ("server_opt.learning_rate", 1e-2))
))  # fmt: skip
CASES = [
    # Config values: type, range, finiteness, choices.
    Case("num_clients=0", ["--config.fl.num_clients=0"], "config.fl.num_clients=0"),
    Case("num_clients<0", ["--config.fl.num_clients=-3"], "config.fl.num_clients=-3"),
    Case("num_clients>examples", ["--config.fl.num_clients=5000"], "config.fl.num_clients=5000"),
    Case("num_clients=ten", ["--config.fl.num_clients=ten"], "config.fl.num_clients='ten'"),
    Case("unknown field", ["--config.fl.num_clientz=3"], "config.fl.num_clientz='3'"),
    Case("group without value", ["--config.model"], "config.model=None"),
    Case("batch_size=0", ["--config.fl.batch_size=0"], "config.fl.batch_size=0"),
    Case("local_epochs=0", ["--config.fl.local_epochs=0"], "config.fl.local_epochs=0"),
    Case("local_steps<0", ["--config.fl.local_steps=-1"], "config.fl.local_steps=-1"),
    Case("local_steps huge", ["--config.fl.local_steps=10000000"], "config.fl.local_steps="),
    Case("num_rounds=0", ["--config.num_rounds=0"], "config.num_rounds=0"),
    Case("seed<0", ["--config.seed=-1"], "config.seed=-1"),
    Case("seed 2**63", [f"--config.seed={2**63}"], f"config.seed={2**63}"),
    Case("mode=cl", ["--config.mode=cl"], "config.mode='cl'"),
    Case("mode=federated", ["--config.mode=federated"], "config.mode='federated'"),
    Case("momentum=1.5", ["--config.client_opt.momentum=1.5"], "config.client_opt.momentum=1.5"),
    Case("weight_decay<0", ["--config.client_opt.weight_decay=-1"],
         "config.client_opt.weight_decay=-1.0"),
    Case("weight_decay=inf", ["--config.client_opt.weight_decay=inf"],
         "config.client_opt.weight_decay=inf: expected a finite number"),
    Case("lr=inf", ["--config.client_opt.learning_rate=inf"],
         "config.client_opt.learning_rate=inf"),
    Case("lr=nan", ["--config.client_opt.learning_rate=nan"],
         "config.client_opt.learning_rate=nan"),
    Case("lr<0", ["--config.client_opt.learning_rate=-0.1"],
         "config.client_opt.learning_rate=-0.1"),
    Case("server lr=0", ["--config.server_opt.learning_rate=0"],
         "config.server_opt.learning_rate=0.0"),
    Case("server lamb", ["--config.server_opt.name=lamb"], "config.server_opt.name='lamb'"),
    Case("fedbn without batchnorm", ["--config.algorithm.name=fedbn"], "model.norm is 'group'"),
    Case("scaffold in CL", ["--config.algorithm.name=scaffold", "--config.mode=centralized"],
         "config.algorithm.name='scaffold': mode centralized"),
    Case("kernel even", ["--config.model.kernel_size=4"], "config.model.kernel_size=4"),
    Case("depth=0", ["--config.model.depth=0"], "config.model.depth=0"),
    Case("depth huge", ["--config.model.depth=100000"], "config.model.depth=100000"),
    Case("width needs more memory", ["--config.model.width=60000"], "GiB available"),
    Case("widths wrong length", ["--config.model.widths=(8, 8, 8)"],
         "config.model.widths=(8, 8, 8)"),
    Case("widths a string", ["--config.model.widths=abc"], "config.model.widths='abc'"),
    Case("widths nested", [f"--config.model.widths={NESTED}"], "expected a Python literal"),
    Case("widths of floats", ["--config.model.widths=(8.5, 8)"], "expected a tuple of integers"),
    Case("head=gap", ["--config.model.head=gap"], "config.model.head='gap'"),
    Case("model name", ["--config.model.name=resnet9000"], "config.model.name='resnet9000'"),
    Case("norm", ["--config.model.norm=instance"], "config.model.norm='instance'"),
    Case("stem_stride", ["--config.model.stem_stride=16"], "config.model.stem_stride=16"),
    Case("width_mult=0", ["--config.model.width_mult=0"], "config.model.width_mult=0.0"),
    Case("execution", ["--config.fl.execution=pmap"], "config.fl.execution='pmap'"),
    Case("chunk_size<0", ["--config.fl.chunk_size=-2"], "config.fl.chunk_size=-2"),
    Case("bn_stats", ["--config.fl.bn_stats=sync"], "config.fl.bn_stats='sync'"),
    Case("nonfinite", ["--config.fl.nonfinite=ignore"], "config.fl.nonfinite='ignore'"),
    Case("keep=0", ["--config.checkpoint.keep=0"], "config.checkpoint.keep=0"),
    Case("ckpt every<0", ["--config.checkpoint.every_rounds=-1"],
         "config.checkpoint.every_rounds=-1"),
    Case("eval batch=0", ["--config.eval.batch_size=0"], "config.eval.batch_size=0"),
    Case("test_fraction=1.5", ["--config.data.test_fraction=1.5"],
         "config.data.test_fraction=1.5"),
    Case("empty test split", ["--config.data.test_fraction=0.0001"],
         "config.data.test_fraction=0.0001: leaves 0"),
    Case("placement", ["--config.data.placement=gpu"], "config.data.placement='gpu'"),
    Case("bool", ["--config.fl.divergence=maybe"], "config.fl.divergence='maybe'"),
    Case("tensorboard", ["--config.log.tensorboard=yes"], "config.log.tensorboard='yes'"),
    # Sweeps.
    Case("sweep=5", ["--config.sweep=5"], "config.sweep=5"),
    Case("sweep a dict", ["--config.sweep={'model.depth': (1, 2)}"], "config.sweep={"),
    Case("sweep entry", ["--config.sweep=((1, 2),)"], "config.sweep=(1, 2)"),
    Case("sweep no field", ["--config.sweep=(('model.nope', (1,)),)"], "config.sweep='model.nope'"),
    Case("sweep float for int", ["--config.sweep=(('model.depth', (2.5,)),)"],
         "config.sweep=2.5: a value of model.depth: expected an integer"),
    Case("sweep bad point", ["--config.sweep=(('model.depth', (2, 0)),)"],
         "config.model.depth=0"),
    Case("sweep 1 and 1.0", ["--config.sweep=(('client_opt.learning_rate', (1, 1.0)),)"],
         "client_opt.learning_rate already lists 1, the same value in the field's type"),
    Case("sweep field twice", ["--config.sweep=(('seed', (0, 1)), ('seed', (2,)))"],
         "config.sweep='seed': is swept by two entries"),
    Case("sweep 10**10 points", [HUGE_SWEEP], "100 x 100 x 100 x 100 x 100 = 10000000000 points"),
    # Config files.
    Case("syntax error", [], "SyntaxError", config_text="def get_config(:\n"),
    Case("no get_config", [], "defines no get_config", config_text="x = 1\n"),
    Case("not a ConfigDict", [], "must return an ml_collections.ConfigDict",
         config_text="def get_config():\n    return 3\n"),
    Case("get_config raises", [], "get_config() failed",
         config_text="def get_config():\n    raise KeyError('boom')\n"),
    # Workdirs that cannot host the run.
    Case("empty workdir", [], "--workdir=''", setup=lambda tmp, f: ("", [])),
    Case("workdir is a file", [], "is a file, not a directory",
         setup=lambda tmp, f: ((tmp / "file").write_text("x") and tmp / "file" / "run", [])),
    Case("single run in a sweep", [], "holds a sweep, not a single run",
         setup=copy_of("sweep", args=RUN_ARGS)),
    Case("sweep in a single run", [], "holds a single run, not a sweep",
         setup=copy_of("run", args=SWEEP_ARGS)),
    Case("another sweep's fields", [], "holds another sweep (over",
         setup=copy_of("sweep", args=[*SWEEP_ARGS[:2], "--config.sweep=(('model.depth', (1,)),)"])),
    Case("another sweep's base", [], "holds another sweep (fl.batch_size differs)",
         setup=copy_of("sweep", args=[*SWEEP_ARGS, "--config.fl.batch_size=8"])),
    Case("incompatible resume", [], "config.model.depth=4 differs from the run being resumed",
         setup=copy_of("run", args=[*RUN_ARGS, "--config.model.depth=4"])),
    Case("missing config.json", [], "config.json is missing",
         setup=copy_of("run", _unlink("config.json"))),
    Case("missing run_info.json", [], "run_info.json is missing",
         setup=copy_of("run", _unlink("run_info.json"))),
    Case("corrupt config.json", [], "config.json cannot be read",
         setup=copy_of("run", _write("config.json", "{not json"))),
    Case("metrics rows missing", [], "does not hold rounds 1..2",
         setup=copy_of("run", _drop_row)),
    Case("metrics row corrupt", [], "line 1 is not a metrics row",
         setup=copy_of("run", _corrupt_first_row)),
    Case("point rows missing", [], "does not hold rounds 1..1",
         setup=copy_of("sweep", lambda w: (w / "seed-1" / "metrics.jsonl").write_text(""))),
    # Run files under faults: nothing is touched before the checkpoint is known good.
    Case("checkpoints replaced by a file", [], "checkpoints is a file, not the run's checkpoint "
         "folder, so the run cannot be resumed", setup=copy_of("run", _checkpoints_a_file)),
    Case("metrics row twice", [], "metrics.jsonl holds round 1 more than once (rounds 1..2 of "
         "the checkpoint being resumed are needed once each)", setup=copy_of("run", _row_twice)),
    Case("num_rounds lowered", [], "config.num_rounds=1 is below the 2 rounds",
         setup=copy_of("run", args=[*RUN_ARGS, "--config.num_rounds=1"])),
    Case("workdir name too long", [], "is 300 bytes, more than the 255 a file system allows",
         setup=lambda tmp, f: (tmp / ("a" * 300) / "run", [])),
    # Config loading and values that float32 cannot hold.
    Case("get_config exits", [], "get_config() called sys.exit(0); it must return",
         config_text="import sys\ndef get_config():\n    sys.exit(0)\n"),
    Case("config file exits", [], "called sys.exit(3) while loading",
         config_text="import sys\nsys.exit(3)\n"),
    Case("alpha=1e-300", ["--config.algorithm.alpha=1e-300"],
         "config.algorithm.alpha=1e-300: is 0 in float32"),
    Case("weight_decay=1e-39", ["--config.client_opt.weight_decay=1e-39"],
         "config.client_opt.weight_decay=1e-39: is 0 in float32"),
    Case("width 65536 needs more memory", ["--config.model.width=65536"],
         "config.model.width=65536: the run needs about"),
    Case("compile_cache impossible", ["--config.compile_cache=/proc/no/cache"],
         "config.compile_cache='/proc/no/cache': cannot hold the compilation cache"),
    # Reports.
    Case("report corrupt config", [], "config.json cannot be read", command="report",
         setup=copy_of("sweep", _write("config.json", "]"))),
    Case("report of no run", [], "holds no run or sweep", command="report"),
    Case("report of a single run", [], "holds a single run, not a sweep", command="report",
         setup=copy_of("run")),
    Case("report: finished point without rows", [], "holds no rows though summary.json says",
         command="report", setup=copy_of("sweep", _write("seed-1/metrics.jsonl", ""))),
    Case("report: report.md a directory", [], "report.md is a directory", command="report",
         setup=copy_of("sweep", _report_a_directory)),
    # Comparisons that cannot be computed.
    Case("compare a single run", [], "holds a single run, not a sweep", command="compare",
         setup=copy_of("run")),
    Case("compare: no point started", [], "no point of the sweep has started",
         command="compare", setup=copy_of("sweep", _no_points)),
    Case("compare --group no field", ["--group", "model.nope"],
         "--group='model.nope': no run of", command="compare", setup=copy_of("sweep")),
    Case("compare --tune no field", ["--tune", "nope"], "--tune='nope': no run of",
         command="compare", setup=copy_of("sweep")),
    Case("compare without a validation split", [],
         "logged no validation accuracy (data.validation_fraction=0), so no rate can be chosen",
         command="compare", setup=copy_of("sweep", _two_rates)),
    Case("compare --out a file", ["--out", "{workdir}/config.json"], "is a file; give a "
         "directory", command="compare", setup=copy_of("sweep")),
    Case("compare: compare.json a directory", [], "compare.json is a directory",
         command="compare", setup=copy_of("sweep", lambda w: (w / "compare.json").mkdir())),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_one_line_exit_code_and_nothing_written(tmp_path, capsys, finished, case):
    workdir, args = case.setup(tmp_path, finished)
    config = TINY
    if case.config_text is not None:
        config = str(tmp_path / "cfg.py")
        pathlib.Path(config).write_text(case.config_text)
    watched = workdir if str(workdir) else None  # '' would mean the current directory
    before = _snapshot(watched) if watched else sorted(os.listdir())
    if case.command == "report":
        argv = ["report", str(workdir)]
    elif case.command == "compare":
        argv = ["compare", str(workdir), *(a.format(workdir=workdir) for a in case.argv)]
    else:
        argv = ["train", "--config", config, "--workdir", str(workdir), "--no-progress",
                *args, *case.argv]  # fmt: skip
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == case.code, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert case.expect in err, err
    assert (_snapshot(watched) if watched else sorted(os.listdir())) == before
    assert len(CASES) >= 40


def test_sweep_values_never_leave_the_workdir(tmp_path):
    workdir = tmp_path / "w" / "sweep"
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
                     "--config.num_rounds=1", "--config.fl.num_clients=2",
                     "--config.sweep=(('data.data_dir', ('../../x', '/etc')),)"])  # fmt: skip
    assert code == 0
    assert sorted(os.listdir(tmp_path)) == ["w"] and sorted(os.listdir(tmp_path / "w")) == ["sweep"]
    points = sorted(p.name for p in workdir.iterdir() if p.is_dir())
    assert points == ["data_dir-.._.._x", "data_dir-_etc"]


# -- faults that need real processes ---------------------------------------------------------
def _start(workdir, *extra, config=SLOW_CONFIG):
    return subprocess.Popen(
        [sys.executable, "-m", "fedjax_deep.cli", "train", "--config", config,
         "--workdir", str(workdir), "--no-progress", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_rows(workdir, n, proc, timeout=300):
    deadline = time.time() + timeout
    path = workdir / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{n} rows not reached: {proc.poll()} {proc.stderr.read()}")


def _rounds(workdir):
    return [json.loads(x)["round"] for x in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # ~40 s (the suite's budget); the lock itself: tests/test_runlog.py, fast
def test_second_process_on_a_running_workdir_is_refused_and_the_first_finishes(tmp_path):
    workdir = tmp_path / "run"
    rounds = "--config.num_rounds=60"  # long enough to outlive the second process's start
    first = _start(workdir, rounds)
    _wait_rows(workdir, 1, first)
    second = _start(workdir, rounds)
    err = second.communicate(timeout=300)[1].strip()
    assert first.poll() is None, "the first run ended before the second was refused"
    assert second.returncode == 2, err
    assert len(err.splitlines()) == 1 and f"in use by another run (pid {first.pid} on" in err, err
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert _rounds(workdir) == list(range(1, 61))
    assert not (workdir / "lock.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_after_the_round_with_one_line_and_the_resume_command(tmp_path, signum):
    workdir = tmp_path / "run"
    proc = _start(workdir, "--config.num_rounds=8", "--config.checkpoint.every_rounds=4")
    _wait_rows(workdir, 1, proc)
    proc.send_signal(signum)
    err = proc.communicate(timeout=300)[1].strip().splitlines()
    assert proc.returncode == 128 + signum, err
    done = len(_rounds(workdir))
    name = signal.Signals(signum).name
    assert err[-1].startswith(f"stopped: {name}: stopped after round {done}, checkpointed "
                              f"through round {done}; resume with: fedjax-deep train"), err  # fmt: skip
    assert "Traceback" not in "\n".join(err)
    resume = _start(workdir, "--config.num_rounds=8", "--config.checkpoint.every_rounds=4")
    assert resume.wait(timeout=600) == 0, resume.stderr.read()
    assert _rounds(workdir) == list(range(1, 9))


@pytest.fixture
def small_disk(tmp_path):
    """A real 32 MiB file system (tmpfs; needs root, as CI has): writes fail with ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
                      capture_output=True).returncode:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: pathlib.Path) -> pathlib.Path:
    filler = mount / "filler"
    # Unbuffered: a buffered file would raise ENOSPC again from close(), inside the run.
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("where", ["metrics row", "checkpoint"])
def test_full_disk_one_line_naming_file_round_and_checkpoint_then_resume(
    small_disk, capfd, monkeypatch, where
):
    workdir = small_disk / "run"
    real_write_row = RunDir.write_row
    filler = []

    def write_row(self, row):
        if row["round"] == 2 and not filler:
            if where == "metrics row":
                filler.append(_fill(small_disk))
                return real_write_row(self, row)
            real_write_row(self, row)
            filler.append(_fill(small_disk))  # the row fits; the checkpoint after it does not
            return None
        return real_write_row(self, row)

    monkeypatch.setattr(RunDir, "write_row", write_row)
    argv = ["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
            "--config.num_rounds=3", *RUN_ARGS]  # fmt: skip
    assert cli.main(argv) == 1
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "No space left on device" in err and "round 2" in err, err
    assert "(round 1) is intact" in err, err
    if where == "metrics row":
        assert "metrics.jsonl cannot be written" in err, err
    else:
        assert "checkpoint of round 2 could not be written" in err, err
    filler[0].unlink()
    assert cli.main(argv) == 0
    assert _rounds(workdir) == [1, 2, 3]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--window", "0"], "--window=0: a plateau window holds at least 1 evaluation"),
        (["--window", "-3"], "--window=-3"),
        (["--reference", "mode=independent"], "--reference=mode=independent matches no arm"),
        (["--at-round", "-1"], "--at-round=-1: a round is at least 1"),
        (["--at-round", "1000"], "--at-round=1000: every run of"),
    ],
    ids=["window 0", "window -3", "reference matches no arm", "at-round -1", "at-round past"],
)
def test_compare_refuses_what_it_cannot_compute(tmp_path, capsys, finished, args, expect):
    workdir = tmp_path / "sweep"
    shutil.copytree(finished / "sweep", workdir)
    before = _snapshot(workdir)
    code = cli.main(["compare", str(workdir), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and expect in err, err
    assert _snapshot(workdir) == before  # no compare.md, compare.json or plot written


# -- run files under faults: resumes that keep every row --------------------------------------
def test_a_run_extended_past_a_stray_checkpoint_folder_keeps_its_rows_and_tensorboard_agrees(
    tmp_path, capsys, finished
):
    """Raising num_rounds on a finished run trains the extra round; an empty round folder (what a
    crash during a write leaves) is skipped with one line; summary.json, metrics.jsonl and the
    TensorBoard events (read back with tensorboard's own reader) agree."""
    workdir = tmp_path / "run"
    shutil.copytree(finished / "run", workdir)
    (workdir / "checkpoints" / "3").mkdir()
    before = (workdir / "metrics.jsonl").read_text()
    argv = ["train", "--config", TINY, "--workdir", str(workdir), "--no-progress", *RUN_ARGS,
            "--config.num_rounds=3"]  # fmt: skip
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: checkpoint folder {workdir / 'checkpoints' / '3'} is incomplete "
                   "(what a crash during a write leaves); skipped it"], err  # fmt: skip
    assert (workdir / "metrics.jsonl").read_text().startswith(before)  # rounds 1..2 untouched
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["rounds"] == 3 and summary["resumed_at_round"] == 2
    assert summary["final_accuracy"] == rows[-1]["eval/accuracy"]
    assert summary["examples_seen"] == sum(r["train/num_examples"] for r in rows)
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(
        str(workdir / "tensorboard"), size_guidance={"scalars": 0}
    )
    events.Reload()
    keys = {k for r in rows for k, v in r.items() if k != "round" and isinstance(v, int | float)}
    assert set(events.Tags()["scalars"]) == keys
    for key in keys:
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["round"], pytest.approx(r[key], rel=1e-6)) for r in rows], key


def test_a_refused_run_in_a_new_workdir_leaves_nothing_and_the_lock_comes_first(tmp_path, capsys):
    workdir = tmp_path / "new" / "run"
    argv = ["train", "--config", TINY, "--workdir", str(workdir), "--no-progress", *RUN_ARGS]
    # Refused by the data checks, which run after the new workdir was made and locked.
    assert cli.main([*argv, "--config.data.test_fraction=0.0001"]) == 2
    assert "leaves 0" in capsys.readouterr().err and os.listdir(tmp_path) == []
    # Another process that claimed the workdir first (a sweep still checking its data) holds it.
    with RunDir(workdir, claim=True):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: {workdir} is in use by another run (a process that is still "
                       "starting); wait for it to end or pass another --workdir")  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_a_sweep_resumes_its_healthy_members_and_leaves_a_diverged_one_stopped(tmp_path, capsys):
    workdir = tmp_path / "sweep"
    argv = ["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
            "--config.fl.num_clients=2",
            "--config.sweep=(('client_opt.learning_rate', (0.05, 100000.0)),)"]  # fmt: skip
    assert cli.main([*argv, "--config.num_rounds=1"]) == 1
    good, bad = workdir / "learning_rate-0.05", workdir / "learning_rate-100000.0"
    assert json.loads((bad / "stopped.json").read_text())["round"] == 1
    first = (good / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert cli.main([*argv, "--config.num_rounds=2"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{bad}: stopped at round 1 on non-finite values in an earlier run; left "
                   "stopped (stopped.json says why; resume with --config.fl.nonfinite=skip to "
                   "retry it)"], err  # fmt: skip
    assert (good / "metrics.jsonl").read_text().startswith(first)
    assert _rounds(good) == [1, 2] and _rounds(bad) == []
    assert json.loads((good / "summary.json").read_text())["resumed_at_round"] == 1
    assert not (bad / "summary.json").exists()
    report = (workdir / "report.md").read_text()
    assert "- `learning_rate-100000.0`: stopped on non-finite values at round 1" in report


def test_a_second_signal_stops_at_once_inside_a_long_round(tmp_path):
    workdir = tmp_path / "run"
    # Rounds of many local epochs: far longer than the few seconds the second signal may take.
    proc = _start(workdir, *RUN_ARGS, "--config.fl.local_epochs=400", config=TINY)
    deadline = time.time() + 300
    # metrics.jsonl is opened just before the loop (after the partition plot and run info).
    while not (workdir / "metrics.jsonl").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(1.0)  # inside round 1
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1].strip().splitlines()
    assert time.time() - sent < 30
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err[-1] == ("stopped: SIGTERM again: stopped at once, the round in flight is lost; the "
                       "checkpoints written are whole; run the same command to resume"), err  # fmt: skip
    assert _rounds(workdir) == []  # round 1 never finished
