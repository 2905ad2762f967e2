r"""Results of a run from its job files: :func:`collect` (one directory), :func:`merge` (the shards of one sweep)
and :func:`write_results` (``results.json``, ``results.md`` and the figures, from the rows alone).

``python -m escnn_tensor.compare merge DIR... --out DIR`` calls :func:`merge`: the shard directories must hold runs
of the same sweep (the same ``config.json`` up to where and how it ran); their job files and the predictions the
figures show are copied into ``--out``, and the results written there are those of the unsplit run.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import _io
from .._io import lock_directory
from .config import CompareConfig, config_from_dict
from .execute import read_row, row_path, write_json
from .plan import RowSpec, plan

__all__ = ["collect", "merge", "write_results", "SWEEP_KEYS"]

#: the settings that define a sweep: shards merged together must agree on them (the rest says where and how)
SWEEP_KEYS = ("tasks", "models", "families", "augment", "average", "params", "epochs", "n_train", "n_val", "n_test", "size",
              "seeds", "lrs", "batch_size", "dtype", "model_options", "data_seed", "task_size", "rollout",
              "default_nonlinearity")


def collect(out: Path, rows: Sequence[RowSpec]) -> Tuple[List[Dict[str, Any]], float, List[RowSpec]]:
    """``(result rows, seconds, missing)``: the rows of ``rows`` whose job file exists in ``out``, in plan order,
    the sum of their wall-clock seconds, and the row specs without a job file."""
    found, seconds, missing = [], 0.0, []
    for r in rows:
        path = row_path(out, r)
        if path.exists():
            job = read_row(path)
            found.append(job["row"])
            seconds += float(job.get("seconds", 0.0))
        else:
            missing.append(r)
    return found, seconds, missing


def write_results(out: Path, rows: List[Dict[str, Any]], config: CompareConfig, seconds: float,
                  figures: bool = True) -> List[Path]:
    """Write ``results.json``, the figures (if ``figures``) and ``results.md`` into ``out``; the figures' paths.
    Reads nothing but ``rows`` and the prediction files the figures show."""
    from .figures import write_figures
    from .report import write_markdown

    out = Path(out)
    write_json(rows, out / "results.json")
    paths = write_figures(rows, out) if figures else []
    write_markdown(rows, out / "results.md", config, paths, seconds)
    return paths


def _sweep(config: CompareConfig) -> Dict[str, Any]:
    d = json.loads(json.dumps(dataclasses.asdict(config), default=str))  # lists and dicts as JSON gives them
    return {k: d.get(k) for k in SWEEP_KEYS}


def merge(dirs: Sequence[str], out: str, figures: bool = True, partial: bool = False,
          log: Callable[[str], None] = print) -> List[Dict[str, Any]]:
    """Merge the job files of the run directories ``dirs`` (shards of one sweep) into ``out``; write the results
    there and return the rows, in the order of the unsplit run.

    Raises ``ValueError`` (one line) when a directory holds no run, when the directories ran different sweeps, or
    when rows are missing (unless ``partial``: then the results hold the rows found and the missing are logged)."""
    if not dirs:
        raise ValueError("merge needs at least one run directory")
    configs = []
    for d in dirs:
        path = Path(d) / "config.json"
        if not path.exists():
            raise ValueError(f"merge: {d} holds no run (no config.json)")
        configs.append(config_from_dict(json.loads(path.read_text())))
    ref = _sweep(configs[0])
    for d, c in zip(dirs[1:], configs[1:]):
        diff = [k for k, v in _sweep(c).items() if v != ref[k]]
        if diff:
            raise ValueError(f"merge: {d} ran another sweep than {dirs[0]} (they differ in {', '.join(diff)})")
    config = dataclasses.replace(configs[0], out=str(out), resume=False, shard=None)
    with lock_directory(out):  # no run or other merge writes into it meanwhile
        return _merge(dirs, config, Path(out), figures, partial, log)


def _merge(dirs, config, out_path: Path, figures: bool, partial: bool, log) -> List[Dict[str, Any]]:
    rows_plan = plan(config)
    (out_path / "jobs").mkdir(parents=True, exist_ok=True)
    (out_path / "predictions").mkdir(parents=True, exist_ok=True)
    for r in rows_plan:
        target = row_path(out_path, r)
        for d in dirs:
            source = row_path(Path(d), r)
            if source.exists():
                if source.resolve() != target.resolve():
                    job = read_row(source)
                    pred = Path(d) / "predictions" / f"{job['row']['job']}.pt"
                    if pred.exists():
                        _io.write_bytes(out_path / "predictions" / pred.name, pred.read_bytes())
                    _io.write_bytes(target, source.read_bytes())
                break
    rows, seconds, missing = collect(out_path, rows_plan)
    if missing:
        text = f"{len(missing)} of {len(rows_plan)} rows missing (e.g. {missing[0].row_id})"
        if not partial:
            raise ValueError(f"merge: {text}; run the missing shards, or pass --partial for a report without them")
        log(f"merge: {text}; the results hold the {len(rows)} rows found")
    write_json(dataclasses.asdict(config), out_path / "config.json")
    if rows:
        write_results(out_path, rows, config, seconds, figures=figures)
    return rows
