"""Every interval test behind the study README's claims table, in one family, corrected for
multiple comparisons (issue 23, item 2).

    python experiments/depth_divergence/scripts/claims_tests.py \\
        experiments/depth_divergence/results/e1_final_mnist1d/compare.json \\
        > experiments/depth_divergence/results/claims_tests.md

Each test is a paired 95% t-interval over seeds that a claim's row cites (read from the README's
claims table and the tables of ``e1_summary.py`` that hold its numbers), recomputed here from the
per-seed end values of the committed ``compare.json`` (the sweeps of ``results/e1_final_mnist1d``
read together): a difference of two arms (``a - b``), or the change of a gap between two models
(``(ref - FL)`` of one less the same of another, over the seeds all four arms share; the
"change" columns of ``summary.md``). For each: the estimate and interval in points, the raw
two-sided paired t-test p, Holm's adjusted p (family-wise error 5% over the whole table) and the
Benjamini-Hochberg q (false discovery rate 5%). A test cited by several claims is one row (and
counted once in the family). The claims row E2 (divergence toward the input) cites ratios and
profiles, not interval tests, and has no row here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from e1_summary import BASE, collect, validation  # noqa: E402

from fedjax_deep.analysis.stats import benjamini_hochberg, holm, paired_interval  # noqa: E402

ALPHA = 0.05


def arch(**fields: str) -> tuple:
    """An architecture key of :func:`e1_summary.collect`: the base plain CNN with ``fields``
    changed (values as the group labels write them)."""
    return tuple(sorted((k, v) for k, v in {**BASE, **fields}.items() if k != "depth"))


W8 = arch()


@dataclass(frozen=True)
class Diff:
    """``a - b`` of two arms' end values at one depth and architecture."""

    depth: int
    a: str
    b: str
    model: tuple = W8

    def label(self) -> str:
        return f"{self.a} - {self.b}, depth {self.depth}{_model(self.model)}"


@dataclass(frozen=True)
class Change:
    """``(minus - FL)`` at ``(depth, model)`` less ``(minus - FL)`` at ``(base_depth,
    base_model)``: does a model's (or a depth's) gap differ from the baseline's?"""

    depth: int
    model: tuple
    base_depth: int
    base_model: tuple
    minus: str = "CL"

    def label(self) -> str:
        return (f"({self.minus} - FL) at depth {self.depth}{_model(self.model)} minus at depth "
                f"{self.base_depth}{_model(self.base_model)}")  # fmt: skip


@dataclass(frozen=True)
class Chosen:
    """An algorithm's chosen variant (its coefficient picked on validation, as ``summary.md``'s
    "(chosen)") minus FedAvg, at one depth."""

    depth: int
    algorithm: str

    def label(self) -> str:
        return f"{self.algorithm} (chosen) - FedAvg, depth {self.depth}"


def _model(model: tuple) -> str:
    changed = {k: v for k, v in model if BASE.get(k) != v}
    return "" if not changed else " (" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")"


RES_V1 = arch(skip="True", skip_before_relu="True")
BN, GN4, NO_NORM = arch(norm="batch"), arch(norm_group_size="4"), arch(norm="none")
K3, STRIDE2, W32 = arch(kernel_size="3"), arch(stem_stride="2"), arch(width="32")
SM, FL40x80 = "steps-matched CL", "FL, 40 local steps x 80 rounds"
ONE_SM = "FL, 1 local step, server momentum 0.9"
FULL = "FL, full-data clients"

# The claims table's rows, in its order, and the tests each cites.
CLAIMS: dict[str, list] = {
    "E1: deeper networks lose accuracy under FedAvg": [
        *(Diff(d, "CL", "FL") for d in (2, 8, 16)),
        Change(16, W8, 2, W8),
        Change(8, W8, 2, W8),
        *(Diff(d, SM, "FL") for d in (2, 4, 8, 16)),
        Change(16, W8, 2, W8, SM),
        Change(16, BN, 2, BN),
        Change(16, NO_NORM, 2, NO_NORM),
        *(Diff(d, "CL", FL40x80) for d in (2, 8, 16)),
    ],  # fmt: skip
    "reviewer 7: the drift is FL-specific": [
        Diff(16, SM, "FL"),
        *(Diff(d, FULL, "FL") for d in (2, 4, 8, 16)),
    ],  # fmt: skip
    "reviewer 4: client data size causes the gap": [
        *(Diff(d, "CL", FULL) for d in (2, 4, 8, 16)),
        *(Diff(d, FULL, "FL") for d in (2, 4, 8, 16)),
    ],  # fmt: skip
    "reviewer 1 / E5: one local step is large-batch SGD": [
        *(Diff(d, SM, ONE_SM) for d in (2, 8, 16)),
        *(Diff(d, SM, "FL, 1 local step") for d in (2, 8, 16)),
        *(Diff(d, ONE_SM, "FL") for d in (2, 8, 16)),
        *(Diff(d, "FL", "FL, 40 local steps") for d in (2, 8, 16)),
        *(Diff(d, FL40x80, "FL") for d in (2, 8, 16)),
        *(Diff(d, "CL", FL40x80) for d in (2, 8, 16)),
    ],  # fmt: skip
    "E3: wider models help": [
        *(Diff(d, "CL", "FL", W32) for d in (2, 4, 8, 16)),
        *(Change(d, W32, d, W8) for d in (2, 4, 8, 16)),
        *(Change(d, W32, d, W8, SM) for d in (2, 4, 8, 16)),
    ],  # fmt: skip
    "E4: a smaller receptive field helps": [
        Change(16, STRIDE2, 16, W8, SM),
        Change(16, K3, 16, W8),
        Change(8, K3, 8, W8),
        Change(8, K3, 8, W8, SM),
    ],  # fmt: skip
    "reviewers 3, 6: the depth effect needs a particular architecture": [
        Change(16, NO_NORM, 16, W8),
        Change(16, GN4, 16, W8),
        Change(2, BN, 2, W8),
        Change(2, GN4, 2, W8),
        Change(8, BN, 8, W8),
        Change(16, BN, 16, W8),
        Change(16, BN, 2, BN),
        *(Change(d, RES_V1, d, W8) for d in (2, 8, 16)),
    ],  # fmt: skip
    "E8: drift correction or a server optimizer removes the penalty": [
        Chosen(d, alg)
        for alg in ("FedProx", "SCAFFOLD", "FedDyn", "FedAvgM", "FedAdam")
        for d in (8, 16)
    ],  # fmt: skip
    "E8: label skew makes the depth penalty worse": [
        Diff(d, f"FL, Dirichlet({a})", "FL") for a in ("0.1", "0.5") for d in (2, 8, 16)
    ],  # fmt: skip
}


def _finals(arm: Mapping, seeds: Sequence[str]) -> list:
    return [arm["per_seed"][s]["final"] for s in seeds]


def _arm(data: Mapping, depth: int, model: tuple, role: str) -> Mapping:
    arm = data.get((depth, model), {}).get(role)
    if arm is None:
        raise KeyError(f"no arm {role!r} at depth {depth}{_model(model)} in the comparison")
    return arm


def chosen_variant(arms: Mapping[str, Mapping], algorithm: str) -> str:
    """The role of an algorithm's variant with the best validation accuracy (``FedProx (mu
    0.01)``), as ``e1_summary`` marks it; the algorithm's own role when it has one variant."""
    variants = [r for r in arms if r == algorithm or r.startswith(algorithm + " (")]
    if not variants:
        raise KeyError(f"no {algorithm} arm")
    return max(variants, key=lambda r: validation(arms[r]))


def evaluate(test, data: Mapping) -> dict:
    """One test's paired interval (points) and p-value over the seeds its arms share."""
    if isinstance(test, Diff | Chosen):
        if isinstance(test, Chosen):
            arms = data[(test.depth, W8)]
            a, b = arms[chosen_variant(arms, test.algorithm)], arms["FL"]
        else:
            a, b = (_arm(data, test.depth, test.model, r) for r in (test.a, test.b))
        seeds = sorted(set(a["per_seed"]) & set(b["per_seed"]))
        stat = paired_interval(_finals(a, seeds), _finals(b, seeds))
    else:
        four = [_arm(data, d, m, r) for d, m in ((test.depth, test.model),
                (test.base_depth, test.base_model)) for r in (test.minus, "FL")]  # fmt: skip
        seeds = sorted(set.intersection(*(set(x["per_seed"]) for x in four)))
        v = [_finals(x, seeds) for x in four]
        gap = [[None if None in (r, f) else r - f for r, f in zip(v[i], v[i + 1], strict=True)]
               for i in (0, 2)]  # fmt: skip
        stat = paired_interval(gap[0], gap[1])
    return {"mean": 100 * stat["mean"], "half": 100 * stat["half"], "n": stat["n"],
            "p": stat["p"], "resolved": stat["resolved"]}  # fmt: skip


def family(result: Mapping, claims: Mapping[str, Sequence] = CLAIMS) -> list[dict]:
    """Every distinct test of ``claims`` (in first-cited order) with the claims citing it, its
    interval, raw p, Holm p and BH q; the family is the whole list."""
    data = collect(result)
    cited: dict = {}
    for claim, tests in claims.items():
        for t in tests:
            cited.setdefault(t, []).append(claim)
    rows = [{"test": t.label(), "claims": c, **evaluate(t, data)} for t, c in cited.items()]
    p = [r["p"] for r in rows]
    if any(not math.isfinite(x) for x in p):
        bad = [r["test"] for r in rows if not math.isfinite(r["p"])]
        raise ValueError(f"tests without a p-value (under 2 paired seeds): {bad}")
    for r, h, q in zip(rows, holm(p), benjamini_hochberg(p), strict=True):
        r.update(holm=float(h), bh=float(q), survives_holm=bool(h < ALPHA),
                 survives_bh=bool(q < ALPHA))  # fmt: skip
    return rows


def _p(x: float) -> str:
    return f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}"


def markdown(rows: Sequence[Mapping], source: str, claims: Sequence[str] = tuple(CLAIMS)) -> str:
    """The table of every test, then per claim how many of its tests survive, then the claims
    whose resolved tests do not all survive Holm."""
    k = len(rows)
    resolved = sum(r["resolved"] for r in rows)
    holm_n, bh_n = sum(r["survives_holm"] for r in rows), sum(r["survives_bh"] for r in rows)
    out = [
        "# Every interval test behind the claims table, corrected for multiple comparisons",
        "",
        f"Written by `scripts/claims_tests.py` from `{source}`. Estimates and 95% paired "
        "t-intervals over seeds in points; p: the two-sided paired t-test; Holm: the adjusted p "
        "that keeps the family-wise error at 5% over all the tests here; BH: the "
        "Benjamini-Hochberg q (false discovery rate 5%). A test survives when its adjusted value "
        "is below 0.05. Claim numbers follow the claims table's rows (C2, divergence toward the "
        "input, cites no interval test).",
        "",
        f"{k} tests; {resolved} resolved at 95% alone; {bh_n} survive Benjamini-Hochberg; "
        f"{holm_n} survive Holm.",
        "",
    ]
    # The claims table's row numbers: its second row (E2) cites no interval test.
    names = [c for c in claims if any(c in r["claims"] for r in rows)]
    number = {c: f"C{i + 1 if i == 0 else i + 2}" for i, c in enumerate(claims)}
    out += ["| # | claims | test | estimate (points) | n | p | Holm p | BH q | resolved | survives "
            "Holm | survives BH |", "|" + "---|" * 11]  # fmt: skip
    for i, r in enumerate(rows, 1):
        out.append(f"| {i} | {', '.join(number[c] for c in r['claims'])} | {r['test']} | "
                   f"{r['mean']:.1f} ± {r['half']:.1f} | {r['n']} | {_p(r['p'])} | "
                   f"{_p(r['holm'])} | {_p(r['bh'])} | {'yes' if r['resolved'] else 'no'} | "
                   f"{'yes' if r['survives_holm'] else 'no'} | "
                   f"{'yes' if r['survives_bh'] else 'no'} |")  # fmt: skip
    out += ["", "## Per claim", "", "| claim | tests | resolved | survive BH | survive Holm | "
            "resolved but not surviving Holm |", "|---|---|---|---|---|---|"]  # fmt: skip
    for c in names:
        mine = [r for r in rows if c in r["claims"]]
        lost = [f"#{rows.index(r) + 1}" for r in mine if r["resolved"] and not r["survives_holm"]]
        out.append(f"| {number[c]}: {c} | {len(mine)} | {sum(r['resolved'] for r in mine)} | "
                   f"{sum(r['survives_bh'] for r in mine)} | "
                   f"{sum(r['survives_holm'] for r in mine)} | {', '.join(lost) or '-'} |")  # fmt: skip
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_json")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    with open(args.compare_json) as f:
        rows = family(json.load(f))
    source = "results/" + args.compare_json.split("results/", 1)[-1]
    print(markdown(rows, source), end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
