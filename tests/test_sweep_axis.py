"""The sweep axis: members of one compiled program equal the same points run alone (on CPU, under
``lax.map``, their states bit for bit every round; their logged metrics, reductions that XLA may
order differently inside the program, to float rounding); a member that goes non-finite stops
alone; a rerun loads its programs from the persistent compilation cache."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from fedjax_deep import cli
from fedjax_deep.sweep import TRACED

TINY = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")

# Each case: extra flags and a zipped sweep whose two members differ in every field it names, so
# a field that reached the program as a constant (member 0's value for everyone) shows up.
CASES = {
    "fedavg": ([], ("seed", "client_opt.learning_rate", "client_opt.momentum",
                    "client_opt.weight_decay", "server_opt.learning_rate", "server_opt.momentum"),
               ((0, 0.05, 0.9, 5e-4, 1.0, 0.5), (1, 0.02, 0.5, 1e-3, 0.7, 0.9))),
    "fedprox+adam": (["--config.algorithm.name=fedprox", "--config.server_opt.name=adam"],
                     ("algorithm.mu", "server_opt.learning_rate", "server_opt.b1",
                      "server_opt.b2", "server_opt.eps"),
                     ((0.01, 0.01, 0.9, 0.99, 1e-3), (0.3, 0.03, 0.8, 0.9, 1e-2))),
    "feddyn": (["--config.algorithm.name=feddyn"], ("algorithm.alpha",), ((0.01,), (0.1,))),
    "scaffold": (["--config.algorithm.name=scaffold"],
                 ("client_opt.learning_rate", "client_opt.momentum"), ((0.05, 0.9), (0.02, 0.5))),
    "fednova": (["--config.algorithm.name=fednova"], ("client_opt.momentum",), ((0.9,), (0.5,))),
    "dp": ([], ("privacy.noise_multiplier", "privacy.clip_norm", "privacy.target_epsilon",
                "privacy.delta", "privacy.adaptive_quantile", "privacy.adaptive_lr",
                "privacy.adaptive_count_noise"),
           ((0.6, 0.5, 90.0, 1e-5, 0.5, 0.2, 2.0), (1.0, 1.0, 80.0, 1e-6, 0.7, 0.3, 3.0))),
}  # fmt: skip
FAST = ("fedavg", "fedprox+adam")


def _train(workdir, *flags) -> int:
    return cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
                     "--config.compile_cache=off", *flags])  # fmt: skip


def _rows(path):
    return [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")}
            for x in path.read_text().splitlines() if x]  # fmt: skip


def _digests(path) -> list[dict]:
    """Each round's checkpoint's sha256 of the whole state (the checkpoints' own digest files)."""
    return [json.loads((path / "checkpoints" / str(r) / "digest" / "metadata").read_text())
            for r in (1, 2)]  # fmt: skip


def _assert_rows_close(a: list[dict], b: list[dict], where) -> None:
    assert [r.keys() for r in a] == [r.keys() for r in b], where
    for ra, rb in zip(a, b, strict=True):
        for k, v in ra.items():
            assert v == pytest.approx(rb[k], rel=1e-6, abs=1e-9, nan_ok=True), (where, k)


def test_cases_cover_every_traced_field():
    assert {f for _, fields, _ in CASES.values() for f in fields} == set(TRACED)


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=() if c in FAST else pytest.mark.slow) for c in CASES]
)
def test_members_states_equal_the_same_points_run_alone_bit_for_bit(tmp_path, case):
    extra, fields, values = CASES[case]
    sweep = f"--config.sweep=(({tuple(fields)!r}, {values!r}),)"
    assert _train(tmp_path / "together", *extra, sweep, "--config.sweep_axis=auto") == 0
    assert _train(tmp_path / "alone", *extra, sweep, "--config.sweep_axis=off") == 0
    names = sorted(p.name for p in (tmp_path / "alone").iterdir() if p.is_dir())
    assert len(names) == 2
    for name in names:
        info = json.loads((tmp_path / "together" / name / "run_info.json").read_text())
        assert info["sweep_axis"]["members"] == 2 and info["sweep_axis"]["execution"] == "map"
        together, alone = tmp_path / "together" / name, tmp_path / "alone" / name
        assert _digests(together) == _digests(alone), (case, name)
        _assert_rows_close(
            _rows(together / "metrics.jsonl"), _rows(alone / "metrics.jsonl"), (case, name)
        )
    # The members really differ (each got its own hyper-parameters).
    a, b = (_rows(tmp_path / "together" / n / "metrics.jsonl")[-1] for n in names)
    assert a["train/loss"] != b["train/loss"]


def test_shape_changing_fields_run_as_separate_programs(tmp_path):
    sweep = "--config.sweep=(('model.depth', (2, 3)), ('seed', (0, 1)))"
    assert _train(tmp_path, sweep) == 0
    for depth in (2, 3):
        info = json.loads((tmp_path / f"depth-{depth}_seed-1" / "run_info.json").read_text())
        assert info["sweep_axis"]["shared"] == [f"depth-{depth}_seed-0", f"depth-{depth}_seed-1"]
    # Momentum 0 drops the momentum buffer: a different state shape, so its own program.
    assert _train(tmp_path / "m", "--config.sweep=(('client_opt.momentum', (0.0, 0.9)),)") == 0
    info = json.loads((tmp_path / "m" / "momentum-0.0" / "run_info.json").read_text())
    assert info["sweep_axis"] is None


def test_a_member_that_goes_nonfinite_stops_alone(tmp_path, capsys):
    sweep = "--config.sweep=(('client_opt.learning_rate', (0.05, 100000.0)),)"
    assert _train(tmp_path, sweep) == 1
    err = capsys.readouterr().err
    assert "round 1: non-finite" in err and "the other members go on" in err
    assert "1 of 2 sweep points stopped" in err.splitlines()[-1]
    good, bad = tmp_path / "learning_rate-0.05", tmp_path / "learning_rate-100000.0"
    assert [r["round"] for r in _rows(good / "metrics.jsonl")] == [1, 2]
    assert json.loads((good / "summary.json").read_text())["final_accuracy"] > 0.5
    assert not _rows(bad / "metrics.jsonl") and not (bad / "summary.json").exists()
    assert (tmp_path / "report.md").exists()


def test_a_group_resumes_where_its_members_stopped(tmp_path):
    sweep = "--config.sweep=(('client_opt.learning_rate', (0.05, 0.02)),)"
    assert _train(tmp_path / "once", sweep, "--config.num_rounds=3") == 0
    assert _train(tmp_path / "twice", sweep, "--config.num_rounds=2") == 0
    assert _train(tmp_path / "twice", sweep, "--config.num_rounds=3") == 0
    for name in ("learning_rate-0.05", "learning_rate-0.02"):
        once, twice = (_rows(tmp_path / w / name / "metrics.jsonl") for w in ("once", "twice"))
        assert [r["round"] for r in twice] == [1, 2, 3] and once == twice


def test_a_rerun_loads_its_programs_from_the_persistent_cache(tmp_path):
    """A second process compiles nothing: its run_info counts the cache's hits."""
    env = {**os.environ, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "FEDJAX_DEEP_COMPILE_CACHE": str(tmp_path / "cache")}  # fmt: skip
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    hits = []
    for name in ("first", "second"):
        done = subprocess.run(
            [sys.executable, "-m", "fedjax_deep.cli", "train", "--config", TINY, "--workdir",
             str(tmp_path / name), "--no-progress", "--config.num_rounds=1"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        info = json.loads((tmp_path / name / "run_info.json").read_text())
        assert info["compile_cache"]["dir"] == str(tmp_path / "cache")
        hits.append(info["compile_cache"]["hits"])
    assert hits[0] == 0 and hits[1] >= 2  # the round and the evaluation
    assert any((tmp_path / "cache").iterdir())


def test_a_group_larger_than_memory_allows_runs_in_several_programs(tmp_path, monkeypatch):
    from fedjax_deep import experiment, train
    from fedjax_deep.config import load_config

    need = experiment.prepare(load_config(TINY)).memory["total"]
    monkeypatch.setattr(train, "available_memory_bytes", lambda: int(need * 2.5 / 0.8))
    assert _train(tmp_path, "--config.sweep=(('seed', (0, 1, 2)),)") == 0
    members = [json.loads((tmp_path / f"seed-{s}" / "run_info.json").read_text())["sweep_axis"]
               for s in (0, 1, 2)]  # fmt: skip
    assert members[0]["shared"] == members[1]["shared"] == ["seed-0", "seed-1"]
    assert members[2] is None  # the third runs alone
