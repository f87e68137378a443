"""E5, the one-step limit (cpu): FedAvg with one local step on each client's full data against
full-batch SGD on the union; with IID clients the two are the same algorithm.

    fedjax-deep train --config experiments/depth_divergence/configs/e5/one_step.py --workdir runs/e5_one_step_mnist1d

Depth 8, width 8; every round: FL takes one step of 400 signals per client (10 clients), CL one step
of 4,000, both plain gradient descent (no momentum). The gap should be 0 up to float32 round-off.
About 2 minutes.
"""

from experiments.depth_divergence.common import FL_VS_CL, cpu_mnist1d


def get_config():
    config = cpu_mnist1d(depth=8)
    config.fl.local_steps = 1
    config.fl.batch_size = 4000  # FL: capped at a client's 400; CL: the union
    config.num_rounds = 30
    # Plain gradient descent on both sides: FL clients restart their optimizer every round, so
    # client momentum would make FL and CL different algorithms (server momentum would not).
    config.client_opt.momentum = 0.0
    config.client_opt.learning_rate = 0.2
    config.eval.every_rounds = 10
    config.sweep = (FL_VS_CL, ("seed", (0,)))
    return config
