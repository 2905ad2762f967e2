r"""Head-to-head comparison of geometric, steerable and plain CNNs on tensor-field tasks.

Run it as ``python -m escnn_tensor.compare`` (``--help`` for the options, ``--quick`` for a run of minutes), or
from Python with :func:`run_comparison` and a :class:`CompareConfig`. Modules, one idea each:

- :mod:`~escnn_tensor.compare.cli`: the command line (subcommands ``run``, the default, and ``merge``) and its two
  profiles (quick, full); :mod:`~escnn_tensor.compare.config`: :class:`CompareConfig` and its check;
- :mod:`~escnn_tensor.compare.plan`: the sweep as an ordered list of rows (:class:`~.plan.RowSpec`), each with
  one :class:`JobSpec` per learning rate; ``--shard i/N`` picks rows by id;
- :mod:`~escnn_tensor.compare.splits`: the data seam (splits read through ``len()`` and ``[idx]``);
- :mod:`~escnn_tensor.compare.predictor`: the model with its normalisation;
- :mod:`~escnn_tensor.compare.trainer`: the training loop (model, optimizer, scheduler, loss, device, AMP,
  processes) and the augmentation; :mod:`~escnn_tensor.compare.distributed`: torch.distributed (a no-op on one
  process);
- :mod:`~escnn_tensor.compare.metrics`: relative error, rotated errors, equivariance error (on a float64 copy);
- :mod:`~escnn_tensor.compare.select`: the learning rate chosen on validation;
- :mod:`~escnn_tensor.compare.execute`: one row -> ``DIR/jobs/<row id>.json`` and its checkpoints;
- :mod:`~escnn_tensor.compare.merge`: results from job files, and shards merged;
- :mod:`~escnn_tensor.compare.runner`: :func:`run_comparison`, the pipeline of the above;
- :mod:`~escnn_tensor.compare.report`: the Markdown table; :mod:`~escnn_tensor.compare.figures`: the figures.
"""
from .config import CompareConfig
from .execute import TrainingInterrupted, train_job
from .merge import merge
from .metrics import equivariance_error, relative_error, rotated_errors
from .plan import JobSpec, RowSpec, plan
from .predictor import Predictor
from .runner import run_comparison
from .splits import Splits, TensorSplit
from .trainer import Trainer, augment

__all__ = [
    "CompareConfig",
    "run_comparison",
    "merge",
    "plan",
    "JobSpec",
    "RowSpec",
    "Predictor",
    "Splits",
    "TensorSplit",
    "Trainer",
    "TrainingInterrupted",
    "augment",
    "relative_error",
    "rotated_errors",
    "equivariance_error",
    "train_job",
]
