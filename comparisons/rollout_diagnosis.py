"""Why do the equivariant models' navier-stokes rollouts blow up? Per-step diagnostics of one-step models fed their
own output (issue 18, the rollout finding of docs/head_to_head.md).

Trains (or, with an existing ``--out``, reuses) the quick navier-stokes run of the harness with ``--rollout``, then
rolls each family's trained model out on the test trajectories and prints, per step, side by side:

* ``error``: the harness's relative rollout error :math:`\\sum|\\hat s_t - s_t|^2 / \\sum|s_t|^2`;
* ``energy``: :math:`\\sum|\\hat s_t|^2 / \\sum|s_t|^2` (a blow-up has energy >> 1, a smoothed-out flow << 1);
* ``div``: the fraction of the prediction's energy in its divergent and mean part (every true state is
  divergence-free with zero mean, so the training inputs never hold any: a model's response to it is unconstrained);
* ``high-k``: the fraction of the prediction's energy at Fourier modes the solver's 2/3 rule removes from the
  advection (:func:`escnn_tensor.data.navier_stokes.dealias_mask`), i.e. at the grid's smallest scales;
* ``error (projected)``: the rollout error when every predicted state is first projected onto what a true state can
  be (divergence-free, zero mean; Helmholtz projection by FFT) before it is fed back: the control. If the blow-up
  comes from the off-manifold part, projecting removes it.

Usage (a few minutes on 2 CPU cores)::

    python comparisons/rollout_diagnosis.py --out outputs/rollout-diagnosis [--steps 20]

The numbers and their reading are in docs/head_to_head.md (Rollouts).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from escnn.nn import GeometricTensor

from escnn_tensor.data.navier_stokes import project_velocity as helmholtz_project


def high_k_fraction(v: torch.Tensor) -> torch.Tensor:
    """Energy fraction of ``v`` (``(b, C, N, N)``) at the modes the 2/3 rule removes."""
    from escnn_tensor.data.navier_stokes import dealias_mask

    keep = dealias_mask(v.shape[-1])
    power = torch.fft.fft2(v.double()).abs().pow(2).sum(dim=(0, 1))
    return power[~keep].sum() / power.sum()


@torch.no_grad()
def diagnose(predictor, trajectories, in_type, steps: int):
    """Per-step sums over the test trajectories: error, energy ratio, divergent fraction, high-k fraction, and the
    error of the projected rollout."""
    predictor.eval()
    dtype = next(predictor.parameters()).dtype
    keys = ("num", "num_proj", "den", "energy", "div", "highk_num")
    acc = {k: torch.zeros(steps, dtype=torch.float64) for k in keys}
    n = len(trajectories)
    for start in range(0, n, 16):
        states = trajectories[torch.arange(start, min(start + 16, n))].double()
        # the check of the projection's convention: true states are divergence-free with zero mean
        assert (helmholtz_project(states) - states).abs().max() <= 1e-8 * states.abs().max()
        s, s_proj = states[:, 0], states[:, 0]
        for t in range(steps):
            s = predictor(GeometricTensor(s.to(dtype), in_type)).tensor.double()
            s_proj = helmholtz_project(predictor(GeometricTensor(s_proj.to(dtype), in_type)).tensor.double())
            true = states[:, t + 1]
            acc["num"][t] += (s - true).pow(2).sum()
            acc["num_proj"][t] += (s_proj - true).pow(2).sum()
            acc["den"][t] += true.pow(2).sum()
            acc["energy"][t] += s.pow(2).sum()
            acc["div"][t] += (s - helmholtz_project(s)).pow(2).sum()
            acc["highk_num"][t] += high_k_fraction(s) * s.pow(2).sum()
    return {
        "error": (acc["num"] / acc["den"]).tolist(),
        "error_projected": (acc["num_proj"] / acc["den"]).tolist(),
        "energy": (acc["energy"] / acc["den"]).tolist(),
        "div": (acc["div"] / acc["energy"]).tolist(),
        "high_k": (acc["highk_num"] / acc["energy"]).tolist(),
    }


def main(argv=None) -> int:
    from escnn_tensor.compare import run_comparison
    from escnn_tensor.compare.cli import parse_args
    from escnn_tensor.compare.execute import train_job
    from escnn_tensor.compare.plan import plan
    from escnn_tensor.data import get_task
    from escnn_tensor.data.splits import load_splits

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/rollout-diagnosis")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = parse_args(["--quick", "--task", "navier-stokes", "--rollout", str(args.steps), "--out", args.out,
                         "--no-progress", "--threads", str(args.threads)])
    out = Path(args.out)
    if not (out / "results.json").exists():
        run_comparison(config, log=print)
    rows = json.loads((out / "results.json").read_text())
    (r0,) = {(r["size"], r["n_train"], r["n_val"], r["n_test"]) for r in rows}
    size, n_train, n_val, n_test = r0
    splits = load_splits(get_task("navier-stokes"), n_train, n_val, n_test, size, config.data_seed, config.cache_dir,
                         rollout_steps=args.steps)
    specs = {j.job_id: j for r in plan(config) for j in r.jobs}
    report = {}
    for row in rows:
        spec = specs[row["job"]]
        predictor, _ = train_job(spec, splits, out / "checkpoints" / f"{spec.job_id}.pt", resume=True,
                                 log=lambda s: None)
        report[row["label"]] = d = diagnose(predictor, splits.trajectories, splits.in_type, args.steps)
        assert math.isclose(d["error"][0], row["rollout_errors"][0], rel_tol=1e-6), (d["error"][0], row)
    show = [t for t in (1, 2, 3, 5, 10, 15, 20) if t <= args.steps]
    for key, title in (("error", "relative error"), ("error_projected", "relative error, projected rollout"),
                       ("energy", "energy / true energy"), ("div", "divergent + mean fraction of the prediction"),
                       ("high_k", "fraction of the prediction's energy at the 2/3-rule modes")):
        print(f"\n{title}\n| family | " + " | ".join(f"step {t}" for t in show) + " |")
        print("|---|" + "---:|" * len(show))
        for labl, d in report.items():
            print(f"| {labl} | " + " | ".join(f"{d[key][t - 1]:.3g}" for t in show) + " |")
    (out / "diagnosis.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
