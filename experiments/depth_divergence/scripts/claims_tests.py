"""Every interval test behind the study README's claims table, in one family, corrected for
multiple comparisons (issue 23, item 2).

    python experiments/depth_divergence/scripts/claims_tests.py \\
        experiments/depth_divergence/results/e1_final_mnist1d/compare.json \\
        [--paper-regime PAPER_DIR/compare.json] [--forks FORKS_DIR/forks.json] \\
        [--paper-algorithms ALGORITHMS_DIR/compare.json] \\
        > experiments/depth_divergence/results/claims_tests.md

Each test is a paired 95% t-interval over seeds that a claim's row cites (read from the README's
claims table and the tables of ``e1_summary.py`` that hold its numbers), recomputed here from
per-seed values. Its sources:

- the positional ``compare.json`` (1 local epoch: the sweeps of ``results/e1_final_mnist1d`` read
  together): a difference of two arms (``a - b``), or the change of a gap between two models
  (``(ref - FL)`` of one less the same of another, over the seeds all four arms share; the
  "change" columns of ``summary.md``);
- ``--paper-regime``: a ``fedjax-deep compare`` result at 8 local epochs (the paper's regime;
  groups by depth, arms CL, steps-matched CL and FL): the same differences and changes, labelled
  "8 local epochs";
- ``--paper-algorithms``: a ``fedjax-deep compare`` result of the drift corrections at 8 local
  epochs with FedAvg as the reference (groups by depth): each algorithm's chosen variant minus
  FedAvg, paired by seed;
- ``--forks``: a ``fedjax-deep forks`` report's ``forks.json`` (8 local epochs), from its per-seed
  values: per depth and fork round, the cost of averaging the input half minus that of the output
  half (``suffix_h - prefix_h``, points, paired over seeds; the halves of
  :func:`fedjax_deep.analysis.forks.halves`), the averaging penalty at the fork (points, against
  0), and FL's over the null's mean update dispersion
  (``fork/mean/update_ratio``): a t-test of its log against 0 over seeds, reported as the ratio's
  geometric mean and interval.

For each: the estimate and interval (points, or a ratio), the raw two-sided t-test p, Holm's
adjusted p (family-wise error 5% over the whole table) and the Benjamini-Hochberg q (false
discovery rate 5%). A test cited by several claims is one row (and counted once in the family).
The 8-epoch tests follow every 1-epoch test (whose row numbers do not move) and join the same
family; one whose arms, depth or fork round are absent, or that has under 2 paired seeds, is a
"not run" row: shown, outside the family. Without the options the claims row E2 (divergence
toward the input) cites ratios and profiles, not interval tests, and has no row here.
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

from fedjax_deep.analysis.forks import halves  # noqa: E402
from fedjax_deep.analysis.stats import (  # noqa: E402
    benjamini_hochberg,
    holm,
    interval,
    paired_interval,
)

ALPHA = 0.05
EPOCHS8 = "8 local epochs"  # the regime of --paper-regime and --forks


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
    regime: str = ""  # "" for the 1-epoch comparison, else EPOCHS8

    def label(self) -> str:
        return f"{self.a} - {self.b}, depth {self.depth}{_model(self.model)}{_regime(self.regime)}"


@dataclass(frozen=True)
class Change:
    """``(minus - FL)`` at ``(depth, model)`` less ``(minus - FL)`` at ``(base_depth,
    base_model)``: does a model's (or a depth's) gap differ from the baseline's?"""

    depth: int
    model: tuple
    base_depth: int
    base_model: tuple
    minus: str = "CL"
    regime: str = ""

    def label(self) -> str:
        return (f"({self.minus} - FL) at depth {self.depth}{_model(self.model)} minus at depth "
                f"{self.base_depth}{_model(self.base_model)}{_regime(self.regime)}")  # fmt: skip


@dataclass(frozen=True)
class Chosen:
    """An algorithm's chosen variant (its coefficient picked on validation, as ``summary.md``'s
    "(chosen)") minus FedAvg, at one depth."""

    depth: int
    algorithm: str
    regime: str = ""

    def label(self) -> str:
        return f"{self.algorithm} (chosen) - FedAvg, depth {self.depth}{_regime(self.regime)}"


# A fork test's kinds (``--forks``), each at one depth and fork round, over the seeds that forked:
# - ``halves``: the cost of averaging the input half minus that of the output half (``suffix_h -
#   prefix_h`` of the clients' test accuracy, points), paired over seeds;
# - ``penalty``: the averaging penalty (the clients' mean test accuracy before averaging minus the
#   averaged model's, points) against 0;
# - ``null_ratio``: FL's over the null's mean update dispersion (``fork/mean/update_ratio``),
#   tested as log(ratio) against 0 (the paired test of log FL against log null), shown as a ratio.
FORK_LABELS = {
    "halves": "averaging cost, input half - output half",
    "penalty": "averaging penalty (clients' mean - averaged model)",
    "null_ratio": "FL / null mean update dispersion (ratio, geometric mean)",
}


@dataclass(frozen=True)
class ForkTest:
    """One test of ``--forks`` (``kind``: a key of :data:`FORK_LABELS`)."""

    kind: str
    depth: int
    round: int
    regime: str = EPOCHS8

    def label(self) -> str:
        return (f"{FORK_LABELS[self.kind]}, depth {self.depth}, fork at round "
                f"{self.round}{_regime(self.regime)}")  # fmt: skip


def _regime(regime: str) -> str:
    return f", {regime}" if regime else ""


def _model(model: tuple) -> str:
    changed = {k: v for k, v in model if BASE.get(k) != v}
    return "" if not changed else " (" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")"


RES_V1 = arch(skip="True", skip_before_relu="True")
BN, GN4, NO_NORM = arch(norm="batch"), arch(norm_group_size="4"), arch(norm="none")
K3, STRIDE2, W32 = arch(kernel_size="3"), arch(stem_stride="2"), arch(width="32")
SM, FL40x80 = "steps-matched CL", "FL, 40 local steps x 80 rounds"
ONE_SM = "FL, 1 local step, server momentum 0.9"
FULL = "FL, full-data clients"

E1 = "E1: deeper networks lose accuracy under FedAvg"
E2 = "E2: divergence accumulates toward the input"
R7 = "reviewer 7: the drift is FL-specific"
E8_DRIFT = "E8: drift correction or a server optimizer removes the penalty"

# The claims table's rows, in its order, and the 1-epoch tests each cites (E2 cites none).
CLAIMS: dict[str, list] = {
    E1: [
        *(Diff(d, "CL", "FL") for d in (2, 8, 16)),
        Change(16, W8, 2, W8),
        Change(8, W8, 2, W8),
        *(Diff(d, SM, "FL") for d in (2, 4, 8, 16)),
        Change(16, W8, 2, W8, SM),
        Change(16, BN, 2, BN),
        Change(16, NO_NORM, 2, NO_NORM),
        *(Diff(d, "CL", FL40x80) for d in (2, 8, 16)),
    ],  # fmt: skip
    E2: [],
    R7: [
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
    E8_DRIFT: [
        Chosen(d, alg)
        for alg in ("FedProx", "SCAFFOLD", "FedDyn", "FedAvgM", "FedAdam")
        for d in (8, 16)
    ],  # fmt: skip
    "E8: label skew makes the depth penalty worse": [
        Diff(d, f"FL, Dirichlet({a})", "FL") for a in ("0.1", "0.5") for d in (2, 8, 16)
    ],  # fmt: skip
}


PAPER_DEPTHS, FORK_ROUNDS = (2, 8, 16), (1, 10, 40)

# The 8-epoch tests of --paper-regime, by claim.
PAPER: dict[str, list] = {
    E1: [
        *(Diff(d, "CL", "FL", regime=EPOCHS8) for d in PAPER_DEPTHS),
        *(Diff(d, SM, "FL", regime=EPOCHS8) for d in PAPER_DEPTHS),
        Change(16, W8, 2, W8, regime=EPOCHS8),
        Change(8, W8, 2, W8, regime=EPOCHS8),
    ],  # fmt: skip
}


# The drift corrections at 8 local epochs (configs/e1/paper_regime_algorithms.py), read from the
# --paper-algorithms comparison (FedAvg the reference); after the fork tests, so that no earlier
# row number moves.
PAPER_ALGORITHMS: dict[str, list] = {
    E8_DRIFT: [
        Chosen(d, alg, regime=EPOCHS8) for alg in ("FedProx", "SCAFFOLD", "FedDyn") for d in (8, 16)
    ],
}


def fork_claims(forks: Mapping) -> dict[str, list]:
    """The tests of ``--forks`` by claim: per depth and fork round (2, 8, 16 and 1, 10, 40, with
    any others the report holds), the half test and the averaging penalty (E2) and the FL / null
    ratio (reviewer 7)."""
    per_seed = forks.get("per_seed", {})
    depths = sorted({*PAPER_DEPTHS, *map(int, per_seed)})
    rounds = sorted({*FORK_ROUNDS, *(int(r) for g in per_seed.values()
                                    for s in g["seeds"].values() for r in s["forks"])})  # fmt: skip
    points = [(d, r) for d in depths for r in rounds]
    return {E2: [ForkTest(k, d, r) for k in ("halves", "penalty") for d, r in points],
            R7: [ForkTest("null_ratio", d, r) for d, r in points]}  # fmt: skip


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


def _forked(forks: Mapping, depth: int, fork_round: int) -> tuple[list, list]:
    """A depth's layers and, over the seeds (ascending) that forked at ``fork_round``, each seed's
    fork values (``forks.json``'s ``per_seed``)."""
    group = forks.get("per_seed", {}).get(str(depth))
    if group is None:
        raise KeyError(f"no depth {depth} in the forks")
    seeds = sorted((s for s, v in group["seeds"].items() if str(fork_round) in v["forks"]), key=int)
    if not seeds:
        raise KeyError(f"no fork at round {fork_round} at depth {depth}")
    return group["layers"], [group["seeds"][s]["forks"][str(fork_round)] for s in seeds]


def _same_end(arms: Sequence[Mapping], seeds: Sequence[str]) -> None:
    """An 8-epoch paired test compares arms at one round: a ``KeyError`` (a "not run" row) when
    their seeds end at different rounds (one arm extended by the plateau rule, the other not). At
    1 local epoch E5's arms differ in rounds by design (equal computation) and are not checked."""
    ends = {a["per_seed"][s]["rounds"][-1] for a in arms for s in seeds
            if a["per_seed"][s].get("rounds")}  # fmt: skip
    if len(ends) > 1:
        raise KeyError(f"its arms end at different rounds ({', '.join(map(str, sorted(ends)))})")


def _log(x) -> float | None:
    return math.log(x) if x is not None and math.isfinite(x) and x > 0 else None


def evaluate(test, data: Mapping) -> dict:
    """One test's interval and p-value over the seeds its values share: points, or for a
    ``null_ratio`` :class:`ForkTest` the ratio's geometric mean with ``low``/``high`` (``half``:
    the log's). ``data``: the collected comparison of each regime (``""``, ``EPOCHS8``) and
    ``"forks"``."""
    if isinstance(test, ForkTest):
        layers, values = _forked(data["forks"], test.depth, test.round)
        if test.kind == "null_ratio":
            stat = interval([_log(v["mean_update_ratio"]) for v in values])
            mean, half = stat["mean"], stat["half"]
            return {"mean": math.exp(mean), "half": half, "n": stat["n"], "p": stat["p"],
                    "resolved": stat["resolved"], "unit": "ratio",
                    "low": math.exp(mean - half), "high": math.exp(mean + half)}  # fmt: skip
        if test.kind == "penalty":
            stat = interval([v["penalty"] for v in values])
        else:
            h = halves(len(layers))[0]
            stat = paired_interval(*([v["mix"].get(f"{m}_{h}") for v in values]
                                     for m in ("suffix", "prefix")))  # fmt: skip
        return {"mean": 100 * stat["mean"], "half": 100 * stat["half"], "n": stat["n"],
                "p": stat["p"], "resolved": stat["resolved"]}  # fmt: skip
    data = data["algorithms" if isinstance(test, Chosen) and test.regime else test.regime]
    if isinstance(test, Diff | Chosen):
        if isinstance(test, Chosen):
            arms = data[(test.depth, W8)]
            a, b = arms[chosen_variant(arms, test.algorithm)], arms["FL"]
        else:
            a, b = (_arm(data, test.depth, test.model, r) for r in (test.a, test.b))
        seeds = sorted(set(a["per_seed"]) & set(b["per_seed"]))
        if test.regime == EPOCHS8:  # at 1 epoch, E5's arms differ in rounds by design
            _same_end((a, b), seeds)
        stat = paired_interval(_finals(a, seeds), _finals(b, seeds))
    else:
        four = [_arm(data, d, m, r) for d, m in ((test.depth, test.model),
                (test.base_depth, test.base_model)) for r in (test.minus, "FL")]  # fmt: skip
        seeds = sorted(set.intersection(*(set(x["per_seed"]) for x in four)))
        for pair in (four[:2], four[2:]) if test.regime == EPOCHS8 else ():
            _same_end(pair, seeds)  # each gap at one round (the two gaps' rounds may differ)
        v = [_finals(x, seeds) for x in four]
        gap = [[None if None in (r, f) else r - f for r, f in zip(v[i], v[i + 1], strict=True)]
               for i in (0, 2)]  # fmt: skip
        stat = paired_interval(gap[0], gap[1])
    return {"mean": 100 * stat["mean"], "half": 100 * stat["half"], "n": stat["n"],
            "p": stat["p"], "resolved": stat["resolved"]}  # fmt: skip


def _row(test, claims: list, data: Mapping) -> dict:
    """A test's row; an 8-epoch test whose values are absent, or that has under 2 paired seeds,
    is ``not_run`` (with the reason) instead of raising."""
    if getattr(test, "regime", "") != EPOCHS8:
        return {"test": test.label(), "claims": claims, **evaluate(test, data)}
    try:
        stat = evaluate(test, data)
    except KeyError as e:
        return {"test": test.label(), "claims": claims, "not_run": e.args[0]}
    if not math.isfinite(stat["p"]):
        n = stat["n"]
        return {"test": test.label(), "claims": claims,
                "not_run": f"{n} paired seed{'s' * (n != 1)} (under 2)"}  # fmt: skip
    return {"test": test.label(), "claims": claims, **stat}


def family(
    result: Mapping,
    claims: Mapping[str, Sequence] = CLAIMS,
    paper: Mapping | None = None,
    forks: Mapping | None = None,
    paper_claims: Mapping[str, Sequence] | None = None,
    forks_claims: Mapping[str, Sequence] | None = None,
    algorithms: Mapping | None = None,
) -> list[dict]:
    """Every distinct test of ``claims`` (in first-cited order) with the claims citing it, its
    interval, raw p, Holm p and BH q; then, given ``paper`` (a compare.json at 8 local epochs)
    and ``forks`` (a forks.json), the tests of ``paper_claims`` (default :data:`PAPER`) and
    ``forks_claims`` (default :func:`fork_claims`), and given ``algorithms`` (a compare.json of
    the drift corrections at 8 local epochs against FedAvg) those of :data:`PAPER_ALGORITHMS`.
    The family is every row that is not ``not_run``: Holm and BH run over them all."""
    data = {"": collect(result), EPOCHS8: None if paper is None else collect(paper),
            "forks": forks, "algorithms": None if algorithms is None else collect(algorithms)}  # fmt: skip
    cited: dict = {}
    groups = [claims]
    if paper is not None:
        groups.append(PAPER if paper_claims is None else paper_claims)
    if forks is not None:
        groups.append(fork_claims(forks) if forks_claims is None else forks_claims)
    if algorithms is not None:
        groups.append(PAPER_ALGORITHMS)
    for group in groups:
        for claim, tests in group.items():
            for t in tests:
                cited.setdefault(t, []).append(claim)
    rows = [_row(t, c, data) for t, c in cited.items()]
    run = [r for r in rows if "not_run" not in r]
    p = [r["p"] for r in run]
    if any(not math.isfinite(x) for x in p):
        bad = [r["test"] for r in run if not math.isfinite(r["p"])]
        raise ValueError(f"tests without a p-value (under 2 paired seeds): {bad}")
    for r, h, q in zip(run, holm(p), benjamini_hochberg(p), strict=True):
        r.update(holm=float(h), bh=float(q), survives_holm=bool(h < ALPHA),
                 survives_bh=bool(q < ALPHA))  # fmt: skip
    return rows


def _p(x: float) -> str:
    return f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}"


def _estimate(r: Mapping, units: bool) -> str:
    if r.get("unit") == "ratio":
        return f"{r['mean']:.2f} ({r['low']:.2f} to {r['high']:.2f}), ratio"
    return f"{r['mean']:.1f} ± {r['half']:.1f}" + (" points" if units else "")


def _yes(x: bool) -> str:
    return "yes" if x else "no"


def _sources(source: str, paper: str | None, forks: str | None, algorithms: str | None) -> str:
    if paper is None and forks is None and algorithms is None:
        return f"`{source}`"
    more = [f"`{paper}` (`fedjax-deep compare`)"] if paper else []
    more += [f"`{forks}` (`fedjax-deep forks`, its per-seed values)"] if forks else []
    more += [f"`{algorithms}` (`fedjax-deep compare`, the drift corrections)"] if algorithms else []
    return f"`{source}` (1 local epoch) and, at 8 local epochs, {' and '.join(more)}"


def markdown(
    rows: Sequence[Mapping],
    source: str,
    claims: Sequence[str] = tuple(CLAIMS),
    paper: str | None = None,
    forks: str | None = None,
    algorithms: str | None = None,
) -> str:
    """The table of every test (``not_run`` rows numbered ``-``, outside the family), then per
    claim how many of its tests survive, then the claims whose resolved tests do not all survive
    Holm. ``source``, ``paper``, ``forks``: the inputs' paths as the header names them."""
    run = [r for r in rows if "not_run" not in r]
    k, skipped = len(run), len(rows) - len(run)
    ratios = any(r.get("unit") == "ratio" for r in run)
    resolved = sum(r["resolved"] for r in run)
    holm_n, bh_n = sum(r["survives_holm"] for r in run), sum(r["survives_bh"] for r in run)
    units = ("in points" if not ratios else "in points, or for a ratio its geometric mean over "
             "seeds with exp of its log's interval (p: the t-test of log ratio = 0)")  # fmt: skip
    # The claims table's row numbers, C1.. in its order, its second row E2 (which, without
    # --forks, cites no interval test) inserted where a caller's claims leave it out.
    order = list(claims) if E2 in claims else [*claims[:1], E2, *claims[1:]]
    order += [c for c in dict.fromkeys(c for r in rows for c in r["claims"]) if c not in order]
    number = {c: f"C{i + 1}" for i, c in enumerate(order)}
    e2_none = not any(E2 in r["claims"] for r in rows)
    out = [
        "# Every interval test behind the claims table, corrected for multiple comparisons",
        "",
        f"Written by `scripts/claims_tests.py` from {_sources(source, paper, forks, algorithms)}. Estimates "
        f"and 95% paired t-intervals over seeds {units}; p: the two-sided paired t-test; Holm: "
        "the adjusted p that keeps the family-wise error at 5% over all the tests here; BH: the "
        "Benjamini-Hochberg q (false discovery rate 5%). A test survives when its adjusted value "
        "is below 0.05. Claim numbers follow the claims table's rows"
        + (" (C2, divergence toward the input, cites no interval test)." if e2_none else "."),
        "",
        f"{k} tests; {resolved} resolved at 95% alone; {bh_n} survive Benjamini-Hochberg; "
        f"{holm_n} survive Holm.",
        "",
    ]
    if skipped:
        out[-2] += (f" {skipped} more not run (their arms, depth or fork round absent, or under "
                    "2 paired seeds): numbered -, outside the family.")  # fmt: skip
    names = [c for c in order if any(c in r["claims"] for r in run)]
    index = {id(r): i for i, r in enumerate(run, 1)}
    head = "estimate" if ratios else "estimate (points)"
    out += [f"| # | claims | test | {head} | n | p | Holm p | BH q | resolved | survives "
            "Holm | survives BH |", "|" + "---|" * 11]  # fmt: skip
    for r in rows:
        cited = ", ".join(number[c] for c in r["claims"])
        if "not_run" in r:
            out.append(f"| - | {cited} | {r['test']} | not run: {r['not_run']} | - | - | - | - | "
                       "- | - | - |")  # fmt: skip
            continue
        out.append(f"| {index[id(r)]} | {cited} | {r['test']} | {_estimate(r, ratios)} | "
                   f"{r['n']} | {_p(r['p'])} | {_p(r['holm'])} | {_p(r['bh'])} | "
                   f"{_yes(r['resolved'])} | {_yes(r['survives_holm'])} | "
                   f"{_yes(r['survives_bh'])} |")  # fmt: skip
    out += ["", "## Per claim", "", "| claim | tests | resolved | survive BH | survive Holm | "
            "resolved but not surviving Holm |", "|---|---|---|---|---|---|"]  # fmt: skip
    for c in names:
        mine = [r for r in run if c in r["claims"]]
        lost = [f"#{index[id(r)]}" for r in mine if r["resolved"] and not r["survives_holm"]]
        out.append(f"| {number[c]}: {c} | {len(mine)} | {sum(r['resolved'] for r in mine)} | "
                   f"{sum(r['survives_bh'] for r in mine)} | "
                   f"{sum(r['survives_holm'] for r in mine)} | {', '.join(lost) or '-'} |")  # fmt: skip
    return "\n".join(out) + "\n"


def _short(path: str) -> str:
    return "results/" + path.split("results/", 1)[1] if "results/" in path else path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_json", help="the 1-epoch comparison (results/e1_final_mnist1d)")
    parser.add_argument("--paper-regime", metavar="COMPARE_JSON",
                        help="a compare.json at 8 local epochs (CL, steps-matched CL, FL by "
                        "depth)")  # fmt: skip
    parser.add_argument("--forks", metavar="FORKS_JSON",
                        help="a forks.json of `fedjax-deep forks` (8 local epochs)")  # fmt: skip
    parser.add_argument("--paper-algorithms", metavar="COMPARE_JSON",
                        help="a compare.json of the drift corrections at 8 local epochs against "
                        "FedAvg (groups by depth)")  # fmt: skip
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    inputs = {}
    for name, key, writer in (("compare_json", "groups", "compare"),
                              ("paper_regime", "groups", "compare"),
                              ("paper_algorithms", "groups", "compare"),
                              ("forks", "per_seed", "forks")):  # fmt: skip
        path = getattr(args, name)
        if path is None:
            continue
        flag = name if name == "compare_json" else "--" + name.replace("_", "-")
        try:
            with open(path) as f:
                inputs[name] = json.load(f)
        except (OSError, ValueError) as e:
            parser.error(f"{flag} {path}: cannot be read as JSON ({e}); pass the file "
                         f"`fedjax-deep {writer}` wrote")  # fmt: skip
        if not isinstance(inputs[name], dict) or key not in inputs[name]:
            parser.error(f"{flag} {path}: has no {key!r}; pass the {writer}.json that "
                         f"`fedjax-deep {writer}` wrote")  # fmt: skip
    rows = family(inputs["compare_json"], paper=inputs.get("paper_regime"),
                  forks=inputs.get("forks"), algorithms=inputs.get("paper_algorithms"))  # fmt: skip
    short = {k: None if v is None else _short(v) for k, v in vars(args).items()}
    print(markdown(rows, short["compare_json"], paper=short["paper_regime"],
                   forks=short["forks"], algorithms=short["paper_algorithms"]), end="")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
