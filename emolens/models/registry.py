"""Registry of named architectures (timm style): one factory, one file per family.

A family registers a builder with :func:`register_model`; :func:`create_model` builds it by
name with the default input size and colour mode unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from emolens.errors import ConfigError, ModelError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before it is built."""

    name: str
    input_size: int
    channels: int
    description: str
    builder: Builder

    def num_params(self, num_classes: int = 7) -> int:
        """Trainable parameters at the default input (counted by building the model)."""
        model = create_model(self.name, num_classes)
        return sum(p.numel() for p in model.parameters() if p.requires_grad)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, input_size: int, channels: int, description: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(num_classes, input_size, channels, **kwargs) -> nn.Module``."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, input_size, channels, description, builder)
        return builder

    return wrap


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}: expected one of {', '.join(sorted(_REGISTRY))}") from None


def create_model(
    name: str, num_classes: int, input_size: int | None = None, channels: int | None = None, **kwargs
) -> nn.Module:
    """Build a registered model; input size and channels default to the model's own."""
    info = get_model_info(name)
    return info.builder(
        num_classes=num_classes,
        input_size=input_size or info.input_size,
        channels=channels or info.channels,
        **kwargs,
    )


def list_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def classifier_of(model: nn.Module) -> nn.Module:
    """The model's classifier: its last ``nn.Linear`` (every registered family ends in one)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"{type(model).__name__} has no linear classifier")
    return linears[-1]


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone, classifier) parameters: the classifier is :func:`classifier_of`, the backbone the rest."""
    head = list(classifier_of(model).parameters())
    ids = {id(p) for p in head}
    return [p for p in model.parameters() if id(p) not in ids], head


def param_groups(model: nn.Module, lr: float, backbone_lr: float = 1.0) -> list[dict]:
    """Optimiser groups: the backbone at ``backbone_lr`` × ``lr``, then the classifier at ``lr``."""
    backbone, head = split_parameters(model)
    return [{"params": backbone, "lr": lr * backbone_lr}, {"params": head, "lr": lr}]


def freeze_backbone(model: nn.Module, frozen: bool) -> None:
    """Stop (or restart) gradients to every parameter but the classifier's: a head-only warm-up."""
    for p in split_parameters(model)[0]:
        p.requires_grad_(not frozen)
