r"""Compatibility module: the names that earlier versions kept here, now in the modules of one idea each.

:class:`JobSpec` (:mod:`~escnn_tensor.compare.plan`), :class:`Splits` / :func:`make_splits`
(:mod:`~escnn_tensor.compare.splits`), :class:`Predictor` / :func:`build_predictor`
(:mod:`~escnn_tensor.compare.predictor`), :func:`augment` (:mod:`~escnn_tensor.compare.trainer`), the metrics
(:mod:`~escnn_tensor.compare.metrics`), :func:`train_job` / :func:`save_atomic` / :class:`TrainingInterrupted`
(:mod:`~escnn_tensor.compare.execute`).
"""
from .execute import TrainingInterrupted, save_atomic, train_job
from .metrics import equivariance_error, evaluate, predict, relative_error, rotated_errors
from .plan import JobSpec
from .predictor import DTYPES, Predictor, build_predictor
from .splits import Splits, TensorSplit, make_splits
from .trainer import augment

__all__ = [
    "JobSpec",
    "Splits",
    "TensorSplit",
    "Predictor",
    "TrainingInterrupted",
    "relative_error",
    "augment",
    "predict",
    "rotated_errors",
    "equivariance_error",
    "make_splits",
    "build_predictor",
    "train_job",
    "evaluate",
    "save_atomic",
    "DTYPES",
]
