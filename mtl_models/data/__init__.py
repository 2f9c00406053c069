"""Multi-task datasets: tensors per split, from data files, local dataset copies or generators.

Sources (``load_data(source, tasks, **options)``): ``multimnist`` (the quickstart's real
digits), ``files`` (the seed's data files), ``scenes`` (procedural multi-attribute scenes)
and ``celeba`` (a local CelebA copy), each declared once by its loader's signature and its
:class:`SourceFacts` (``_source``), as a plugin's is. Every row is checked before training;
problems come back together as :class:`DataErrors`, each naming file, line and column.
Batches reach the model through :class:`DataFeed` (held on the device or streamed).
"""
from ._tensors import MultiTaskData, Split, open_images_file
from ._source import (
    DataSource,
    SourceFacts,
    available_sources,
    data_source,
    load_data,
    missing_rate_problems,
    register_source,
    registered_sources,
    source_function,
    source_options,
)
from . import _multimnist, _files_source, _scenes, _celeba  # noqa: F401  (register the built-in sources, in this order)
from ._errors import MAX_LISTED, DataErrors, DataFileError, ProblemLog
from ._labels import LabelError, LabelFormat, label_format, register_label_format
from ._images import MAX_IMAGE_PIXELS, ImageRef, ImageTooLarge, decode_images, default_cache_dir, header_pixels
from ._files import read_data_file, split_indices
from ._augment import (
    Augmentation,
    Pipeline,
    augmentation_class,
    augmentation_options,
    available_augmentations,
    build_augmentations,
    register_augmentation,
)
from ._feed import LOADER_MODES, DataFeed, iterate_batches, make_feeds, memory_budget, prepare_for_trials, resolve_loader
from ._report import format_data_report
from ._celeba import ATTRIBUTES as CELEBA_ATTRIBUTES, attribute_target, celeba_task_map
from ._scenes import check_scene_tasks, generate_scenes, scene_tasks

__all__ = [name for name in dir() if not name.startswith("_")]
