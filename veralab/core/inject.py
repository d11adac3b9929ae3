"""Putting adapters into a model: target resolution, wrapping, freezing, merging and counting."""

from __future__ import annotations

import dataclasses
import re

import torch
from torch import nn

from .config import DEFAULT_TARGETS, AdapterConfig, ConfigError
from .layers import AdaptedLinear, LoraDelta, Projection, VeraDelta

HEAD_NAMES = ("classifier", "score", "head", "fc")
HEAD_FEEDERS = ("pooler", "pre_classifier")  # layers that only feed a classifier: part of the paper's head
FUSED_SLICES = ("q", "k", "v")  # the three equal thirds of a fused qkv Linear, in timm's order


def linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, AdaptedLinear))
            and not _inside_adapted(model, n)]


def _inside_adapted(model: nn.Module, name: str) -> bool:
    return name.endswith(".base") and isinstance(model.get_submodule(name[: -len(".base")]), AdaptedLinear)


def default_targets(model: nn.Module) -> tuple[str, ...]:
    """The paper's q and v projections, named as this architecture names them."""
    leaves = {n.rsplit(".", 1)[-1] for n in linear_names(model)}
    for targets in DEFAULT_TARGETS.values():
        if {t.split(".")[0] for t in targets} <= leaves:
            return targets
    raise ConfigError(
        f"no default target_modules for {type(model).__name__}: it has no query/value, q_proj/v_proj or qkv "
        f"Linear layers; pass target_modules from these Linear names: {_name_summary(model)}"
    )


def _matches(name: str, target: str) -> bool:
    if name == target or name.endswith("." + target):
        return True
    try:
        return re.fullmatch(target, name) is not None
    except re.error:
        return False


def _name_summary(model: nn.Module, limit: int = 12) -> str:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in linear_names(model)})
    examples = linear_names(model)[:4]
    return f"{leaves[:limit]}{' ...' if len(leaves) > limit else ''} (e.g. {examples})"


def resolve_targets(model: nn.Module, targets) -> dict[str, dict[str, tuple[int, int]]]:
    """{linear module name: {slice name: (start, stop)}}; "x.q"/"x.v" on a fused qkv Linear x adapt its thirds."""
    found: dict[str, dict[str, tuple[int, int]]] = {}
    names = linear_names(model)
    for target in targets:
        hits = []
        base, _, part = target.rpartition(".")
        for name in names:
            linear = model.get_submodule(name)
            if part in FUSED_SLICES and base and _matches(name, base) and name.rsplit(".", 1)[-1] == "qkv":
                third = linear.out_features // 3
                i = FUSED_SLICES.index(part)
                found.setdefault(name, {})[part] = (i * third, (i + 1) * third)
                hits.append(name)
            elif _matches(name, target):
                found.setdefault(name, {})["out"] = (0, linear.out_features)
                hits.append(name)
        if not hits:
            raise ConfigError(f"target module {target!r} matched no nn.Linear; Linear names here: "
                              f"{_name_summary(model)}")
    return found


def head_names(model: nn.Module, config: AdapterConfig) -> list[str]:
    if config.head_modules is not None:
        children = dict(model.named_modules())
        missing = [h for h in config.head_modules if h not in children]
        if missing:
            raise ConfigError(f"head module(s) {missing} not found; top-level modules: "
                              f"{[n for n, _ in model.named_children()]}")
        return list(config.head_modules)
    for depth in (1, 2):  # the shallowest classifier/score/head/fc: "classifier", or "model.classifier" in a wrapper
        found = [n for n, _ in model.named_modules()
                 if n.count(".") == depth - 1 and n.rsplit(".", 1)[-1] in HEAD_NAMES]
        if found:
            return found + (head_feeders(model, depth) if config.head_scope == "paper" else [])
    return []


def head_feeders(model: nn.Module, depth: int) -> list[str]:
    """The trained layers between the encoder and a classifier at `depth`: BERT's pooler (a dense layer and tanh
    over [CLS]) in `bert.pooler`, DistilBERT's `pre_classifier`; none in RoBERTa (its head holds its dense layer)
    or a ViT. The paper trains RoBERTa's whole head, so a BERT's counterpart is its pooler with its classifier."""
    return [n for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in HEAD_FEEDERS
            and depth - 1 <= n.count(".") <= depth and any(True for _ in m.parameters())]


def add_adapters(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Wrap the targeted Linear layers in place and freeze what the method does not train. Returns the model.

    `config` is left as given; the model keeps a resolved copy (its targets and heads named) as
    ``model.veralab_config``, which saving, export and run records read.
    """
    if hasattr(config, "peft_type"):  # a peft.VeraConfig / LoraConfig
        config = AdapterConfig.from_peft(config)
    if not isinstance(config, AdapterConfig):
        raise ConfigError(f"add_adapters takes an AdapterConfig (or a peft VeraConfig / LoraConfig), got "
                          f"{type(config).__name__}")
    config.validate()
    if getattr(model, "veralab_config", None) is not None:
        raise ConfigError("this model already has veralab adapters; load a fresh base model to add others")
    heads = head_names(model, config)
    if config.method == "head" and not heads:
        raise ConfigError(f"method 'head' needs a task head; none of {HEAD_NAMES} is a top-level module of "
                          f"{type(model).__name__}: pass head_modules from {[n for n, _ in model.named_children()]}")
    plan, targets = {}, config.target_modules
    if config.method in ("vera", "lora"):  # resolve and check everything before changing the model
        targets = tuple(targets or default_targets(model))
        plan = resolve_targets(model, targets)
        _check_rank(model, plan, config)
    for p in model.parameters():
        p.requires_grad_(config.method == "full")
    if plan:
        deltas = _make_deltas(model, plan, config)
        for name, slices in plan.items():
            base = model.get_submodule(name)
            wrapped = AdaptedLinear(base, slices, deltas[name])
            wrapped.to(base.weight.device)
            _set_submodule(model, name, wrapped)
    if config.train_head and config.method != "full":
        for h in heads:
            for p in model.get_submodule(h).parameters():
                p.requires_grad_(True)
    model.veralab_config = dataclasses.replace(config, target_modules=targets, head_modules=tuple(heads))
    return model


def _check_rank(model, plan, config) -> None:
    if config.method != "lora":
        return  # VeRA's rank may exceed a layer's width (the paper uses r=1024 on 768-wide layers)
    for name, slices in plan.items():
        linear = model.get_submodule(name)
        for start, stop in slices.values():
            limit = min(linear.in_features, stop - start)
            if config.rank > limit:
                raise ConfigError(f"LoRA rank {config.rank} is larger than layer {name!r} allows "
                                  f"(min(in, out) = {limit}); use rank <= {limit}")


def adapted_shapes(model: nn.Module, plan) -> list[tuple[str, int, int]]:
    """(layer.slice, in_features, out_features) for every adapted slice, in module order."""
    return [(f"{name}.{part}", model.get_submodule(name).in_features, stop - start)
            for name, slices in plan.items() for part, (start, stop) in slices.items()]


def _make_deltas(model, plan, config) -> dict[str, dict[str, nn.Module]]:
    shapes = adapted_shapes(model, plan)
    generator = torch.Generator(device="cpu").manual_seed(config.projection_prng_key)
    shared = None
    if config.method == "vera" and config.shared:
        shared = Projection.generate(config.rank, max(s[1] for s in shapes), max(s[2] for s in shapes),
                                     config.projection_init, generator)
    deltas: dict[str, dict[str, nn.Module]] = {}
    for name, slices in plan.items():
        in_features = model.get_submodule(name).in_features
        for part, (start, stop) in slices.items():
            out_features = stop - start
            if config.method == "lora":
                delta = LoraDelta(in_features, out_features, config.rank, config.alpha, config.dropout)
            else:
                projection = shared or Projection.generate(config.rank, in_features, out_features,
                                                           config.projection_init, generator)
                delta = VeraDelta(in_features, out_features, projection, d_init=config.d_init,
                                  b_init=config.b_init, train_d=config.train_d, train_b=config.train_b,
                                  dropout=config.dropout, fast_path=config.fast_path)
            deltas.setdefault(name, {})[part] = delta
    return deltas


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def adapted_layers(model: nn.Module) -> dict[str, AdaptedLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, AdaptedLinear)}


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every ΔW into W0: the model then runs at the base model's exact cost."""
    for layer in adapted_layers(model).values():
        layer.merge()
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    for layer in adapted_layers(model).values():
        layer.unmerge()
    return model
