"""E1's grid-widening rule applied to the arms still at an end of their grid after
configs/e1_remedies_mnist1d.py, configs/e1_controls_b_mnist1d.py and
configs/e1_algorithms_tuned_mnist1d.py (cpu): each run one grid step further on that side.

    fedjax-deep train --config configs/e1_widen_f_mnist1d.py --workdir runs/e1_widen_f

Grids step by about 3x (..., 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0). 50 runs, cheapest first. An
arm that chooses the new end again is flagged in the report and not widened further (time).

- E1 (width 8) at depth 2, steps-matched CL: 1.0 (chose 0.3 of 0.003-0.3);
- FedDyn (alpha 0.01) at depth 8: 0.003 (chose 0.01 of 0.01-0.3);
- FedAvg with Dirichlet(0.1) clients at depth 16: 0.01 (chose 0.03 of 0.03-0.3);
- FedDyn at depth 16, alpha 0.001 and 0.1: 0.003 (each chose 0.01 of 0.01-0.1);
- no normalization at depth 16: CL 0.001 (chose 0.003 of 0.003-0.1), FL 0.003 (chose 0.01 of
  0.01-0.3);
- width 32 at depth 16: FL 0.01 and steps-matched CL 0.01 (each chose 0.03 of 0.03-0.3), CL 0.003
  (chose 0.01 of 0.01-0.1).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "model.width", "model.norm", "mode", "fl.batch_size", "fl.local_steps",
          "algorithm.name", "algorithm.alpha", "data.partition", "data.dirichlet_alpha",
          "client_opt.learning_rate")  # fmt: skip
FL = ("fl", 36, 0)
CL = ("centralized", 36, 0)
STEPS_MATCHED = ("centralized", 360, 1)
FEDAVG_IID = ("fedavg", 0.01, "iid", 0.5)
POINTS = (
    (2, 8, "group", *STEPS_MATCHED, *FEDAVG_IID, 1.0),
    (8, 8, "group", *FL, "feddyn", 0.01, "iid", 0.5, 0.003),
    (16, 8, "group", *FL, "fedavg", 0.01, "dirichlet", 0.1, 0.01),
    (16, 8, "group", *FL, "feddyn", 0.001, "iid", 0.5, 0.003),
    (16, 8, "group", *FL, "feddyn", 0.1, "iid", 0.5, 0.003),
    (16, 8, "none", *CL, *FEDAVG_IID, 0.001),
    (16, 8, "none", *FL, *FEDAVG_IID, 0.003),
    (16, 32, "group", *FL, *FEDAVG_IID, 0.01),
    (16, 32, "group", *STEPS_MATCHED, *FEDAVG_IID, 0.01),
    (16, 32, "group", *CL, *FEDAVG_IID, 0.003),
)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
