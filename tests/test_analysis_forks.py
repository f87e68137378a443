"""fedjax_deep.analysis.forks (``fedjax-deep forks``) on a tiny real forks sweep (digits, depth 2, three seeds): its numbers
are the rows' own, recomputed here; it refuses a sweep without forks or without two seeds in one
line (exit 2, nothing written), and reports a partial sweep's finished seeds."""

import json
import math
import re
import shutil

import numpy as np
import pytest
from scipy import stats as sp

from fedjax_deep import cli, train
from fedjax_deep.analysis import forks as forks_report
from fedjax_deep.config import default_config
from fedjax_deep.fl.forks import mix_masks

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Forks at rounds 1 and 2 (fork_last) with the penalty and CKA, three seeds in one program;
    the sweep's directory."""
    c = default_config()
    c.model.depth, c.model.width = 2, 4
    c.fl.num_clients, c.fl.local_steps, c.fl.batch_size = 2, 2, 16
    c.num_rounds = 2
    c.checkpoint.every_rounds = 0
    c.log.tensorboard = "off"
    c.fl.fork_rounds, c.fl.fork_last, c.fl.averaging_penalty = (1,), True, True
    c.fl.cka_probe = 16
    c.sweep = ((("model.depth", "client_opt.learning_rate"), ((2, 0.05),)), ("seed", SEEDS))
    workdir = tmp_path_factory.mktemp("forks_sweep") / "sweep"
    train.run(c, workdir, progress=False)
    return workdir


@pytest.fixture(scope="module")
def written(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "e7"
    assert cli.main(["forks", str(sweep), "--out", str(out)]) == 0
    return out, json.loads((out / "forks.json").read_text())


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


def _runs(sweep):
    return sorted(p for p in sweep.iterdir() if (p / "config.json").exists())


def _t(values):
    """Mean, 95% t half-width and two-sided p of ``values`` against 0, by hand."""
    v = np.asarray(values, float)
    n, mean, sd = len(v), float(v.mean()), float(v.std(ddof=1))
    half = sp.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, half, float(2 * sp.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def test_the_report_numbers_are_the_rows_own(sweep, written):
    out, record = written
    assert sorted(p.name for p in out.iterdir()) == sorted(forks_report.FILES)
    rows = {seed: _rows(run) for seed, run in zip(SEEDS, _runs(sweep), strict=True)}
    tables = record["tables"]["depths"]["2"]
    assert tables["layers"] == ["conv_0", "conv_1", "head"] and tables["seeds"] == list(SEEDS)
    forks = tables["forks"]
    assert sorted(forks) == ["1", "2"]
    for r in (1, 2):
        row = {seed: next(x for x in rows[seed] if x["round"] == r) for seed in SEEDS}
        f = forks[str(r)]
        # The penalty of one seed, and its interval over the seeds.
        one = record["per_seed"]["2"]["seeds"]["1"]["forks"][str(r)]["penalty"]
        assert one == pytest.approx(row[1]["eval/client_accuracy"] - row[1]["eval/accuracy"],
                                    abs=1e-6)  # fmt: skip
        penalty = [100 * row[s]["eval/averaging_penalty"] for s in SEEDS]
        mean, half, _ = _t(penalty)
        assert f["penalty"]["mean"] == pytest.approx(mean) and f["penalty"]["half"] == (
            pytest.approx(half))  # fmt: skip
        # The cost of averaging layer l alone: prefix_0 - only_l, per seed, in points.
        for layer in (1, 2, 3):
            cost = [100 * (row[s]["fork/mix/prefix_0/accuracy"]
                           - row[s][f"fork/mix/only_{layer}/accuracy"]) for s in SEEDS]  # fmt: skip
            assert f["layer_cost"][layer - 1]["per_seed"] == pytest.approx(cost)
            assert f["layer_cost"][layer - 1]["mean"] == pytest.approx(_t(cost)[0])
            ratio = [row[s][f"fork/{('conv_0', 'conv_1', 'head')[layer - 1]}/update_ratio"]
                     for s in SEEDS]  # fmt: skip
            assert f["update_ratio"][layer - 1]["mean"] == pytest.approx(np.mean(ratio))
        # L = 3: the input half is layer 1 (prefix_1), the output half layer 3 (suffix_1).
        diff = [100 * (row[s]["fork/mix/suffix_1/accuracy"] - row[s]["fork/mix/prefix_1/accuracy"])
                for s in SEEDS]  # fmt: skip
        mean, half, p = _t(diff)
        test = f["input_minus_output"]
        assert (test["mean"], test["half"], test["p"]) == pytest.approx((mean, half, p))
    # Holm over the two tests by hand: the smaller p doubled, the larger at least that.
    p1, p2 = (forks[r]["input_minus_output"]["p"] for r in ("1", "2"))
    lo, hi = min(2 * min(p1, p2), 1.0), max(min(2 * min(p1, p2), 1.0), max(p1, p2))
    assert sorted(forks[r]["input_minus_output"]["holm"] for r in ("1", "2")) == pytest.approx(
        [lo, hi])  # fmt: skip
    # The last evaluation's penalty, and the markdown shows the tables' numbers.
    last = [100 * rows[s][-1]["eval/averaging_penalty"] for s in SEEDS]
    assert tables["last_eval"]["penalty"]["mean"] == pytest.approx(np.mean(last))
    text = (out / "forks.md").read_text()
    m, h = forks["2"]["input_minus_output"]["mean"], forks["2"]["input_minus_output"]["half"]
    assert f"{m:.1f} ± {h:.1f}" in text and "Depth 2 (3 seeds): the cost of averaging" in text
    # The sentence says whether each round's contrast survives Holm, not only whether it excludes 0.
    for r in ("1", "2"):
        holm_p = forks[r]["input_minus_output"]["holm"]
        kept = "survives Holm" if holm_p < 0.05 else "does not survive Holm"
        t = forks[r]["input_minus_output"]
        where = "excludes 0" if t["resolved"] else "includes 0"
        fixed = re.escape(f"round {r} {t['mean']:+.1f} ± {t['half']:.1f} ({where}; Holm p ")
        assert re.search(fixed + rf"[^:]+: {kept}\)", text)
    for png in ("averaging_penalty.png", "layer_cost.png", "null_ratio_forks.png"):
        assert (out / png).stat().st_size > 5000


def test_a_partial_sweep_reports_its_finished_seeds(sweep, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(sweep, partial, ignore=shutil.ignore_patterns("checkpoints"))
    (_runs(partial)[0] / "summary.json").unlink()  # seed 0 has not finished
    lone = partial / "depth-3_lone"  # a depth with one finished seed: listed, no numbers
    shutil.copytree(_runs(partial)[1], lone)
    config = json.loads((lone / "config.json").read_text())
    config["model"]["depth"] = 3
    (lone / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert cli.main(["forks", str(partial), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line == "forks: 3 of 4 runs finished, depths 2; 5 files" and len(line) <= 80
    record = json.loads((out / "forks.json").read_text())
    assert record["tables"]["depths"]["2"]["seeds"] == [1, 2]
    assert record["skipped"] == [_runs(partial)[0].name]
    text = (out / "forks.md").read_text()
    assert "Depth 3: 1 finished seed (1); intervals need at least 2, so no numbers." in text


def test_runs_that_do_not_fork_are_left_out_not_refused(sweep, tmp_path, capsys):
    """A sweep's CL arm (no forks, no penalty) beside its FL arm: the report is the FL arm's."""
    copy = tmp_path / "mixed"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("checkpoints"))
    cl = copy / "cl_arm"
    shutil.copytree(_runs(copy)[0], cl)
    config = json.loads((cl / "config.json").read_text())
    config["mode"] = "centralized"
    config["fl"].update(fork_rounds=[], fork_last=False, averaging_penalty=False)
    (cl / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert cli.main(["forks", str(copy), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("forks: 3 of 3 runs finished, depths 2;")
    assert json.loads((out / "forks.json").read_text())["tables"]["depths"]["2"]["seeds"] == [
        0,
        1,
        2,
    ]


@pytest.mark.parametrize("case", ["no forks", "one seed"])
def test_refusals_are_one_line_exit_2_and_write_nothing(sweep, tmp_path, capsys, case):
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("checkpoints"))
    if case == "no forks":
        for run in [copy, *_runs(copy)]:
            config = json.loads((run / "config.json").read_text())
            config["fl"].update(fork_rounds=[], fork_last=False)
            (run / "config.json").write_text(json.dumps(config))
            if run != copy:
                rows = [{k: v for k, v in r.items() if not k.startswith("fork/")}
                        for r in _rows(run)]  # fmt: skip
                (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        expected = "ran without fl.fork_rounds"
    else:
        for run in _runs(copy)[1:]:
            shutil.rmtree(run)
        expected = "fewer than 2 finished seeds at every depth (depth 2: 1)"
    out = tmp_path / "out"
    assert cli.main(["forks", str(copy), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and expected in captured.err
    assert not out.exists()


def test_the_halves_are_disjoint_equal_and_leave_out_only_the_middle():
    assert forks_report.halves(3) == (1, 3, 2)
    assert forks_report.halves(17) == (8, 10, 9)
    assert forks_report.halves(4) == (2, 3, None)
    for num_layers in (2, 3, 9, 16, 17):
        h, first, middle = forks_report.halves(num_layers)
        names, masks = mix_masks(num_layers)
        inside, outside = masks[names.index(f"prefix_{h}")], masks[names.index(f"suffix_{h}")]
        assert inside.sum() == outside.sum() == h and not np.any(inside & outside)
        assert np.flatnonzero(outside)[0] + 1 == first
        left = np.flatnonzero(~(inside | outside)) + 1
        assert left.tolist() == ([] if middle is None else [middle])
    with pytest.raises(ValueError, match="at least 2 layers"):
        forks_report.halves(1)
