"""E1 at depths 2 and 8 with 19 more seeds (cpu), so that every depth of the main comparison has
24 paired seeds: is the depth-16 gap larger than the shallower gaps, paired seed by seed?

    fedjax-deep train --config experiments/depth_divergence/configs/e1/depth_seeds.py --workdir runs/e1_depth_seeds
    (then the ``compare`` command of experiments/depth_divergence/results/e1_final_mnist1d/README.md, with this workdir)

A confirmation run added after the 5-seed depth-2 to 16 change came out unresolved (the seed count
is post hoc; rates and analysis were fixed before these seeds ran), as experiments/depth_divergence/configs/e1/depth16_seeds.py was for
depth 16. With 5 seeds the paired change of the CL − FL gap from depth 2 to depth 16 is
3.8 ± 10.5 points (not resolved), although the depth-16 gap alone is 9.6 ± 2.1 with 24 seeds;
the question needs the same 24 seeds at the shallow depths. FL, CL and steps-matched CL at the
learning rates E1's protocol chose on seeds 0-4 (depth 2: FL 0.1, CL 0.03, steps-matched CL 0.3;
depth 8: FL 0.1, CL 0.01, steps-matched CL 0.1); seeds 5-23 are new, so compare's tuning sees them
only at the chosen rate and its choice cannot move. E1's settings otherwise. The figure of merit:
the gap at depth 16 less the gap at depth 2 (and 8), paired over the 24 seeds.

114 runs. Expected time on two CPU cores, alone: about 12 minutes.
"""

from experiments.depth_divergence.common import e1_protocol

FIELDS = ("model.depth", "mode", "fl.batch_size", "fl.local_steps", "client_opt.learning_rate")
POINTS = (
    (2, "fl", 36, 0, 0.1),
    (2, "centralized", 36, 0, 0.03),
    (2, "centralized", 360, 1, 0.3),
    (8, "fl", 36, 0, 0.1),
    (8, "centralized", 36, 0, 0.01),
    (8, "centralized", 360, 1, 0.1),
)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", tuple(range(5, 24))))
    return config
