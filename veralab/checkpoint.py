"""Saving and loading adapters: veralab's own small format, and Hugging Face PEFT's VeRA/LoRA format.

veralab format (a directory): ``adapter.safetensors`` holds the trained tensors (VeRA: d and b per layer, plus the
head when trained; A/B only with ``save_projection``) and ``adapter_config.json`` the AdapterConfig, the base model's
name and a fingerprint of the adapted shapes, checked on load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save, save_file
from torch import nn

from .adapters import adapted_layers, add_adapters
from .config import AdapterConfig, ConfigError
from .layers import Projection, VeraDelta
from .record import atomic_path, write_text_atomic

WEIGHTS, CONFIG = "adapter.safetensors", "adapter_config.json"
PEFT_TO_VERALAB = ((".vera_lambda_b", ".deltas.out.vera_b"), (".vera_lambda_d", ".deltas.out.vera_d"),
                   (".lora_A.weight", ".deltas.out.lora_A"), (".lora_B.weight", ".deltas.out.lora_B"))


class AdapterMismatchError(ValueError):
    """An adapter does not fit the model it is loaded onto."""


def _trained_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    config: AdapterConfig = model.veralab_config
    if config.method == "vera" and config.save_projection:
        for i, projection in enumerate(_projections(model)):
            tensors[f"veralab.projection.{i}.A"] = projection.A.cpu().contiguous()
            tensors[f"veralab.projection.{i}.B"] = projection.B.cpu().contiguous()
    return tensors


def _projections(model: nn.Module) -> list[Projection]:
    seen: dict[int, Projection] = {}
    for layer in adapted_layers(model).values():
        for delta in layer.deltas.values():
            if isinstance(delta, VeraDelta):
                seen.setdefault(id(delta.projection), delta.projection)
    return list(seen.values())


def fingerprint(model: nn.Module) -> dict:
    """Adapted slices with their (in, out) shapes, and a hash of them: what an adapter needs of its base model."""
    shapes = [[f"{name}.{part}", layer.in_features, stop - start]
              for name, layer in adapted_layers(model).items() for part, (start, stop) in layer.slices.items()]
    digest = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]
    return {"adapted": shapes, "sha256": digest}


def _base_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    name = getattr(cfg, "_name_or_path", None) or getattr(model, "veralab_base_name", None)
    return str(name) if name else None


def _manifest(model: nn.Module) -> dict:
    from . import __version__

    config: AdapterConfig = model.veralab_config
    return {"format": "veralab-adapter", "veralab": __version__, "config": config.to_dict(),
            "base_model": _base_name(model), "model_class": type(model).__name__, "fingerprint": fingerprint(model)}


def adapter_bytes(model: nn.Module) -> int:
    """Exactly what save_adapter would write, computed in memory."""
    if getattr(model, "veralab_config", None) is None:
        return 0
    return len(save(_trained_tensors(model))) + len(json.dumps(_manifest(model), indent=2).encode())


def save_adapter(model: nn.Module, path) -> Path:
    if getattr(model, "veralab_config", None) is None:
        raise ConfigError("this model has no veralab adapter: call add_adapters(model, config) first")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(_trained_tensors(model), str(tmp))
    write_text_atomic(path / CONFIG, json.dumps(_manifest(model), indent=2))
    return path


def read_manifest(path) -> dict:
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"{path} is not a veralab adapter: expected {CONFIG} and {WEIGHTS} in it")
    return json.loads((path / CONFIG).read_text())


def load_adapter(model: nn.Module, path) -> nn.Module:
    """Add the saved adapter to a fresh base model (or fill a model already adapted with the same config)."""
    manifest = read_manifest(path)
    config = AdapterConfig.from_dict(manifest["config"])
    if getattr(model, "veralab_config", None) is None:
        try:
            add_adapters(model, config)
        except ConfigError as err:
            raise AdapterMismatchError(
                f"adapter at {path} (made for {manifest['base_model'] or manifest['model_class']}) does not fit "
                f"this {type(model).__name__}: {err}") from err
    expected, actual = manifest["fingerprint"], fingerprint(model)
    if expected["sha256"] != actual["sha256"]:
        diff = [f"{e} vs {a}" for e, a in zip(expected["adapted"], actual["adapted"]) if e != a][:3]
        raise AdapterMismatchError(
            f"adapter at {path} was made for a base model with {len(expected['adapted'])} adapted layers "
            f"({manifest['base_model'] or manifest['model_class']}); this {type(model).__name__} has "
            f"{len(actual['adapted'])}. First differences (saved vs this model): {diff or 'layer count'}")
    tensors = load_file(str(Path(path) / WEIGHTS))
    for i, projection in enumerate(_projections(model)):
        if f"veralab.projection.{i}.A" in tensors:
            projection.assign(tensors.pop(f"veralab.projection.{i}.A"), tensors.pop(f"veralab.projection.{i}.B"))
    _copy_into(model, tensors, path)
    return model


def _copy_into(model: nn.Module, tensors: dict[str, torch.Tensor], source) -> None:
    params = dict(model.named_parameters())
    bad = [n for n, t in tensors.items() if n not in params or params[n].shape != t.shape]
    if bad:
        raise AdapterMismatchError(f"adapter at {source} has tensors this model lacks or shapes differently: "
                                   f"{bad[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)


# ---- Hugging Face PEFT format -------------------------------------------------------------------------------

def export_peft(model: nn.Module, directory) -> Path:
    """Write adapter_config.json + adapter_model.safetensors that ``peft.PeftModel.from_pretrained`` loads.

    VeRA is exported with ``save_projection=True`` so PEFT uses veralab's exact A/B whatever their init. PEFT has
    one shared pair and whole-Linear targets, so independent A/B (shared=False) and fused-qkv slices cannot be
    expressed in its format and are refused.
    """
    config: AdapterConfig = getattr(model, "veralab_config", None) or AdapterConfig(method="head")
    if config.method not in ("vera", "lora"):
        raise ConfigError(f"export_peft writes VeRA or LoRA adapters; this model's method is {config.method!r}")
    layers = adapted_layers(model)
    sliced = [n for n, layer in layers.items() if list(layer.slices) != ["out"]]
    if sliced:
        raise ConfigError(f"PEFT adapts whole Linear layers; {sliced[0]!r} is adapted on slices "
                          f"{list(layers[sliced[0]].slices)} (fused qkv), which PEFT's format cannot express")
    if config.method == "vera" and not config.shared:
        raise ConfigError("PEFT's VeRA has one shared A/B pair; shared=False (independent A/B) cannot be exported")
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        delta = layer.deltas["out"]
        prefix = f"base_model.model.{name}"
        if config.method == "vera":
            tensors[f"{prefix}.vera_lambda_b"] = delta.vera_b.detach().float()
            tensors[f"{prefix}.vera_lambda_d"] = delta.vera_d.detach().float()
        else:
            tensors[f"{prefix}.lora_A.weight"] = delta.lora_A.detach()
            tensors[f"{prefix}.lora_B.weight"] = delta.lora_B.detach()
    if config.method == "vera":
        (projection,) = _projections(model)
        tensors["base_model.vera_A"], tensors["base_model.vera_B"] = projection.A, projection.B
    heads = list(config.head_modules or ()) if config.train_head else []
    for head in heads:
        for pname, p in model.get_submodule(head).named_parameters():
            tensors[f"base_model.model.{head}.{pname}"] = p.detach()
    common = {"base_model_name_or_path": _base_name(model), "target_modules": list(layers),
              "modules_to_save": heads or None, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
              "task_type": None, "revision": None, "layers_to_transform": None, "layers_pattern": None}
    if config.method == "vera":
        peft_config = {**common, "peft_type": "VERA", "r": config.rank, "projection_prng_key": config.seed,
                       "save_projection": True, "vera_dropout": config.dropout, "d_initial": config.d_init,
                       "init_weights": True}
    else:
        peft_config = {**common, "peft_type": "LORA", "r": config.rank, "lora_alpha": config.alpha,
                       "lora_dropout": config.dropout, "init_lora_weights": True, "use_rslora": False,
                       "use_dora": False}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "adapter_model.safetensors") as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    write_text_atomic(directory / "adapter_config.json", json.dumps(peft_config, indent=2))
    return directory


def import_peft(model: nn.Module, directory) -> nn.Module:
    """Load a PEFT VeRA or LoRA adapter (as saved by PEFT or export_peft) into a fresh base model as veralab's."""
    directory = Path(directory)
    peft_config = json.loads((directory / "adapter_config.json").read_text())
    kind = peft_config.get("peft_type")
    if kind not in ("VERA", "LORA"):
        raise ConfigError(f"import_peft reads VERA or LORA adapters; {directory} holds peft_type {kind!r}")
    tensors = load_file(str(directory / "adapter_model.safetensors"))
    targets = peft_config["target_modules"]
    heads = peft_config.get("modules_to_save") or []
    present_heads = [h for h in heads if any(k.startswith(f"base_model.model.{h}.") for k in tensors)]
    common = dict(rank=peft_config["r"], target_modules=tuple(targets) if isinstance(targets, list) else (targets,),
                  dropout=peft_config.get("vera_dropout", peft_config.get("lora_dropout", 0.0)),
                  train_head=bool(present_heads), head_modules=tuple(present_heads))
    if kind == "VERA":
        config = AdapterConfig(method="vera", seed=peft_config.get("projection_prng_key", 0),
                               d_init=peft_config.get("d_initial", 0.1), **common)
    else:
        config = AdapterConfig(method="lora", alpha=float(peft_config.get("lora_alpha", 8)), **common)
    add_adapters(model, config)
    ours = {}
    for key, tensor in tensors.items():
        name = key.removeprefix("base_model.model.")
        if key in ("base_model.vera_A", "base_model.vera_B"):
            continue
        for peft_suffix, our_suffix in PEFT_TO_VERALAB:
            if name.endswith(peft_suffix):
                name = name[: -len(peft_suffix)] + our_suffix
                break
        ours[name] = tensor
    if "base_model.vera_A" in tensors:
        (projection,) = _projections(model)
        projection.assign(tensors["base_model.vera_A"], tensors["base_model.vera_B"])
    _copy_into(model, ours, directory)
    return model
