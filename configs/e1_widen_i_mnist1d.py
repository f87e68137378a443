"""E1's grid-widening rule applied to configs/e8_server_opt_tuned_mnist1d.py (cpu): the server
rates chosen at the top of their grid, each run one grid step further (seeds 0-4).

    fedjax-deep train --config configs/e1_widen_i_mnist1d.py --workdir runs/e1_widen_i

15 runs. A rate that is chosen again at the new end is flagged and not widened further (time).

- FedAdam at depths 8 and 16: server rate 0.1 (each chose 0.03 of 0.001-0.03);
- FedAvgM at depth 16: server rate 3.0 (chose 1.0 of 0.1-1.0).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "client_opt.learning_rate", "server_opt.name", "server_opt.momentum",
          "server_opt.learning_rate")  # fmt: skip
POINTS = ((8, 0.1, "adam", 0.0, 0.1), (16, 0.03, "adam", 0.0, 0.1), (16, 0.03, "sgd", 0.9, 3.0))


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
