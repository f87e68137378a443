"""experiments/depth_divergence/scripts/claims_tests.py: every cited test as one family, its raw,
Holm and Benjamini-Hochberg p-values worked by hand on a small fixture."""

import importlib.util
import json
import math
import pathlib
import sys

import pytest
from scipy import stats as sp

STUDY = pathlib.Path(__file__).parents[1]


@pytest.fixture(scope="module")
def ct():
    sys.path.insert(0, str(STUDY / "scripts"))
    spec = importlib.util.spec_from_file_location("claims_tests", STUDY / "scripts" / "claims_tests.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    sys.modules["claims_tests"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _arm(mode, finals):
    return {"arm": {"mode": mode, "fl.batch_size": 36}, "chosen_lr": 0.1, "grid": {"0.1": 0.5},
            "per_seed": {str(s): {"final": f} for s, f in enumerate(finals)}}  # fmt: skip


CL2, FL2 = [0.90, 0.91, 0.89, 0.90], [0.85, 0.87, 0.83, 0.86]
CL16, FL16 = [0.95, 0.96, 0.95, 0.94], [0.80, 0.90, 0.70, 0.88]
RESULT = {"groups": {
    "depth=2": {"cl": _arm("centralized", CL2), "fl": _arm("fl", FL2)},
    "depth=16": {"cl": _arm("centralized", CL16), "fl": _arm("fl", FL16)},
}}  # fmt: skip


def _t_p(d):
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return mean, 2 * sp.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1)


def test_claims_tests_pairs_seeds_and_corrects_the_family_by_hand(ct):
    claims = {
        "depth": [ct.Diff(2, "CL", "FL"), ct.Diff(16, "CL", "FL"), ct.Change(16, ct.W8, 2, ct.W8)],
        "again": [ct.Diff(16, "CL", "FL")],  # cited twice: one test
    }
    rows = ct.family(RESULT, claims)
    assert [r["claims"] for r in rows] == [["depth"], ["depth", "again"], ["depth"]]
    d2 = [c - f for c, f in zip(CL2, FL2, strict=True)]
    d16 = [c - f for c, f in zip(CL16, FL16, strict=True)]
    change = [b - a for a, b in zip(d2, d16, strict=True)]
    raw = [_t_p(d) for d in (d2, d16, change)]
    for row, (mean, p) in zip(rows, raw, strict=True):
        assert row["mean"] == pytest.approx(100 * mean) and row["p"] == pytest.approx(p)
        assert row["n"] == 4
    p = [x for _, x in raw]
    # Holm by hand: ascending p times 3, 2, 1, then the running maximum.
    order = sorted(range(3), key=lambda i: p[i])
    holm, running = [0.0] * 3, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (3 - k) * p[i]))
        holm[i] = running
    assert [r["holm"] for r in rows] == pytest.approx(holm)
    assert [r["survives_holm"] for r in rows] == [h < 0.05 for h in holm]
    assert rows[0]["survives_holm"] and not rows[1]["survives_holm"]  # 16's spread is wide
    text = ct.markdown(rows, "fixture", tuple(claims))
    assert "3 tests; " in text and "| C1: depth | 3 |" in text and "| C3: again | 1 |" in text


def test_claims_tests_names_a_missing_arm(ct):
    with pytest.raises(KeyError, match="no arm 'steps-matched CL' at depth 2"):
        ct.family(RESULT, {"x": [ct.Diff(2, "steps-matched CL", "FL")]})


# --paper-regime and --forks: 8 local epochs, seeds 2-4, grouped by depth alone. Depth 8's CL has
# one seed, neither it nor 16 a steps-matched CL, and the forks hold depth 2's round 1 alone: the
# tests these lack are "not run".
def _arm_at(mode, batch, finals, seeds=(2, 3, 4)):
    return {"arm": {"mode": mode, "fl.batch_size": batch}, "chosen_lr": 0.1, "grid": {},
            "per_seed": {str(s): {"final": f}
                         for s, f in zip(seeds, finals, strict=True)}}  # fmt: skip


P_CL2, P_SM2, P_FL2 = [0.90, 0.92, 0.94], [0.88, 0.87, 0.91], [0.85, 0.86, 0.90]
P_CL16, P_FL16, P_SC16 = [0.90, 0.90, 0.90], [0.80, 0.82, 0.78], [0.83, 0.82, 0.80]
SCAFFOLD16 = {**_arm_at("fl", 36, P_SC16), "arm": {"mode": "fl", "algorithm.name": "scaffold"}}
PAPER = {"groups": {
    "2": {"cl": _arm_at("centralized", 36, P_CL2), "sm": _arm_at("centralized", 360, P_SM2),
          "fl": _arm_at("fl", 36, P_FL2)},
    "8": {"cl": _arm_at("centralized", 36, [0.9], seeds=(3,)), "fl": _arm_at("fl", 36, P_FL2)},
    "16": {"cl": _arm_at("centralized", 36, P_CL16), "fl": _arm_at("fl", 36, P_FL16)},
}}  # fmt: skip
# --paper-algorithms: FedAvg and SCAFFOLD at depth 16 (the other corrections absent: not run).
ALGORITHMS = {"groups": {"16": {"fedavg": _arm_at("fl", 36, P_FL16), "scaffold": SCAFFOLD16}}}
RATIOS, PREFIX, SUFFIX = [2.0, 4.0, 8.0], [0.50, 0.60, 0.70], [0.53, 0.61, 0.72]
PENALTIES = [0.02, 0.04, 0.03]
FORKS = {"per_seed": {"2": {"layers": ["conv_0", "conv_1", "head"], "seeds": {  # h = 1
    str(s): {"forks": {"1": {"mean_update_ratio": r, "penalty": q,
                             "mix": {"prefix_1": a, "suffix_1": b}}}}
    for s, r, a, b, q in zip((2, 3, 4), RATIOS, PREFIX, SUFFIX, PENALTIES, strict=True)}}}}  # fmt: skip


def _diff(a, b):
    return [x - y for x, y in zip(a, b, strict=True)]


def _bh(p):
    """Benjamini-Hochberg by hand: from the largest p down, the running minimum of m p / rank."""
    order, out, running = sorted(range(len(p)), key=lambda i: -p[i]), [0.0] * len(p), 1.0
    for k, i in enumerate(order):
        running = min(running, len(p) * p[i] / (len(p) - k))
        out[i] = running
    return out


def _holm(p):
    order, out, running = sorted(range(len(p)), key=lambda i: p[i]), [0.0] * len(p), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - k) * p[i]))
        out[i] = running
    return out


def test_claims_tests_eight_epoch_rows_join_the_family_by_hand(ct):
    base = {ct.E1: [ct.Diff(2, "CL", "FL"), ct.Diff(16, "CL", "FL"),
                    ct.Change(16, ct.W8, 2, ct.W8)]}  # fmt: skip
    rows = ct.family(RESULT, base, paper=PAPER, forks=FORKS, algorithms=ALGORITHMS)
    by = {r["test"]: r for r in rows}
    e8 = ", 8 local epochs"
    # Paired over seeds 2-4, in points: CL - FL at depth 2 is 5, 6, 4.
    d2, d16 = _diff(P_CL2, P_FL2), _diff(P_CL16, P_FL16)
    expect = {
        "CL - FL, depth 2" + e8: d2,
        "CL - FL, depth 16" + e8: d16,
        "steps-matched CL - FL, depth 2" + e8: _diff(P_SM2, P_FL2),
        "(CL - FL) at depth 16 minus at depth 2" + e8: _diff(d16, d2),  # 5, 2, 8
        "averaging cost, input half - output half, depth 2, fork at round 1" + e8:
            _diff(SUFFIX, PREFIX),  # 3, 1, 2
        "averaging penalty (clients' mean - averaged model), depth 2, fork at round 1" + e8:
            PENALTIES,  # 2, 4, 3 points against 0
        "SCAFFOLD (chosen) - FedAvg, depth 16" + e8: _diff(P_SC16, P_FL16),  # 3, 0, 2
    }  # fmt: skip
    for label, d in expect.items():
        mean, p = _t_p(d)
        assert by[label]["mean"] == pytest.approx(100 * mean) and by[label]["p"] == pytest.approx(p)
        assert by[label]["n"] == 3
    assert by["CL - FL, depth 2" + e8]["mean"] == pytest.approx(5.0)
    # The ratio: log 2, 4, 8 = (1, 2, 3) log 2, so the geometric mean is 4 and the interval
    # 4 * 2^(-+t * 1 / sqrt(3)); p is the one-sample t-test of the logs.
    ratio = by["FL / null mean update dispersion (ratio, geometric mean), depth 2, fork at round 1"
               + e8]  # fmt: skip
    spread = sp.t.ppf(0.975, 2) / math.sqrt(3)
    assert ratio["unit"] == "ratio" and ratio["mean"] == pytest.approx(4.0)
    assert (ratio["low"], ratio["high"]) == pytest.approx((4 * 2**-spread, 4 * 2**spread))
    assert ratio["p"] == pytest.approx(_t_p([math.log(r) for r in RATIOS])[1])
    # Absent arms, depths and forks rounds: shown, outside the family.
    not_run = {r["test"]: r["not_run"] for r in rows if "not_run" in r}
    assert not_run["steps-matched CL - FL, depth 16" + e8] == (
        "no arm 'steps-matched CL' at depth 16 in the comparison"
    )
    assert not_run["CL - FL, depth 8" + e8] == "1 paired seed (under 2)"
    assert not_run["steps-matched CL - FL, depth 8" + e8] == (
        "no arm 'steps-matched CL' at depth 8 in the comparison"
    )
    assert not_run["averaging cost, input half - output half, depth 16, fork at round 1" + e8] == (
        "no depth 16 in the forks"
    )
    assert not_run["averaging cost, input half - output half, depth 2, fork at round 10" + e8] == (
        "no fork at round 10 at depth 2"
    )
    assert not_run["FedProx (chosen) - FedAvg, depth 16" + e8] == "no FedProx arm"
    # Arms that end at different rounds (one extended, one not) are not paired.
    extended = {**PAPER, "groups": {**PAPER["groups"], "2": {
        **PAPER["groups"]["2"], "sm": {**PAPER["groups"]["2"]["sm"], "per_seed": {
            s: {**v, "rounds": [1, 40]} for s, v in PAPER["groups"]["2"]["sm"]["per_seed"].items()}},
        "fl": {**PAPER["groups"]["2"]["fl"], "per_seed": {
            s: {**v, "rounds": [1, 80]} for s, v in PAPER["groups"]["2"]["fl"]["per_seed"].items()}},
    }}}  # fmt: skip
    skipped = {r["test"]: r.get("not_run") for r in ct.family(RESULT, base, paper=extended)}
    assert (
        skipped["steps-matched CL - FL, depth 2" + e8]
        == "its arms end at different rounds (40, 80)"
    )
    # E1's 8 tests less the 4 run; 3 x 3 depths x 3 rounds less the 3 run; 6 drift corrections
    # less SCAFFOLD's at depth 16.
    assert len(not_run) == 4 + 3 * (9 - 1) + 5
    # Holm and BH over the union: 3 one-epoch tests, 4 of the compare, 3 of the forks, then the
    # drift correction (after the forks: no earlier row moves).
    run = [r for r in rows if "not_run" not in r]
    assert run[-1]["test"] == "SCAFFOLD (chosen) - FedAvg, depth 16" + e8
    assert len(run) == 11 and [r["test"] for r in run[:3]] == [t.label() for t in base[ct.E1]]
    assert [r["holm"] for r in run] == pytest.approx(_holm([r["p"] for r in run]))
    assert [r["bh"] for r in run] == pytest.approx(_bh([r["p"] for r in run]))
    alone = ct.family(RESULT, base)
    assert [r["holm"] for r in alone] == pytest.approx(_holm([r["p"] for r in alone]))
    assert run[0]["holm"] > alone[0]["holm"]  # the same test pays for the larger family
    assert [r["mean"] for r in run[:3]] == [r["mean"] for r in alone]
    text = ct.markdown(rows, "a.json", (ct.E1, ct.E2, ct.R7), paper="b.json", forks="c.json")
    assert "11 tests; " in text and f" {len(not_run)} more not run" in text
    assert "| 1 | C1 | CL - FL, depth 2 | " in text and "| C2: E2: divergence" in text
    assert "| 4 | C1 | CL - FL, depth 2, 8 local epochs | 5.0 ± 2.5 points | 3 |" in text
    assert (
        "| - | C1 | CL - FL, depth 8, 8 local epochs | not run: 1 paired seed (under 2) |" in text
    )
    low, high = 4 * 2**-spread, 4 * 2**spread
    assert (
        f"| C3 | FL / null mean update dispersion (ratio, geometric mean), depth 2, fork at "
        f"round 1, 8 local epochs | 4.00 ({low:.2f} to {high:.2f}), ratio | 3 |" in text
    )
    assert "cites no interval test" not in text and "`c.json` (`fedjax-deep forks`" in text


def test_claims_tests_rewrites_the_committed_table_from_the_committed_results(ct, capsys):
    results = STUDY / "results"
    assert ct.main([str(results / "e1_final_mnist1d" / "compare.json"),
                    "--paper-regime", str(results / "e1_paper_regime_mnist1d" / "compare.json"),
                    "--forks", str(results / "e7_forks_mnist1d" / "forks.json"),
                    "--paper-algorithms",
                    str(results / "e1_paper_regime_mnist1d" / "algorithms" / "compare.json")]) == 0  # fmt: skip
    assert capsys.readouterr().out == (results / "claims_tests.md").read_text()


def test_claims_tests_without_the_options_is_the_one_epoch_family_alone(ct, capsys):
    assert ct.main([str(STUDY / "results" / "e1_final_mnist1d" / "compare.json")]) == 0
    text = capsys.readouterr().out
    assert "79 tests;" in text and "8 local epochs" not in text


def test_claims_tests_refuses_a_forks_file_that_is_not_one(ct, tmp_path, capsys):
    compare = tmp_path / "compare.json"
    compare.write_text(json.dumps(RESULT))
    with pytest.raises(SystemExit) as stop:
        ct.main([str(compare), "--forks", str(compare)])
    assert stop.value.code == 2
    assert "--forks " + str(compare) + ": has no 'per_seed'" in capsys.readouterr().err
