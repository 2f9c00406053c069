"""Multi-task datasets: tensors per split, from data files or built-in generators."""
from ._tensors import MultiTaskData, Split, available_sources, load_data, register_source
from ._errors import DataErrors, DataFileError
from ._files import read_data_file
from . import _multimnist, _scenes  # noqa: F401  (register the built-in sources)

__all__ = [
    "DataFileError",
    "MultiTaskData",
    "Split",
    "available_sources",
    "load_data",
    "read_data_file",
    "register_source",
]
