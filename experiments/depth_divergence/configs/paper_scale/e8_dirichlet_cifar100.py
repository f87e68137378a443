"""E8 (paper scale): Dirichlet(0.1, 0.5, 100) label skew, ResNet-18 and ResNet-101, CIFAR-100.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e8_dirichlet_cifar100.py --workdir runs/p_e8

One A100/H100; about 2 GPU-days. Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 18)
    config.data.partition = "dirichlet"
    config.data.client_examples = 0  # Dirichlet shares split the whole training set
    config.sweep = (
        ("data.dirichlet_alpha", (0.1, 0.5, 100.0)),
        ("model.depth", (18, 101)),
        FL_VS_CL,
        ("seed", SEEDS),
    )
    return config
