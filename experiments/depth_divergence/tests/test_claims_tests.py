"""experiments/depth_divergence/scripts/claims_tests.py: every cited test as one family, its raw,
Holm and Benjamini-Hochberg p-values worked by hand on a small fixture."""

import importlib.util
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
