"""Small builders shared by the library's tests (the strict JAX settings are in ../conftest.py)."""

import ml_collections
import numpy as np
import pytest


def model_config(**overrides) -> ml_collections.ConfigDict:
    from fedjax_deep.config import default_config

    cfg = default_config().model
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


@pytest.fixture
def rng():
    return np.random.default_rng(0)
