"""Config for tests/test_resume.py and tests/test_faults.py: slow enough per round to be killed
mid-run, BatchNorm kept local and SCAFFOLD's control variates (per-client state of the whole
population in the checkpoint), Dirichlet clients with a sampled cohort."""

from fedjax_deep.config import default_config


def get_config():
    config = default_config()
    config.num_rounds = 8
    config.model.depth = 3
    config.model.width = 16
    config.model.norm = "batch"
    config.fl.bn_stats = "local"
    config.fl.num_clients = 4
    config.fl.cohort_size = 2
    config.fl.local_epochs = 3
    config.data.partition = "dirichlet"
    config.data.dirichlet_alpha = 1.0
    config.checkpoint.keep = 2
    config.algorithm.name = "scaffold"
    return config
