"""``emolens train``: config, recipe factories, the run folder (``RunDir``), one-epoch/validation
functions, the training loop, DDP via torchrun.

Under torchrun: ``torchrun --nproc_per_node=N -m emolens train ARGS``.
"""
