"""The comparison and the sweep report on real runs: tiny sweeps trained by the CLI, each number
checked against the runs' own metrics.jsonl (tests/test_analysis.py has the hand-made cases)."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_deep.analysis import report
from fedjax_deep.analysis.compare import compare, markdown


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
    result = compare(tmp_path, window=2)
    arms = result["groups"][2]  # model.depth of digits_tiny
    assert set(arms) == {"FL", "CL"}  # named by role
    for name, arm in arms.items():
        # The choice is the learning rate with the best mean validation plateau, by hand.
        by_hand = {}
        for lr in (0.05, 0.01):
            vals = []
            for seed in (0, 1):
                mode = {"FL": "fl", "CL": "centralized"}[name]
                run = tmp_path / f"mode-{mode}_learning_rate-{lr}_seed-{seed}"
                rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
                vals.append(np.mean([r["val/accuracy"] for r in rows][-2:]))
            by_hand[lr] = np.mean(vals)
        assert arm["chosen_lr"] == max(by_hand, key=by_hand.get)
        assert arm["grid"] == pytest.approx(by_hand)
        assert sorted(arm["per_seed"]) == [0, 1]
    fl, cl = arms["FL"], arms["CL"]
    assert "gap" not in cl and fl["gap"]["n"] == 2
    expected = [cl["per_seed"][s]["final"] - fl["per_seed"][s]["final"] for s in (0, 1)]
    assert fl["gap"]["per_seed"] == pytest.approx(expected)
    text = markdown(result)
    assert "| 2 | FL |" in text and "(reference)" in text and "-> " in text
    assert fl["gaps"] == {"CL": fl["gap"]}  # the one reference-role arm
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
    assert saved["groups"]["2"]["FL"]["chosen_lr"] == fl["chosen_lr"]
    assert saved["sweeps"] == ["."]  # relative to compare.json's folder, here the sweep's own
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
    result = compare(tmp_path / "s", window=1)
    d = result["groups"][2]["FL"]["divergence"]
    assert d["cka_last"] == pytest.approx([np.mean(
        [json.loads((tmp_path / "s" / f"seed-{s}" / "metrics.jsonl").read_text().splitlines()[-1])
         [f"divergence/{name}/cka"] for s in (0, 1)]) for name in layers])  # fmt: skip
    assert "linear CKA" in markdown(result)
    assert cli.main(["compare", str(tmp_path / "s"), "--window", "1"]) == 0
    assert (tmp_path / "s" / "cka.png").stat().st_size > 2000


@pytest.mark.slow  # ~60 s; the suite's budget: the tuning and pairing are tested fast by test_compare_tunes_each_arm_on_validation_and_pairs_seeds
def test_compare_reads_a_control_sweep_with_its_baseline_and_pairs_each_group(tmp_path):
    """A control sweep (residual nets, and FedProx on the baseline net, zipped with the mode) read
    together with the baseline sweep it shares seeds with: each architecture is a group with its
    own CL reference, the FL-only FedProx arm is paired with the baseline's CL, and a run whose
    config predates a field is read at that field's default."""
    import json
    import pathlib

    from fedjax_deep import cli

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

    result = compare([base, control], group="model.depth,model.skip", window=1)
    assert result["group"] == "group" and set(result["groups"]) == {"skip=False", "skip=True"}
    plain_arms, residual_arms = result["groups"]["skip=False"], result["groups"]["skip=True"]
    # By role; the two FL arms are told apart by their algorithm.
    assert set(plain_arms) == {"FL (name=fedavg)", "CL", "FL (name=fedprox)"}
    assert set(residual_arms) == {"FL (name=fedavg)", "CL"}

    def final(sweep_dir, name):
        rows = [
            json.loads(x) for x in (sweep_dir / name / "metrics.jsonl").read_text().splitlines()
        ]
        return rows[-1]["eval/accuracy"]

    prox = plain_arms["FL (name=fedprox)"]["gap"]["per_seed"]
    assert prox == pytest.approx([
        final(base, f"mode-centralized_seed-{s}")
        - final(control, f"skip-False_mode-fl_name-fedprox_seed-{s}") for s in (0, 1)])  # fmt: skip
    res = residual_arms["FL (name=fedavg)"]["gap"]["per_seed"]
    assert res == pytest.approx([
        final(control, f"skip-True_mode-centralized_name-fedavg_seed-{s}")
        - final(control, f"skip-True_mode-fl_name-fedavg_seed-{s}") for s in (0, 1)])  # fmt: skip

    out = tmp_path / "both"
    assert cli.main(["compare", str(base), str(control), "--out", str(out), "--group",
                     "model.depth,model.skip", "--window", "1"]) == 0  # fmt: skip
    assert "| skip=True | FL (name=fedavg) |" in (out / "compare.md").read_text()
    saved = json.loads((out / "compare.json").read_text())
    assert saved["sweeps"] == ["../base", "../control"]
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
    fl, null = arms["FL"], arms["null"]
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
