"""Strict JAX settings for every test, and small shared builders."""

import jax
import ml_collections
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def model_config(**overrides) -> ml_collections.ConfigDict:
    from fedjax_deep.config import default_config

    cfg = default_config().model
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


@pytest.fixture
def rng():
    return np.random.default_rng(0)
