"""E8's label skew under E1's comparison protocol (cpu): FedAvg on Dirichlet(alpha) label
partitions at depths 2, 8 and 16. FL only; the IID FL and CL references are E1's.

    fedjax-deep train --config experiments/depth_divergence/configs/e8/dirichlet_tuned.py --workdir runs/e8_dirichlet_tuned
    (then the ``compare`` command of experiments/depth_divergence/results/e1_final_mnist1d/README.md, with this workdir)

experiments/depth_divergence/configs/e1/algorithms_tuned.py ran Dirichlet(0.1) at depths 8 and 16; this adds depth 2
at alpha 0.1 and alpha 0.5 at depths 2, 8 and 16, so that the question "does label skew cost more
in deeper nets?" has every depth and two skews. The protocol of ``experiments/depth_divergence/configs/e1/tuned.py``,
fixed before any of these runs was looked at: same seeds (0-4) as E1, so the same validation
split and initialization; FL grid (0.03, 0.1, 0.3) at every point (E1's IID FL chose 0.1, 0.1 and
0.03 at depths 2, 8, 16); an arm that chooses a grid end is flagged ``*`` and, time allowing,
widened one step. The figure of merit: non-IID FL minus IID FL at the same depth, paired over
seeds, and its trend with depth. 60 runs, about 12 minutes on two CPU cores.
"""

from experiments.depth_divergence.common import e1_protocol

FL_LRS = (0.03, 0.1, 0.3)
SEEDS = (0, 1, 2, 3, 4)
FIELDS = ("model.depth", "data.partition", "data.dirichlet_alpha", "client_opt.learning_rate")
POINTS_AT = ((2, 0.1), (2, 0.5), (8, 0.5), (16, 0.5))


def points():
    return tuple((depth, "dirichlet", alpha, lr) for depth, alpha in POINTS_AT for lr in FL_LRS)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
