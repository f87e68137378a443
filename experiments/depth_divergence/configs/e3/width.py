"""E3 (cpu): width sweep at fixed depth on MNIST-1D (width multiplier 0.5, 1, 2, 4 of 8 channels).

    fedjax-deep train --config experiments/depth_divergence/configs/e3/width.py --workdir runs/e3_width_mnist1d

Plain 1-D CNN of depth 8 at widths 4, 8, 16, 32; FL (10 IID clients, 8 local epochs x 5 rounds)
against CL; 3 seeds. 25 minutes on two CPU cores
with the test suite running beside it (2026-11-25).
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, cpu_mnist1d


def get_config():
    config = cpu_mnist1d(depth=8)
    config.sweep = (("model.width", (4, 8, 16, 32)), FL_VS_CL, ("seed", SEEDS))
    return config
