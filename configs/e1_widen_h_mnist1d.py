"""E1's grid-widening rule applied to configs/e8_dirichlet_tuned_mnist1d.py (cpu): FedAvg on
Dirichlet(0.5) clients at depth 16 chose 0.03, the small end of (0.03, 0.1, 0.3), so it runs one
grid step further: 0.01, seeds 0-4.

    fedjax-deep train --config configs/e1_widen_h_mnist1d.py --workdir runs/e1_widen_h

5 runs. If 0.01 is chosen it is flagged and not widened further (time).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "data.partition", "data.dirichlet_alpha", "client_opt.learning_rate")
POINTS = ((16, "dirichlet", 0.5, 0.01),)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
