"""File readers, one module per format, and the dataset spec (a TOML file that makes a file a task).

- :mod:`~escnn_tensor.data.readers.the_well`: The Well's HDF5 layout (h5py, lazy).
- :mod:`~escnn_tensor.data.readers.netcdf`: netCDF through xarray (lazy), orientation from dimension names.
- :mod:`~escnn_tensor.data.readers.npz`: NumPy ``.npz``, one array per field in The Well's axis order.
- :mod:`~escnn_tensor.data.readers.spec`: the TOML schema and :func:`read_spec`.

Each reader gives a :class:`~escnn_tensor.data.readers.base.FieldSource`; h5py and xarray are imported only when
a file of their format is read.
"""
from .base import ArraySource, FieldInfo, FieldSource
from .spec import FORMATS, read_spec

__all__ = ["FieldSource", "FieldInfo", "ArraySource", "read_spec", "FORMATS"]
