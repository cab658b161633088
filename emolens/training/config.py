"""The training recipe as one dataclass, saved fully resolved to ``RUN_DIR/config.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from emolens.data.sources import parse_holdout
from emolens.errors import ConfigError
from emolens.files import write_json
from emolens.preprocess import CONTRASTS
from emolens.training.tasks import get_task

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "cosine", "onecycle")
AUGMENTS = ("default", "strong", "none")
AMP_MODES = ("auto", "off", "fp16", "bf16")
CLASS_WEIGHTS = ("none", "balanced")
DEVICES = ("auto", "cpu", "cuda")

_REQUIRED = object()


def _cli(default: Any = _REQUIRED, *, help: str, flag: str | None = None, short: str | None = None,
         path: bool = False) -> Any:
    """A field that is also a ``train`` command-line option, declared here once.

    The metadata is plain data (no typer here: the CLI builds its options from it):
    ``help`` (``{default}`` is replaced by the field's default), ``flag`` (default ``--field-name``),
    ``short`` (an alias such as ``-o``) and ``path`` (the option takes file paths, stored as strings)."""
    meta = {"cli": {"help": help, "flag": flag, "short": short, "path": path}}
    return field(metadata=meta) if default is _REQUIRED else field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a run. Defaults are the specified recipe: Adam at 1e-3,
    ReduceLROnPlateau on validation accuracy (×0.1 after 5 flat epochs, down to 1e-6),
    early stopping after 10, gradient clipping at 1.0."""

    data: list[str] = _cli(  # one or more sources, ``PATH[,key=value...]`` (see emolens.data.sources)
        help="(required unless --resume) Dataset folder or file (any layout); repeat for several. Per-source options: "
        "PATH,weight=W,votes=CSV,label_mix=A,name=N,format=F,keep=a+b,drop=c (see docs/training.md).",
    )
    out: str = _cli(
        help="(required unless --resume) Run folder: checkpoints, config.json, history.csv, curves.png, tb/.",
        short="-o", path=True,
    )
    task: str = _cli(  # expression | age (one-year age bins, best checkpoint by validation MAE)
        "expression", help="expression (default) | age (UTKFace-style data: one-year age bins, Gaussian label "
        "distributions + L1 on the expected age, best checkpoint by val MAE).",
    )
    age_sigma: float = _cli(  # age: width in years of the Gaussian label distribution
        2.0, help="--task age: width of the Gaussian label distribution in years (default {default}).",
    )
    age_l1: float = _cli(  # age: weight of the L1 term on the expected age (years)
        0.1, help="--task age: weight of the L1 term on the expected age (default {default}).",
    )
    arch: str = "mini-xception"  # the architecture (`emolens models`); trained weights are a "model" elsewhere
    format: str = _cli("auto", help="Dataset layout (default auto).")
    keep: str | None = _cli(None, help="Only these classes, e.g. anger,happy,neutral.")
    drop: str | None = _cli(None, help="Every class but these, e.g. contempt.")
    merge: str | None = _cli(None, help="Merge classes, e.g. 'anger=anger+disgust'.")
    input_size: int | None = _cli(  # None: the model's default
        None, help="Input size in pixels (default: the model's).",
    )
    channels: int | None = _cli(None, help="1 (gray) or 3 (RGB) (default: the model's).")
    margin: float = _cli(  # face-box margin of the crop spec (box datasets are cut with it too)
        0.1, help="Face-box margin per side of the crop spec (default {default}).",
    )
    contrast: str = _cli(  # contrast normalisation of the crop spec: none | equalize
        "none", help="Contrast normalisation of every face: none | equalize (default none).",
    )
    epochs: int = _cli(60, help="Epochs (default {default}).")
    batch_size: int = _cli(64, help="Batch size per process (default {default}).")
    lr: float = _cli(1e-3, help="Learning rate (default {default}).")
    optimizer: str = _cli("adam", help="adam | adamw | sgd (Nesterov, momentum 0.9); default adam.")
    momentum: float = 0.9  # sgd only (Nesterov)
    weight_decay: float = _cli(0.0, help="Weight decay (default {default}).")
    label_smoothing: float = _cli(0.0, help="Label smoothing (default {default}).")
    ema: float = _cli(
        0.0, help="Keep an exponential moving average of the weights with this decay per step, e.g. 0.999 "
                  "(0 = off, the default): validation, best.pt and the export use the averaged weights.",
    )
    precise_bn: int = _cli(  # training images (no augmentation) that BatchNorm statistics are recomputed on
        0, help="Before each validation, recompute the BatchNorm statistics on N training images without "
                "augmentation, e.g. 4096 (precise BN; 0 = off, the default): validation, best.pt and the export "
                "use them.",
    )
    class_weights: str = _cli("none", help="none | balanced (default none).")
    scheduler: str = _cli(
        "plateau", help="plateau (×0.1 after 5 epochs without better val acc, min 1e-6) | cosine | onecycle; default plateau.",
    )
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    min_lr: float = 1e-6
    early_stopping: int = _cli(  # epochs without a better val accuracy; 0 = off
        10, help="Stop after N epochs without better val acc; 0 = off (default {default}).",
    )
    clip_grad: float = _cli(1.0, help="Max gradient norm; 0 = off (default {default}).")
    amp: str = _cli(  # resolved to fp16 / bf16 / off
        "auto", help="auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32) | off | fp16 | bf16.",
    )
    augment: str = _cli(
        "default", help="default (rotation ±15°, zoom 0.8–1.2, shift ±10%, h-flip) | strong (+ random crop, erasing) | none.",
    )
    mixup: float = _cli(  # Beta(α, α) of the per-batch mixing weight; 0 = off
        0.0, help="Mixup α, e.g. 1.0 (0 = off, the default): each augmented batch blended with itself shuffled, "
                  "λ ~ Beta(α, α), targets alike.",
    )
    seed: int = _cli(0, help="Random seed of initialisation, augmentation and order (default {default}); splits that "
                          "emolens makes (class-folders, utkface) stay fixed, as evaluate sees them.")
    select: str = _cli(  # checkpoint selection: mean of the sources' val accuracies, or one source's name
        "mean", help="Best-checkpoint metric: mean (of the sources' val accuracies) or a source name.",
    )
    holdout: str | None = _cli(  # "K/N": fold K of N of every source's training images left out (cross-fitting)
        None, help="Leave fold K of N of every source's training images out, e.g. 0/2 (folds by a hash of each image's "
                   "key): `emolens teach` then labels only those images with this model, for cross-fitted distillation.",
    )
    teacher: list[str] | None = _cli(  # saved teacher outputs (`emolens teach`), averaged where they overlap
        None, help="Distil from saved teacher outputs (`emolens teach`); repeatable.", path=True,
    )
    distill_weight: float = _cli(  # share of the teacher's probabilities in each matched target
        0.5, help="Teacher share of each matched target (default {default}).",
    )
    teacher_members: str | None = _cli(  # comma-separated teacher indices to average (default all)
        None, help="Teachers of the file to average, e.g. 0,2 (default all).",
    )
    teacher_model: str | None = _cli(  # emolens.training.distill: labels each augmented batch as the student sees it
        None, help="Distil online from a model (run folder, .pt, .onnx or bundled name) that labels every augmented "
                   "batch as the student sees it (consistent distillation); needed by --data ...,unlabeled=1.",
    )
    teacher_model_weight: float | None = _cli(  # applied after --teacher files: their mix keeps 1 − this share
        None, help="The online teacher's share of each labelled target (default --distill-weight).",
    )
    init: str | None = _cli(
        None, help="Start from local weights (state dict or checkpoint); mismatched heads are skipped.", path=True,
    )
    pretrained: str | None = _cli(  # a shipped name (emolens/models/pretrained/) or a .safetensors file
        None, help="Start the backbone from pretrained weights: a shipped name (vggface2: face-identity MobileNet-v1 "
                   "for --arch mobilenetv1) or a .safetensors file with its .json beside it.",
    )
    head_epochs: int = _cli(  # warm-up: the backbone is frozen (no gradients) for the first N epochs
        0, help="Train only the classifier for the first N epochs, the backbone frozen (default {default}).",
    )
    backbone_lr: float = _cli(  # the backbone's learning rate as a multiple of --lr
        1.0, help="Backbone learning rate as a multiple of --lr, e.g. 0.3 when fine-tuning (default {default}).",
    )
    freeze_bn: bool = _cli(  # BatchNorm layers stay in eval mode while training
        False, help="Keep BatchNorm statistics fixed while training (fine-tuning a pretrained backbone).",
    )
    workers: int = _cli(  # CPU threads per process; 0 = all available cores shared by local processes
        0, help="CPU threads per process; 0 = OMP_NUM_THREADS when set (one process), else all cores shared by local processes.",
    )
    device: str = _cli("auto", help="auto | cpu | cuda | cuda:N (default auto).")  # resolved to cpu / cuda / cuda:N
    cache_dir: str | None = _cli(
        None, help="Decoded-image cache (default $EMOLENS_CACHE or ~/.cache/emolens).", path=True,
    )
    world_size: int = 1  # resolved from the torchrun environment

    def __post_init__(self) -> None:
        if isinstance(self.data, str):  # a single path, as configs before multi-dataset training held
            self.data = [self.data]
        self.data = [str(d) for d in self.data]
        if isinstance(self.teacher, str):
            self.teacher = [self.teacher]
        if not self.data:
            raise ConfigError("at least one --data source is required")
        for name in ("distill_weight", "teacher_model_weight"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        for name, allowed in (
            ("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("augment", AUGMENTS),
            ("amp", AMP_MODES), ("class_weights", CLASS_WEIGHTS),
            ("contrast", CONTRASTS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}")
        if self.age_sigma <= 0 or self.age_l1 < 0:
            raise ConfigError(f"age_sigma must be positive and age_l1 non-negative, got {self.age_sigma}, {self.age_l1}")
        parse_holdout(self.holdout)
        if self.mixup < 0:
            raise ConfigError(f"mixup must be 0 (off) or a positive α, got {self.mixup}")
        get_task(self.task).check_config(self)  # the task's own rules (and its name)
        if self.precise_bn < 0:
            raise ConfigError(f"precise_bn must be 0 (off) or a number of images, got {self.precise_bn}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        if self.head_epochs < 0 or self.backbone_lr < 0:
            raise ConfigError(f"head_epochs and backbone_lr must not be negative, got {self.head_epochs}, {self.backbone_lr}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch size and learning rate must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        if "model" in d and "arch" not in d:  # configs written before the field was named arch
            d = {**d, "arch": d["model"]}
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ConfigError(f"{path}: expected a training config.json ({e})") from e
