"""escnn_tensor.data.tasks: the registry, the data-set conventions shared by every task (types, layouts,
determinism by seed), the disk cache, and argument checks. Physics and equivariance: tests/data/test_<task>.py."""
import warnings

import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor import hyperoctahedral_gspace
from escnn_tensor.data import TASKS, TensorFieldData, get_task, load
from escnn_tensor.data import tasks as T
from escnn_tensor.representations import field_signature
from tests.reference import SUBGROUP_GSPACES_2D, SUBGROUP_GSPACES_3D

NAMES = ["gravity", "tidal", "navier-stokes", "subgrid-stress", "boussinesq-flux", "magnetostatics-3d"]

# small, fast settings per task for these tests (the defaults are exercised in test_defaults_are_documented)
SMALL = {
    "gravity": ({}, 12),
    "tidal": ({}, 12),
    "navier-stokes": ({"spin_up": 0.1, "interval": 0.05}, 12),
    "subgrid-stress": ({"factor": 2}, 8),
    "boussinesq-flux": ({"factor": 2, "spin_up": 0.05}, 8),
    "magnetostatics-3d": ({}, 6),
}

# (k, parity[, symmetry]) of the input and target fields, written out from the task descriptions
SIGNATURES = {
    "gravity": ([(0, 1)], [(1, 1)]),
    "tidal": ([(0, 1)], [(2, 1, "symmetric")]),
    "navier-stokes": ([(1, 1)], [(1, 1)]),
    "subgrid-stress": ([(1, 1)], [(2, 1, "symmetric")]),
    "boussinesq-flux": ([(0, 1), (1, 1)], [(1, 1), (2, 1, "symmetric")]),
    "magnetostatics-3d": ([(1, 1)], [(1, -1)]),
}


def small(name, **extra):
    options, size = SMALL[name]
    return get_task(name, **{**options, **extra}), size


@pytest.fixture(scope="module")
def gspaces():
    return {2: hyperoctahedral_gspace(2), 3: hyperoctahedral_gspace(3)}


def test_registry_names_and_attributes():
    assert sorted(TASKS) == sorted(NAMES)
    for name in NAMES:
        task = get_task(name)
        assert task is TASKS[name] and task.name == name
        assert task.d == (3 if name.endswith("3d") else 2)
        assert isinstance(task.description, str) and task.description and "\n" not in task.description
        assert task.quick_size < task.default_size
        assert task.min_size <= task.quick_size


@pytest.mark.parametrize("name", NAMES)
def test_types_and_layout_of_the_data(name, gspaces):
    """inputs/targets are float64 (B, C, N^d) with the channel counts of the task's field types; the field types
    are the documented tensor types; GeometricTensors can be built from them directly."""
    task, size = small(name)
    gs = gspaces[task.d]
    data = task.make(3, size, seed=1)
    assert isinstance(data, TensorFieldData) and len(data) == 3
    assert data.inputs.dtype == data.targets.dtype == torch.float64
    in_type, out_type = task.in_type(gs), task.out_type(gs)
    assert data.inputs.shape == (3, in_type.size) + (size,) * task.d
    assert data.targets.shape == (3, out_type.size) + (size,) * task.d
    sig_in, sig_out = SIGNATURES[name]
    sig = lambda ft: field_signature(ft, with_symmetry=True)
    assert sig(in_type) == sig_in and sig(out_type) == sig_out
    assert sig(data.in_type(gs)) == sig_in and sig(data.out_type(gs)) == sig_out
    assert (data.task, data.size, data.seed, data.d) == (name, size, 1, task.d)
    GeometricTensor(data.inputs, in_type)
    GeometricTensor(data.targets, out_type)
    assert data.inputs.abs().max() > 0 and data.targets.abs().max() > 0
    part = data.subset([2, 0])
    assert torch.equal(part.inputs, data.inputs[[2, 0]]) and torch.equal(part.targets[1], data.targets[0])


@pytest.mark.parametrize("name", NAMES)
def test_types_on_subgroups(name):
    """in_type/out_type accept subgroup gspaces of the right dimension, and refuse the other dimension."""
    task = get_task(name)
    subgroups = SUBGROUP_GSPACES_3D if task.d == 3 else SUBGROUP_GSPACES_2D
    other = SUBGROUP_GSPACES_2D if task.d == 3 else SUBGROUP_GSPACES_3D
    gs = next(iter(subgroups.values()))()
    assert task.in_type(gs).size == task.channels()[0] and task.out_type(gs).size == task.channels()[1]
    with pytest.raises(ValueError, match=f"{task.d}D"):
        task.in_type(next(iter(other.values()))())


@pytest.mark.parametrize("name", ["gravity", "tidal", "navier-stokes", "magnetostatics-3d"])
def test_targets_are_the_solver_map_of_the_inputs(name):
    """For the tasks whose target is a function of the input, make() and solve() agree (solve is the map the
    equivariance tests check); navier-stokes also in its vorticity variant."""
    task, size = small(name)
    data = task.make(2, size, seed=3)
    torch.testing.assert_close(task.solve(data.inputs), data.targets, rtol=1e-12, atol=1e-12 * data.targets.abs().max())
    if name == "navier-stokes":
        vort, _ = small(name, variable="vorticity")
        d2 = vort.make(2, size, seed=3)
        assert d2.inputs.shape[1] == 1
        torch.testing.assert_close(vort.solve(d2.inputs), d2.targets, rtol=1e-12, atol=1e-12 * d2.targets.abs().max())


def test_subgrid_target_is_not_a_function_of_the_input():
    task = get_task("subgrid-stress")
    assert not task.target_is_function_of_input
    assert not get_task("boussinesq-flux").target_is_function_of_input
    assert all(get_task(n).target_is_function_of_input for n in NAMES if n not in ("subgrid-stress", "boussinesq-flux"))
    with pytest.raises(NotImplementedError, match="not a function of the input"):
        task.solve(torch.zeros(1, 2, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_by_seed_and_independent_of_global_rng(name):
    task, size = small(name)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = task.make(2, size, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not used
    torch.manual_seed(999)  # a different global state changes nothing
    b = task.make(2, size, seed=5)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)  # bit-identical
    c = task.make(2, size, seed=6)
    assert not torch.allclose(a.inputs, c.inputs) and not torch.allclose(a.targets, c.targets)


@pytest.mark.parametrize("name", NAMES)
def test_cache_round_trip_and_corrupt_file(name, tmp_path, monkeypatch):
    """First load generates and writes; the second reads the file (make is not called again) and is identical;
    a corrupt file and a truncated file are regenerated with a warning; no temporary files are left behind."""
    options, size = SMALL[name]
    first = load(name, 2, size, seed=4, cache_dir=tmp_path, **options)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"
    path = files[0]
    assert path == T.cache_path(get_task(name, **options), 2, size, 4, tmp_path)

    task_class = type(TASKS[name])
    with monkeypatch.context() as m:
        m.setattr(task_class, "make", lambda *a, **k: pytest.fail("make() called although the file is cached"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second = load(name, 2, size, seed=4, cache_dir=tmp_path, **options)
    assert torch.equal(first.inputs, second.inputs) and torch.equal(first.targets, second.targets)
    assert second.options == first.options and second.in_fields == first.in_fields

    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # flip bytes inside the stored tensors
    path.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        third = load(name, 2, size, seed=4, cache_dir=tmp_path, **options)
    assert torch.equal(first.inputs, third.inputs) and torch.equal(first.targets, third.targets)

    path.write_bytes(path.read_bytes()[:100])  # a partial write
    with pytest.warns(RuntimeWarning, match="corrupt"):
        fourth = load(name, 2, size, seed=4, cache_dir=tmp_path, **options)
    assert torch.equal(first.targets, fourth.targets)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # rewritten in place, no temporary files
    fifth = load(name, 2, size, seed=4, cache_dir=tmp_path, **options)
    assert torch.equal(first.targets, fifth.targets)


def test_cache_keys_and_environment_variable(tmp_path, monkeypatch):
    """Different n, size, seed, options, version give different files; explicit default options give the same file;
    ESCNN_TENSOR_DATA moves the default directory."""
    task = get_task("gravity")
    paths = {
        T.cache_path(task, 2, 8, 0, tmp_path),
        T.cache_path(task, 3, 8, 0, tmp_path),
        T.cache_path(task, 2, 9, 0, tmp_path),
        T.cache_path(task, 2, 8, 1, tmp_path),
        T.cache_path(get_task("gravity", smoothing=2.0), 2, 8, 0, tmp_path),
        T.cache_path(get_task("tidal"), 2, 8, 0, tmp_path),
    }
    assert len(paths) == 6
    assert T.cache_path(get_task("gravity", smoothing=1.0), 2, 8, 0, tmp_path) == T.cache_path(task, 2, 8, 0, tmp_path)
    assert T.cache_path("gravity", 2, 8, 0, tmp_path) == T.cache_path(get_task("gravity"), 2, 8, 0, tmp_path)
    monkeypatch.setattr(T.GravityTask, "version", 99)
    assert T.cache_path(task, 2, 8, 0, tmp_path) not in paths

    monkeypatch.setenv("ESCNN_TENSOR_DATA", str(tmp_path / "env"))
    assert T.default_cache_dir() == tmp_path / "env"
    load("gravity", 1, 8, seed=0)
    assert len(list((tmp_path / "env").iterdir())) == 1
    monkeypatch.delenv("ESCNN_TENSOR_DATA")
    assert T.default_cache_dir() == T.Path.home() / ".cache" / "escnn_tensor" / "data"


def test_options_change_the_data():
    a = get_task("gravity").make(2, 12, seed=0)
    b = get_task("gravity", smoothing=2.5).make(2, 12, seed=0)
    assert not torch.allclose(a.inputs, b.inputs)
    ns = get_task("navier-stokes", spin_up=0.1, interval=0.05, variable="vorticity").make(1, 12, seed=0)
    assert ns.inputs.shape == (1, 1, 12, 12) and ns.in_fields == ((0, -1, 1),)
    assert repr(get_task("navier-stokes", variable="vorticity")) == "get_task('navier-stokes', variable='vorticity')"


def test_bad_arguments_are_rejected(gspaces):
    with pytest.raises(ValueError, match="unknown task 'gravity-2d'.*navier-stokes"):
        get_task("gravity-2d")
    with pytest.raises(TypeError, match="unknown option.*smoothness.*smoothing"):
        get_task("gravity", smoothness=1.0)
    with pytest.raises(ValueError, match="option variable must be one of \\['velocity', 'vorticity'\\]"):
        get_task("navier-stokes", variable="pressure")
    with pytest.raises(ValueError, match="option viscosity must be a finite number >= 0, got -1"):
        get_task("navier-stokes", viscosity=-1)
    with pytest.raises(ValueError, match="option factor must be an integer >= 1"):
        get_task("subgrid-stress", factor=1.5)
    with pytest.raises(ValueError, match="option n_masses"):
        get_task("tidal", n_masses=(5, 2))
    task = get_task("gravity")
    with pytest.raises(ValueError, match="n_samples must be a positive integer, got 0"):
        task.make(0, 8)
    with pytest.raises(ValueError, match="seed must be an integer"):
        task.make(1, 8, seed=-1)
    with pytest.raises(ValueError, match="size of task 'gravity' must be an integer >= 4, got 2"):
        task.make(1, 2)
    with pytest.raises(ValueError, match="size of task 'navier-stokes' must be an integer >= 8, got 6.0"):
        load("navier-stokes", 1, 6.0)
    with pytest.raises(ValueError, match="acts on R\\^2"):
        get_task("magnetostatics-3d").out_type(gspaces[2])


def test_too_large_requests_are_refused_before_allocating():
    with pytest.raises(ValueError, match=r"would take 6\.0 GiB.*MAX_DATA_BYTES"):
        get_task("magnetostatics-3d").make(512, 64)  # 512 * 6 channels * 64^3 * 8 bytes
    with pytest.raises(ValueError, match="working memory"):
        get_task("subgrid-stress", factor=16).make(1, 128)  # a 2048^2 fine grid per sample


def test_defaults_are_documented():
    """The default options are what the docstrings of the task classes state (a change must update both)."""
    for name in NAMES:
        task = get_task(name)
        doc = type(task).__doc__
        for key in task.defaults:
            if name == "gravity" or (name == "tidal" and key != "target"):
                assert key in T._DensityTask.__dict__["defaults"] and key in T.GravityTask.__doc__
            else:
                assert key in doc, (name, key)


SYMMETRIC_TARGETS = {  # task -> (full out_fields of version 1, default out_fields), written out from the task docs
    "tidal": (((2, 1, 1),), ((2, 1, 1, "symmetric"),)),
    "subgrid-stress": (((2, 1, 1),), ((2, 1, 1, "symmetric"),)),
    "boussinesq-flux": (((1, 1, 1), (2, 1, 1)), ((1, 1, 1), (2, 1, 1, "symmetric"))),
}


@pytest.mark.parametrize("name", sorted(SYMMETRIC_TARGETS))
def test_symmetric_targets_by_default_and_full_on_request(name, gspaces):
    """The tasks with symmetric 2-tensor targets give them as symmetric fields (3 channels in 2D: (xx, sqrt(2) xy,
    yy)) by default and as full tensors with target='full', from the same inputs; the full tensors are symmetric;
    both forms are version 2 (new cache files and job ids); a bad target is refused by name."""
    full_fields, sym_fields = SYMMETRIC_TARGETS[name]
    task, size = small(name)
    full_task, _ = small(name, target="full")
    assert task.options["target"] == "symmetric" and task.out_fields == sym_fields and task.version == 2
    assert full_task.out_fields == full_fields and full_task.version == 2
    assert task.channels()[1] == full_task.channels()[1] - 1
    sym, full = task.make(2, size, seed=5), full_task.make(2, size, seed=5)
    assert torch.equal(sym.inputs, full.inputs) and sym.out_fields == sym_fields
    t = full.targets[:, -4:]  # the 2-tensor field is the last one: (xx, xy, yx, yy)
    assert torch.equal(t[:, 1], t[:, 2])
    coords = torch.stack([t[:, 0], 2**0.5 * t[:, 1], t[:, 3]], 1)
    torch.testing.assert_close(sym.targets[:, -3:], coords, rtol=0, atol=1e-15 * t.abs().max())
    torch.testing.assert_close(sym.targets[:, :-3], full.targets[:, :-4], rtol=0, atol=0)
    GeometricTensor(sym.targets, task.out_type(gspaces[2]))
    with pytest.raises(ValueError, match=r"option target must be one of \['symmetric', 'full'\], got 'traceless'"):
        get_task(name, target="traceless")
    assert all(get_task(n).version == 1 for n in NAMES if n not in SYMMETRIC_TARGETS)


def test_symmetric_coordinates_are_orthonormal_so_errors_equal_frobenius_errors():
    """E^T E = I for the 2D symmetric coordinates (xx, sqrt(2) xy, yy) (E written out by hand and compared with
    symmetric_basis), so the harness's relative squared error on the coordinates equals the relative Frobenius error of
    the full tensors, for random symmetric targets and predictions."""
    from escnn_tensor.compare.metrics import relative_error
    from escnn_tensor.representations import symmetric_basis, to_full_tensor

    r = 2**-0.5
    E = torch.tensor([[1, 0, 0], [0, r, 0], [0, r, 0], [0, 0, 1]], dtype=torch.float64)  # rows xx, xy, yx, yy
    torch.testing.assert_close(torch.from_numpy(symmetric_basis(2, 2, "symmetric")), E, rtol=0, atol=1e-15)
    torch.testing.assert_close(E.T @ E, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-15)
    gen = torch.Generator().manual_seed(6)
    target, pred = (torch.randn(5, 3, 7, 7, dtype=torch.float64, generator=gen) for _ in range(2))
    pred = target + 0.3 * pred
    full = lambda c: to_full_tensor(c, 2, 2, "symmetric", dim=1)
    frob = ((full(pred) - full(target)) ** 2).sum() / (full(target) ** 2).sum()
    assert abs(relative_error(pred, target) - frob.item()) <= 1e-14 * frob.item()
    assert torch.equal(full(target)[:, 1], full(target)[:, 2])  # the full tensors are symmetric


def test_cache_files_of_the_two_target_forms_and_of_version_1_differ(tmp_path, monkeypatch):
    """The cache key changes with the target form (the option is part of it) and with the version, so a version-1
    file (full tensors, no target option) is never served for the new definition, nor the symmetric one for
    target='full'; both forms load from one cache directory with their own shapes."""
    sym, full = get_task("tidal"), get_task("tidal", target="full")
    paths = {T.cache_path(sym, 2, 8, 0, tmp_path), T.cache_path(full, 2, 8, 0, tmp_path)}
    assert len(paths) == 2 and all(p.name.endswith("-v2.pt") for p in paths)
    a = load("tidal", 2, 8, seed=0, cache_dir=tmp_path)
    b = load("tidal", 2, 8, seed=0, cache_dir=tmp_path, target="full")
    assert a.targets.shape[1] == 3 and b.targets.shape[1] == 4
    assert load("tidal", 2, 8, seed=0, cache_dir=tmp_path).targets.shape[1] == 3  # read back, each its own file
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in paths}
    # a version-1 file at the new name would still be refused: its metadata (version, options) differ
    path = T.cache_path(sym, 2, 8, 0, tmp_path)
    monkeypatch.setattr(T.TidalTask, "version", 1)
    T._write(path, b, 1)
    monkeypatch.setattr(T.TidalTask, "version", 2)
    with pytest.warns(RuntimeWarning, match="regenerating"):
        again = load("tidal", 2, 8, seed=0, cache_dir=tmp_path)
    assert again.targets.shape[1] == 3 and torch.equal(again.targets, a.targets)
