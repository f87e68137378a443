"""Metrics: divergence reductions over the client axis (scalars and the authors' per-layer
histograms), and evaluation of the global model."""

from fedjax_deep.metrics.divergence import (
    METRICS,
    cka_metrics,
    divergence_metrics,
    linear_cka,
    mean_pairwise_cosine,
    relative_dispersion,
    update_dispersion,
)
from fedjax_deep.metrics.evaluation import batch_eval_data, make_evaluate
from fedjax_deep.metrics.histogram import conv_kernel_paths, deviation_histograms, symmetric_edges

__all__ = [
    "METRICS",
    "batch_eval_data",
    "cka_metrics",
    "conv_kernel_paths",
    "deviation_histograms",
    "divergence_metrics",
    "linear_cka",
    "make_evaluate",
    "mean_pairwise_cosine",
    "relative_dispersion",
    "symmetric_edges",
    "update_dispersion",
]
