"""Tensor-field data sets, generated offline, deterministically by seed, and cached on disk.

The registry (:mod:`escnn_tensor.data.tasks`): ``TASKS`` / ``get_task(name, **options)`` / ``load(name, n_samples,
size, seed)``, each task giving escnn-layout float64 ``inputs`` / ``targets`` and their field types:

- ``gravity``: point-mass density (scalar) -> gravitational field (vector); :mod:`~escnn_tensor.data.gravity`.
- ``tidal``: density (scalar) -> tidal tensor (symmetric 2-tensor); :mod:`~escnn_tensor.data.tidal`.
- ``navier-stokes``: velocity (vector) or vorticity (pseudoscalar) at t -> t + dt, 2D forced turbulence;
  :mod:`~escnn_tensor.data.navier_stokes`.
- ``subgrid-stress``: filtered velocity (vector) -> subgrid stress (symmetric 2-tensor);
  :mod:`~escnn_tensor.data.subgrid`.
- ``boussinesq-flux``: filtered buoyancy (scalar) and velocity (vector) of 2D Boussinesq convection -> subgrid
  buoyancy flux (vector) and momentum flux (symmetric 2-tensor); :mod:`~escnn_tensor.data.boussinesq`.
- ``magnetostatics-3d``: current density (vector) -> magnetic field (pseudovector), 3D;
  :mod:`~escnn_tensor.data.magnetostatics`.

The symmetric 2-tensor targets (of ``tidal``, ``subgrid-stress``, ``boussinesq-flux``) are symmetric fields by
default (``(2, +1, 1, 'symmetric')``: 3 channels in 2D); the option ``target='full'`` gives all 4 components.

Data from files and arrays (:mod:`escnn_tensor.data.readers`): a TOML dataset spec (:func:`read_spec`) or
arrays with declared fields (:func:`from_arrays`) give a :class:`FileTask` on any grid, with its symmetry group
(:mod:`~escnn_tensor.data.grids`); :func:`load_splits` gives the :class:`Splits` of any task (built-in or from
data), split by trajectory, read lazily from large files; :class:`DataError` is the one-line error of bad data.

:mod:`escnn_tensor.data.spectral` holds the shared spectral calculus (derivatives with the Nyquist wavenumber
zeroed, so that every operator commutes with the symmetries of the grid).
"""
from . import boussinesq, gravity, magnetostatics, navier_stokes, spectral, subgrid, tidal
from .errors import DataError
from .fields import Field, escnn_to_grid_layout, grid_to_escnn_layout
from .file_task import FileTask, from_arrays
from .grids import grid_symmetry
from .readers.spec import read_spec
from .splits import LazySplit, Splits, TensorSplit, Trajectories, has_trajectories, load_splits
from .tasks import (
    TASKS,
    BoussinesqFluxTask,
    MagnetostaticsTask,
    NavierStokesTask,
    SubgridStressTask,
    Task,
    TensorFieldData,
    TidalTask,
    GravityTask,
    cache_path,
    default_cache_dir,
    get_task,
    load,
)

__all__ = [
    "gravity",
    "tidal",
    "navier_stokes",
    "subgrid",
    "magnetostatics",
    "boussinesq",
    "spectral",
    "TASKS",
    "get_task",
    "load",
    "Task",
    "TensorFieldData",
    "GravityTask",
    "TidalTask",
    "NavierStokesTask",
    "SubgridStressTask",
    "BoussinesqFluxTask",
    "MagnetostaticsTask",
    "default_cache_dir",
    "cache_path",
    "DataError",
    "Field",
    "FileTask",
    "from_arrays",
    "read_spec",
    "load_splits",
    "has_trajectories",
    "Splits",
    "TensorSplit",
    "LazySplit",
    "Trajectories",
    "grid_symmetry",
    "grid_to_escnn_layout",
    "escnn_to_grid_layout",
]
