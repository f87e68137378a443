"""E1's second baseline (cpu): CL matched to FL in sequential steps, not only in examples.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/steps_matched_cl.py --workdir runs/e1_matched

E1's CL sees FL's examples in 10x as many sequential steps (1,000 steps of 32 per round against each
client's 104). This baseline takes 100 steps of 320 (= 10 clients x 32) per round: large-batch SGD
with FL's step count, the algorithm FedAvg becomes with one local step. Same models, optimizer,
rounds and seeds as experiments/depth_divergence/configs/e1/depth.py (compare with its FL rows). 3 minutes on two CPU
cores.
"""

from experiments.depth_divergence.common import SEEDS, cpu_mnist1d


def get_config():
    config = cpu_mnist1d()
    config.mode = "centralized"
    config.fl.batch_size = 320  # CL batch: 10 clients x 32
    config.fl.local_steps = 10  # CL steps per round: 10 x 320 x 10 clients / 320 = 100
    config.sweep = (("model.depth", (2, 4, 8, 16)), ("seed", SEEDS))
    return config
