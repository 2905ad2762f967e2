#!/usr/bin/env python3
"""Put result tables into README.md and docs/*.md from stored results files, so that no table is typed by hand.

A stored result is a folder ``docs/results/NAME/`` holding a run's ``results.json`` and ``results.md`` (as
``python -m escnn_tensor.compare`` wrote them) and ``run.json``: the command, the date, the commit, the wall time
and the machine. A page shows it in a block between two markers, which this script rewrites:

    <!-- results-table docs/results/quick -->
    ... (generated: a sentence naming the command, commit and date, then the run's table) ...
    <!-- /results-table -->

``<!-- results-table docs/results/A docs/results/B pivot -->`` instead shows the test errors of one or more runs
as one table, tasks x families, mean ± std over seeds, the best of each task in bold (the form of the README's
longer-run table); ``FOLDER efficiency`` / ``FOLDER rollout`` show only that section of
the run's results.md (the sample-efficiency or rollout table); ``pivot brief`` names the folders instead of quoting their commands; ``pivot val`` puts the mean validation error before each test error (``val / test``). A run
stored with ``--label OLD=NEW`` shows its family label OLD as NEW there (e.g. the geometric rows of a run with
another nonlinearity: ``--label "geometric=geometric, gated_quadratic"``).

Usage (from the repository root, with the project's Python):

    python scripts/readme_table.py store OUT NAME --command "python -m escnn_tensor.compare --quick" [--wall S]
        copy OUT/results.json and OUT/results.md into docs/results/NAME/ and write its run.json (the commit is
        ``git rev-parse HEAD``; say with --commit if the run was made at another one), then render
    python scripts/readme_table.py            rewrite every block from the stored files
    python scripts/readme_table.py --check    write nothing; exit 1 naming every block that differs

To refresh the README's quick table after a run of ``bash scripts/dev.sh example`` (which writes
``outputs/compare-quick``)::

    python scripts/readme_table.py store outputs/compare-quick quick --command "bash scripts/dev.sh example" --wall 190

``tests/test_readme_table.py`` checks that the blocks are up to date and that the README's quick table agrees with
``docs/results/quick/results.json`` cell by cell (3 significant digits for errors).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BLOCK = re.compile(r"(<!-- results-table ([^>]+?) -->\n)(.*?)(<!-- /results-table -->)", re.S)


def pages() -> List[Path]:
    """The pages that may hold blocks: README.md and docs/*.md."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu})"


def store(out: Path, name: str, command: str, wall: Optional[float], commit: Optional[str], note: str,
          labels: Optional[Dict[str, str]] = None) -> Path:
    """Copy a run's results into docs/results/NAME/ with its run.json; returns the folder."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SystemExit(f"readme_table.py: NAME must be letters, digits, '_', '.', '-', got {name!r}")
    for f in ("results.json", "results.md"):
        if not (out / f).is_file():
            raise SystemExit(f"readme_table.py: {out / f} does not exist (give the --out folder of a finished run)")
    dest = RESULTS / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("results.json", "results.md"):
        shutil.copyfile(out / f, dest / f)
    full = commit or _git("rev-parse", "HEAD")
    run = {
        "command": command,
        "date": datetime.datetime.fromtimestamp((out / "results.json").stat().st_mtime, datetime.timezone.utc)
        .strftime("%Y-%m-%d"),  # when the run wrote its results
        "commit": _git("rev-parse", full),
        "wall_seconds": wall,
        "machine": _machine(),
        "note": note,
    }
    if labels:
        run["labels"] = labels
    (dest / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    return dest


def table_of(results_md: str) -> str:
    """The part of a results.md from its table header to the end (the table and the list of figures)."""
    at = results_md.find("| task |")
    if at < 0:
        raise ValueError("results.md holds no table (no line starting with '| task |')")
    return results_md[at:].rstrip("\n") + "\n"


#: block words that show one section of a run's results.md (its first line starts with the prefix)
SECTIONS = {"efficiency": "Test error against the number of training samples", "rollout": "Rollout:"}


def section_of(results_md: str, prefix: str) -> str:
    """The section of a results.md that starts with the line beginning with ``prefix``: that line and the table
    after it."""
    lines = results_md.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(prefix)), None)
    if start is None:
        raise ValueError(f"results.md holds no section starting with {prefix!r}")
    out, in_table = [lines[start]], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            in_table = True
        elif in_table:
            break
        out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def _provenance(folder: str) -> str:
    run = json.loads((ROOT / folder / "run.json").read_text())
    wall = run.get("wall_seconds")
    when = f"{run['date']}, " + (f"{wall:.0f} s wall, " if wall else "") + run["machine"]
    note = f"; {run['note']}" if run.get("note") else ""
    return f"`{run['command']}` at commit {run['commit'][:7]} ({when}{note}); stored in `{folder}/`"


def _fill(text: str) -> str:
    return textwrap.fill(text, width=115, break_long_words=False, break_on_hyphens=False)


def pivot_table(rows: List[Dict], with_val: bool = False) -> str:
    """Test error, mean ± std over seeds (the harness's rounding: 3 significant digits, the std 2), one row per task
    (and model, if several) and one column per family label, in order of appearance; the lowest mean of a row in
    bold. ``with_val``: each cell starts with the mean validation error (``val / test``)."""
    from escnn_tensor.compare.report import aggregate

    entries = aggregate(rows)
    val: Dict[tuple, List[float]] = {}  # mean validation error per (task, model, label), the seeds that did not diverge
    for r in rows:
        if all(isinstance(r.get(k), (int, float)) and r[k] == r[k] and abs(r[k]) != float("inf")
               for k in ("val_error", "test_error")):
            val.setdefault((r["task"], r["model"], r["label"]), []).append(r["val_error"])
    labels = list(dict.fromkeys(e["label"] for e in entries))
    models = {e["model"] for e in entries}
    lines_of: Dict[str, Dict[str, Dict]] = {}
    for e in entries:
        name = e["task"] if len(models) == 1 else f"{e['task']} ({e['model']})"
        lines_of.setdefault(name, {})[e["label"]] = e
    seeds = sorted({e["n"] for e in entries})
    n_text = " or ".join(map(str, seeds))
    what = "validation / test error (mean" if with_val else "test error (mean ± std"
    out = [f"| {what}{' / mean ± std' if with_val else ''}, {n_text} seeds) | " + " | ".join(labels) + " |",
           "|---|" + "---:|" * len(labels)]
    for name, cells in lines_of.items():
        best = min(e["test_error"][0] for e in cells.values())
        texts = []
        for lab in labels:
            if lab not in cells:
                texts.append("—")
                continue
            (m, s), n = cells[lab]["test_error"], cells[lab]["n"]
            text = f"{m:.3g}" if n == 1 else f"{m:.3g} ± {s:.2g}"
            text = f"**{text}**" if m == best and len(cells) > 1 else text
            if with_val:
                v = val.get((cells[lab]["task"], cells[lab]["model"], lab), [])
                text = (f"{sum(v) / len(v):.3g}" if v else "—") + f" / {text}"
            texts.append(text)
        out.append(f"| {name} | " + " | ".join(texts) + " |")
    return "\n".join(out) + "\n"


def render(spec: str) -> str:
    """The generated text of a block: ``spec`` is ``FOLDER`` (the run's results.md table, as the harness printed it)
    or ``FOLDER... pivot`` (:func:`pivot_table` of the runs' results.json together); folders are relative to the
    repository root."""
    words = spec.split()
    folders = [w for w in words if w not in ("pivot", "val", "brief", *SECTIONS)]
    if not folders or ("pivot" not in words and len(folders) != 1):
        raise ValueError(f"results-table block '{spec}': give one stored folder, or folders followed by 'pivot'")
    if "pivot" in words:
        rows = [r for f in folders for r in _relabelled(f)]
        if "brief" in words:  # a short front door: where the commands are, not the commands
            runs = [json.loads((ROOT / f / "run.json").read_text()) for f in folders]
            commits = ", ".join(dict.fromkeys(r["commit"][:7] for r in runs))
            dates = ", ".join(dict.fromkeys(r["date"] for r in runs))
            intro = _fill(f"From the {len(folders)} runs stored in " + ", ".join(f"`{f}/`" for f in folders) +
                          f" (commit {commits}, {dates}; each folder's run.json holds its command, wall time and "
                          "machine); put here by `python scripts/readme_table.py`:")
        else:
            intro = _fill("From " + "; and ".join(_provenance(f) for f in folders) +
                          "; put here by `python scripts/readme_table.py`:")
        return f"{intro}\n\n{pivot_table(rows, with_val='val' in words)}"
    for word, prefix in SECTIONS.items():
        if word in words:  # one section of the run's results.md: its sentence and its table
            intro = _fill(f"From {_provenance(folders[0])}, put here by `python scripts/readme_table.py`:")
            return f"{intro}\n\n```text\n{section_of((ROOT / folders[0] / 'results.md').read_text(), prefix)}```\n"
    intro = _fill(f"Output of {_provenance(folders[0])}, put here by `python scripts/readme_table.py`:")
    return f"{intro}\n\n```text\n{table_of((ROOT / folders[0] / 'results.md').read_text())}```\n"


def _relabelled(folder: str) -> List[Dict]:
    """The rows of a stored run, with the family labels its run.json renames (``labels``)."""
    rows = json.loads((ROOT / folder / "results.json").read_text())
    names = json.loads((ROOT / folder / "run.json").read_text()).get("labels", {})
    return [{**r, "label": names.get(r["label"], r["label"])} for r in rows]


def blocks(text: str):
    """``(spec, generated text)`` of every block of a page (``spec``: the marker's folders and format)."""
    return [(m.group(2), m.group(3)) for m in BLOCK.finditer(text)]


def update(check: bool, files: Optional[List[Path]] = None) -> List[str]:
    """Rewrite (or with ``check`` only compare) every block of ``files`` (default :func:`pages`); returns
    ``'page: spec'`` of the stale ones."""
    stale = []
    for page in pages() if files is None else files:
        text = page.read_text()
        new = BLOCK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), text)
        if new != text:
            name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
            stale += [f"{name}: {folder}" for folder, body in blocks(text) if body != render(folder)]
            if not check:
                page.write_text(new)
    return stale


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["store"]:
        p = argparse.ArgumentParser(prog="readme_table.py store", description="store a run's results, then render")
        p.add_argument("out", type=Path, help="the run's --out folder (holds results.json and results.md)")
        p.add_argument("name", help="the stored result's name: docs/results/NAME/")
        p.add_argument("--command", required=True, help="the command that made the run, as a reader would type it")
        p.add_argument("--wall", type=float, help="the run's wall time in seconds (the harness prints it)")
        p.add_argument("--commit", help="the commit the run was made at (default: HEAD)")
        p.add_argument("--note", default="", help="a note on the conditions, e.g. 'machine shared with other jobs'")
        p.add_argument("--label", action="append", default=[], metavar="OLD=NEW",
                       help="show the family label OLD as NEW in pivot tables (repeatable)")
        a = p.parse_args(argv[1:])
        if any("=" not in x for x in a.label):
            raise SystemExit(f"readme_table.py: --label takes OLD=NEW, got {a.label}")
        dest = store(a.out, a.name, a.command, a.wall, a.commit, a.note,
                     dict(x.split("=", 1) for x in a.label))
        print(f"stored {a.out} in {dest.relative_to(ROOT)}")
        argv = []
    p = argparse.ArgumentParser(prog="readme_table.py", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block is out of date")
    a = p.parse_args(argv)
    stale = update(a.check)
    if a.check and stale:
        print("out of date (run python scripts/readme_table.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    print("up to date" if a.check or not stale else "rewrote: " + ", ".join(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
