"""A transformer depth sweep on the embedded token sequences (tinygrammar): FL against CL.

    fedjax-deep train --config configs/tinygrammar_transformer.py --workdir runs/tf_depth

Pre-norm causal transformers (fedjax_deep.models.transformer) of depth 1, 2, 4 and 8 at width 32
(4 heads) predicting the next token of tinygrammar's 32-token windows (a seeded probabilistic
grammar with agreement across relative clauses and per-sequence topics; docs/transformers.md);
FedAvg with 10 IID clients against CL (one learner on the union of the client data, the same
examples per round). The loss is next_token_cross_entropy; accuracy is the share of next tokens
predicted. ``:quick`` is a three-round, one-seed version for a first look (figures of both in
docs/transformers.md).
"""

from fedjax_deep.config import default_config


def get_config(arg: str = ""):
    config = default_config()
    config.data.name = "tinygrammar"
    config.loss.name = "next_token_cross_entropy"
    config.model.name = "transformer"
    config.model.width = 32
    config.model.heads = 4
    config.fl.num_clients = 10
    config.fl.local_epochs = 2
    config.fl.batch_size = 32
    config.fl.grad_divergence = False
    config.client_opt.learning_rate = 0.03  # of 0.03, 0.1, 0.3 at depth 2 (1.0: NaN)
    config.client_opt.momentum = 0.9
    config.client_opt.weight_decay = 0.0
    config.num_rounds = 8
    seeds = (0, 1, 2)
    if arg == "quick":
        config.num_rounds, seeds = 3, (0,)
    config.sweep = (
        ("model.depth", (1, 2, 4, 8)),
        ("mode", ("fl", "centralized")),
        ("seed", seeds),
    )
    return config
