"""E6 (cpu): every client holds the whole training set (the reviewers' control), FL against CL.

    fedjax-deep train --config experiments/depth_divergence/configs/e6/full_data.py --workdir runs/e6_full_mnist1d

Depth 2 and 8, width 8; 10 clients each with all 4,000 signals, 1 local epoch per round, 5 rounds;
CL sees the same examples per round (10 epochs). 3 minutes on two CPU cores.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, cpu_mnist1d


def get_config():
    config = cpu_mnist1d()
    config.data.partition = "full"
    config.fl.local_epochs = 1
    config.sweep = (("model.depth", (2, 8)), FL_VS_CL, ("seed", SEEDS))
    return config
