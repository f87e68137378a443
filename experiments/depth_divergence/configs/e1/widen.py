"""E1's grid-widening rule, one pass per argument (cpu): the arms whose chosen learning rate (or
coefficient) was an end of their grid, each run again one grid step further on that side.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/widen.py:a --workdir runs/e1_widen_a

The rule is E1's (``configs/e1/tuned.py``): a choice at an end of the grid is flagged and the grid
widened on that side. Grids step by about 3x (..., 0.003, 0.01, 0.03, 0.1, 0.3, 1.0). Each arm then
chooses again from its widened grid (``fedjax-deep compare`` reads every sweep together). Every pass
runs seeds 0-4 at E1's protocol (``common.e1_protocol``); its points and the reason for each are
in :data:`PASSES` (passes a-i were written, and run, one after another as earlier sweeps finished).
"""

from experiments.depth_divergence.common import e1_protocol

SEEDS = (0, 1, 2, 3, 4)

PASSES = {
    # a: E1's grid-widening rule applied to the controls (cpu), first pass: the arms of
    # experiments/depth_divergence/configs/e1/controls.py and experiments/depth_divergence/configs/e1/data_models.py whose chosen learning rate was an
    # end of their grid, each run again one grid step further on that side.
    #
    # The rule is E1's (experiments/depth_divergence/configs/e1/tuned.py): a choice at an end of the grid is flagged and the
    # grid widened on that side. Grids step by about 3x (..., 0.003, 0.01, 0.03, 0.1, 0.3, 1.0). This pass
    # holds the arms whose sweeps had finished when the rule was first applied; the second pass
    # (experiments/depth_divergence/configs/e1/widen.py:b) holds the rest. Each arm then chooses again from its widened grid
    # (``fedjax-deep compare`` reads every sweep together). 30 runs.
    #
    # - residual CNN at depth 16 (``model.skip``): FL 0.01 (chose 0.03), CL 0.003 (chose 0.01);
    # - plain MLP (width 32, 4 channels per group): FL 1.0 at depths 2 and 4 (chose 0.3), CL 0.003 at
    #   depth 8 (chose 0.01), FL 0.01 at depth 16 (chose 0.03).
    "a": (
        (
            "model.depth",
            "model.name",
            "model.width",
            "model.skip",
            "model.norm_group_size",
            "mode",
            "client_opt.learning_rate",
        ),
        (
            (16, "plain_cnn", 8, True, 0, "fl", 0.01),
            (16, "plain_cnn", 8, True, 0, "centralized", 0.003),
            (2, "plain_mlp", 32, False, 4, "fl", 1.0),
            (4, "plain_mlp", 32, False, 4, "fl", 1.0),
            (8, "plain_mlp", 32, False, 4, "centralized", 0.003),
            (16, "plain_mlp", 32, False, 4, "fl", 0.01),
        ),
    ),
    # b: E1's grid-widening rule applied to the controls (cpu), second pass: the arms that chose an end of
    # their grid again after the first pass (experiments/depth_divergence/configs/e1/widen.py:a), and those whose sweeps
    # finished after it, each run one grid step further on that side.
    #
    # Grids step by about 3x (..., 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0). 25 runs.
    #
    # - residual CNN at depth 16: FL 0.003 (chose 0.01 of 0.01-0.3), CL 0.001 (chose 0.003 of 0.003-0.1);
    # - plain MLP at depth 16: FL 0.003 (chose 0.01 of 0.01-0.3), CL 0.003 (chose 0.01 of 0.01-0.1:
    #   every rate left it at chance);
    # - BatchNorm CNN at depth 16: FL 0.01 (chose 0.03 of 0.03-0.3).
    "b": (
        (
            "model.depth",
            "model.name",
            "model.width",
            "model.skip",
            "model.norm",
            "model.norm_group_size",
            "mode",
            "client_opt.learning_rate",
        ),
        (
            (16, "plain_cnn", 8, True, "group", 0, "fl", 0.003),
            (16, "plain_cnn", 8, True, "group", 0, "centralized", 0.001),
            (16, "plain_mlp", 32, False, "group", 4, "fl", 0.003),
            (16, "plain_mlp", 32, False, "group", 4, "centralized", 0.003),
            (16, "plain_cnn", 8, False, "batch", 0, "fl", 0.01),
        ),
    ),
    # c: E1's grid-widening rule applied to the controls (cpu), third pass: the arms whose sweeps finished
    # after the second pass (experiments/depth_divergence/configs/e1/widen.py:b) and chose an end of their grid, and the plain
    # MLP's CL at depth 16, which chose the new end again; each run one grid step further on that side.
    #
    # Grids step by about 3x (..., 0.001, 0.003, 0.01, 0.03, 0.1, 0.3). 25 runs.
    #
    # - BatchNorm CNN at depth 16: CL 0.003 (chose 0.01 of 0.01-0.1);
    # - CNN with GroupNorm of 4 channels per group at depth 16: CL 0.003 (chose 0.01 of 0.01-0.1), FL
    #   0.01 (chose 0.03 of 0.03-0.3);
    # - CNN of width 32 at depth 8: FL 0.01 (chose 0.03 of 0.03-0.3);
    # - plain MLP at depth 16: CL 0.001 (chose 0.003 of 0.003-0.1).
    "c": (
        (
            "model.depth",
            "model.name",
            "model.width",
            "model.norm",
            "model.norm_group_size",
            "mode",
            "client_opt.learning_rate",
        ),
        (
            (16, "plain_cnn", 8, "batch", 0, "centralized", 0.003),
            (16, "plain_cnn", 8, "group", 4, "centralized", 0.003),
            (16, "plain_cnn", 8, "group", 4, "fl", 0.01),
            (8, "plain_cnn", 32, "group", 0, "fl", 0.01),
            (16, "plain_mlp", 32, "group", 4, "centralized", 0.001),
        ),
    ),
    # d: E1's grid-widening rule applied to the controls (cpu), fourth and last pass: the arms that chose
    # an end of their grid after the third pass (experiments/depth_divergence/configs/e1/widen.py:c) or in
    # experiments/depth_divergence/configs/e1/controls_b.py, each run one grid step further on that side.
    #
    # Grids step by about 3x (..., 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3). 30 runs. An arm that
    # chooses the new end again is flagged in the report and not widened further (time).
    #
    # - CNN without normalization at depth 16: FL 0.01 (chose 0.03 of 0.03-0.3), CL 0.003 (chose 0.01
    #   of 0.01-0.1);
    # - CNN with GroupNorm of 4 channels per group at depth 16: CL 0.001 (chose 0.003 of 0.003-0.1);
    # - CNN of width 32 at depth 8: steps-matched CL 0.01 (chose 0.03 of 0.03-0.3);
    # - CNN with kernel 3 at depth 8: CL 0.003 (chose 0.01 of 0.01-0.1);
    # - plain MLP at depth 16: CL 0.0003 (chose 0.001 of 0.001-0.1).
    "d": (
        (
            "model.depth",
            "model.name",
            "model.width",
            "model.kernel_size",
            "model.norm",
            "model.norm_group_size",
            "mode",
            "fl.batch_size",
            "fl.local_steps",
            "client_opt.learning_rate",
        ),
        (
            (16, "plain_cnn", 8, 5, "none", 0, "fl", 36, 0, 0.01),
            (16, "plain_cnn", 8, 5, "none", 0, "centralized", 36, 0, 0.003),
            (16, "plain_cnn", 8, 5, "group", 4, "centralized", 36, 0, 0.001),
            (8, "plain_cnn", 32, 5, "group", 0, "centralized", 360, 1, 0.01),
            (8, "plain_cnn", 8, 3, "group", 0, "centralized", 36, 0, 0.003),
            (16, "plain_mlp", 32, 5, "group", 4, "centralized", 36, 0, 0.0003),
        ),
    ),
    # e: E1's grid-widening rule applied to experiments/depth_divergence/configs/e1/remedies.py (cpu): the arms that chose an
    # end of their grid, each run one grid step further on that side.
    #
    # Grids step by about 3x (..., 0.001, 0.003, 0.01, 0.03, 0.1, 0.3). 15 runs. An arm that chooses
    # the new end again is flagged in the report and not widened further (time).
    #
    # - CNN with block kernel 3 at depth 16: CL 0.003 (chose 0.01 of 0.01-0.1), steps-matched CL 0.01
    #   (chose 0.03 of 0.03-0.3);
    # - CNN of width 32 at depth 2: CL 0.003 (chose 0.01 of 0.01-0.1).
    "e": (
        (
            "model.depth",
            "model.width",
            "model.kernel_size",
            "model.stem_stride",
            "mode",
            "fl.batch_size",
            "fl.local_steps",
            "client_opt.learning_rate",
        ),
        (
            (16, 8, 3, 1, "centralized", 36, 0, 0.003),
            (16, 8, 3, 1, "centralized", 360, 1, 0.01),
            (2, 32, 5, 1, "centralized", 36, 0, 0.003),
        ),
    ),
    # f: E1's grid-widening rule applied to the arms still at an end of their grid after
    # experiments/depth_divergence/configs/e1/remedies.py, experiments/depth_divergence/configs/e1/controls_b.py and
    # experiments/depth_divergence/configs/e1/algorithms_tuned.py (cpu): each run one grid step further on that side.
    #
    # Grids step by about 3x (..., 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0). 50 runs, cheapest first. An
    # arm that chooses the new end again is flagged in the report and not widened further (time).
    #
    # - E1 (width 8) at depth 2, steps-matched CL: 1.0 (chose 0.3 of 0.003-0.3);
    # - FedDyn (alpha 0.01) at depth 8: 0.003 (chose 0.01 of 0.01-0.3);
    # - FedAvg with Dirichlet(0.1) clients at depth 16: 0.01 (chose 0.03 of 0.03-0.3);
    # - FedDyn at depth 16, alpha 0.001 and 0.1: 0.003 (each chose 0.01 of 0.01-0.1);
    # - no normalization at depth 16: CL 0.001 (chose 0.003 of 0.003-0.1), FL 0.003 (chose 0.01 of
    #   0.01-0.3);
    # - width 32 at depth 16: FL 0.01 and steps-matched CL 0.01 (each chose 0.03 of 0.03-0.3), CL 0.003
    #   (chose 0.01 of 0.01-0.1).
    "f": (
        (
            "model.depth",
            "model.width",
            "model.norm",
            "mode",
            "fl.batch_size",
            "fl.local_steps",
            "algorithm.name",
            "algorithm.alpha",
            "data.partition",
            "data.dirichlet_alpha",
            "client_opt.learning_rate",
        ),
        (
            (2, 8, "group", "centralized", 360, 1, "fedavg", 0.01, "iid", 0.5, 1.0),
            (8, 8, "group", "fl", 36, 0, "feddyn", 0.01, "iid", 0.5, 0.003),
            (16, 8, "group", "fl", 36, 0, "fedavg", 0.01, "dirichlet", 0.1, 0.01),
            (16, 8, "group", "fl", 36, 0, "feddyn", 0.001, "iid", 0.5, 0.003),
            (16, 8, "group", "fl", 36, 0, "feddyn", 0.1, "iid", 0.5, 0.003),
            (16, 8, "none", "centralized", 36, 0, "fedavg", 0.01, "iid", 0.5, 0.001),
            (16, 8, "none", "fl", 36, 0, "fedavg", 0.01, "iid", 0.5, 0.003),
            (16, 32, "group", "fl", 36, 0, "fedavg", 0.01, "iid", 0.5, 0.01),
            (16, 32, "group", "centralized", 360, 1, "fedavg", 0.01, "iid", 0.5, 0.01),
            (16, 32, "group", "centralized", 36, 0, "fedavg", 0.01, "iid", 0.5, 0.003),
        ),
    ),
    # g: E1's grid-widening rule applied to experiments/depth_divergence/configs/e1/controls_depths.py (cpu): the three
    # depth-8 arms that chose the small end of their 4-point grid, each run one grid step further.
    #
    # 15 runs. An arm that chooses the new end again is flagged and not widened further (time).
    #
    # - BatchNorm at depth 8, CL: 0.001 (chose 0.003 of 0.003-0.1);
    # - residual at depth 8, CL: 0.001 (chose 0.003 of 0.003-0.1), FL: 0.003 (chose 0.01 of 0.01-0.3).
    "g": (
        (
            "model.depth",
            "model.skip",
            "model.norm",
            "model.norm_group_size",
            "mode",
            "algorithm.name",
            "client_opt.learning_rate",
        ),
        (
            (8, False, "batch", 0, "centralized", "fedavg", 0.001),
            (8, True, "group", 0, "centralized", "fedavg", 0.001),
            (8, True, "group", 0, "fl", "fedavg", 0.003),
        ),
    ),
    # h: E1's grid-widening rule applied to experiments/depth_divergence/configs/e8/dirichlet_tuned.py (cpu): FedAvg on
    # Dirichlet(0.5) clients at depth 16 chose 0.03, the small end of (0.03, 0.1, 0.3), so it runs one
    # grid step further: 0.01, seeds 0-4.
    #
    # 5 runs. If 0.01 is chosen it is flagged and not widened further (time).
    "h": (
        ("model.depth", "data.partition", "data.dirichlet_alpha", "client_opt.learning_rate"),
        ((16, "dirichlet", 0.5, 0.01),),
    ),
    # i: E1's grid-widening rule applied to experiments/depth_divergence/configs/e8/server_opt_tuned.py (cpu): the server
    # rates chosen at the top of their grid, each run one grid step further (seeds 0-4).
    #
    # 15 runs. A rate that is chosen again at the new end is flagged and not widened further (time).
    #
    # - FedAdam at depths 8 and 16: server rate 0.1 (each chose 0.03 of 0.001-0.03);
    # - FedAvgM at depth 16: server rate 3.0 (chose 1.0 of 0.1-1.0).
    "i": (
        (
            "model.depth",
            "client_opt.learning_rate",
            "server_opt.name",
            "server_opt.momentum",
            "server_opt.learning_rate",
        ),
        (
            (8, 0.1, "adam", 0.0, 0.1),
            (16, 0.03, "adam", 0.0, 0.1),
            (16, 0.03, "sgd", 0.9, 3.0),
        ),
    ),
}


def get_config(arg: str = "a"):
    """Pass ``arg`` (one of a-i) of the widening rule."""
    if arg not in PASSES:
        raise ValueError(f"widen.py:{arg}: choose a pass among {', '.join(PASSES)}")
    fields, points = PASSES[arg]
    config = e1_protocol()
    config.sweep = ((fields, points), ("seed", SEEDS))
    return config
