"""E5 (cpu): local epochs per round at a fixed budget of 40 epochs, FL against CL (MNIST-1D).

    fedjax-deep train --config experiments/depth_divergence/configs/e5/local_steps.py --workdir runs/e5_local_mnist1d

Plain 1-D CNN of depth 8, width 8; local epochs 1, 2, 4, 8 with 40, 20, 10, 5 rounds. The one-step
limit (one local step on the full client batch equals one large-batch SGD step on the union) is
experiments/depth_divergence/configs/e5/one_step.py and a float64 test (tests/test_round.py). 7 minutes on two CPU cores.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, cpu_mnist1d


def get_config():
    config = cpu_mnist1d(depth=8)
    config.eval.every_rounds = 5
    config.sweep = (
        (("fl.local_epochs", "num_rounds"), ((1, 40), (2, 20), (4, 10), (8, 5))),
        FL_VS_CL,
        ("seed", SEEDS),
    )
    return config
