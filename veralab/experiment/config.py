"""RunConfig: one run's task, data and training, holding the AdapterConfig of its adapter.

It maps flatly onto a papermill parameters cell and a CLI: ``to_dict``/``from_dict`` read and write one flat dict
with the adapter's fields beside the run's (there are no name clashes: the adapter's seed is
``projection_prng_key``, the run's ``run_seed``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import AdapterConfig, ConfigError
from .glue import GLUE_TASKS, glue_fingerprint
from .images import IMAGE_FOLDER_TASK
from .models import EMBEDDED_TEXT, EMBEDDED_VISION
from .precision import PRECISIONS, resolve_precision
from .tasks import task_kind
from .userdata import CUSTOM_TASK, check_data_path, data_fingerprint

DEFAULT_LR = {"vera": 1e-2, "lora": 5e-4, "full": 2e-5, "head": 0.0}  # adapter learning rate by method
DEFAULT_HEAD_LR = 4e-3  # the public RoBERTa-base replication's head lr for SST-2/MRPC/QNLI
RUN_FIELDS_NOT_IN_NAME = ("output_dir", "force", "run_name", "save_adapter")
CUSTOM_FIELDS = ("data", "text_column", "text_pair_column", "label_column")  # task "custom" only
DEVICES = "auto, cpu, cuda, cuda:N"


@dataclass
class RunConfig:
    """Everything one run needs: the adapter, the task and the training.

    `run_seed` drives data order, subsampling, shot sampling and head init; the adapter's `projection_prng_key`
    draws A and B. `lr`/`head_lr` None pick the method's default (DEFAULT_LR, DEFAULT_HEAD_LR).
    """

    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    task: str = "rotten_tomatoes"
    model: str = "auto"  # "auto": the embedded model for the task's kind (minilm / tiny_vit)
    run_seed: int = 0
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float | None = None
    head_lr: float | None = None
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    max_length: int = 128
    group_by_length: bool = False  # text: batches of similar lengths (less padding), in a seeded random order
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_validation_samples: int | None = None  # the split scored every epoch for the best epoch; None: max_eval_samples
    # text: score a seeded slice of this many training examples (never trained on) instead of the validation/dev
    # split, which is then not scored: how settings are chosen off the split that is reported
    validation_holdout: int | None = None
    shots_per_class: int | None = 10  # image tasks: the paper's 10 training images per class
    glue_dir: str | None = None
    data: str | None = None  # task "custom": your CSV, TSV or JSON Lines file, or a save_to_disk folder; task
    # "custom_images": a folder of images, FOLDER/<class>/<image> (or FOLDER/train/... and FOLDER/test/...)
    text_column: str = "text"  # task "custom": the column holding the text
    text_pair_column: str | None = None  # task "custom": a second text (sentence pairs), or None
    label_column: str = "label"  # task "custom": class names, or numbers with a fraction (regression)
    checkpoint: str | None = None  # vision: local weights for a timm model (offline)
    device: str = "auto"
    precision: str = "auto"  # "auto": bf16 autocast on a GPU or a CPU with native bf16 (AMX, AVX512-BF16), else fp32
    output_dir: str = "runs"
    run_name: str | None = None
    save_adapter: bool = True
    force: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        self.adapter.validate()
        kind = task_kind(self.task)
        for name in ("group_by_length", "save_adapter", "force"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_train_samples", "max_eval_samples", "max_validation_samples", "shots_per_class",
                     "validation_holdout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, or None for all of the data; got {value!r}")
        for name in ("lr", "head_lr", "weight_decay", "max_grad_norm", "warmup_ratio"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number; got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be > 0, or None for the method's default; got {self.lr!r}")
        for name in ("head_lr", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{name} must be >= 0; got {value!r}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ConfigError(f"warmup_ratio is the fraction of steps spent warming up, in [0, 1]; got "
                              f"{self.warmup_ratio!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}; allowed: {DEVICES}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.checkpoint is not None:
            if kind == "text":
                raise ConfigError(f"checkpoint ({self.checkpoint}) holds local weights for a vision model; a text "
                                  f"model loads from a local folder given as model")
            if not Path(self.checkpoint).expanduser().is_file():
                raise ConfigError(f"checkpoint {self.checkpoint} is not a file; expected a .safetensors or .pth "
                                  f"file of the vision model's weights")
        if (self.task in (CUSTOM_TASK, IMAGE_FOLDER_TASK)) != (self.data is not None):
            raise ConfigError("tasks 'custom' (text) and 'custom_images' train on your data: give task='custom' "
                              "and data=<a CSV, TSV or JSON Lines file, or a save_to_disk folder>, or "
                              "task='custom_images' and data=<an ImageFolder tree> (got task="
                              f"{self.task!r}, data={self.data!r})")
        if self.data is not None and self.task == IMAGE_FOLDER_TASK:
            if not Path(self.data).expanduser().is_dir():
                raise ConfigError(f"data {self.data} is not a folder; task 'custom_images' reads an ImageFolder "
                                  f"tree: FOLDER/<class>/<image>, or FOLDER/train/<class>/... and "
                                  f"FOLDER/test/<class>/...")
        elif self.data is not None:
            check_data_path(self.data)
        if self.validation_holdout is not None and kind != "text":
            raise ConfigError(f"validation_holdout carves a validation slice out of a text task's training split; "
                              f"{self.task!r} is an image task (set it to None)")
        if self.model == "auto":
            return
        if kind == "text" and self.model == EMBEDDED_VISION or kind == "image" and self.model == EMBEDDED_TEXT:
            raise ConfigError(f"model {self.model!r} cannot run the {kind} task {self.task!r}")

    # ---- the flat view: papermill parameters, CLI flags, run records ------------------------------------------

    @staticmethod
    def field_names() -> list[str]:
        """Every flat name: the adapter's fields, then the run's."""
        return [f.name for f in dataclasses.fields(AdapterConfig)] + run_field_names()

    def to_dict(self) -> dict:
        run = {name: getattr(self, name) for name in run_field_names()}
        return {**self.adapter.to_dict(), **run}

    @classmethod
    def check_names(cls, names) -> None:
        """Refuse names that are no setting, each with the closest one that is."""
        unknown = sorted(set(names) - set(cls.field_names()))
        if unknown:
            hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, cls.field_names(), 1))
                     else repr(u) for u in unknown]
            raise ConfigError(f"unknown setting(s) {', '.join(hints)}; allowed: {', '.join(cls.field_names())}")

    @classmethod
    def from_dict(cls, flat: dict) -> RunConfig:
        """Build from one flat dict; an unknown name is refused with the closest known one."""
        cls.check_names(flat)
        adapter_names = {f.name for f in dataclasses.fields(AdapterConfig)}
        adapter = AdapterConfig(**{k: v for k, v in flat.items() if k in adapter_names})
        return cls(adapter=adapter, **{k: v for k, v in flat.items() if k not in adapter_names})

    # ---- derived values ----------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return task_kind(self.task)

    @property
    def model_name(self) -> str:
        if self.model != "auto":
            return self.model
        return EMBEDDED_TEXT if self.kind == "text" else EMBEDDED_VISION

    @property
    def adapter_lr(self) -> float:
        return DEFAULT_LR[self.adapter.method] if self.lr is None else self.lr

    @property
    def task_head_lr(self) -> float:
        return DEFAULT_HEAD_LR if self.head_lr is None else self.head_lr

    def name(self) -> str:
        if self.run_name:
            return self.run_name
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        method = self.adapter.method
        rank = f"-r{self.adapter.rank}" if method in ("vera", "lora") else ""
        return f"{self.task}-{method}{rank}-s{self.run_seed}-{digest}"

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name()

    def resolved_device(self) -> str:
        """`device` as this machine resolves "auto": a GPU run and a CPU run are different runs."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_precision(self) -> str:
        """`precision` as this machine resolves "auto" ("fp32" or "bf16"): a bf16 run and a float32 run differ."""
        return resolve_precision(self.precision, self.resolved_device())

    def identity(self) -> dict:
        """What makes two runs the same run: every setting but where it is written and whether to redo it, with the
        device and precision resolved (so CPU records never count as done for a sweep on a GPU, nor float32 records
        for a bf16 sweep) and a local GLUE folder as its files' sha256 (the same files elsewhere are the same run)."""
        flat = {k: v for k, v in self.to_dict().items() if k not in RUN_FIELDS_NOT_IN_NAME}
        if self.glue_dir and self.task in GLUE_TASKS:  # the data's content, not where it lies
            flat["glue_dir"] = glue_fingerprint(self.glue_dir, self.task)
        if self.data is not None:
            flat["data"] = data_fingerprint(self.data)
        else:  # your-data settings mean nothing to a built-in task: no part of its runs' identity
            for name in CUSTOM_FIELDS:
                flat.pop(name)
        return {**flat, "device": self.resolved_device(), "precision": self.resolved_precision()}


def run_field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig) if f.name != "adapter"]
