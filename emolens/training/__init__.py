"""``emolens train``: recipe config, one-epoch/evaluate functions, the training loop, DDP via torchrun.

``python -m emolens.training ARGS`` is ``emolens train ARGS`` (handy under ``torchrun -m``).
"""
