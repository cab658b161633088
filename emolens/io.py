"""Re-export of :mod:`emolens.files` (renamed: ``emolens.io`` read like the standard library's ``io``)."""

from emolens.files import STALE_AFTER_S, TEMP_MARK, atomic_path, atomic_write, clean_stale_temps, write_json, write_text

__all__ = ["STALE_AFTER_S", "TEMP_MARK", "atomic_path", "atomic_write", "clean_stale_temps", "write_json", "write_text"]
