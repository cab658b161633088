"""Re-export of :mod:`emolens.errors` (kept while callers move to the ground-floor module)."""

from emolens.errors import InputError, LimitError

__all__ = ["InputError", "LimitError"]
