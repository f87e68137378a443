"""A tiny FL run on the embedded digits: seconds on a CPU; for smoke tests and the README.

    fedjax-deep train --config configs/digits_tiny.py --workdir runs/tiny

Expect 2 rounds of a depth-2, width-8 plain CNN over 4 IID clients with 1 local epoch; test accuracy
well above chance (10%) but far from converged.
"""

from fedjax_deep.config import default_config


def get_config():
    config = default_config()
    config.num_rounds = 2
    config.model.depth = 2
    config.model.width = 8
    config.fl.num_clients = 4
    config.fl.local_epochs = 1
    config.client_opt.learning_rate = 0.05
    return config
