r"""The main example: learn gravity (vector field) from mass density (scalar field) with an equivariant network.

Run it with ``python examples/gravity.py`` (or ``bash scripts/dev.sh example gravity``); ``--help`` lists the
options, ``--quick`` runs a seconds-long version. The physics is :mod:`escnn_tensor.data.gravity`, the networks
and the training loop are in ``examples/gravity_model.py``. It

1. makes random point-mass densities in a periodic box and their fields by an FFT Poisson solve; by default the
   masses are smeared along x, so the data have a preferred orientation (``--isotropic`` for round masses),
2. trains :class:`gravity_model.GravityNet` (GeometricConv + escnn layers, equivariant under
   the 8 symmetries of the square grid, D4) and, for comparison, a plain torch CNN,
3. prints the train and test relative MSE, the test error on each of the 8 rotated/reflected test sets and the
   measured equivariance error, and
4. saves a PNG with a test density rotated by 90 degrees, its target field and the predictions (arrows).
"""
from __future__ import annotations

import argparse
import math
import time
from typing import List, Optional

import numpy as np
import torch

import gravity_model as G
from escnn_tensor.data import gravity as D
from escnn_tensor.groups import group_elements, group_matrix, hyperoctahedral_gspace
from escnn_tensor.testing import equivariance_errors

DEFAULT_OUT = "outputs/gravity_example.png"
ELONGATED = (2.5, 0.8)  # Gaussian widths (x, y) in pixels of the default, oriented masses
ISOTROPIC = 1.0


def _rotation_by_90(gspace):
    """The rotation by 90 degrees, which the PNG shows the test set moved by."""
    quarter_turn = np.array([[0, -1], [1, 0]])  # (x, y) -> (-y, x)
    return next(g for g in group_elements(gspace) if np.array_equal(group_matrix(gspace, g), quarter_turn))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python examples/gravity.py",
        description="Learn the gravitational field of a mass density with an escnn network that uses GeometricConv.",
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 12; 2 with --quick)")
    p.add_argument("--n-train", type=int, default=None, help="training samples (default 256; 16 with --quick)")
    p.add_argument("--n-test", type=int, default=None, help="test samples (default 64; 8 with --quick)")
    p.add_argument("--size", type=int, default=None, help="box side in pixels (default 32; 16 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="random seed (data, initialisation, batches)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for the run (default 1: multi-threaded torch slows down badly when other "
                        "processes share the cores; try 2 on an idle 2-core machine)")
    p.add_argument("--isotropic", action="store_true",
                   help="round masses (Gaussian of 1 pixel) instead of masses smeared along x")
    p.add_argument("--no-baseline", action="store_true", help="skip the plain CNN baseline")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quick", action="store_true", help="a tiny run of a few seconds (for tests)")
    args = p.parse_args(argv)
    quick = dict(epochs=2, n_train=16, n_test=8, size=16)
    full = dict(epochs=12, n_train=256, n_test=64, size=32)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("epochs", "n_train", "n_test", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.size < 9:
        p.error(f"--size must be >= 9 (the largest kernel is 9 pixels), got {args.size}")
    return args


def element_name(gspace, g) -> str:
    """A readable name for a D4 element from its matrix: e.g. 'rotation by  90 deg', 'reflection, axis at  45 deg'."""
    m = group_matrix(gspace, g)
    angle = math.degrees(math.atan2(m[1, 0], m[0, 0])) % 360
    if round(np.linalg.det(m)) == 1:
        return "identity" if angle == 0 else f"rotation by {angle:3.0f} deg"
    return f"reflection, axis at {angle / 2:3.0f} deg"


def _progress(disabled: bool):
    if disabled:
        return None
    from tqdm import tqdm

    return lambda it, **kw: tqdm(it, leave=True, dynamic_ncols=True, **kw)


def _max_equivariance_error(model, data: D.GravityData, gspace, dtype, n_samples: int = 16) -> float:
    """max over the group of the relative equivariance error on the first ``n_samples`` inputs of ``data``."""
    from escnn.nn import GeometricTensor

    x = GeometricTensor(data.density[:n_samples].to(dtype), D.density_type(gspace))
    return max(equivariance_errors(G.as_equivariant_function(model, gspace), x).values())


def _in_dtype(model, dtype) -> None:
    """Convert ``model`` in place (float32 <-> float64 round trips are exact); escnn layers re-expand filters."""
    model.train()  # escnn layers drop their cached filters ...
    model.to(dtype)
    model.eval()  # ... and rebuild them from the converted parameters and bases


def run(args: argparse.Namespace) -> dict:
    """Run the example with parsed ``args``; print the report and return the numbers as a dict."""
    torch.set_num_threads(args.threads)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    gspace = hyperoctahedral_gspace(2)
    print(f"Gravity from mass density in a periodic {args.size}x{args.size} box; symmetry group D4 "
          f"({gspace.fibergroup.order()} elements: rotations by 90 deg and reflections)")
    smoothing = ISOTROPIC if args.isotropic else ELONGATED
    train_set = D.make_dataset(args.n_train, args.size, generator=gen, smoothing=smoothing)
    test_set = D.make_dataset(args.n_test, args.size, generator=gen, smoothing=smoothing)
    print(f"data: {args.n_train} train / {args.n_test} test densities (3-8 point masses each), fields by FFT "
          f"Poisson solve")
    if args.isotropic:
        print("masses smoothed by a round Gaussian (1 pixel): the data have no preferred orientation")
    else:
        print(f"masses smeared along x (Gaussian widths {ELONGATED[0]} x {ELONGATED[1]} pixels): train and test "
              f"data have a preferred orientation,\nso the rotated test sets hold shapes no model saw in training")

    models = {"equivariant": G.GravityNet(gspace)}
    if not args.no_baseline:
        models["plain CNN"] = G.CNNBaseline()
    results = {}
    progress = _progress(args.no_progress)
    for name, model in models.items():
        model.set_scales(train_set)
        print(f"{name} model: {G.num_parameters(model)} parameters")
        t0 = time.perf_counter()
        history = G.train(model, train_set, args.epochs, generator=gen, progress=progress, desc=name)
        seconds = time.perf_counter() - t0
        rotated = G.transformed_errors(model, test_set, gspace)
        results[name] = dict(
            parameters=G.num_parameters(model),
            train_seconds=seconds,
            final_loss=history[-1],
            train=G.evaluate(model, train_set),
            test=G.evaluate(model, test_set),
            rotated={element_name(gspace, g): e for g, e in rotated.items()},
            equivariance_float32=_max_equivariance_error(model, test_set, gspace, torch.float32),
        )
    _in_dtype(models["equivariant"], torch.float64)
    results["equivariant"]["equivariance_float64"] = _max_equivariance_error(
        models["equivariant"], test_set, gspace, torch.float64
    )
    _in_dtype(models["equivariant"], torch.float32)

    _print_report(results, args)
    _save_plot(models, G.transform_data(test_set, _rotation_by_90(gspace), gspace), args.out)
    results["png"] = args.out
    results["seconds"] = time.perf_counter() - t_start
    results["cpu_seconds"] = time.process_time() - cpu_start
    print(f"saved {args.out}")
    print(f"total time {results['seconds']:.1f} s wall clock, {results['cpu_seconds']:.1f} s CPU "
          f"({torch.get_num_threads()} torch threads)")
    return results


def _print_report(results: dict, args) -> None:
    names = [n for n in ("equivariant", "plain CNN") if n in results]
    w = 34
    print()
    print("relative MSE = sum |prediction - target|^2 / sum |target|^2")
    print(" " * w + "".join(f"{n:>14}" for n in names))
    print(f"{'parameters':<{w}}" + "".join(f"{results[n]['parameters']:>14d}" for n in names))
    print(f"{'train':<{w}}" + "".join(f"{results[n]['train']:>14.4f}" for n in names))
    print(f"{'test':<{w}}" + "".join(f"{results[n]['test']:>14.4f}" for n in names))
    print("test on rotated/reflected inputs, model(g.x) vs g.target:")
    for label in results["equivariant"]["rotated"]:
        print(f"  {label:<{w - 2}}" + "".join(f"{results[n]['rotated'][label]:>14.4f}" for n in names))
    spread = {n: max(results[n]["rotated"].values()) - min(results[n]["rotated"].values()) for n in names}
    print(f"{'  max - min over the 8':<{w}}" + "".join(f"{spread[n]:>14.2e}" for n in names))
    print("equivariance error max_g |f(g.x) - g.f(x)| / max |f(x)| on 16 test inputs:")
    print(f"{'  float32':<{w}}" + "".join(f"{results[n]['equivariance_float32']:>14.2e}" for n in names))
    print(f"{'  float64 copy of the trained model':<{w}}" + f"{results['equivariant']['equivariance_float64']:>14.2e}")
    print(f"{'training time (s)':<{w}}" + "".join(f"{results[n]['train_seconds']:>14.1f}" for n in names))


def _save_plot(models: dict, data: D.GravityData, path: str) -> None:
    """Plot the first sample of ``data`` (the test set rotated by 90 degrees) and every model's prediction."""
    import matplotlib.pyplot as plt

    with torch.no_grad():
        preds = {f"prediction: {n}": G.predict(m, data.density[:1].float())[0] for n, m in models.items()}
    fig = G.plot_example(data.density[0], data.field[0], preds, path=path,
                         density_title="input: test density rotated by 90 deg")
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> dict:
    """Command-line entry point; ``argv`` as for ``argparse`` (``None``: ``sys.argv[1:]``). Returns the numbers.

    ``--threads`` changes torch's thread count only for the run; it is restored afterwards.
    """
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
