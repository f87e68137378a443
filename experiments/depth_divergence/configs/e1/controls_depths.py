"""E1's architecture controls at depths 2 and 8 (cpu): residual, BatchNorm, GroupNorm with 4
channels per group, and no normalization, each FL and CL. Under E1's comparison protocol.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/controls_depths.py --workdir runs/e1_controls_depths
    (then the ``compare`` command of experiments/depth_divergence/configs/e1/controls.py, with this workdir added)

experiments/depth_divergence/configs/e1/controls.py and experiments/depth_divergence/configs/e1/controls_b.py ran these architectures at
depth 16 only; the issue asks for them at each depth. This is the same protocol, fixed before
any of these runs was looked at: the validation split, 5 paired seeds (0-4: the same split,
partition and initialization as E1, whose runs are the baseline at each depth: plain CNN of
width 8, GroupNorm with gcd(8, 8) = 8 groups of one channel, FedAvg), 80 rounds, the plateau
rule, each arm tuned alone on validation accuracy.

- at depths 2 and 8, four architectures, each FL and CL (same examples): residual
  (``model.skip``, the baseline's GroupNorm); BatchNorm (statistics averaged by FedAvg);
  GroupNorm with 4 channels per group (2 groups at width 8); no normalization;
- learning-rate grids of four points, per arm: FL (0.01, 0.03, 0.1, 0.3) and CL (0.003, 0.01,
  0.03, 0.1). They span the rates E1 chose at these depths (FL 0.1, CL 0.01-0.03) and the
  lower rates the depth-16 controls needed once widened (0.003-0.03), so that a grid end is
  less likely; an arm that still chooses an end is flagged ``*`` in the summary and reported
  as such.
- the figure of merit, as at depth 16: the gap CL - FL and its change against the baseline's
  gap at the same depth, paired over seeds.

320 runs. Expected time on two CPU cores, alone: about 30 minutes.
Results: experiments/depth_divergence/results/e1_final_mnist1d.
"""

from experiments.depth_divergence.common import e1_protocol

FL_LRS = (0.01, 0.03, 0.1, 0.3)
CL_LRS = (0.003, 0.01, 0.03, 0.1)
SEEDS = (0, 1, 2, 3, 4)
DEPTHS = (2, 8)
FIELDS = ("model.depth", "model.skip", "model.norm", "model.norm_group_size", "mode",
          "algorithm.name", "client_opt.learning_rate")  # fmt: skip
ARCHITECTURES = ((True, "group", 0), (False, "batch", 0), (False, "group", 4), (False, "none", 0))


def points():
    out = []
    for depth in DEPTHS:
        for skip, norm, size in ARCHITECTURES:
            out += [(depth, skip, norm, size, "fl", "fedavg", lr) for lr in FL_LRS]
            out += [(depth, skip, norm, size, "centralized", "fedavg", lr) for lr in CL_LRS]
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
