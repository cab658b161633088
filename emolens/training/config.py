"""The training recipe as one dataclass, saved fully resolved to ``RUN_DIR/config.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from emolens.age import TASKS
from emolens.preprocess import CONTRASTS
from emolens.files import write_json

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "cosine", "onecycle")
AUGMENTS = ("default", "strong", "none")
AMP_MODES = ("auto", "off", "fp16", "bf16")
CLASS_WEIGHTS = ("none", "balanced")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Every setting of a run. Defaults are the specified recipe: Adam at 1e-3,
    ReduceLROnPlateau on validation accuracy (×0.1 after 5 flat epochs, down to 1e-6),
    early stopping after 10, gradient clipping at 1.0."""

    data: list[str]  # one or more sources, ``PATH[,key=value...]`` (see emolens.data.sources)
    out: str
    task: str = "expression"  # expression | age (one-year age bins, best checkpoint by validation MAE)
    age_sigma: float = 2.0  # age: width in years of the Gaussian label distribution
    age_l1: float = 0.1  # age: weight of the L1 term on the expected age (years)
    model: str = "mini-xception"
    format: str = "auto"
    keep: str | None = None
    drop: str | None = None
    merge: str | None = None
    input_size: int | None = None  # None: the model's default
    channels: int | None = None
    margin: float = 0.1  # face-box margin of the crop spec (box datasets are cut with it too)
    contrast: str = "none"  # contrast normalisation of the crop spec: none | equalize
    epochs: int = 60
    batch_size: int = 64  # per process
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only (Nesterov)
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    class_weights: str = "none"
    scheduler: str = "plateau"
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    min_lr: float = 1e-6
    early_stopping: int = 10  # epochs without a better val accuracy; 0 = off
    clip_grad: float = 1.0  # max gradient norm; 0 = off
    amp: str = "auto"  # resolved to fp16 / bf16 / off
    augment: str = "default"
    seed: int = 0
    select: str = "mean"  # checkpoint selection: mean of the sources' val accuracies, or one source's name
    teacher: list[str] | None = None  # saved teacher outputs (`emolens teach`), averaged where they overlap
    distill_weight: float = 0.5  # share of the teacher's probabilities in each matched target
    teacher_members: str | None = None  # comma-separated teacher indices to average (default all)
    init: str | None = None
    workers: int = 0  # CPU threads per process; 0 = all available cores shared by local processes
    device: str = "auto"  # resolved to cpu / cuda / cuda:N
    cache_dir: str | None = None
    world_size: int = 1  # resolved from the torchrun environment

    def __post_init__(self) -> None:
        if isinstance(self.data, str):  # a single path, as configs before multi-dataset training held
            self.data = [self.data]
        self.data = [str(d) for d in self.data]
        if isinstance(self.teacher, str):
            self.teacher = [self.teacher]
        if not self.data:
            raise ValueError("at least one --data source is required")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        for name, allowed in (
            ("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("augment", AUGMENTS),
            ("amp", AMP_MODES), ("class_weights", CLASS_WEIGHTS),
            ("contrast", CONTRASTS), ("task", TASKS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ValueError(f"device must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}")
        if self.age_sigma <= 0 or self.age_l1 < 0:
            raise ValueError(f"age_sigma must be positive and age_l1 non-negative, got {self.age_sigma}, {self.age_l1}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch size and learning rate must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"{path}: expected a training config.json ({e})") from e
