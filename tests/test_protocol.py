"""The comparison protocol's rules on curves whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedjax_deep import protocol


def test_plateau_round_finds_where_gains_stop():
    rounds = np.arange(1, 21)
    rising = np.minimum(rounds * 0.1, 0.9)  # 0.1, 0.2, ..., 0.9 from round 9 on
    r = protocol.plateau_round(rounds, rising, window=3, tol=0.005)
    # The first i with mean(next 3) - mean(previous 3) < 0.005: previous 3 = 0.9, from round 11.
    assert r == 11
    assert protocol.plateau_round(rounds, rounds * 0.01, window=3) is None  # still rising
    assert protocol.plateau_round(rounds[:4], rising[:4], window=3) is None  # too short


def test_plateau_value_rounds_to_and_area():
    rounds = np.array([1, 2, 3, 4])
    values = np.array([0.2, 0.4, 0.6, 0.8])
    assert protocol.plateau_value(values, window=2) == pytest.approx(0.7)
    assert protocol.rounds_to(rounds, values, 0.5) == 3
    assert protocol.rounds_to(rounds, values, 0.9) is None
    # Trapezoids over rounds 1..4: (0.3 + 0.5 + 0.7) / 3 = 0.5; held flat at 0.8 up to round 6.
    assert protocol.curve_area(rounds, values) == pytest.approx(0.5)
    assert protocol.curve_area(rounds, values, horizon=6) == pytest.approx((1.5 + 1.6) / 5)
    assert math.isnan(protocol.plateau_value(np.zeros(0)))


def test_paired_interval_matches_a_hand_computed_t_interval():
    a, b = [0.9, 0.8, 0.85, None], [0.7, 0.75, 0.6, 0.5]
    out = protocol.paired_interval(a, b)
    d = np.array([0.2, 0.05, 0.25])
    assert out["n"] == 3 and out["dropped"] == 1
    assert out["mean"] == pytest.approx(d.mean())
    assert out["half"] == pytest.approx(4.302653 * d.std(ddof=1) / math.sqrt(3), rel=1e-5)
    assert out["resolved"] == (d.mean() > out["half"])
    assert out["per_seed"] == pytest.approx(list(d))


def test_seeds_needed_for_the_spread_the_issue_measured():
    # FL at depth 8 after 5 rounds: sd about 7.5 points; a 3-seed interval is about +-19 points.
    assert protocol.t_quantile(3) * 7.5 / math.sqrt(3) == pytest.approx(18.6, abs=0.1)
    n = protocol.seeds_needed(7.5, 5.0)
    assert protocol.t_quantile(n) * 7.5 / math.sqrt(n) <= 5.0
    assert protocol.t_quantile(n - 1) * 7.5 / math.sqrt(n - 1) > 5.0


def test_choose_learning_rate_by_validation_mean_and_never_a_diverging_one():
    chosen, means = protocol.choose_learning_rate(
        {0.01: [0.80, 0.82], 0.03: [0.86, None], 0.1: [0.84, 0.83]}
    )
    assert chosen == 0.1 and means[0.03] == -math.inf
    assert protocol.choose_learning_rate({0.1: [0.8], 0.01: [0.8]})[0] == 0.01  # tie: smaller
    assert protocol.grid_edge(0.1, [0.01, 0.03, 0.1]) is not None
    assert protocol.grid_edge(0.03, [0.01, 0.03, 0.1]) is None


def test_compare_tunes_each_arm_on_validation_and_pairs_seeds(tmp_path):
    import json
    import pathlib

    from fedjax_deep import cli

    tiny = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")
    sweep = ("(('mode', ('fl', 'centralized')), ('client_opt.learning_rate', (0.05, 0.01)), "
             "('seed', (0, 1)))")  # fmt: skip
    code = cli.main(["train", "--config", tiny, "--workdir", str(tmp_path), "--no-progress",
                     "--config.num_rounds=3", "--config.data.validation_fraction=0.2",
                     f"--config.sweep={sweep}", "--config.compile_cache=off"])  # fmt: skip
    assert code == 0
    result = protocol.compare(tmp_path, window=2)
    arms = result["groups"][2]  # model.depth of digits_tiny
    assert set(arms) == {"mode=fl", "mode=centralized"}
    for name, arm in arms.items():
        # The choice is the learning rate with the best mean validation plateau, by hand.
        by_hand = {}
        for lr in (0.05, 0.01):
            vals = []
            for seed in (0, 1):
                mode = name.split("=")[1]
                run = tmp_path / f"mode-{mode}_learning_rate-{lr}_seed-{seed}"
                rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
                vals.append(np.mean([r["val/accuracy"] for r in rows][-2:]))
            by_hand[lr] = np.mean(vals)
        assert arm["chosen_lr"] == max(by_hand, key=by_hand.get)
        assert arm["grid"] == pytest.approx(by_hand)
        assert sorted(arm["per_seed"]) == [0, 1]
    fl, cl = arms["mode=fl"], arms["mode=centralized"]
    assert "gap" not in cl and fl["gap"]["n"] == 2
    expected = [cl["per_seed"][s]["final"] - fl["per_seed"][s]["final"] for s in (0, 1)]
    assert fl["gap"]["per_seed"] == pytest.approx(expected)
    text = protocol.markdown(result)
    assert "| 2 | mode=fl |" in text and "(reference)" in text and "-> " in text
    # Scale-free divergence of the FL arm at its chosen rate (CL has no client axis).
    d = fl["divergence"]
    assert cl["divergence"] is None and d["layers"] == ["conv_0", "conv_1", "head"]
    rows = [json.loads(x) for x in (tmp_path / (
        f"mode-fl_learning_rate-{fl['chosen_lr']}_seed-0") / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    assert d["update_round1_body_per_seed"][0] == pytest.approx(np.mean(
        [rows[0][f"divergence/conv_{i}/kernel/update"] for i in (0, 1)]))  # fmt: skip
    assert d["update_last_head_per_seed"][0] == pytest.approx(
        rows[-1]["divergence/head/kernel/update"]
    )
    assert "Scale-free divergence" in text
    assert cli.main(["compare", str(tmp_path), "--window", "2"]) == 0
    assert (tmp_path / "divergence.png").stat().st_size > 2000
    assert (tmp_path / "curves.png").stat().st_size > 2000
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["groups"]["2"]["mode=fl"]["chosen_lr"] == fl["chosen_lr"]
    assert (tmp_path / "compare.md").read_text() == text


def test_cka_probe_logs_representation_similarity_and_compare_reports_it(tmp_path, capsys):
    import json
    import pathlib

    from fedjax_deep import cli

    tiny = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")
    base = ["train", "--config", tiny, "--no-progress", "--config.num_rounds=2",
            "--config.compile_cache=off", "--config.data.validation_fraction=0.2"]  # fmt: skip
    bad = tmp_path / "bad"
    assert cli.main([*base, "--workdir", str(bad), "--config.fl.cka_probe=1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "fl.cka_probe" in err and "1" in err and "between 2 and" in err
    assert not bad.exists()  # checked before the run directory is touched
    sweep = "(('seed', (0, 1)),)"
    code = cli.main([*base, "--workdir", str(tmp_path / "s"), "--config.fl.cka_probe=64",
                     f"--config.sweep={sweep}"])  # fmt: skip
    assert code == 0
    rows = [json.loads(x) for x in (tmp_path / "s" / "seed-0" / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    layers = ["conv_0", "conv_1", "head"]
    for row in rows:
        values = [row[f"divergence/{name}/cka"] for name in layers]
        assert all(0.0 < v <= 1.0 for v in values)  # clients trained apart: similar, not equal
        assert row["divergence/mean/cka"] == pytest.approx(np.mean(values[:2]))
    result = protocol.compare(tmp_path / "s", window=1)
    d = result["groups"][2]["run"]["divergence"]
    assert d["cka_last"] == pytest.approx([np.mean(
        [json.loads((tmp_path / "s" / f"seed-{s}" / "metrics.jsonl").read_text().splitlines()[-1])
         [f"divergence/{name}/cka"] for s in (0, 1)]) for name in layers])  # fmt: skip
    assert "linear CKA" in protocol.markdown(result)
    assert cli.main(["compare", str(tmp_path / "s"), "--window", "1"]) == 0
    assert (tmp_path / "s" / "cka.png").stat().st_size > 2000


def test_compare_reads_a_control_sweep_with_its_baseline_and_pairs_each_group(tmp_path):
    """A control sweep (residual nets, and FedProx on the baseline net, zipped with the mode) read
    together with the baseline sweep it shares seeds with: each architecture is a group with its
    own CL reference, the FL-only FedProx arm is paired with the baseline's CL, and a run whose
    config predates a field is read at that field's default."""
    import json
    import pathlib

    from fedjax_deep import cli, report

    tiny = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")
    common = ["--no-progress", "--config.num_rounds=2", "--config.data.validation_fraction=0.2",
              "--config.compile_cache=off"]  # fmt: skip
    base, control = tmp_path / "base", tmp_path / "control"
    sweep = "(('mode', ('fl', 'centralized')), ('seed', (0, 1)))"
    assert cli.main(["train", "--config", tiny, "--workdir", str(base), *common,
                     f"--config.sweep={sweep}"]) == 0  # fmt: skip
    sweep = (
        "((('model.skip', 'mode', 'algorithm.name'), ((True, 'fl', 'fedavg'), "
        "(True, 'centralized', 'fedavg'), (False, 'fl', 'fedprox'))), ('seed', (0, 1)))"
    )
    assert cli.main(["train", "--config", tiny, "--workdir", str(control), *common,
                     f"--config.sweep={sweep}"]) == 0  # fmt: skip
    # The baseline's runs predate model.norm_group_size (as E1's do): drop it from one config.
    old = base / "mode-fl_seed-0" / "config.json"
    config = json.loads(old.read_text())
    del config["model"]["norm_group_size"]
    old.write_text(json.dumps(config))

    result = protocol.compare([base, control], group="model.depth,model.skip", window=1)
    assert result["group"] == "group" and set(result["groups"]) == {"skip=False", "skip=True"}
    plain_arms, residual_arms = result["groups"]["skip=False"], result["groups"]["skip=True"]
    assert set(plain_arms) == {"mode=fl, name=fedavg", "mode=centralized, name=fedavg",
                               "mode=fl, name=fedprox"}  # fmt: skip
    assert set(residual_arms) == {"mode=fl, name=fedavg", "mode=centralized, name=fedavg"}

    def final(sweep_dir, name):
        rows = [
            json.loads(x) for x in (sweep_dir / name / "metrics.jsonl").read_text().splitlines()
        ]
        return rows[-1]["eval/accuracy"]

    prox = plain_arms["mode=fl, name=fedprox"]["gap"]["per_seed"]
    assert prox == pytest.approx([
        final(base, f"mode-centralized_seed-{s}")
        - final(control, f"skip-False_mode-fl_name-fedprox_seed-{s}") for s in (0, 1)])  # fmt: skip
    res = residual_arms["mode=fl, name=fedavg"]["gap"]["per_seed"]
    assert res == pytest.approx([
        final(control, f"skip-True_mode-centralized_name-fedavg_seed-{s}")
        - final(control, f"skip-True_mode-fl_name-fedavg_seed-{s}") for s in (0, 1)])  # fmt: skip

    out = tmp_path / "both"
    assert cli.main(["compare", str(base), str(control), "--out", str(out), "--group",
                     "model.depth,model.skip", "--window", "1"]) == 0  # fmt: skip
    assert "| skip=True | mode=fl, name=fedavg |" in (out / "compare.md").read_text()
    assert (out / "curves.png").stat().st_size > 2000

    # The sweep report pairs FL with the CL of its own group and shows FedProx alone; its
    # settings are the points' own (the root config is plain FedAvg without skips).
    fields, groups = report.collect(control)
    assert fields == ["model.skip", "algorithm.name"]
    assert set(groups[(False, "fedprox")]) == {"fl"}
    assert set(groups[(True, "fedavg")]) == {"fl", "centralized"}
    text = report.write_sweep_report(control).read_text()
    assert "rounds 2" in text and "Settings as run" in text
    assert "No row pairs FL with CL" not in text  # the residual row pairs them


def test_train_writes_the_comparison_with_the_null_reference(tmp_path):
    """``compare.reference`` in a config: one ``train`` command writes the sweep report and the
    comparison; FL's per-layer divergence after round 1 is divided by the null reference's
    (``mode='independent'``, one round), seeds paired, and the null arm is not compared to CL."""
    import json
    import pathlib

    from fedjax_deep import cli

    tiny = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")
    sweep = ("((('mode', 'data.partition', 'num_rounds'), (('fl', 'iid', 2), "
             "('centralized', 'iid', 2), ('independent', 'full', 1))), ('seed', (0, 1)))")  # fmt: skip
    assert cli.main(["train", "--config", tiny, "--workdir", str(tmp_path), "--no-progress",
                     "--config.data.validation_fraction=0.2", "--config.compile_cache=off",
                     f"--config.sweep={sweep}", "--config.compare.reference=mode=centralized",
                     "--config.fl.local_steps=3"]) == 0  # fmt: skip
    saved = json.loads((tmp_path / "compare.json").read_text())
    arms = saved["groups"]["2"]
    fl = arms["mode=fl, partition=iid, num_rounds=2"]
    null = arms["mode=independent, partition=full, num_rounds=1"]
    assert "gap" in fl and "gap" not in null and "null_ratio" not in null

    def first_row(name):
        return json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])

    layer = "conv_0"
    by_hand = np.mean([first_row(f"mode-fl_partition-iid_num_rounds-2_seed-{s}")[
        f"divergence/{layer}/kernel/relative"] for s in (0, 1)]) / np.mean([
        first_row(f"mode-independent_partition-full_num_rounds-1_seed-{s}")[
            f"divergence/{layer}/kernel/relative"] for s in (0, 1)])  # fmt: skip
    assert fl["null_ratio"]["layers"][0] == layer
    assert fl["null_ratio"]["relative"][0] == pytest.approx(by_hand)
    text = (tmp_path / "compare.md").read_text()
    assert "FL over the null reference" in text and "(null reference" in text
    assert (tmp_path / "null_ratio.png").stat().st_size > 2000
    assert "No row pairs FL with CL" not in (tmp_path / "report.md").read_text()  # they share a row


def test_report_says_when_no_row_pairs_fl_with_cl(tmp_path):
    """Each arm at its own learning rate (the main job) puts FL and CL on different rows: the
    report says the gap columns are empty and where the paired comparison is."""
    from fedjax_deep import report

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
    monkeypatch.setattr(protocol, "load_runs", lambda d: sources[d])
    arm = protocol.compare(["tuning", "extra"], window=1)["groups"][2]["run"]
    assert arm["chosen_lr"] == 0.1 and arm["tuning_seeds"] == [0, 1]
    assert arm["grid"] == pytest.approx({0.01: 0.70, 0.1: 0.80})
    # Had the extra seeds been at the chosen rate, they would count in its per-seed values.
    extra = [run(0.1, s, 0.5) for s in range(2, 12)]
    sources["extra"] = ({"sweep": [["seed", list(range(2, 12))]]}, extra)
    arm = protocol.compare(["tuning", "extra"], window=1)["groups"][2]["run"]
    assert arm["chosen_lr"] == 0.1 and sorted(arm["per_seed"]) == list(range(12))
