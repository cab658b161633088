"""``python -m emolens.training ...`` = ``emolens train ...``; e.g. ``torchrun --nproc_per_node=2 -m emolens.training --data D --out R``."""

import sys

from emolens.apps.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="emolens train")
