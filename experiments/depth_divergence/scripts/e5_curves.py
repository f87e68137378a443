"""E5's learning curves against local steps taken (not rounds), from a ``fedjax-deep compare``
result that holds E1 and configs/e5_*: one panel per depth, the mean over seeds with a band from the
lowest to the highest seed.

    python experiments/depth_divergence/scripts/e5_curves.py runs/e1_final/compare.json experiments/depth_divergence/results/e1_final_mnist1d/e5_curves.png

The arms run 800 local steps in 800, 80 or 20 rounds, so a round means 1, 10 or 40 steps; on this
axis they line up by computation. The 40-step arm run on to 80 rounds (3200 steps) goes past the
dotted line at 800. CL takes 100 sequential steps of batch 36 a round (one epoch of the 3,600
training signals: the 10 clients' 10 steps each, taken in sequence), so its 80 rounds are 8000
steps on this axis; steps-matched CL takes 10 steps of batch 360 a round, FL's sequential count.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from e1_summary import BASE, arm_role, parse_group  # noqa: E402

ARMS = ("CL", "steps-matched CL", "FL, 1 local step, server momentum 0.9", "FL, 1 local step",
        "FL", "FL, 40 local steps", "FL, 40 local steps x 80 rounds")  # fmt: skip
LABEL = {"FL": "FL, 10 local steps"}


CLIENTS = 10  # E1's clients: CL's epoch is their data in sequence
CLIENT_EPOCH_STEPS = 10  # one epoch of a client's 360 signals in batches of 36


def steps_per_round(arm: dict) -> int:
    """Sequential steps taken per round: an FL client's local steps (its epoch, 10, when
    ``fl.local_steps`` is 0), steps-matched CL's 10 steps of batch 360, and CL's 100 steps of batch
    36 (every client's epoch in sequence; drawing it at 10 a round, as before issue 23, put CL's
    curve ten times too far left)."""
    steps = int(arm.get("fl.local_steps") or 0)
    if arm.get("mode") == "centralized":
        return CLIENT_EPOCH_STEPS if int(arm.get("fl.batch_size", 36)) > 36 else (
            CLIENTS * CLIENT_EPOCH_STEPS)  # fmt: skip
    return steps if steps > 0 else CLIENT_EPOCH_STEPS


def curves(result: dict) -> dict:
    """``{depth: {role: (steps [T], accuracy per seed [S, T])}}`` for the base architecture."""
    out: dict = {}
    for label, arms in result["groups"].items():
        g = {**BASE, **parse_group(label)}
        if any(g[k] != v for k, v in BASE.items()):
            continue
        for arm in arms.values():
            role = arm_role(arm["arm"])
            if role not in ARMS:
                continue
            seeds = [p for p in arm["per_seed"].values() if p["accuracy"]]
            length = min(len(p["accuracy"]) for p in seeds)
            rounds = np.asarray(seeds[0]["rounds"][:length], float)
            acc = np.asarray([p["accuracy"][:length] for p in seeds], float)
            out.setdefault(int(g["depth"]), {})[role] = (rounds * steps_per_round(arm["arm"]), acc)
    return {d: c for d, c in sorted(out.items()) if any(r in c for r in ARMS[2:4] + ARMS[5:])}


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(result)
    fig, axes = plt.subplots(
        1, len(data), figsize=(4.2 * len(data), 3.4), sharey=True, squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (depth, arms) in zip(axes[0], data.items(), strict=True):
        for k, role in enumerate(ARMS):
            if role not in arms:
                continue
            steps, acc = arms[role]
            mean = 100 * acc.mean(0)
            style = "--" if role.endswith("x 80 rounds") else "-"
            ax.plot(steps, mean, style, color=colors[k], lw=1.4, label=LABEL.get(role, role))
            ax.fill_between(steps, 100 * acc.min(0), 100 * acc.max(0), color=colors[k], alpha=0.15)
        ax.set_title(f"depth {depth}")
        ax.axvline(800, color="0.5", ls=":", lw=1)
        ax.set_xscale("log")  # 10 to 8000 steps: a log axis, its ticks labelled
        ticks = [10, 100, 800, 8000]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("sequential steps, log scale (E5's budget: 800, dotted)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%), seed band min-max")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_json")
    parser.add_argument("out_png")
    args = parser.parse_args(argv)
    with open(args.compare_json) as f:
        plot(json.load(f), args.out_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
