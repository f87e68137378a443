"""E7 (cpu): the centralized null reference. Is client divergence FL-specific?

    fedjax-deep train --config experiments/depth_divergence/configs/e7/null_reference.py --workdir runs/e7_null_mnist1d

For depths 2, 4, 8, 16 (width 8): FL (10 IID clients of 400 signals, 104 local steps = 8 epochs per
round) against K = 10 independent SGD runs from the same initialization on the whole training set,
never averaged, 104 steps per round; both report the relative dispersion D_l between their 10
models ("null divergence" in the table). CL runs too. 3 seeds, 5 rounds. About 8 minutes.
"""

from experiments.depth_divergence.common import SEEDS, cpu_mnist1d


def get_config():
    config = cpu_mnist1d()
    config.fl.local_steps = 104
    config.sweep = (
        ("model.depth", (2, 4, 8, 16)),
        (("mode", "data.partition"), (("fl", "iid"), ("independent", "full"), ("centralized", "iid"))),
        ("seed", SEEDS),
    )  # fmt: skip
    return config
