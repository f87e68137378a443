"""User-level DP-FedAvg on the embedded digits: a privacy-utility sweep in one compiled program.

    fedjax-deep train --config configs/digits_dp.py --workdir runs/digits_dp
    python configs/digits_dp.py runs/digits_dp docs/privacy_utility.png   # the figure

100 users of about 14 examples each, Poisson cohorts of expected size 20 (q = 0.2), each user's
update clipped to norm 0.3 and noised with z in (0, 0.6, 1.0, 1.5, 2.5), 3 seeds, 40 rounds with
server momentum 0.9 (as McMahan et al. 2018): 15 members that differ only in traced fields (z and
the seed), so one program. z = 0 is the clipped, noiseless reference (epsilon infinite). The
figure plots the final test accuracy (mean and range over seeds) against epsilon at delta 1e-3.
See docs/privacy.md.
"""

from fedjax_deep.config import default_config

NOISE = (0.0, 0.6, 1.0, 1.5, 2.5)
SEEDS = (0, 1, 2)


def get_config():
    config = default_config()
    config.num_rounds = 40
    config.model.name = "plain_cnn"
    config.model.depth = 2
    config.model.width = 8
    config.fl.num_clients = 100
    config.fl.cohort_size = 20
    config.fl.cohort_sampling = "poisson"
    config.fl.batch_size = 8
    config.fl.local_epochs = 2
    config.fl.divergence = False
    config.client_opt.learning_rate = 0.1
    config.client_opt.momentum = 0.5
    config.client_opt.weight_decay = 0.0
    config.server_opt.momentum = 0.9
    config.privacy.clip_norm = 0.3
    config.privacy.delta = 1e-3
    config.eval.every_rounds = 10
    config.checkpoint.every_rounds = 0
    config.sweep = (("privacy.noise_multiplier", NOISE), ("seed", SEEDS))
    return config


def plot(workdir: str, out: str) -> None:
    """The final test accuracy against epsilon (mean and range over seeds), printed and drawn."""
    import json
    import pathlib

    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = []
    for z in NOISE:
        accs, eps = [], None
        for seed in SEEDS:
            s = json.loads((pathlib.Path(workdir) / f"noise_multiplier-{z}_seed-{seed}" /
                            "summary.json").read_text())  # fmt: skip
            accs.append(s["final_accuracy"])
            eps = s["privacy"]["epsilon"]
        rows.append((z, eps, float(np.mean(accs)), min(accs), max(accs)))
        shown = "inf" if eps is None else f"{eps:.2f}"
        print(f"z={z:<4} epsilon={shown:>6}  test accuracy {np.mean(accs):.3f} "
              f"(min {min(accs):.3f}, max {max(accs):.3f}) over {len(SEEDS)} seeds")  # fmt: skip
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    private = [r for r in rows if r[1] is not None]
    x = [r[1] for r in private]
    ax.errorbar(x, [r[2] for r in private],
                yerr=[[r[2] - r[3] for r in private], [r[4] - r[2] for r in private]],
                marker="o", capsize=3, label="DP-FedAvg (mean, range over 3 seeds)")  # fmt: skip
    for r in private:
        ax.annotate(f"z={r[0]}", (r[1], r[2]), textcoords="offset points", xytext=(4, -12),
                    fontsize=8)  # fmt: skip
    for r in rows:
        if r[1] is None:
            ax.axhline(r[2], color="gray", ls="--", label="clipped, no noise (epsilon = inf)")
    ax.set_xscale("log")
    ax.set_xticks([1.5, 2, 3, 5, 10, 20])
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("epsilon at delta = 1e-3 (RDP, Poisson q = 0.2, 40 rounds)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Privacy-utility on digits: 100 users, one compiled sweep", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    import sys

    plot(sys.argv[1], sys.argv[2])
