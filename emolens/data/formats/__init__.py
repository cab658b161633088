"""Dataset layouts, one module each, behind a small registry (:mod:`.registry`).

========================  ====================================  ===============================
format                    module                                auto-detected (priority)
========================  ====================================  ===============================
``packed``                :mod:`.packed`                        an ``.npz`` file (10)
``yolo``                  :mod:`.yolo`                          a ``.yaml`` file, ``data.yaml`` (10)
``fer2013-csv``           :mod:`.fer_csv`                       a ``.csv``, ``fer2013.csv`` (20); one ``.csv`` (90)
``split-folders``         :mod:`.split_folders`                 split folders (30)
``class-folders``         :mod:`.class_folders`                 emotion-named folders (40)
``eval-folder``           :mod:`.class_folders`                 never (ask for it)
``utkface``               :mod:`.utkface`                       UTKFace-named files (50)
``utkface-eval``          :mod:`.utkface`                       never (ask for it)
========================  ====================================  ===============================

Importing this package registers them, in the order of :data:`FORMATS`.
"""

# Registration order is the order of FORMATS (and breaks ties between detection rules).
from emolens.data.formats import split_folders, fer_csv, yolo, class_folders, packed, utkface  # noqa: F401, I001
from emolens.data.formats.registry import (
    DatasetFormat,
    Layout,
    ReadOptions,
    detect_format,
    get_format,
    list_formats,
    register_format,
)

#: The built-in formats (:func:`list_formats` also lists formats registered later).
FORMATS: tuple[str, ...] = list_formats()

__all__ = [
    "FORMATS", "DatasetFormat", "Layout", "ReadOptions",
    "detect_format", "get_format", "list_formats", "register_format",
]
