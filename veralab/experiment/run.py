"""One experiment end to end: RunConfig in, a trained adapter and a run record out.

run_experiment reads as its four steps: prepare (data, model, adapter) → train → evaluate → record.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..core.checkpoint import count_parameters, save_adapter
from ..core.config import ConfigError, OneLineError
from ..core.inject import add_adapters
from ..core.io import check_free_space, check_writable, exclusive, write_json_atomic
from .config import RunConfig
from .images import to_model_input
from .metrics import compute, constant_loss, majority_class
from .models import load_text_model, load_vision_model
from .precision import autocast, check_precision
from .record import RECORD, device_info, git_commit, peak_memory, read_record, record_config, versions
from .tasks import TaskError, hold_out, image_tensors, load_image_task, load_text_task, subsample, tokenize
from .train import TrainingDiverged, fit, parameter_groups, seed_everything


class RunFailed(OneLineError, RuntimeError):
    """The run stopped (NaN loss, out of memory); its record, with status "failed", says why."""


@dataclass
class TaskSetup:
    """What training and evaluation need of a task, whatever its kind."""

    model: torch.nn.Module
    num_labels: int  # 1: regression
    metrics: tuple[str, ...]  # the first is the headline metric
    train_batches: Callable[[int], Iterable]  # epoch -> (inputs, labels) batches on the device
    train_size: int
    eval_batches: Callable[[str], Iterable]  # split name -> batches
    eval_splits: list[str]  # the first is evaluated every epoch
    forward: Callable  # (model, inputs) -> logits
    data_info: dict  # for the record: source, sizes, notes

    def evaluate(self, split: str) -> dict:
        return evaluate(self.model, self.eval_batches(split), self.forward, self.metrics, self.num_labels)


def _device(config: RunConfig) -> torch.device:
    name = config.resolved_device()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for but CUDA is not available here; use device='auto' or "
                              f"'cpu'")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, as records claim
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    return torch.device(name)


# ---- prepare: data and model per kind ------------------------------------------------------------------------

def unfused_attention_for_cpu_bf16(model) -> str | None:
    """On a CPU under bf16 autocast, PyTorch's fused attention (SDPA) is slower than the plain matmul-softmax-matmul
    (its backward took 4x its float32 time on AVX512-BF16, a quarter of a MiniLM step; BENCHMARKS.md): switch a
    Hugging Face model to "eager" attention, the same function. Returns the implementation now in use."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
        return "eager"
    return None


def _text_setup(config: RunConfig, device) -> TaskSetup:
    data = load_text_task(config.task, config.glue_dir, config.data,
                          (config.text_column, config.text_pair_column, config.label_column))
    if config.validation_holdout:
        data = hold_out(data, config.validation_holdout, config.run_seed)
    model, tokenizer = load_text_model(config.model_name, data.num_labels)
    check_max_length(config.max_length, model, tokenizer)
    attention = getattr(model.config, "_attn_implementation", None)
    if device.type == "cpu" and config.resolved_precision() == "bf16":
        attention = unfused_attention_for_cpu_bf16(model) or attention
    sizes = {"train": config.max_train_samples, "test": config.max_eval_samples,
             "validation": config.max_validation_samples or config.max_eval_samples}
    splits = {name: subsample(split, sizes[name], config.run_seed if name == "train" else 0)
              for name, split in data.splits.items()}
    encoded = {name: tokenize(split, tokenizer, config.max_length)[:] for name, split in splits.items()}
    label_dtype = torch.float32 if data.num_labels == 1 else torch.long

    def collate(ids, labels):
        batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        return {k: v.to(device) for k, v in batch.items()}, torch.tensor(labels, dtype=label_dtype, device=device)

    def batches(split, size, order):
        ids, labels = encoded[split]["input_ids"], encoded[split]["label"]
        for i in range(0, len(order), size):
            chosen = order[i:i + size]
            yield collate([ids[j] for j in chosen], [labels[j] for j in chosen])

    def train_batches(epoch):
        rng = np.random.default_rng([config.run_seed, epoch])
        order = rng.permutation(len(splits["train"]))
        if config.group_by_length:
            order = grouped_by_length(order, [len(x) for x in encoded["train"]["input_ids"]], config.batch_size, rng)
        return batches("train", config.batch_size, order)

    def eval_batches(split):  # length-sorted: less padding
        return batches(split, config.eval_batch_size, np.argsort([len(x) for x in encoded[split]["input_ids"]]))

    evals = [name for name in splits if name != "train"]
    info = {"source": data.source, **data.notes, "train_used": len(splits["train"]),
            "eval_used": {name: len(splits[name]) for name in evals},
            "max_length": config.max_length, "tokenizer": tokenizer.name_or_path, "attention": attention}
    if data.num_labels > 1:
        info["majority_class"] = majority_class({name: encoded[name]["label"] for name in evals})
    info["constant_loss"] = constant_loss(encoded["train"]["label"], data.num_labels)
    return TaskSetup(model, data.num_labels, data.metrics, train_batches, len(splits["train"]), eval_batches,
                     evals, lambda m, inputs: m(**inputs).logits, info)


def check_max_length(max_length: int, model, tokenizer) -> None:
    """Before any training: a length past the model's position embeddings would fail deep inside its forward.
    RoBERTa's 514 positions hold 512 tokens (two are its padding offset), which its tokenizer's limit says."""
    limits = [n for n in (getattr(model.config, "max_position_embeddings", None),
                          getattr(tokenizer, "model_max_length", None)) if isinstance(n, int) and n < 10**6]
    if limits and max_length > min(limits):
        raise ConfigError(f"max_length {max_length} is longer than model {getattr(model, 'veralab_base_name', '')!r} "
                          f"can read; allowed: 1 to {min(limits)} tokens")


def grouped_by_length(order, lengths, batch_size: int, rng, chunk_batches: int = 8) -> np.ndarray:
    """`order` regrouped so each batch holds examples of similar length: every run of `chunk_batches` batches is
    sorted by length and cut into batches, then the batches are shuffled. The same examples in the same number of
    batches as `order` (only the last batch is partial); padding drops by 30-60% on GLUE and the review snippets
    (the `group_by_length` of Hugging Face's Trainer, with the batch order shuffled rather than longest first)."""
    lengths, chunk = np.asarray(lengths), batch_size * chunk_batches
    groups = []
    for start in range(0, len(order), chunk):
        part = np.asarray(order[start:start + chunk])
        part = part[np.argsort(-lengths[part], kind="stable")]
        groups += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    full = [g for g in groups if len(g) == batch_size]
    rest = [g for g in groups if len(g) < batch_size]
    return np.concatenate([full[i] for i in rng.permutation(len(full))] + rest) if full else np.concatenate(rest)


def _image_setup(config: RunConfig, device) -> TaskSetup:
    data = load_image_task(config.task, config.shots_per_class, config.run_seed, config.data)
    model, spec = load_vision_model(config.model_name, data.num_labels, checkpoint=config.checkpoint)
    train_x, train_y = image_tensors(subsample(data.train, config.max_train_samples, config.run_seed))
    test_x, test_y = image_tensors(subsample(data.test, config.max_eval_samples, 0))
    tensors = {"train": (to_model_input(train_x, spec), train_y), "test": (to_model_input(test_x, spec), test_y)}

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

    info = {"source": data.source, **data.notes, "train_used": len(train_y), "eval_used": {"test": len(test_y)},
            "input": spec}
    return TaskSetup(model, data.num_labels, ("accuracy",), train_batches, len(train_y), eval_batches, ["test"],
                     lambda m, x: m(x), info)


def prepare(config: RunConfig, device: torch.device) -> TaskSetup:
    """Data and model for the task, with the adapter added and checked against the task's labels."""
    setup = (_text_setup if config.kind == "text" else _image_setup)(config, device)
    add_adapters(setup.model, config.adapter)
    setup.model.to(device)
    check_labels_fit(setup.model, setup.forward, setup.eval_batches(setup.eval_splits[0]), setup.num_labels)
    return setup


def check_labels_fit(model, forward, batches, num_labels) -> None:
    """One batch through the model before training: the head's width and the labels must agree."""
    inputs, labels = next(iter(batches))
    with torch.no_grad():
        width = forward(model.eval(), inputs).shape[-1]
    if width != num_labels:
        raise TaskError(f"the model's head has {width} outputs but the task has {num_labels} labels")
    if num_labels > 1 and (labels.min() < 0 or labels.max() >= num_labels):
        raise TaskError(f"labels range over [{labels.min()}, {labels.max()}] but the head has {num_labels} classes")


# ---- train and evaluate ---------------------------------------------------------------------------------------

def train(setup: TaskSetup, config: RunConfig, device: torch.device) -> dict:
    resolved = setup.model.veralab_config
    groups = parameter_groups(setup.model, resolved.head_modules, config.adapter_lr, config.task_head_lr,
                              config.weight_decay)
    return fit(setup.model, setup.train_batches, -(-setup.train_size // config.batch_size),
               lambda: setup.evaluate(setup.eval_splits[0]), epochs=config.epochs, groups=groups,
               warmup_ratio=config.warmup_ratio, max_grad_norm=config.max_grad_norm, device=device,
               forward=setup.forward, headline=setup.metrics[0], precision=config.resolved_precision())


@torch.no_grad()
def evaluate(model, batches, forward, metrics, num_labels) -> dict:
    model.eval()
    preds, golds = [], []
    for inputs, labels in batches:
        logits = forward(model, inputs).float()
        preds.append((logits.squeeze(-1) if num_labels == 1 else logits.argmax(-1)).cpu().numpy())
        golds.append(labels.cpu().numpy())
    return compute(list(metrics), np.concatenate(preds), np.concatenate(golds))


def held_out_test(setup: TaskSetup, device: torch.device, precision: str) -> dict | None:
    """The test split's metrics where the task has one besides the split evaluated every epoch (under the
    training's precision, as every evaluation)."""
    if "test" in setup.eval_splits and setup.eval_splits[0] != "test":
        with autocast(device.type, precision):
            return setup.evaluate("test")
    return None


# ---- the run --------------------------------------------------------------------------------------------------

def _check_same_run(config: RunConfig, record: dict, run_dir) -> None:
    """A run folder belongs to one configuration: a reused run_name with other settings is refused, never answered
    with the other run's record or overwritten."""
    try:
        stored = RunConfig.from_dict(record_config(record)).identity()
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{run_dir / RECORD} is not a record veralab can read ({err}); move it away or choose "
                          f"another run_name") from err
    ours = config.identity()
    if "glue_dir" in ours:  # the data the stored run read, not what its folder holds now: edited data is another run
        stored["glue_dir"] = (record.get("data") or {}).get("files_sha256", stored["glue_dir"])
    differs = [f"{k}: {ours.get(k)!r} here, {stored.get(k)!r} there" for k in sorted(set(ours) | set(stored))
               if ours.get(k) != stored.get(k)]
    if differs:
        raise ConfigError(f"run folder {run_dir} holds a run with other settings ({'; '.join(differs[:4])}); "
                          f"choose another run_name or output_dir")


def _now(seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def run_experiment(config: RunConfig | dict) -> dict:
    """Train and evaluate one configuration; write its record (and adapter) under config.run_dir().

    A run whose record already exists with status "ok" is not redone (unless force): the stored record is returned,
    marked ``"reused": True`` (not on disk) so callers can say so. While it trains, the run holds a lock on its
    folder: the same run started elsewhere at the same time is refused, never trained twice into one folder.
    """
    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    config.validate()
    run_dir = config.run_dir()
    if reused := _stored(config, run_dir):
        return reused
    check_precision(config.precision, config.resolved_device())
    check_writable(run_dir, "the run folder", "an output_dir")
    with exclusive(run_dir / RUN_LOCK) as mine:
        if not mine:
            holder = (run_dir / RUN_LOCK).read_text().strip()
            raise ConfigError(f"run folder {run_dir} is in use by another run ({holder}); wait for it to finish (its "
                              f"record will be there) or choose another run_name or output_dir")
        # the other run may have finished between the first look and the lock
        return _stored(config, run_dir) or _train_and_record(config, run_dir)


def _stored(config: RunConfig, run_dir) -> dict | None:
    """The folder's ok record of this very run, marked reused, unless force; a record of another run is refused."""
    existing = read_record(run_dir)
    if existing:
        _check_same_run(config, existing, run_dir)
        if existing.get("status") == "ok" and not config.force:
            return {**existing, "reused": True}
    return None


RUN_LOCK = ".run.lock"  # held by the process training a run folder
RECORD_ROOM = 2**20  # bytes a record takes, with room to spare (a few epochs' history: tens of KB)


def _train_and_record(config: RunConfig, run_dir) -> dict:
    seed_everything(config.run_seed)
    device = _device(config)
    started = time.time()
    # the record holds the precision as resolved here ("auto" could resolve otherwise on the machine reading it)
    precision = config.resolved_precision()
    record = {"status": "running", "name": config.name(), "config": {**config.to_dict(), "precision": precision},
              "kind": config.kind, "model": config.model_name, "device": device_info(device, precision),
              "precision": precision,
              "versions": versions(),
              "git_commit": git_commit(), "started": _now(started)}
    try:
        setup = prepare(config, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        resolved = setup.model.veralab_config
        record.update(data=setup.data_info, metric=setup.metrics[0],
                      resolved={"lr": config.adapter_lr, "head_lr": config.task_head_lr,
                                "target_modules": list(resolved.target_modules or ()),
                                "head_modules": list(resolved.head_modules or ())})
        trained = sum(p.numel() for p in setup.model.parameters() if p.requires_grad)  # float32: 4 bytes each
        check_free_space(run_dir, RECORD_ROOM + 4 * trained * config.save_adapter, "the record and adapter")
        result = train(setup, config, device)
        test = held_out_test(setup, device, precision)
    except (TrainingDiverged, torch.OutOfMemoryError) as err:
        reason = str(err).splitlines()[0]
        if isinstance(err, torch.OutOfMemoryError):
            reason = f"out of memory on {device}: lower batch_size (now {config.batch_size}) or max_length"
        record.update(status="failed", error=reason, traceback=traceback.format_exc(limit=3),
                      memory=peak_memory(device), wall_seconds=round(time.time() - started, 2))
        write_json_atomic(run_dir / RECORD, record)
        raise RunFailed(f"run {config.name()} failed: {reason} (record: {run_dir / RECORD})") from err
    counts = count_parameters(setup.model)
    try:
        if config.save_adapter:
            save_adapter(setup.model, run_dir / "adapter")
    except OSError as err:  # the disk filled while training: say so in one line, keep what fits (the record)
        raise RunFailed(f"run {config.name()} trained, but its adapter could not be written to {run_dir / 'adapter'} "
                        f"({err.strerror or err}); free space there and run it again") from err
    record.update(
        status="ok", epochs=result["history"], best=result["best"], final=result["final"],
        evaluated_on=setup.eval_splits[0], test=test,
        params={k: counts[k] for k in ("adapter", "head", "trainable", "total")}, adapter_bytes=counts["adapter_bytes"],
        time={"wall_seconds": round(time.time() - started, 2), "train_seconds": result["train_seconds"],
              "steps": result["steps"], "steps_per_second": round(result["steps"] / result["train_seconds"], 3),
              "samples_per_second": round(result["samples"] / result["train_seconds"], 2)},
        memory=peak_memory(device), finished=_now())
    try:
        write_json_atomic(run_dir / RECORD, record)
    except OSError as err:
        raise RunFailed(f"run {config.name()} trained, but its record could not be written to {run_dir / RECORD} "
                        f"({err.strerror or err}); free space there and run it again") from err
    return record
