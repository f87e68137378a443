"""E8 (cpu): label-skewed clients, Dirichlet(alpha) with alpha 0.1, 0.5, 100 (near IID).

    fedjax-deep train --config experiments/depth_divergence/configs/e8/dirichlet.py --workdir runs/e8_dirichlet_mnist1d

Depth 8, width 8, 10 clients, 8 local epochs x 5 rounds, FL against CL, 3 seeds. The other E8
algorithms (FedProx, SCAFFOLD, FedNova, FedAdam/Yogi/AvgM, partial participation) come later;
`fl.cohort_size` already samples clients per round. 7.5 minutes on two CPU cores.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, cpu_mnist1d


def get_config():
    config = cpu_mnist1d(depth=8)
    config.data.partition = "dirichlet"
    config.sweep = (("data.dirichlet_alpha", (0.1, 0.5, 100.0)), FL_VS_CL, ("seed", SEEDS))
    return config
