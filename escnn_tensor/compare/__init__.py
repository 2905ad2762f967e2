r"""Head-to-head comparison of geometric, steerable and plain CNNs on tensor-field tasks.

Run it as ``python -m escnn_tensor.compare`` (``--help`` for the options, ``--quick`` for a run of minutes), or
from Python with :func:`run_comparison` and a :class:`CompareConfig`. Modules:

- :mod:`~escnn_tensor.compare.cli`: the command line and its two profiles (quick, full);
- :mod:`~escnn_tensor.compare.runner`: the run (jobs, model selection on validation, results files);
- :mod:`~escnn_tensor.compare.training`: the training loop with per-epoch checkpoints and resume, the metrics
  (relative error, worst rotated error, equivariance error) and the augmentation;
- :mod:`~escnn_tensor.compare.report`: the Markdown table and the figures.
"""
from .runner import CompareConfig, run_comparison
from .training import (
    JobSpec,
    Predictor,
    TrainingInterrupted,
    augment,
    equivariance_error,
    relative_error,
    rotated_errors,
    train_job,
)

__all__ = [
    "CompareConfig",
    "run_comparison",
    "JobSpec",
    "Predictor",
    "TrainingInterrupted",
    "augment",
    "relative_error",
    "rotated_errors",
    "equivariance_error",
    "train_job",
]
