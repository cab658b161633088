"""The one exception family of emolens: catch :class:`EmolensError` for any input emolens cannot use.

Every class is a ``ValueError`` (callers that caught ``ValueError`` keep working); every message
names the file or input and what was expected. Errors raised where input enters emolens (files,
options, configs, model files, datasets) are of this family, so the CLI reports exactly these
(and the system's ``OSError``) as one line, and anything else, a bug, with its traceback.
"""

from __future__ import annotations


class EmolensError(ValueError):
    """Base of every emolens error about an input, a dataset or a model file."""


class InputError(EmolensError):
    """An input that cannot be analysed (file, bytes, array, video, camera)."""


class LimitError(InputError):
    """An input over a configured size limit (pixels of an image or video frame)."""


class DatasetError(EmolensError):
    """A dataset that cannot be read as asked."""


class ImageReadError(DatasetError, InputError):
    """An image file of a dataset that cannot be read or decoded (a dataset error and an input error)."""


class ModelError(EmolensError):
    """A model, checkpoint or weights file that cannot be used as asked (missing, unknown, wrong shape)."""


class ConfigError(EmolensError):
    """An option, setting or argument that cannot be used as given (a CLI flag, a training config, a
    detector or model name)."""


class DatasetWarning(UserWarning):
    """Something skipped while reading a dataset (counted and named, never silent)."""
