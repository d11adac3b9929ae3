"""One experiment end to end: RunConfig in, a trained adapter and a run record out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .adapters import add_adapters, count_parameters
from .checkpoint import save_adapter
from .config import AdapterConfig, ConfigError
from .images import to_model_input
from .metrics import compute
from .models import EMBEDDED_TEXT, EMBEDDED_VISION, load_text_model, load_vision_model
from .record import RECORD, device_info, git_commit, peak_memory, read_record, versions, write_json_atomic
from .tasks import TaskError, load_image_task, load_text_task, subsample, task_kind, tokenize_cached
from .train import TrainingDiverged, fit, parameter_groups, seed_everything

DEFAULT_LR = {"vera": 1e-2, "lora": 5e-4, "full": 2e-5, "head": 0.0}  # adapter learning rate by method
DEFAULT_HEAD_LR = 4e-3  # the public RoBERTa-base replication's head lr for SST-2/MRPC/QNLI
RUN_FIELDS_NOT_IN_NAME = ("output_dir", "force", "run_name", "save_adapter")


class RunFailed(RuntimeError):
    """The run stopped (NaN loss, out of memory); its record, with status "failed", says why."""


@dataclass
class RunConfig(AdapterConfig):
    """Everything one run needs, flat: the adapter (inherited from AdapterConfig), the task and the training.

    `run_seed` drives data order, subsampling, shot sampling and head init; `seed` (inherited) is the projection
    PRNG key. `lr`/`head_lr` None pick the method's default (VeRA 1e-2, LoRA 5e-4, full 2e-5; head 4e-3).
    """

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
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    shots_per_class: int | None = 10  # image tasks: the paper's 10 training images per class
    glue_dir: str | None = None
    checkpoint: str | None = None  # vision: local weights for a timm model (offline)
    device: str = "auto"
    output_dir: str = "runs"
    run_name: str | None = None
    save_adapter: bool = True
    force: bool = False

    def validate(self) -> None:
        super().validate()
        kind = task_kind(self.task)
        for name in ("epochs", "batch_size", "eval_batch_size", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}; allowed: auto, cpu, cuda, cuda:N")
        if self.model == "auto":
            return
        if kind == "text" and self.model == EMBEDDED_VISION or kind == "image" and self.model == EMBEDDED_TEXT:
            raise ConfigError(f"model {self.model!r} cannot run the {kind} task {self.task!r}")

    @property
    def model_name(self) -> str:
        if self.model != "auto":
            return self.model
        return EMBEDDED_TEXT if task_kind(self.task) == "text" else EMBEDDED_VISION

    @property
    def adapter_lr(self) -> float:
        return DEFAULT_LR[self.method] if self.lr is None else self.lr

    @property
    def task_head_lr(self) -> float:
        if self.head_lr is not None:
            return self.head_lr
        return DEFAULT_HEAD_LR

    def adapter_config(self) -> AdapterConfig:
        fields = {f.name for f in dataclasses.fields(AdapterConfig)}
        return AdapterConfig(**{k: v for k, v in self.to_dict().items() if k in fields})

    def name(self) -> str:
        if self.run_name:
            return self.run_name
        identity = {k: v for k, v in self.to_dict().items() if k not in RUN_FIELDS_NOT_IN_NAME}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
        rank = f"-r{self.rank}" if self.method in ("vera", "lora") else ""
        return f"{self.task}-{self.method}{rank}-s{self.run_seed}-{digest}"

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available here; use device='auto' or 'cpu'")
    return torch.device(name)


# ---- data and model per kind ----------------------------------------------------------------------------------

def _text_setup(config: RunConfig, device):
    data = load_text_task(config.task, config.glue_dir)
    model, tokenizer = load_text_model(config.model_name, data.num_labels)
    train_texts, train_labels = subsample(*data.splits["train"], config.max_train_samples, config.run_seed)
    evals = {name: subsample(*split, config.max_eval_samples, 0)
             for name, split in data.splits.items() if name != "train"}
    encode = {name: (tokenize_cached(tokenizer, texts, config.max_length), labels)
              for name, (texts, labels) in {"train": (train_texts, train_labels), **evals}.items()}
    label_dtype = torch.float32 if data.num_labels == 1 else torch.long

    def collate(ids, labels):
        batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        return {k: v.to(device) for k, v in batch.items()}, torch.tensor(labels, dtype=label_dtype, device=device)

    def train_batches(epoch):
        ids, labels = encode["train"]
        order = np.random.default_rng([config.run_seed, epoch]).permutation(len(labels))
        for i in range(0, len(order), config.batch_size):
            chosen = order[i:i + config.batch_size]
            yield collate([ids[j] for j in chosen], [labels[j] for j in chosen])

    def eval_batches(split):
        ids, labels = encode[split]
        order = np.argsort([len(x) for x in ids])  # length-sorted: less padding
        for i in range(0, len(order), config.eval_batch_size):
            chosen = order[i:i + config.eval_batch_size]
            yield collate([ids[j] for j in chosen], [labels[j] for j in chosen])

    forward = lambda m, inputs: m(**inputs).logits  # noqa: E731
    info = {"source": data.source, **data.notes, "train_used": len(train_labels),
            "max_length": config.max_length, "tokenizer": tokenizer.name_or_path}
    return (model, data.num_labels, data.metrics, train_batches, len(train_labels), eval_batches, list(evals),
            forward, info)


def _image_setup(config: RunConfig, device):
    data = load_image_task(config.task, config.shots_per_class, config.run_seed)
    model, spec = load_vision_model(config.model_name, data.num_labels, checkpoint=config.checkpoint)
    train_x, train_y = subsample(*data.train, config.max_train_samples, config.run_seed)
    test_x, test_y = subsample(*data.test, config.max_eval_samples, 0)
    tensors = {"train": (to_model_input(train_x, spec), torch.tensor(train_y)),
               "test": (to_model_input(test_x, spec), torch.tensor(test_y))}

    def batches(split, size, order):
        x, y = tensors[split]
        for i in range(0, len(order), size):
            chosen = torch.as_tensor(order[i:i + size])
            yield x[chosen].to(device), y[chosen].to(device)

    def train_batches(epoch):
        order = np.random.default_rng([config.run_seed, epoch]).permutation(len(train_y))
        return batches("train", config.batch_size, order)

    def eval_batches(split):
        return batches(split, config.eval_batch_size, np.arange(len(tensors[split][1])))

    info = {"source": data.source, **data.notes, "train_used": len(train_y), "input": spec}
    return model, data.num_labels, ("accuracy",), train_batches, len(train_y), eval_batches, ["test"], \
        (lambda m, x: m(x)), info


@torch.no_grad()
def evaluate(model, batches, forward, metrics, num_labels) -> dict:
    model.eval()
    preds, golds = [], []
    for inputs, labels in batches:
        logits = forward(model, inputs).float()
        preds.append((logits.squeeze(-1) if num_labels == 1 else logits.argmax(-1)).cpu().numpy())
        golds.append(labels.cpu().numpy())
    return compute(list(metrics), np.concatenate(preds), np.concatenate(golds))


def _check_labels_fit(model, forward, batches, num_labels) -> None:
    inputs, labels = next(iter(batches))
    with torch.no_grad():
        width = forward(model.eval(), inputs).shape[-1]
    if width != num_labels:
        raise TaskError(f"the model's head has {width} outputs but the task has {num_labels} labels")
    if num_labels > 1 and (labels.min() < 0 or labels.max() >= num_labels):
        raise TaskError(f"labels range over [{labels.min()}, {labels.max()}] but the head has {num_labels} classes")


# ---- the run --------------------------------------------------------------------------------------------------

def run_experiment(config: RunConfig | dict) -> dict:
    """Train and evaluate one configuration; write its record (and adapter) under config.run_dir().

    A run whose record already exists with status "ok" is not redone (unless force); the stored record is returned.
    """
    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    config.validate()
    run_dir = config.run_dir()
    existing = read_record(run_dir)
    if existing and existing.get("status") == "ok" and not config.force:
        return existing
    seed_everything(config.run_seed)
    device = _device(config.device)
    kind = task_kind(config.task)
    setup = _text_setup if kind == "text" else _image_setup
    started = time.time()
    model, num_labels, metrics, train_batches, n_train, eval_batches, eval_splits, forward, data_info = setup(
        config, device)
    add_adapters(model, config.adapter_config())
    model.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _check_labels_fit(model, forward, eval_batches(eval_splits[0]), num_labels)
    groups = parameter_groups(model, model.veralab_config.head_modules, config.adapter_lr, config.task_head_lr,
                              config.weight_decay)
    headline = metrics[0]
    record = {"status": "running", "name": config.name(), "config": config.to_dict(), "kind": kind,
              "model": config.model_name, "data": data_info, "metric": headline,
              "resolved": {"lr": config.adapter_lr, "head_lr": config.task_head_lr,
                           "target_modules": list(model.veralab_config.target_modules or ()),
                           "head_modules": list(model.veralab_config.head_modules or ())},
              "device": device_info(device), "versions": versions(), "git_commit": git_commit(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))}
    try:
        result = fit(model, train_batches, -(-n_train // config.batch_size),
                     lambda: evaluate(model, eval_batches(eval_splits[0]), forward, metrics, num_labels),
                     epochs=config.epochs, groups=groups, warmup_ratio=config.warmup_ratio,
                     max_grad_norm=config.max_grad_norm, device=device, forward=forward, headline=headline)
    except (TrainingDiverged, torch.OutOfMemoryError) as err:
        reason = str(err).splitlines()[0]
        if isinstance(err, torch.OutOfMemoryError):
            reason = f"out of memory on {device}: lower batch_size (now {config.batch_size}) or max_length"
        record.update(status="failed", error=reason, traceback=traceback.format_exc(limit=3),
                      memory=peak_memory(device), wall_seconds=round(time.time() - started, 2))
        write_json_atomic(run_dir / RECORD, record)
        raise RunFailed(f"run {config.name()} failed: {reason} (record: {run_dir / RECORD})") from err
    test = None
    if "test" in eval_splits and eval_splits[0] != "test":
        test = evaluate(model, eval_batches("test"), forward, metrics, num_labels)
    counts = count_parameters(model)
    if config.save_adapter:
        save_adapter(model, run_dir / "adapter")
    record.update(
        status="ok", epochs=result["history"], best=result["best"], final=result["final"],
        evaluated_on=eval_splits[0], test=test,
        params={"trainable": counts["trainable"], "total": counts["total"]}, adapter_bytes=counts["adapter_bytes"],
        time={"wall_seconds": round(time.time() - started, 2), "train_seconds": result["train_seconds"],
              "steps": result["steps"], "steps_per_second": round(result["steps"] / result["train_seconds"], 3),
              "samples_per_second": round(result["samples"] / result["train_seconds"], 2)},
        memory=peak_memory(device), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_json_atomic(run_dir / RECORD, record)
    return record
