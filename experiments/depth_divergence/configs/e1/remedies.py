"""The paper's remedies at depth 16, and width 32 at every depth (cpu), each FL against CL and
steps-matched CL. Under E1's comparison protocol.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/remedies.py --workdir runs/e1_remedies
    (then the ``compare`` command of experiments/depth_divergence/results/e1_remedies_mnist1d/README.md, which reads this
    sweep with E1's and the data-and-model controls')

The protocol of ``experiments/depth_divergence/configs/e1/tuned.py`` (validation split, 5 paired seeds, 80 rounds, the
plateau rule, each arm tuned alone), fixed before any of these runs was looked at. The same seeds
give the same split, partition and initialization as E1, whose runs (plain CNN, width 8, block and
stem kernel 5, stem stride 1) are the baseline; width 32 at depth 8 ran in
experiments/depth_divergence/configs/e1/data_models.py. At depth 16, where E1's gap is resolved:

- block kernel 3 (width 8): receptive field 33 instead of 65, at the same input resolution;
- stem stride 2 (width 8, kernel 5): every later layer sees a 20-sample map, so the receptive
  field grows to 125 and the resolution halves: the paper's "early downsampling", run as the
  harmful direction because the baseline has none (the remedy, less downsampling, is the baseline);
- width 32 (kernel 5);

and width 32 at depths 2 and 4, which with depths 8 (e1_data_models) and 16 completes a depth
sweep at width 32 beside E1's at width 8. A smaller stem kernel is not run: in a 16-layer plain net
it changes the receptive field by 2 of 65.

Each is FL, CL and steps-matched CL (10 steps of batch 360 per round). Learning-rate grids, per
arm, as in the other controls: FL and steps-matched CL (0.03, 0.1, 0.3), CL (0.01, 0.03, 0.1); an
arm that chooses a grid's end is flagged. The points run cheapest-first so that a stopped sweep has
whole remedies. 225 runs.
"""

from experiments.depth_divergence.common import e1_protocol

FL_LRS = (0.03, 0.1, 0.3)
CL_LRS = (0.01, 0.03, 0.1)
SEEDS = (0, 1, 2, 3, 4)
FIELDS = ("model.depth", "model.width", "model.kernel_size", "model.stem_stride", "mode",
          "fl.batch_size", "fl.local_steps", "client_opt.learning_rate")  # fmt: skip
FL = ("fl", 36, 0)
CL = ("centralized", 36, 0)
STEPS_MATCHED = ("centralized", 360, 1)
# (depth, width, block kernel, stem stride), in the order they run.
ARCHITECTURES = ((16, 8, 3, 1), (16, 8, 5, 2), (2, 32, 5, 1), (4, 32, 5, 1), (16, 32, 5, 1))


def points():
    out = []
    for arch in ARCHITECTURES:
        out += [(*arch, *FL, lr) for lr in FL_LRS]
        out += [(*arch, *CL, lr) for lr in CL_LRS]
        out += [(*arch, *STEPS_MATCHED, lr) for lr in FL_LRS]
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
