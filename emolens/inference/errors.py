"""Errors raised for inputs emolens cannot use (files, arrays, videos, cameras)."""

from __future__ import annotations


class InputError(ValueError):
    """An input that cannot be analysed; the message names the input and what was expected."""


class LimitError(InputError):
    """An input over a configured size limit (pixels of an image or video frame)."""
