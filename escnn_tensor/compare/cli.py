r"""Command line of the comparison harness: ``python -m escnn_tensor.compare [run] [options]`` and
``python -m escnn_tensor.compare merge DIR... --out DIR``.

Trains geometric (GeometricConv + tensor-field layers), steerable (escnn R2Conv/R3Conv on regular fields) and plain
(torch convolutions on the components) versions of ResNet / UNet / DilResNet on the tensor-field tasks of
:mod:`escnn_tensor.data`, at equal parameter counts, and writes a table and figures (see
:mod:`escnn_tensor.compare.runner` for the files). ``--quick`` is a run of a few minutes on 2 idle CPU cores (the
README states the measured wall time, from ``docs/results/quick/run.json``); without it the defaults are a full run
(hours on a CPU). Every option given overrides the profile.
"""
from __future__ import annotations

import argparse
import ast
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional

from ..models import FAMILIES, MODELS
from .runner import CompareConfig, run_comparison

__all__ = ["main", "parse_args", "QUICK", "FULL"]

#: the --quick profile: a few minutes on 2 idle CPU cores (measured wall time: docs/results/quick/run.json). The
#: learning rates are the two best of a validation sweep (1e-3 .. 3e-2) on these settings; each job keeps the better
#: one on its own validation split.
QUICK: Dict[str, Any] = dict(
    tasks=["gravity", "tidal", "navier-stokes"], models=["resnet"], families=list(FAMILIES), augment=True,
    params=6000, epochs=20, samples=128, val_samples=32, test_samples=32, size=None, task_size="quick", seeds=[0],
    lrs=[1e-2, 3e-2], batch_size=8, dtype="float32", out="outputs/compare-quick",
    model_options={"resnet": {"num_blocks": 2}, "dilresnet": {"num_blocks": 1}, "unet": {"num_downsamples": 2}},
)
#: the default (full) profile: hours on a CPU
FULL: Dict[str, Any] = dict(
    tasks=["gravity", "tidal", "navier-stokes", "subgrid-stress"], models=["resnet"], families=list(FAMILIES),
    augment=True, params=20000, epochs=30, samples=256, val_samples=64, test_samples=64, size=None,
    task_size="default", seeds=[0, 1, 2], lrs=[3e-3, 1e-2], batch_size=16, dtype="float32", out="outputs/compare",
    model_options={"resnet": {"num_blocks": 4}, "dilresnet": {"num_blocks": 2}, "unet": {"num_downsamples": 3}},
)


def _seeds(text: str) -> List[int]:
    """``'3'`` -> ``[0, 1, 2]``; ``'0,5,7'`` -> ``[0, 5, 7]``; a repeated seed is refused."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a count (e.g. 3) or a comma list (e.g. 0,5,7), got {text!r}")
    if "," not in text and not seeds:
        what = "asks for no seeds" if int(text) == 0 else "is a negative count"
        raise argparse.ArgumentTypeError(f"--seeds {text} {what}: give a count >= 1 (seeds 0..n-1) or a comma list "
                                         f"of seeds >= 0 (seed 0 alone: --seeds 1 or --seeds 0,)")
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds takes a count >= 1 or a comma list of seeds >= 0, got {text!r}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"--seeds {text} repeats seed(s) {repeated}: a seed trains the same job "
                                         f"twice; give each seed once")
    return seeds


def _model_option(text: str):
    """``[model.]key=value`` with a Python literal value (``num_blocks=2``, ``unet.norm=None``)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--model-option takes [model.]key=value, got {text!r}")
    key, value = text.split("=", 1)
    model = None
    if "." in key:
        model, key = key.split(".", 1)
        if model not in MODELS:
            raise argparse.ArgumentTypeError(f"--model-option {text!r}: unknown model {model!r}; models: {list(MODELS)}")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # a bare word: keep it as a string
    return model, key.strip(), value


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _positive(kind):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if not (v > 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"expected a finite positive {kind.__name__}, got {text!r}")
        return v

    return parse


def _device(text: str) -> str:
    from .runtime import DEVICE_PATTERN

    if not DEVICE_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"--device takes auto, cpu, cuda or cuda:N, got {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: message``, exit status 2), without the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (--help lists the options)\n")


def _describe(name: str, prof: Dict[str, Any]) -> str:
    opts = "; ".join(f"{m}: " + ", ".join(f"{k}={v}" for k, v in o.items()) for m, o in prof["model_options"].items())
    size = "each task's quick size" if prof["task_size"] == "quick" else "each task's default size"
    return (
        f"{name}: tasks {', '.join(prof['tasks'])}; models {', '.join(prof['models'])} ({opts}); families "
        f"{', '.join(prof['families'])}{' + plain with augmentation' if prof['augment'] else ''}; params "
        f"{prof['params']}; {prof['samples']}/{prof['val_samples']}/{prof['test_samples']} train/val/test samples "
        f"of {size}; {prof['epochs']} epochs, batch {prof['batch_size']}, learning rates "
        f"{', '.join(f'{lr:g}' for lr in prof['lrs'])}; seeds {len(prof['seeds'])}; {prof['dtype']}; --out "
        f"{prof['out']}."
    )


def build_parser() -> argparse.ArgumentParser:
    from ..data import TASKS

    p = _Parser(
        prog="python -m escnn_tensor.compare",
        description="Geometric vs steerable vs plain CNNs on tensor-field tasks, at equal parameter counts.",
        epilog="Options given override the profile. " + _describe("--quick", QUICK) + " " + _describe("Default", FULL)
        + " Hyperparameters are chosen on the validation split: the best epoch, and the best of several --lr values.",
    )
    p.add_argument("--task", action="append", type=_task, metavar="TASK",
                   help=f"task (repeatable): a built-in one ({', '.join(sorted(TASKS))}) or the path of a dataset "
                        f"spec PATH.toml (your own data; see docs/own_data.md)")
    p.add_argument("--model", action="append", choices=sorted(MODELS), help="architecture (repeatable)")
    p.add_argument("--family", action="append", choices=list(FAMILIES), help="model family (repeatable)")
    p.add_argument("--params", type=_positive(int), help="trainable-parameter budget of every model (+-10%%)")
    p.add_argument("--epochs", type=_positive(int))
    p.add_argument("--samples", type=_positive(int), action="append",
                   help="training samples per task (repeatable: one row per size, nested training sets sharing "
                        "validation and test; efficiency.png and a table of error against size)")
    p.add_argument("--val-samples", type=_positive(int), help="validation samples per task")
    p.add_argument("--test-samples", type=_positive(int), help="test samples per task")
    p.add_argument("--size", type=_positive(int),
                   help="grid side (default: each task's default size, or its quick size with --quick)")
    p.add_argument("--seeds", type=_seeds, help="number of seeds (0..n-1) or a comma list")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="add rows for the plain family trained with random group elements applied to input and "
                        "target")
    p.add_argument("--average", action=argparse.BooleanOptionalAction, default=None,
                   help="add rows for the plain family averaged over the group (escnn_tensor.models.GroupAverage: "
                        "exactly equivariant, |G| forwards per forward: 8 in 2D, 48 in 3D); label plain+avg")
    p.add_argument("--lr", action="append", type=_positive(float),
                   help="learning rate (repeatable: the best on validation is kept)")
    p.add_argument("--batch-size", type=_positive(int))
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--model-option", action="append", type=_model_option, default=[],
                   help="[model.]key=value passed to the model constructors, e.g. num_blocks=2, unet.norm=None")
    p.add_argument("--quick", action="store_true", help="the quick profile (a few minutes on 2 CPU cores)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its checkpoints")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="write no checkpoint per epoch (saves disk and time; such a run cannot be continued)")
    p.add_argument("--threads", type=_positive(int), default=1,
                   help="torch CPU threads (default 1; a shared 2-core machine is often faster with 1)")
    p.add_argument("--data-dir", help="data cache directory (default: escnn_tensor.data's)")
    p.add_argument("--data-seed", type=_non_negative, default=0, help="seed of the generated data sets")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--rollout", type=_positive(int), metavar="T",
                   help="roll every model of a time-series task out for T steps on the test trajectories; "
                        "rollout_errors in results.json (one relative error per step)")
    p.add_argument("--device", type=_device, default="auto", metavar="{auto,cpu,cuda,cuda:N}",
                   help="where to train and evaluate (default auto: CUDA when available, else the CPU)")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off",
                   help="mixed precision of the training step (autocast on the device; fp16 with a gradient scaler); "
                        "evaluation stays in the model's dtype (default off)")
    p.add_argument("--compile", action="store_true", help="train through torch.compile(model, fullgraph=True)")
    p.add_argument("--shard", type=_shard, metavar="i/N",
                   help="run shard i of N of the rows (deterministic by row id; merge the shards' --out "
                        "directories with the merge subcommand)")
    return p


def _task(text: str) -> str:
    """A built-in task name or the path of a ``.toml`` dataset spec (read and checked by the run)."""
    from ..data import TASKS

    if text in TASKS or text.endswith(".toml"):
        return text
    raise argparse.ArgumentTypeError(f"unknown task {text!r}: give a built-in task ({', '.join(sorted(TASKS))}) or "
                                     f"the path of a dataset spec ending in .toml")


def _shard(text: str) -> str:
    from .plan import parse_shard

    try:
        i, n = parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return f"{i}/{n}"


def build_merge_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m escnn_tensor.compare merge",
        description="Merge the output directories of the shards of one sweep (runs with --shard i/N) into one: "
                    "results.json, results.md and the figures, as the unsplit run writes them.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="output directories of the shards")
    p.add_argument("--out", required=True, help="output directory of the merged results")
    p.add_argument("--partial", action="store_true", help="write the results even if rows are missing")
    p.add_argument("--no-figures", action="store_true", help="results.json and results.md only")
    return p


def parse_args(argv: Optional[List[str]] = None) -> CompareConfig:
    """The :class:`CompareConfig` of a command line."""
    parser = build_parser()
    a = parser.parse_args(argv)
    prof = QUICK if a.quick else FULL
    pick = lambda value, key: prof[key] if value is None else value  # noqa: E731
    models = pick(a.model, "models")
    options: Dict[str, Dict[str, Any]] = {m: dict(prof["model_options"].get(m, {})) for m in models}
    for model, key, value in a.model_option:
        if model is not None and model not in models:
            parser.error(f"--model-option {model}.{key}: model {model} is not in this run (models: "
                         f"{', '.join(dict.fromkeys(models))}); add --model {model} or drop the option")
        targets = [model] if model else models
        accepting = [m for m in targets if key in _accepted_options(m)]
        if not accepting:
            parser.error(f"--model-option {key}: none of the models {targets} takes it")
        for m in accepting:
            options.setdefault(m, {})[key] = value
    return CompareConfig(
        tasks=list(dict.fromkeys(pick(a.task, "tasks"))),
        models=list(dict.fromkeys(models)),
        families=list(dict.fromkeys(pick(a.family, "families"))),
        augment=pick(a.augment, "augment"),
        average=bool(a.average),  # off in every profile
        params=pick(a.params, "params"),
        epochs=pick(a.epochs, "epochs"),
        n_train=_train_sizes(pick(a.samples, "samples")),
        n_val=pick(a.val_samples, "val_samples"),
        n_test=pick(a.test_samples, "test_samples"),
        size=pick(a.size, "size"),
        task_size=prof["task_size"],
        seeds=pick(a.seeds, "seeds"),
        lrs=list(dict.fromkeys(pick(a.lr, "lrs"))),
        batch_size=pick(a.batch_size, "batch_size"),
        dtype=pick(a.dtype, "dtype"),
        out=pick(a.out, "out"),
        resume=a.resume,
        checkpoints=not a.no_checkpoints,
        model_options={m: options.get(m, {}) for m in models},
        data_seed=a.data_seed,
        cache_dir=a.data_dir,
        progress=not a.no_progress,
        threads=a.threads,
        shard=a.shard,
        rollout=a.rollout,
        device=a.device,
        amp=a.amp,
        compile=a.compile,
    )


def _train_sizes(value):
    """``--samples`` given once (or the profile's int) -> an int; repeated -> the distinct sizes, ascending."""
    if isinstance(value, list):
        sizes = sorted(set(value))
        return sizes[0] if len(sizes) == 1 else sizes
    return value


def _accepted_options(model: str) -> set:
    from ..models._base import COMMON_OPTIONS

    return set(COMMON_OPTIONS) | set(MODELS[model].OPTIONS)


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: ``[run] [options]`` (the default subcommand) or ``merge DIR... --out DIR``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        return _merge_main(argv[1:])
    if argv and argv[0] == "run":
        argv = argv[1:]
    return _run_main(argv)


def _merge_main(argv: List[str]) -> int:
    from .merge import merge

    parser = build_merge_parser()
    a = parser.parse_args(argv)
    from .._io import DirectoryLockedError

    try:
        rows = merge(a.dirs, a.out, figures=not a.no_figures, partial=a.partial)
    except (ValueError, DirectoryLockedError) as e:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(e).split())}\n")
    if rows:
        print(open(f"{a.out}/results.md").read())
    print(f"{len(rows)} rows merged from {len(a.dirs)} directories; results: {a.out}/results.json, {a.out}/results.md")
    return 0


def _run_main(argv: List[str]) -> int:
    from ..data import DataError
    from .._io import DirectoryLockedError
    from .config import ConfigError

    config = parse_args(argv)
    prog = "python -m escnn_tensor.compare"
    t0 = time.perf_counter()
    try:
        rows = run_comparison(config)
    except DataError as e:  # a bad spec or data file: one line, exit 2 (read before anything is written)
        build_parser().exit(2, f"python -m escnn_tensor.compare: error: {e}\n")
    except (ConfigError, DirectoryLockedError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with --resume (the same command with --resume --out {config.out})",
              file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    if not rows:
        print(f"no rows in this shard ({config.shard}); nothing to report")
        return 0
    out = config.out
    print((open(f"{out}/results.md").read()))
    print(f"{len(rows)} rows in {time.perf_counter() - t0:.0f} s; results: {out}/results.json, {out}/results.md; "
          f"figures: {out}/*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
