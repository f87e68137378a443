"""E1 + E2 (cpu): depth sweep on MNIST-1D, FL against CL, per-layer divergence over rounds.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/depth.py --workdir runs/e1_depth_mnist1d

Plain 1-D CNNs (kernel 5, width 8, GroupNorm, no skips) of depth 2, 4, 8, 16; FL with 10 IID
clients and 8 local epochs x 5 rounds; CL matched in examples; 3 seeds. The README's main job:
2 min 30 s on two CPU cores (2026-11-26; 5 min 52 s before the sweep axis and the compilation
cache; results in experiments/depth_divergence/results/e1_depth_mnist1d). The report's
divergence_over_rounds.png is E2 (the paper's figure 2a).
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, cpu_mnist1d


def get_config():
    config = cpu_mnist1d()
    config.sweep = (("model.depth", (2, 4, 8, 16)), FL_VS_CL, ("seed", SEEDS))
    return config
