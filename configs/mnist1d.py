"""A starting point on MNIST-1D (generated offline by the ``mnist1d`` package): FedAvg on a plain
1-D CNN, with a validation split so that ``fedjax-deep compare`` can tune on it.

    fedjax-deep train --config configs/mnist1d.py --workdir runs/mnist1d

Depth 8, width 8, kernel 5, GroupNorm; 10 IID clients of 360 signals, 1 local epoch of batch 36 a
round, client SGD 0.1 with momentum 0.9, 60 rounds: 93.7% test accuracy, 32 s on two CPU cores
(seed 0, 2026-12-04). Change any field from the command line (``--config.model.depth=16``) or
sweep it (``--config.sweep="(('client_opt.learning_rate', (0.03, 0.1)), ('seed', (0, 1, 2)))"``).
"""

from fedjax_deep.config import default_config


def get_config():
    config = default_config()
    config.data.name = "mnist1d"
    config.data.validation_fraction = 0.1
    config.model.name = "plain_cnn"
    config.model.depth = 8
    config.model.width = 8
    config.model.kernel_size = 5
    config.model.norm = "group"
    config.fl.num_clients = 10
    config.fl.local_epochs = 1
    config.fl.batch_size = 36
    config.client_opt.learning_rate = 0.1
    config.client_opt.momentum = 0.9
    config.num_rounds = 60
    return config
