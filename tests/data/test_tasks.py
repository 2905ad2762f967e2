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

# (k, parity) of the input and target fields, written out from the task descriptions
SIGNATURES = {
    "gravity": ([(0, 1)], [(1, 1)]),
    "tidal": ([(0, 1)], [(2, 1)]),
    "navier-stokes": ([(1, 1)], [(1, 1)]),
    "subgrid-stress": ([(1, 1)], [(2, 1)]),
    "boussinesq-flux": ([(0, 1), (1, 1)], [(1, 1), (2, 1)]),
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
    assert field_signature(in_type) == sig_in and field_signature(out_type) == sig_out
    assert field_signature(data.in_type(gs)) == sig_in and field_signature(data.out_type(gs)) == sig_out
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
            if name in ("gravity", "tidal"):
                assert key in T._DensityTask.__dict__["defaults"] and key in T.GravityTask.__doc__
            else:
                assert key in doc, (name, key)
