"""Strict JAX settings for every test of the repository (library, study and benchmark tests).

Precision: the suite's equivalence tests (a vmapped round against a loop over clients, sharded
against unsharded, a sweep member against its point run alone) assume exact float32 products, so
they are pinned here to ``jax_default_matmul_precision=highest``, also for the worker processes the
tests start (the environment variable). Without the pin they fail on GPUs, whose default float32
matmul is TF32 (tests/test_precision.py looks at the policies themselves).

Compilation cache: the runs the tests start use a cache of their own, not the user's.
"""

import os
import tempfile

os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault(
    "FEDJAX_DEEP_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), "fedjax_deep_test_cache")
)

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")
