"""The run directory: lock, experiment kind, resume checks on metrics rows, writers and reader."""

import json
import os

import pytest

from fedjax_deep.errors import WorkdirError
from fedjax_deep.runfiles import read_run
from fedjax_deep.runlog import RunDir, check_workdir_path


def _rows(*rounds):
    return "".join(json.dumps({"round": r, "train/loss": 1.0 / r}) + "\n" for r in rounds)


def test_lock_is_exclusive_and_released_on_close(tmp_path):
    first = RunDir(tmp_path / "run")
    first.create()
    holder = json.loads((tmp_path / "run" / "lock.json").read_text())
    assert holder["pid"] == os.getpid()
    with pytest.raises(WorkdirError, match=rf"in use by another run \(pid {os.getpid()} on"):
        RunDir(tmp_path / "run")
    first.close()
    assert not (tmp_path / "run" / "lock.json").exists()
    with RunDir(tmp_path / "run") as again:
        again.create()


def test_opening_a_directory_writes_nothing(tmp_path):
    (tmp_path / "run").mkdir()
    with RunDir(tmp_path / "run"):
        assert os.listdir(tmp_path / "run") == []


@pytest.mark.parametrize(
    "saved,new,message",
    [
        ({"sweep": [["seed", [0, 1]]]}, {"sweep": []}, "holds a sweep, not a single run"),
        ({"sweep": []}, {"sweep": [["seed", [0]]]}, "holds a single run, not a sweep"),
        ({"sweep": [["seed", [0]]]}, {"sweep": [["model.depth", [2]]]}, "holds another sweep (over"),
        ({"sweep": [["seed", [0]]], "mode": "fl"}, {"sweep": [["seed", [0]]], "mode": "independent"},
         "holds another sweep (mode differs)"),
    ],
)  # fmt: skip
def test_one_experiment_per_directory(tmp_path, saved, new, message):
    d = RunDir(tmp_path, writer=False)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    (tmp_path / "metrics.jsonl").write_text(_rows(1))
    with pytest.raises(WorkdirError) as exc:
        d.check_kind(new)
    assert message in str(exc.value)


def test_a_sweep_may_add_values_and_change_harmless_fields(tmp_path):
    d = RunDir(tmp_path, writer=False)
    (tmp_path / "config.json").write_text(json.dumps({"sweep": [["seed", [0]]], "num_rounds": 5}))
    d.check_kind({"sweep": [["seed", [0, 1, 2]]], "num_rounds": 9})


def test_a_field_the_library_added_later_resumes_at_its_default_only(tmp_path):
    # A run written before algorithm.variate_weights existed behaved as its default ("uniform").
    d = RunDir(tmp_path, writer=False)
    saved = {"sweep": [["seed", [0]]], "algorithm": {"name": "fedavg"}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    (tmp_path / "metrics.jsonl").write_text(_rows(1))
    at_default = {
        "sweep": [["seed", [0]]],
        "algorithm": {"name": "fedavg", "variate_weights": "uniform"},
    }
    d.check_kind(at_default)
    changed = {
        "sweep": [["seed", [0]]],
        "algorithm": {"name": "fedavg", "variate_weights": "examples"},
    }
    with pytest.raises(WorkdirError, match=r"algorithm.variate_weights differs"):
        d.check_kind(changed)


def test_resume_keeps_rounds_up_to_the_checkpoint_and_drops_a_cut_row(tmp_path):
    d = RunDir(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(_rows(1, 2, 3, 4) + '{"round": 5, "train/lo')
    rows = d.rows_for_resume(3)
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert (tmp_path / "metrics.jsonl").read_text() == _rows(1, 2, 3)


@pytest.mark.parametrize(
    "content,says",
    [(_rows(2, 3), "does not hold rounds 1..3 of the checkpoint being resumed (round 1 missing; "
                   "it holds rounds 2..3)"),
     (_rows(1, 3), "(round 2 missing; it holds round 1, round 3)"),
     ("", "(rounds 1..3 missing; it holds no rows)"),
     (_rows(1, 1, 2, 3), "holds round 1 more than once (rounds 1..3 of the checkpoint being "
                         "resumed are needed once each)"),
     (_rows(1, 2, 3, 4, 2), "holds round 2 more than once"),
     (_rows(2, 1, 3), "holds rounds 1..3 of the checkpoint being resumed out of order")],
)  # fmt: skip
def test_resume_refuses_missing_or_repeated_rows_saying_which(tmp_path, content, says):
    d = RunDir(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(content)
    with pytest.raises(WorkdirError) as exc:
        d.rows_for_resume(3)
    assert says in str(exc.value), exc.value
    assert (tmp_path / "metrics.jsonl").read_text() == content


def test_a_bad_row_before_the_last_is_refused(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(_rows(1) + "garbage\n" + _rows(2))
    with pytest.raises(WorkdirError, match="line 2 is not a metrics row"):
        RunDir(tmp_path, writer=False).read_rows()


def test_compatibility_needs_the_run_files(tmp_path):
    d = RunDir(tmp_path, writer=False)
    assert d.check_compatible({"seed": 0}) == {}  # nothing to resume: nothing needed
    (tmp_path / "metrics.jsonl").write_text(_rows(1))
    with pytest.raises(WorkdirError, match="config.json is missing"):
        d.check_compatible({"seed": 0})
    (tmp_path / "config.json").write_text(json.dumps({"seed": 0, "num_rounds": 1}))
    (tmp_path / "run_info.json").write_text("[]")
    with pytest.raises(WorkdirError, match="run_info.json cannot be read"):
        d.check_compatible({"seed": 0})
    (tmp_path / "run_info.json").write_text("{}")
    assert d.check_compatible({"seed": 0, "num_rounds": 2}) == {"num_rounds": (1, 2)}
    with pytest.raises(WorkdirError, match=r"config.seed=1 differs from the run being resumed"):
        d.check_compatible({"seed": 1, "num_rounds": 1})


def test_metrics_writer_fsyncs_rows_and_writes_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboardX")
    d = RunDir(tmp_path / "run")
    d.create()
    d.open_metrics(0, "auto")
    d.write_row({"round": 1, "train/loss": 0.5, "eval/accuracy": None})
    d.close()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == json.dumps(
        {"round": 1, "train/loss": 0.5, "eval/accuracy": None}
    ) + "\n"
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")
    data = events.read_bytes()
    assert b"train/loss" in data and b"eval/accuracy" not in data  # None is not logged


def test_reader_drops_a_cut_last_row_and_names_bad_files(tmp_path):
    for name in ("config.json", "run_info.json", "summary.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "metrics.jsonl").write_text(_rows(1, 2) + '{"round": 3, "tr')
    assert [r["round"] for r in read_run(tmp_path)["rows"]] == [1, 2]
    (tmp_path / "summary.json").write_text("{oops")
    with pytest.raises(WorkdirError, match="summary.json cannot be read"):
        read_run(tmp_path)


def test_workdir_paths(tmp_path):
    with pytest.raises(WorkdirError, match="--workdir=''"):
        check_workdir_path("")
    (tmp_path / "f").write_text("x")
    with pytest.raises(WorkdirError, match="is a file, not a directory"):
        check_workdir_path(tmp_path / "f" / "run")
    assert check_workdir_path(tmp_path / "a" / "b") == tmp_path / "a" / "b"


def test_a_claimed_new_workdir_is_locked_at_once_and_removed_if_refused(tmp_path):
    path = tmp_path / "a" / "b"
    with RunDir(path, claim=True):
        assert path.is_dir() and not any(path.iterdir())  # locked, nothing written
        with pytest.raises(WorkdirError, match="in use by another run"):
            RunDir(path, claim=True)
    assert sorted(os.listdir(tmp_path)) == []  # refused before create(): no trace left
    with RunDir(path, claim=True) as d:
        d.create()
    assert (tmp_path / "a" / "b").is_dir()  # created: kept


def test_a_run_is_extended_never_cut_and_needs_its_checkpoint_folder(tmp_path):
    d = RunDir(tmp_path, writer=False)
    (tmp_path / "metrics.jsonl").write_text(_rows(1, 2))
    (tmp_path / "config.json").write_text(json.dumps({"seed": 0, "num_rounds": 2}))
    (tmp_path / "run_info.json").write_text("{}")
    (tmp_path / "summary.json").write_text(json.dumps({"rounds": 2}))
    with pytest.raises(WorkdirError) as exc:
        d.check_compatible({"seed": 0, "num_rounds": 1})
    assert "config.num_rounds=1 is below the 2 rounds" in str(exc.value)
    assert d.check_compatible({"seed": 0, "num_rounds": 3}) == {"num_rounds": (2, 3)}
    (tmp_path / "checkpoints").write_text("x")
    with pytest.raises(WorkdirError, match="checkpoints is a file, not the run's checkpoint"):
        d.check_compatible({"seed": 0, "num_rounds": 3})


def test_a_path_component_longer_than_the_file_system_allows_is_bad_input(tmp_path):
    with pytest.raises(WorkdirError, match="is 300 bytes, more than the 255"):
        check_workdir_path(tmp_path / ("a" * 300) / "run")
