"""Hugging Face PEFT's VeRA/LoRA adapter format: export so ``peft.PeftModel.from_pretrained`` gives veralab's
logits, and import PEFT adapters as veralab's."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .checkpoint import base_name, copy_into, projections, read_json_object, read_tensors
from .config import AdapterConfig, ConfigError
from .inject import adapted_layers, add_adapters
from .io import atomic_path, write_text_atomic

PEFT_TO_VERALAB = ((".vera_lambda_b", ".deltas.out.vera_b"), (".vera_lambda_d", ".deltas.out.vera_d"),
                   (".lora_A.weight", ".deltas.out.lora_A"), (".lora_B.weight", ".deltas.out.lora_B"))


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
        (projection,) = projections(model)
        tensors["base_model.vera_A"], tensors["base_model.vera_B"] = projection.A, projection.B
    heads = list(config.head_modules or ()) if config.train_head else []
    for head in heads:
        for pname, p in model.get_submodule(head).named_parameters():
            tensors[f"base_model.model.{head}.{pname}"] = p.detach()
    common = {"base_model_name_or_path": base_name(model), "target_modules": list(layers),
              "modules_to_save": heads or None, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
              "task_type": None, "revision": None, "layers_to_transform": None, "layers_pattern": None}
    if config.method == "vera":
        peft_config = {**common, "peft_type": "VERA", "r": config.rank,
                       "projection_prng_key": config.projection_prng_key, "save_projection": True,
                       "vera_dropout": config.dropout, "d_initial": config.d_init, "init_weights": True}
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


def to_peft_config(config: AdapterConfig):
    """The `peft.VeraConfig` or `peft.LoraConfig` of an AdapterConfig (AdapterConfig.from_peft's inverse); what PEFT
    cannot express (independent A/B, a removed vector, another A/B init, the head alone, full fine-tuning) is refused
    by name."""
    import peft

    if config.method not in ("vera", "lora"):
        raise ConfigError(f"PEFT has VeRA and LoRA configs; method {config.method!r} has none")
    heads = list(config.head_modules) if config.train_head and config.head_modules else None
    common = dict(r=config.rank, target_modules=list(config.target_modules) if config.target_modules else None,
                  modules_to_save=heads)
    if config.method == "lora":
        return peft.LoraConfig(lora_alpha=config.alpha, lora_dropout=config.dropout, **common)
    changed = {name: getattr(config, name) for name, peft_value in
               (("shared", True), ("train_d", True), ("train_b", True), ("projection_init", "kaiming_uniform"),
                ("b_init", 0.0)) if getattr(config, name) != peft_value}
    if changed:
        raise ConfigError(f"PEFT's VeraConfig has no counterpart of {changed} (it trains both vectors of one shared, "
                          f"Kaiming-uniform A/B with b from 0)")
    return peft.VeraConfig(projection_prng_key=config.projection_prng_key, save_projection=config.save_projection,
                           vera_dropout=config.dropout, d_initial=config.d_init, **common)


def import_peft(model: nn.Module, directory) -> nn.Module:
    """Load a PEFT VeRA or LoRA adapter (as saved by PEFT or export_peft) into a fresh base model as veralab's."""
    directory = Path(directory)
    files = ("adapter_config.json", "adapter_model.safetensors")
    if not all((directory / f).is_file() for f in files):
        raise FileNotFoundError(f"{directory} is not a PEFT adapter: expected {' and '.join(files)} in it")
    remedy = "save or export the PEFT adapter again"
    peft_config = read_json_object(directory / files[0], ("peft_type", "target_modules", "r"), remedy)
    kind = peft_config["peft_type"]
    if kind not in ("VERA", "LORA"):
        raise ConfigError(f"import_peft reads VERA or LORA adapters; {directory} holds peft_type {kind!r}")
    tensors = read_tensors(directory / files[1], remedy)
    targets = peft_config["target_modules"]
    heads = peft_config.get("modules_to_save") or []
    present_heads = [h for h in heads if any(k.startswith(f"base_model.model.{h}.") for k in tensors)]
    common = dict(rank=peft_config["r"], target_modules=tuple(targets) if isinstance(targets, list) else (targets,),
                  dropout=peft_config.get("vera_dropout", peft_config.get("lora_dropout", 0.0)),
                  train_head=bool(present_heads), head_modules=tuple(present_heads))
    if kind == "VERA":
        config = AdapterConfig(method="vera", projection_prng_key=peft_config.get("projection_prng_key", 0),
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
        (projection,) = projections(model)
        projection.assign(tensors["base_model.vera_A"], tensors["base_model.vera_B"])
    copy_into(model, ours, directory)
    return model
