"""fedjax_deep.analysis on inputs whose answers are known by hand: the protocol's statistics, the
run reader, arms named by role, and a comparison of hand-made runs (no training, no JAX)."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from fedjax_deep.analysis import compare as compare_mod
from fedjax_deep.analysis import report, runs, stats
from fedjax_deep.errors import InputError, WorkdirError
from fedjax_deep.runfiles import read_run

# -- stats ----------------------------------------------------------------------------------------


def test_plateau_value_rounds_to_and_area():
    rounds = np.array([1, 2, 3, 4])
    values = np.array([0.2, 0.4, 0.6, 0.8])
    assert stats.plateau_value(values, window=2) == pytest.approx(0.7)
    assert stats.rounds_to(rounds, values, 0.5) == 3
    assert stats.rounds_to(rounds, values, 0.9) is None
    # Trapezoids over rounds 1..4: (0.3 + 0.5 + 0.7) / 3 = 0.5; held flat at 0.8 up to round 6.
    assert stats.curve_area(rounds, values) == pytest.approx(0.5)
    assert stats.curve_area(rounds, values, horizon=6) == pytest.approx((1.5 + 1.6) / 5)
    assert math.isnan(stats.plateau_value(np.zeros(0)))


def test_paired_interval_matches_a_hand_computed_t_interval():
    a, b = [0.9, 0.8, 0.85, None], [0.7, 0.75, 0.6, 0.5]
    out = stats.paired_interval(a, b)
    d = np.array([0.2, 0.05, 0.25])
    assert out["n"] == 3 and out["dropped"] == 1
    assert out["mean"] == pytest.approx(d.mean())
    assert out["half"] == pytest.approx(4.302653 * d.std(ddof=1) / math.sqrt(3), rel=1e-5)
    assert out["resolved"] == (d.mean() > out["half"])
    assert out["per_seed"] == pytest.approx(list(d))


def test_interval_and_mean_ci_are_one_computation():
    values = [0.8, 0.82, 0.84, None, math.nan]
    stat = stats.interval(values)
    half = 4.302653 * np.std([0.8, 0.82, 0.84], ddof=1) / math.sqrt(3)
    assert stat["n"] == 3 and stat["half"] == pytest.approx(half, rel=1e-5)
    assert stats.mean_ci(values) == (stat["mean"], stat["half"], 3)
    assert stats.mean_ci([1.0])[2] == 1 and math.isnan(stats.mean_ci([1.0])[1])
    assert math.isnan(stats.mean_ci([])[0])
    assert stats.fmt_ci(0.8234, 0.0123, 100) == "82.3 ± 1.2"
    assert stats.fmt_ci(math.nan, 0.1) == "-" and stats.fmt_ci(0.5, math.nan) == "0.5"
    assert stats.fmt_gap({"mean": 0.012, "half": 0.02, "resolved": False}) == "1.2 ± 2.0 (n.r.)"
    assert stats.fmt_gap({"mean": None, "half": None, "resolved": False}) == "-"  # JSON's nan


def test_seeds_needed_for_the_spread_the_issue_measured():
    # FL at depth 8 after 5 rounds: sd about 7.5 points; a 3-seed interval is about +-19 points.
    assert stats.t_quantile(3) * 7.5 / math.sqrt(3) == pytest.approx(18.6, abs=0.1)
    n = stats.seeds_needed(7.5, 5.0)
    assert stats.t_quantile(n) * 7.5 / math.sqrt(n) <= 5.0
    assert stats.t_quantile(n - 1) * 7.5 / math.sqrt(n - 1) > 5.0


def test_choose_learning_rate_by_validation_mean_and_never_a_diverging_one():
    chosen, means = stats.choose_learning_rate(
        {0.01: [0.80, 0.82], 0.03: [0.86, None], 0.1: [0.84, 0.83]}
    )
    assert chosen == 0.1 and means[0.03] == -math.inf
    assert stats.choose_learning_rate({0.1: [0.8], 0.01: [0.8]})[0] == 0.01  # tie: smaller
    assert stats.grid_edge(0.1, [0.01, 0.03, 0.1]) is not None
    assert stats.grid_edge(0.03, [0.01, 0.03, 0.1]) is None


# -- runs -----------------------------------------------------------------------------------------


def test_parse_reference_and_field_values_of_old_configs():
    assert runs.parse_reference("mode=centralized, fl.batch_size=36") == {
        "mode": "centralized", "fl.batch_size": "36"}  # fmt: skip
    for bad in ("", "mode", "mode=", "=fl", "mode=fl,"):
        with pytest.raises(ValueError, match="FIELD=VALUE"):
            runs.parse_reference(bad)
    config = {"mode": "fl", "model": {"depth": 8}}  # a run made before model.norm_group_size
    assert runs.field_value(config, "model.depth") == 8
    with pytest.raises(KeyError, match="model.norm_group_size"):
        runs.field_value(config, "model.norm_group_size")
    defaults = {"model.norm_group_size": 0, "model.widths": ()}
    assert runs.field_value(config, "model.norm_group_size", defaults) == 0
    assert runs.field_value(config, "model.widths", defaults) == []  # as JSON holds a tuple
    assert runs.field_value(config, "model.skip", missing=None) is None
    assert runs.matches(config, {"mode": "fl", "model.depth": "8"})
    assert not runs.matches(config, {"model.skip": "True"})


def _config(mode, batch=36, **fields):
    config = {"mode": mode, "fl": {"batch_size": batch}}
    for f, v in fields.items():
        group, name = f.split("__")
        config.setdefault(group, {})[name] = v
    return config


def test_roles_from_configs():
    configs = [_config("fl"), _config("centralized"), _config("centralized", 360),
               _config("independent")]  # fmt: skip
    batch = runs.reference_batch(configs)
    assert batch == 36
    assert [runs.role(c, batch) for c in configs] == ["FL", "CL", "steps-matched CL", "null"]
    # Without an FL run, the smallest centralized batch is plain CL.
    only_cl = [_config("centralized", 320)]
    assert runs.role(only_cl[0], runs.reference_batch(only_cl)) == "CL"


def test_arm_names_are_roles_and_tell_apart_arms_that_share_one():
    arms = {
        "a": ("FL", {"mode": "fl", "algorithm.name": "fedavg", "server_opt.name": "sgd"}),
        "b": ("FL", {"mode": "fl", "algorithm.name": "fedprox", "server_opt.name": "sgd"}),
        "c": ("CL", {"mode": "centralized", "algorithm.name": "fedavg", "server_opt.name": "sgd"}),
        "d": ("FL", {"mode": "fl", "algorithm.name": "fedavg", "server_opt.name": "adam"}),
    }
    names = runs.arm_names(arms)
    assert names["c"] == "CL"
    # Two fields named 'name' clash: each is then named in full.
    assert names["a"] == "FL (algorithm.name=fedavg, server_opt.name=sgd)"
    assert names["b"] == "FL (algorithm.name=fedprox, server_opt.name=sgd)"
    assert names["d"] == "FL (algorithm.name=fedavg, server_opt.name=adam)"
    assert runs.arm_names({"x": ("FL", {"mode": "fl"})}) == {"x": "FL"}


def test_read_run_of_a_stopped_point_and_of_a_finished_one(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"mode": "fl"}))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"round": 1, "eval/accuracy": 0.5}) + "\n")
    run = read_run(tmp_path, finished=False)  # interrupted before its summary (and run_info)
    assert run["unfinished"] and not run["stopped"]
    assert run["summary"] is None and run["run_info"] == {}
    (tmp_path / "stopped.json").write_text(json.dumps({"round": 1, "error": "nan"}))
    run = read_run(tmp_path, finished=False)  # stopped on non-finite values
    assert run["stopped"] and not run["unfinished"]
    (tmp_path / "stopped.json").unlink()
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"round": 1, "train/loss": None}) + "\n")
    run = read_run(tmp_path, finished=False)  # written before stopped.json: its last loss says
    assert run["stopped"] and not run["unfinished"]
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"round": 1, "eval/accuracy": 0.5}) + "\n")
    run = read_run(tmp_path, finished=False)
    assert runs.accuracy_at(run["rows"], -1) == 0.5 and runs.accuracy_at(run["rows"], 0) == 0.5
    with pytest.raises(WorkdirError, match="summary.json is missing"):
        read_run(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(WorkdirError, match="run_info.json is missing"):
        read_run(tmp_path, finished=False)  # a finished run without its run_info is damaged


# -- a comparison of hand-made runs ---------------------------------------------------------------


def _run(mode, batch, lr, seed, acc, *, rounds=2, val=None):
    rows = [{"round": r, "val/accuracy": acc if val is None else val, "eval/accuracy": acc}
            for r in range(1, rounds + 1)]  # fmt: skip
    config = {"seed": seed, "mode": mode, "num_rounds": rounds, "model": {"depth": 2},
              "fl": {"batch_size": batch}, "client_opt": {"learning_rate": lr}}  # fmt: skip
    return {"name": f"{mode}-{batch}-{lr}-{seed}", "config": config, "run_info": {},
            "rows": rows, "stopped": False}  # fmt: skip


MAIN_JOB = {"sweep": [[["mode", "fl.batch_size", "client_opt.learning_rate"], []],
                      ["seed", [0, 1, 2]]]}  # fmt: skip
FINALS = {"fl": [0.80, 0.84, 0.83], "cl": [0.90, 0.91, 0.89], "matched": [0.86, 0.88, 0.85]}


def _main_job_runs():
    return [
        *(_run("fl", 36, 0.1, s, FINALS["fl"][s]) for s in range(3)),
        *(_run("centralized", 36, 0.03, s, FINALS["cl"][s]) for s in range(3)),
        *(_run("centralized", 360, 0.3, s, FINALS["matched"][s]) for s in range(3)),
        *(_run("independent", 36, 0.1, s, 0.1, rounds=1) for s in range(3)),
    ]


def test_one_comparison_holds_the_gaps_against_cl_and_steps_matched_cl(monkeypatch, tmp_path):
    """The main job's arms: FL's gap against CL and against steps-matched CL, both from one
    comparison, by hand; compare.md's headline table has the README's columns."""
    monkeypatch.setattr(runs, "read_sweep", lambda d: (MAIN_JOB, _main_job_runs()))
    result = compare_mod.compare("sweep", window=1, reference={"mode": "centralized"})
    arms = result["groups"][2]
    assert set(arms) == {"FL", "CL", "steps-matched CL", "null"}
    assert {n: a["role"] for n, a in arms.items()} == {n: n for n in arms}
    # Two arms match mode=centralized: the reference is the one whose role is CL.
    assert result["reference_arms"] == {2: "CL"} and "gap" not in arms["CL"]
    fl = arms["FL"]
    cl_gap = [c - f for c, f in zip(FINALS["cl"], FINALS["fl"], strict=True)]
    matched_gap = [m - f for m, f in zip(FINALS["matched"], FINALS["fl"], strict=True)]
    assert fl["gap"]["per_seed"] == pytest.approx(cl_gap)
    assert fl["gaps"]["CL"]["per_seed"] == pytest.approx(cl_gap)
    assert fl["gaps"]["steps-matched CL"]["per_seed"] == pytest.approx(matched_gap)
    assert set(arms["steps-matched CL"]["gaps"]) == {"CL"}
    assert "gaps" not in arms["null"] and "gap" not in arms["null"]
    text = compare_mod.markdown(result)
    head = ("| depth | CL | steps-matched CL | FL | CL - FL | steps-matched CL - FL | "
            "FL rounds to 80% of CL | FL certified |")  # fmt: skip
    assert head in text
    mean = np.mean(matched_gap) * 100
    half = stats.t_quantile(3) * np.std(matched_gap, ddof=1) / math.sqrt(3) * 100
    row = next(x for x in text.splitlines() if x.startswith("| 2 | 90.0"))
    # Its interval includes 0 (4.0 < 5.0); † as the curves are too short to certify a plateau.
    assert f"| {mean:.1f} ± {half:.1f} (n.r.) † |" in row
    assert "| gap vs steps-matched CL |" in text  # the arm table has the column too
    assert not any("mode=" in x for x in text.splitlines() if x.startswith("| 2 |"))  # by role


def test_an_unfinished_run_is_left_out_and_named_and_a_rising_seed_shows_its_gain(monkeypatch):
    """A run still training (or being extended) is not read as stopped (which would score it
    -inf): compare leaves it out and compare.md names it. An uncertified seed's column shows the
    certifying statistic, its last window's gain (never negative), not a slope."""
    unfinished = {**_run("fl", 36, 0.1, 3, 0.2), "unfinished": True}
    monkeypatch.setattr(runs, "read_sweep", lambda d: (MAIN_JOB, [*_main_job_runs(), unfinished]))
    result = compare_mod.compare("sweep", window=1, reference={"mode": "centralized"})
    assert sorted(result["groups"][2]["FL"]["per_seed"]) == [0, 1, 2]
    assert result["unfinished"] == [unfinished["name"]]
    text = compare_mod.markdown(result)
    assert "**1 unfinished run(s) left out** (still training" in text
    assert f"`{unfinished['name']}`" in text
    rounds = np.arange(1, 21)
    rising = 50 + rounds - 0.5 * (rounds % 2)  # climbs a point a round, with noise
    arm = {"per_seed": {7: compare_mod._plateau(rounds, rising / 100, 10, 0.005)}}
    # The last 10 evaluations' mean minus the 10 before: 10 points.
    assert compare_mod._rising(arm) == "7: +10.0"


def test_at_round_reads_every_run_at_one_round(monkeypatch):
    """An arm extended past another is read at the common round: its later rows are dropped (its
    end value is the one it had then), and a run that ends before the round is left out, named."""
    extended = [_run("fl", 36, 0.1, s, 0.5, rounds=4) for s in range(3)]
    for run in extended:  # 50% up to round 2, 90% after
        for row in run["rows"][2:]:
            row["eval/accuracy"] = row["val/accuracy"] = 0.9
    cl = [_run("centralized", 36, 0.03, s, 0.8) for s in range(3)]
    early = _run("centralized", 36, 0.03, 3, 0.8, rounds=1)
    monkeypatch.setattr(runs, "read_sweep", lambda d: (MAIN_JOB, [*extended, *cl, early]))
    last = compare_mod.compare("sweep", window=1, reference={"mode": "centralized"})
    assert last["groups"][2]["FL"]["gap"]["mean"] == pytest.approx(-0.1)  # 0.8 - 0.9 at its end
    # Read at each run's last round the gap pairs round 2 with round 4: marked as such.
    assert last["groups"][2]["FL"]["gap"]["ends_differ"] == [2, 4]
    assert "| -10.0 ± 0.0 † ‡ |" in compare_mod.markdown(last)
    at2 = compare_mod.compare("sweep", window=1, reference={"mode": "centralized"}, at_round=2)
    fl = at2["groups"][2]["FL"]
    assert fl["gap"]["mean"] == pytest.approx(0.3) and fl["per_seed"][0]["rounds"] == [1, 2]
    assert at2["short"] == [early["name"]] and 3 not in at2["groups"][2]["CL"]["per_seed"]
    assert "**Every run read at round 2**" in compare_mod.markdown(at2)
    assert "ends_differ" not in fl["gap"] and "‡ |" not in compare_mod.markdown(at2)
    with pytest.raises(InputError, match="--at-round=9: every run"):
        compare_mod.compare("sweep", window=1, at_round=9)


def test_compare_json_keeps_its_keys_and_names_sweeps_relative_to_its_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(runs, "read_sweep", lambda d: (MAIN_JOB, _main_job_runs()))
    sweep = tmp_path / "runs" / "e1"
    compare_mod.write_comparison([sweep], tmp_path / "out", window=1)
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["sweeps"] == ["../runs/e1"]
    assert {"group", "group_fields", "tune", "reference", "window", "tol", "groups"} <= set(saved)
    fl = saved["groups"]["2"]["FL"]
    assert {"arm", "chosen_lr", "grid", "grid_warning", "per_seed", "tuning_seeds", "divergence",
            "final", "gap", "area_gap", "rounds_to_50", "rounds_to_80"} <= set(fl)  # fmt: skip
    assert fl["arm"] == {"mode": "fl", "fl.batch_size": 36}
    assert (tmp_path / "out" / "curves.png").stat().st_size > 2000


def test_curves_of_many_groups_go_on_pages_of_six_panels(tmp_path):
    from fedjax_deep.analysis import plots

    arm = {"role": "FL", "chosen_lr": 0.1,
           "per_seed": {0: {"rounds": [1, 2], "accuracy": [0.1, 0.2]}}}  # fmt: skip
    result = {"group": "model.depth", "groups": {d: {"FL": arm} for d in range(8)}}
    assert plots.plot_curves(result, tmp_path / "curves.png") == ["curves.png", "curves_2.png"]


def test_report_says_when_no_row_pairs_fl_with_cl(tmp_path):
    """Each arm at its own learning rate (the main job) puts FL and CL on different rows: the
    report says the gap columns are empty and where the paired comparison is."""
    from fedjax_deep.analysis import report

    def groups(*rows):
        return {key: {mode: [{}] for mode in modes} for key, modes in rows}

    apart = groups(((8, 0.1), ("fl",)), ((8, 0.01), ("centralized",)), ((8, 0.3), ("independent",)))
    note = " ".join(report._unpaired_note(apart, tmp_path, {"compare": {"reference": ""}}))
    assert "No row pairs FL with CL" in note and "`fedjax-deep compare`" in note
    note = " ".join(
        report._unpaired_note(apart, tmp_path, {"compare": {"reference": "mode=centralized"}})
    )
    assert "`compare.md` beside this report" in note
    together = groups(((8, 0.1), ("fl", "centralized")), ((16, 0.1), ("fl",)))
    assert report._unpaired_note(together, tmp_path, {}) == []
    assert report._unpaired_note(groups(((8, 0.1), ("fl",))), tmp_path, {}) == []  # FL only


def test_seeds_added_at_the_chosen_rate_confirm_but_never_choose(monkeypatch):
    """Rates are compared on the seeds every rate ran; a later sweep that adds seeds at one rate
    only (a confirmation run) adds them to that rate's per-seed values, not to its score."""

    def run(lr, seed, val):
        rows = [{"round": r, "val/accuracy": val, "eval/accuracy": val} for r in (1, 2)]
        config = {"seed": seed, "mode": "fl", "num_rounds": 2, "model": {"depth": 2},
                  "client_opt": {"learning_rate": lr}}  # fmt: skip
        return {"name": f"{lr}-{seed}", "config": config, "run_info": {}, "rows": rows,
                "stopped": False}  # fmt: skip

    sweep = {"sweep": [["client_opt.learning_rate", [0.1, 0.01]], ["seed", [0, 1]]]}
    tuning = [run(0.1, 0, 0.80), run(0.1, 1, 0.80), run(0.01, 0, 0.70), run(0.01, 1, 0.70)]
    # The confirmation seeds at 0.01 are excellent: pooled, they would flip the choice to 0.01.
    extra = [run(0.01, s, 0.99) for s in range(2, 12)]
    sources = {"tuning": (sweep, tuning), "extra": ({"sweep": [["seed", list(range(2, 12))]]},
                                                    extra)}  # fmt: skip
    monkeypatch.setattr(runs, "read_sweep", lambda d: sources[d])
    arm = compare_mod.compare(["tuning", "extra"], window=1)["groups"][2]["FL"]
    assert arm["chosen_lr"] == 0.1 and arm["tuning_seeds"] == [0, 1]
    assert arm["grid"] == pytest.approx({0.01: 0.70, 0.1: 0.80})
    # Had the extra seeds been at the chosen rate, they would count in its per-seed values.
    extra = [run(0.1, s, 0.5) for s in range(2, 12)]
    sources["extra"] = ({"sweep": [["seed", list(range(2, 12))]]}, extra)
    arm = compare_mod.compare(["tuning", "extra"], window=1)["groups"][2]["FL"]
    assert arm["chosen_lr"] == 0.1 and sorted(arm["per_seed"]) == list(range(12))


# -- refusals: what cannot be computed is not computed --------------------------------------------


def _test_only_runs():
    """Two learning rates, two seeds, rows with test accuracy and no validation split."""
    out = []
    for lr, acc in ((0.1, 0.6), (0.3, 0.7)):
        for seed in (0, 1):
            run = _run("fl", 36, lr, seed, acc + 0.01 * seed)
            run["rows"] = [{k: v for k, v in r.items() if k != "val/accuracy"} for r in run["rows"]]
            out.append(run)
    return out


def test_tuning_without_a_validation_split_is_refused_unless_asked_on_test(monkeypatch):
    sweep = {"sweep": [["client_opt.learning_rate", [0.1, 0.3]], ["seed", [0, 1]]]}
    monkeypatch.setattr(runs, "read_sweep", lambda d: (sweep, _test_only_runs()))
    with pytest.raises(InputError, match=r"logged no validation accuracy .* --tune-on test"):
        compare_mod.compare("sweep", window=1)
    result = compare_mod.compare("sweep", window=1, tune_on="test")
    arm = result["groups"][2]["FL"]
    assert result["tuned_on"] == "test" and arm["chosen_lr"] == 0.3
    assert arm["grid"] == {0.1: pytest.approx(0.605), 0.3: pytest.approx(0.705)}
    text = compare_mod.markdown(result)
    assert text.startswith("**Tuned on test accuracy**") and "lr (chosen on test)" in text
    with pytest.raises(InputError, match=r"--group='model.nope': no run of sweep"):
        compare_mod.compare("sweep", window=1, tune_on="test", group="model.nope")
    monkeypatch.setattr(runs, "read_sweep", lambda d: (sweep, []))
    with pytest.raises(InputError, match="no point of the sweep has started"):
        compare_mod.compare("sweep", window=1)


def test_a_swept_value_with_a_bar_or_a_line_break_keeps_the_report_table_whole():
    run = _run("fl", 36, 0.1, 0, 0.5)
    run["config"]["model"] = {"name": "plain_cnn", "depth": 2, "width": 8}
    table = report.sweep_table(["data.data_dir"], {("a|b\nc",): {"fl": [run]}})
    lines = table.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| a\\|b c | plain_cnn-2 w8 |")
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines[::2])


def test_committed_comparisons_record_no_machine_paths():
    root = pathlib.Path(__file__).parents[1] / "experiments"
    found = sorted(root.glob("*/results/*/compare.json"))
    assert found
    for path in found:
        sweeps = json.loads(path.read_text()).get("sweeps") or []
        assert not [s for s in sweeps if pathlib.PurePath(s).is_absolute()], path
