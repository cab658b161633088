"""Named architectures (one file per family), checkpoints and ONNX export."""

from emolens.models import efficientnet, mini_xception, mobilenetv1, mobilenetv2, resnet, vgg  # noqa: F401  (register the families)
from emolens.models.registry import ModelInfo, create_model, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]
