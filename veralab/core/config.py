"""AdapterConfig: every knob of the VeRA/LoRA studies, flat so it maps onto a papermill parameters cell.

The defaults here are the one home of the "default VeRA variant" (d_init 0.1, Kaiming-uniform A/B, both vectors,
shared A/B) that the studies' tables and figures compare the ablations against.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

METHODS = ("vera", "lora", "head", "full")
PROJECTION_INITS = ("kaiming_uniform", "kaiming_normal", "uniform")
FAST_PATHS = ("auto", "always", "never")
# "paper": the head the paper trains: the classifier and the layer that only feeds it (RoBERTa's classification head
# holds its dense layer; a BERT's classifier reads BERT's pooler, DistilBERT's its pre_classifier). "classifier":
# the output layer alone (veralab before v2, and PEFT's modules_to_save=["classifier"] on a BERT).
HEAD_SCOPES = ("paper", "classifier")

# Default targets per known architecture, matched against module names (see veralab.adapters).
DEFAULT_TARGETS = {
    "bert": ("query", "value"),  # BERT, RoBERTa, MiniLM, ...
    "llama": ("q_proj", "v_proj"),  # Llama, Mistral; HF ViT in transformers >= 5
    "timm_vit": ("qkv.q", "qkv.v"),  # timm's fused qkv: only its q and v output slices
}


class OneLineError(Exception):
    """An error in what the user gave (a setting, a file, the data) whose message says all there is to say: Jupyter
    and papermill show it as that one line (IPython renders `_render_traceback_` instead of veralab's frames)."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ConfigError(OneLineError, ValueError):
    """A bad setting, named with what is allowed."""


@dataclass
class AdapterConfig:
    """How to adapt a model.

    method: "vera" (frozen shared random A/B, trained vectors d and b), "lora", "head" (train the task head
    only) or "full" (train everything).

    VeRA ablation switches: ``train_d=False`` removes d (fixed to ones, not trained); ``train_b=False`` removes b
    (fixed to ones, not trained). Because a removed b is fixed to ones, ΔW = B·Λd·A at step 0, so "d only" needs
    ``d_init=0.0`` to keep the model unchanged at step 0 (the paper's requirement that b=0 at start serves the
    same purpose); "b only" keeps b starting at ``b_init`` (0.0). Both False is refused: nothing would train.
    """

    method: str = "vera"
    rank: int = 256
    target_modules: tuple[str, ...] | None = None  # None: the default for the architecture
    projection_prng_key: int = 0  # seeds the frozen A and B (PEFT's name); saved adapters regenerate them from it
    projection_init: str = "kaiming_uniform"
    d_init: float = 0.1
    b_init: float = 0.0
    train_d: bool = True
    train_b: bool = True
    shared: bool = True  # one A/B pair for every layer (the paper); False: independent A/B per layer
    save_projection: bool = False  # store A/B in saved adapters instead of regenerating them from the key
    fast_path: str = "auto"  # VeRA training kernel: "auto" picks the cheaper of merged-ΔW and unmerged
    dropout: float = 0.0
    alpha: float = 8.0  # LoRA only: ΔW = (alpha / rank) · B·A
    train_head: bool = True  # train the task head too (the paper does for GLUE and images)
    head_modules: tuple[str, ...] | None = None  # None: detect ("classifier", "score", "head"), per head_scope
    head_scope: str = "paper"  # what a detected head holds (HEAD_SCOPES)

    def __post_init__(self) -> None:
        for name in ("target_modules", "head_modules"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            setattr(self, name, tuple(value) if value is not None else None)
        self.validate()

    def validate(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("projection_init", self.projection_init, PROJECTION_INITS)
        _choice("fast_path", self.fast_path, FAST_PATHS)
        _choice("head_scope", self.head_scope, HEAD_SCOPES)
        for name in ("train_d", "train_b", "shared", "save_projection", "train_head"):
            if not isinstance(getattr(self, name), bool):  # "no" or "False" from a parameters cell is truthy
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ConfigError(f"rank must be a positive integer, got {self.rank!r}")
        for name in ("d_init", "b_init", "dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.method == "vera":
            if not (self.train_d or self.train_b):
                raise ConfigError(
                    "train_d=False and train_b=False together leave VeRA nothing to train; "
                    "allowed: both True (the paper), train_d only, or train_b only"
                )
            if not self.train_b and self.d_init != 0.0:
                raise ConfigError(
                    f"train_b=False fixes b to ones, so d must start at 0 to leave the model unchanged at step 0; "
                    f"set d_init=0.0 (got d_init={self.d_init!r})"
                )

    def is_default_variant(self) -> bool:
        """VeRA as the paper defines it: the settings the ablations change are all at their defaults."""
        return all(getattr(self, name) == getattr(DEFAULT, name) for name in ABLATION_FIELDS)

    @classmethod
    def from_peft(cls, peft_config) -> AdapterConfig:
        """The AdapterConfig of a `peft.VeraConfig` or `peft.LoraConfig` (read by attribute: no import of peft).
        PEFT's classification task types train the classifier alone (its modules_to_save default), so that is the
        head here too; what veralab cannot express (DoRA, rsLoRA, biases, per-layer choices) is refused by name."""
        kind = getattr(getattr(peft_config, "peft_type", None), "value", getattr(peft_config, "peft_type", None))
        if kind not in ("VERA", "LORA"):
            raise ConfigError(f"a PEFT config of type {kind!r}; allowed: VeraConfig, LoraConfig")
        unsupported = {name: getattr(peft_config, name) for name in
                       ("use_dora", "use_rslora", "fan_in_fan_out", "layers_to_transform", "layers_pattern")
                       if getattr(peft_config, name, None)}
        if getattr(peft_config, "bias", "none") != "none":
            unsupported["bias"] = peft_config.bias
        if unsupported:
            raise ConfigError(f"this PEFT {kind} config sets {unsupported}, which veralab's adapters do not do; "
                              f"allowed: their defaults")
        targets = peft_config.target_modules
        heads = peft_config.modules_to_save
        task = str(getattr(getattr(peft_config, "task_type", None), "value", peft_config.task_type) or "")
        common = dict(rank=peft_config.r, target_modules=(targets,) if isinstance(targets, str) else
                      tuple(targets) if targets else None,
                      head_modules=tuple(heads) if heads else None, head_scope="classifier",
                      train_head=bool(heads) or task in ("SEQ_CLS", "TOKEN_CLS"))
        if kind == "VERA":
            return cls(method="vera", projection_prng_key=peft_config.projection_prng_key,
                       save_projection=peft_config.save_projection, dropout=peft_config.vera_dropout,
                       d_init=peft_config.d_initial, **common)
        return cls(method="lora", alpha=float(peft_config.lora_alpha), dropout=peft_config.lora_dropout, **common)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in ("target_modules", "head_modules"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown AdapterConfig field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**d)


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


DEFAULT = AdapterConfig()
ABLATION_FIELDS = ("d_init", "projection_init", "train_d", "train_b", "shared")  # what the ablation studies vary


__all__ = ["ABLATION_FIELDS", "DEFAULT", "DEFAULT_TARGETS", "HEAD_SCOPES", "METHODS", "PROJECTION_INITS",
           "AdapterConfig", "ConfigError", "OneLineError"]
