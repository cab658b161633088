"""``python -m emolens``: the same as the ``emolens`` command (for hosts where it is not installed)."""

from emolens.apps.cli import main

main()
