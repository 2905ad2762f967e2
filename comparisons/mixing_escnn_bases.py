"""escnn's R2Conv against GeometricConv on the same regular field types, in one escnn network (docs/mixing_escnn.md).

Run:  .venv/bin/python comparisons/mixing_escnn_bases.py [--steps 300] [--width 4] [--seeds 0,1]

The network (both variants): a scalar field -> conv -> ReLU -> [conv -> ReLU] x (layers - 2) -> conv -> a vector, all
hidden fields ``width`` regular fields of D4, kernel 5, circular padding. Variant "escnn": every conv is escnn's
R2Conv (the last one to escnn's irrep(1,1), turned into escnn_tensor's vector by ChangeOfBasis). Variant "geometric":
every conv is GeometricConv between the same types (the last one straight to the tensor vector). Task: the built-in
'gravity' task (mass density -> gravitational field), grid 32, n_train 128, test 64; Adam, lr 3e-3, batch 16, MSE;
test error = ||prediction - target|| / ||target|| over the test set. Printed: parameters, train-step and eval-forward
times (medians, interleaved in one process; the ratio is what to read on a shared machine), test error per seed and
the float64 equivariance error over the 8 elements. Nothing here is a test.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "comparisons"))

import torch  # noqa: E402
from escnn import nn  # noqa: E402

import escnn_tensor as et  # noqa: E402
from escnn_tensor import data  # noqa: E402
from escnn_tensor.nn import ChangeOfBasis, GeometricConv  # noqa: E402
from escnn_tensor.testing import equivariance_errors, random_input  # noqa: E402


def build(variant: str, in_type, out_type, width: int, layers: int, K: int = 5):
    gs = in_type.gspace
    G = gs.fibergroup
    reg = nn.FieldType(gs, [G.regular_representation] * width)
    conv = (lambda a, b: nn.R2Conv(a, b, K, padding=K // 2, padding_mode="circular")) if variant == "escnn" else (
        lambda a, b: GeometricConv(a, b, K, padding=K // 2, padding_mode="circular"))
    mods = [conv(in_type, reg), nn.ReLU(reg)]
    for _ in range(layers - 2):
        mods += [conv(reg, reg), nn.ReLU(reg)]
    if variant == "escnn":
        irr = nn.FieldType(gs, [G.irrep(*i) for r in out_type.representations for i in r.irreps])
        mods += [conv(reg, irr), ChangeOfBasis(irr, out_type)]
    else:
        mods += [conv(reg, out_type)]
    return nn.SequentialModule(*mods)


def rel_error(model, split, out_type) -> float:
    model.eval()
    num = den = 0.0
    with torch.no_grad():
        for i in range(0, len(split), 32):
            idx = torch.arange(i, min(i + 32, len(split)))
            x, y = split[idx]
            p = model(nn.GeometricTensor(x.float(), model.in_type)).tensor
            num += float(((p - y.float()) ** 2).sum())
            den += float((y.float() ** 2).sum())
    return (num / den) ** 0.5


def train(model, splits, steps: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    n = len(splits.train)
    for _ in range(steps):
        model.train()
        idx = torch.randperm(n, generator=gen)[:16].sort().values
        x, y = splits.train[idx]
        p = model(nn.GeometricTensor(x.float(), model.in_type)).tensor
        loss = ((p - y.float()) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return rel_error(model, splits.test, splits.out_type)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    from _timing import eval_step, time_interleaved, train_step

    splits = data.load_splits("gravity", 128, 16, 64, size=32)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}
    for variant in ("escnn", "geometric"):
        torch.manual_seed(0)
        rows[variant] = {"model": build(variant, splits.in_type, splits.out_type, args.width, args.layers)}
        rows[variant]["params"] = sum(p.numel() for p in rows[variant]["model"].parameters())
    x = nn.GeometricTensor(torch.randn(16, splits.in_type.size, 32, 32), splits.in_type)

    def step(m):
        m.train()
        train_step(m, x)

    def ev(m):
        m.eval()
        eval_step(m, x)

    t_train = time_interleaved([lambda m=r["model"]: step(m) for r in rows.values()], reps=7)
    t_eval = time_interleaved([lambda m=r["model"]: ev(m) for r in rows.values()], reps=7)
    for (variant, r), tt, te in zip(rows.items(), t_train, t_eval):
        r["train_s"], r["eval_s"] = tt, te
        errs = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = build(variant, splits.in_type, splits.out_type, args.width, args.layers)
            t0 = time.perf_counter()
            errs.append(train(model, splits, args.steps, seed))
            r["wall"] = time.perf_counter() - t0
            r["trained"] = model
        r["errors"] = errs
        m64 = r["trained"].double().eval()
        e = equivariance_errors(m64, random_input(splits.in_type, spatial=16, generator=torch.Generator().manual_seed(0)))
        r["equiv"] = max(e.values())
    print(f"gravity, grid 32, {args.width} regular fields x {args.layers} convs (K=5), {args.steps} Adam steps, "
          f"seeds {seeds}")
    print("| basis | parameters | train step ms | eval forward ms | test rel. error per seed | mean | "
          "equivariance error (float64, max over 8 elements) |")
    print("|---|---|---|---|---|---|---|")
    for variant, r in rows.items():
        name = "escnn R2Conv" if variant == "escnn" else "GeometricConv"
        errs = ", ".join(f"{e:.4f}" for e in r["errors"])
        print(f"| {name} | {r['params']} | {1e3 * r['train_s']:.1f} | {1e3 * r['eval_s']:.1f} | {errs} | "
              f"{sum(r['errors']) / len(r['errors']):.4f} | {r['equiv']:.1e} |")
    a, b = rows["geometric"], rows["escnn"]
    print(f"ratios GeometricConv / R2Conv: train step {a['train_s'] / b['train_s']:.2f}, eval {a['eval_s'] / b['eval_s']:.2f}")


if __name__ == "__main__":
    main()
