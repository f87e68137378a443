"""E1's reviewer controls at depth 16 (cpu): residual, BatchNorm, GroupNorm with fixed groups.
Under E1's comparison protocol. (No normalization, and FedProx, SCAFFOLD and FedDyn at depths 8
and 16, are in experiments/depth_divergence/configs/e1/controls_b.py.)

    fedjax-deep train --config experiments/depth_divergence/configs/e1/controls.py --workdir runs/e1_controls
    fedjax-deep compare runs/e1_controls runs/e1_tuned runs/e1_data_models --out runs/e1_all \\
        --group model.depth,model.name,model.width,model.kernel_size,model.skip,model.norm,model.norm_group_size \\
        --reference mode=centralized,fl.batch_size=36

The protocol of ``experiments/depth_divergence/configs/e1/tuned.py`` (validation split, 5 paired seeds, 80 rounds, the
plateau rule, each arm tuned alone), fixed before any of these runs was looked at. The same seeds
give the same split, partition and initialization as E1, so the E1 sweep's runs are this sweep's
baseline (plain CNN of width 8, GroupNorm with gcd(8, 8) = 8 groups of one channel, FedAvg):

- at depth 16, three architectures, each FL and CL: residual (``model.skip``, the baseline's
  GroupNorm); BatchNorm (statistics averaged by FedAvg); GroupNorm with 4 channels per group (2
  groups at width 8: a true group norm, where the baseline's is InstanceNorm);
- learning-rate grids, per arm: FL (0.03, 0.1, 0.3) and CL (0.01, 0.03, 0.1), one step either side of
  what E1 chose (FL 0.03-0.1, CL 0.01-0.03); an arm that chooses a grid's end is flagged
  and, as in E1, run again one step further on that side (configs/e1/widen.py).

90 runs. This sweep was first launched with the 120 points now in experiments/depth_divergence/configs/e1/controls_b.py
as well, and stopped after these 90 (72 minutes, sharing the two CPU cores with three other
sweeps) so that the algorithms could run first; the 90 are this config's points, unchanged.
Expected time on two CPU cores, alone: about 20 minutes. Results: experiments/depth_divergence/results/e1_controls_mnist1d.
"""

from experiments.depth_divergence.common import e1_protocol

FL_LRS = (0.03, 0.1, 0.3)
CL_LRS = (0.01, 0.03, 0.1)
SEEDS = (0, 1, 2, 3, 4)
FIELDS = ("model.depth", "model.skip", "model.norm", "model.norm_group_size", "mode",
          "algorithm.name", "client_opt.learning_rate")  # fmt: skip
ARCHITECTURES = ((True, "group", 0), (False, "batch", 0), (False, "group", 4))


def points():
    out = []
    for skip, norm, size in ARCHITECTURES:
        out += [(16, skip, norm, size, "fl", "fedavg", lr) for lr in FL_LRS]
        out += [(16, skip, norm, size, "centralized", "fedavg", lr) for lr in CL_LRS]
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
