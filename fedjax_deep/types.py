"""Type aliases and the axis letters used in every shape comment and docstring.

Axis letters: ``C`` clients, ``S`` local steps, ``B`` examples in a batch, ``N`` examples held by a
client (padded to the largest client), ``L`` layers. A name says which axes its arrays carry:
``server_params`` is one model, ``client_params`` has a leading ``C``.
"""

from __future__ import annotations

from typing import Any

import jax

PyTree = Any
Params = PyTree  # nested dict of arrays: one model's nnx.Param values
ModelState = (
    PyTree  # nested dict of arrays: one model's nnx.BatchStat values ({} without BatchNorm)
)
ClientParams = PyTree  # Params with a leading client axis [C, ...]
Batch = dict[str, jax.Array]  # {'x': [B, ...], 'y': [B], 'mask': [B]}
Metrics = dict[str, jax.Array]
