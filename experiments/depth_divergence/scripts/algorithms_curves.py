"""The drift corrections' learning curves as one message: each correction minus FedAvg, round by
round, paired by seed (mean and 95% t-interval over seeds), one panel per depth.

    python experiments/depth_divergence/scripts/algorithms_curves.py \\
        experiments/depth_divergence/results/e1_paper_regime_mnist1d/algorithms/compare.json

writes ``algorithms_minus_fedavg.png`` beside the comparison. Reads a ``fedjax-deep compare``
result whose reference is FedAvg (``--reference algorithm.name=fedavg``): its per-seed curves.
A group without FedAvg and another algorithm is left out.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from fedjax_deep.analysis.stats import t_quantile

NAMES = {"fedprox": "FedProx", "scaffold": "SCAFFOLD", "feddyn": "FedDyn"}
COEFFICIENT = {"fedprox": ("algorithm.mu", "mu"), "feddyn": ("algorithm.alpha", "alpha")}


def label(arm: dict) -> str:
    name = arm.get("algorithm.name", "fedavg")
    field = COEFFICIENT.get(name)
    return NAMES.get(name, name) + (f" ({field[1]} {arm[field[0]]:g})" if field else "")


def _curve(arm: dict, seed: str) -> dict:
    p = arm["per_seed"][seed]
    return dict(zip(p["rounds"], p["accuracy"], strict=True))


def paired_curves(group: dict) -> dict[str, tuple]:
    """``{label: (rounds [E], mean [E], half [E], seeds)}``: each algorithm minus FedAvg in
    points, over the seeds and rounds both ran."""
    ref = next(a for a in group.values() if a["arm"].get("algorithm.name", "fedavg") == "fedavg")
    out = {}
    for arm in group.values():
        if arm is ref:
            continue
        seeds = sorted(set(arm["per_seed"]) & set(ref["per_seed"]), key=int)
        a, b = {s: _curve(arm, s) for s in seeds}, {s: _curve(ref, s) for s in seeds}
        rounds = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)))
        diff = 100 * np.array([[a[s][r] - b[s][r] for r in rounds] for s in seeds])
        n = len(seeds)
        half = t_quantile(n) * diff.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.nan
        out[label(arm["arm"])] = (np.array(rounds), diff.mean(axis=0), half, n)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_json")
    args = parser.parse_args(argv)
    path = pathlib.Path(args.compare_json)
    result = json.loads(path.read_text())
    groups = {g: paired_curves(arms) for g, arms in result["groups"].items() if len(arms) > 1}
    if not groups:
        print(f"error: {path}: no group holds FedAvg and another algorithm; pass the compare.json "
              "of `fedjax-deep compare ... --reference algorithm.name=fedavg`", file=sys.stderr)  # fmt: skip
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 3.8), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, (g, curves) in zip(axes[0], groups.items(), strict=True):
        for name, (rounds, mean, half, _) in curves.items():
            (line,) = ax.plot(rounds, mean, label=name, lw=1.6)
            ax.fill_between(rounds, mean - half, mean + half, color=line.get_color(), alpha=0.15)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"depth {g}")
        ax.legend(loc="lower left", fontsize=8, framealpha=0.9)  # coefficients differ by depth
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    seeds = sorted({c[3] for curves in groups.values() for c in curves.values()})
    axes[0][0].set_ylabel("test accuracy minus FedAvg's (points)\nmean and 95% interval over "
                          f"{'/'.join(map(str, seeds))} seeds")  # fmt: skip
    fig.suptitle(
        "Each drift correction minus FedAvg, paired by seed (above 0: better)", fontsize=11
    )
    fig.tight_layout()
    out = path.parent / "algorithms_minus_fedavg.png"
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
