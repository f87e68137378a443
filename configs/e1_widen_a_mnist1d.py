"""E1's grid-widening rule applied to the controls (cpu), first pass: the arms of
configs/e1_controls_mnist1d.py and configs/e1_data_models_mnist1d.py whose chosen learning rate was an
end of their grid, each run again one grid step further on that side.

    fedjax-deep train --config configs/e1_widen_a_mnist1d.py --workdir runs/e1_widen_a

The rule is E1's (configs/e1_tuned_mnist1d.py): a choice at an end of the grid is flagged and the
grid widened on that side. Grids step by about 3x (..., 0.003, 0.01, 0.03, 0.1, 0.3, 1.0). This pass
holds the arms whose sweeps had finished when the rule was first applied; the second pass
(configs/e1_widen_b_mnist1d.py) holds the rest. Each arm then chooses again from its widened grid
(``fedjax-deep compare`` reads every sweep together). 30 runs.

- residual CNN at depth 16 (``model.skip``): FL 0.01 (chose 0.03), CL 0.003 (chose 0.01);
- plain MLP (width 32, 4 channels per group): FL 1.0 at depths 2 and 4 (chose 0.3), CL 0.003 at
  depth 8 (chose 0.01), FL 0.01 at depth 16 (chose 0.03).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "model.name", "model.width", "model.skip", "model.norm_group_size",
          "mode", "client_opt.learning_rate")  # fmt: skip
POINTS = (
    (16, "plain_cnn", 8, True, 0, "fl", 0.01),
    (16, "plain_cnn", 8, True, 0, "centralized", 0.003),
    (2, "plain_mlp", 32, False, 4, "fl", 1.0),
    (4, "plain_mlp", 32, False, 4, "fl", 1.0),
    (8, "plain_mlp", 32, False, 4, "centralized", 0.003),
    (16, "plain_mlp", 32, False, 4, "fl", 0.01),
)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
