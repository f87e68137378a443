"""E6 + E7 (paper scale): every client holds the full set; K independent SGD runs (the null
reference), ResNet-18 and ResNet-101 on CIFAR-100.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e6_e7_cifar100.py --workdir runs/p_e6_e7

One A100/H100; the full-data clients make each FL round 10x an IID round: about 4 GPU-days. Not run
here.
"""

from experiments.depth_divergence.common import SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 18)
    config.fl.local_epochs = 1
    config.data.client_examples = 0  # partition full: every client holds the whole set
    config.sweep = (
        ("model.depth", (18, 101)),
        (
            ("mode", "data.partition"),
            (("fl", "full"), ("independent", "full"), ("centralized", "full")),
        ),
        ("seed", SEEDS),
    )
    return config
