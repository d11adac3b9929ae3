"""The training loop shared by every study: AdamW with separate adapter and head learning rates, linear warmup
and decay, gradient clipping, bf16 autocast where the run's precision says so (training and evaluation alike), an
evaluation every epoch, and a stop on a non-finite loss. On a GPU the loop reads the loss on the host only every few
steps (see fit).
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .precision import autocast, float32_kernels, resolve_precision


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stops and the run record says when."""


def quiet() -> bool:
    """True under papermill sweeps (the runner sets VERALAB_QUIET=1): progress bars would bloat executed notebooks."""
    return os.environ.get("VERALAB_QUIET", "") not in ("", "0")


def progress(**kwargs):
    """tqdm: a widget in JupyterLab when ipywidgets is there, text otherwise, nothing under a sweep."""
    if quiet():
        from tqdm import tqdm

        return tqdm(disable=True, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.auto warns when ipywidgets is missing, then falls back to text
        from tqdm.auto import tqdm
    return tqdm(mininterval=1.0, **kwargs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parameter_groups(model, head_modules, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    head_ids = {id(p) for h in head_modules for p in model.get_submodule(h).parameters()}
    head = [p for p in model.parameters() if p.requires_grad and id(p) in head_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "adapter"},
              {"params": head, "lr": head_lr, "weight_decay": weight_decay, "name": "head"}]
    return [g for g in groups if g["params"]]


def warmup_linear(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def to_device(batch, device: torch.device):
    """A tensor, or a dict / tuple / list of them, on `device`. To a GPU from pinned memory without blocking (a
    pageable copy makes the host wait for the GPU to drain its queue before every batch); elsewhere a plain .to()."""
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    if not isinstance(batch, torch.Tensor):
        return batch
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def sync_every(device: torch.device) -> int:
    """Training steps between two reads of the loss on the host. Each read waits for the device; on the CPU that is
    free, so every step is checked (and a NaN stops training before its update, as always); on a GPU every 25th."""
    return 1 if device.type == "cpu" else 25


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.shape[-1] == 1:  # regression (STS-B)
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def read_losses(pending: list[torch.Tensor], epoch: int, step: int) -> list[float]:
    """The pending device losses as floats (one host sync), emptying `pending`; `step` is the last one's number. A
    non-finite loss raises TrainingDiverged naming the epoch and step where it first appeared."""
    values = torch.stack(pending).tolist()
    pending.clear()
    first = step - len(values) + 1
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise TrainingDiverged(f"loss became {value} at epoch {epoch}, step {first + i}; try a lower learning rate")
    return values


def fit(model, batches: Callable[[int], Iterable], steps_per_epoch: int, evaluate: Callable[[], dict], *,
        epochs: int, groups: list[dict], warmup_ratio: float, max_grad_norm: float, device: torch.device,
        forward: Callable, headline: str, check_every: int | None = None, precision: str = "auto") -> dict:
    """Train; returns per-epoch history and timing. `batches(epoch)` yields (inputs, labels) on the device.

    The losses stay on the device and are read every `check_every` steps (default: sync_every(device)) and at each
    epoch's end: one host sync per read, not two per step. A non-finite loss stops training with the epoch and step
    where it first appeared, found among the losses read. `precision` ("auto", "fp32", "bf16"; see precision.py)
    sets the autocast, the same for evaluation as for training.
    """
    precision = resolve_precision(precision, device.type)
    optimizer = torch.optim.AdamW(groups)
    total = epochs * steps_per_epoch
    scheduler = warmup_linear(optimizer, int(warmup_ratio * total), total)
    params = [p for g in groups for p in g["params"]]
    check_every = max(1, check_every or sync_every(device))
    history, samples, step = [], 0, 0
    bar = progress(total=total, desc="train", leave=False)
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start, losses, pending = time.perf_counter(), [], []  # pending: device losses not read yet

        for inputs, labels in batches(epoch):
            with autocast(device.type, precision):
                loss = loss_fn(forward(model, inputs), labels)
            pending.append(loss.detach())
            step += 1
            if len(pending) >= check_every:  # with check_every 1: before the update, so a NaN never reaches the weights
                losses += read_losses(pending, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            with float32_kernels(device.type, precision):  # the backward pass's bf16 products, where autocast's are
                loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            samples += len(labels)
            bar.update(1)
        if pending:
            losses += read_losses(pending, epoch, step)
        if not all(torch.isfinite(p).all() for p in params):  # the epoch's last update, after the last loss read
            raise TrainingDiverged(f"the trained weights became non-finite at epoch {epoch}, step {step}; try a lower "
                                   f"learning rate")
        train_seconds = time.perf_counter() - epoch_start
        with autocast(device.type, precision):
            metrics = evaluate()
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else math.nan,
                        "validation": metrics, "train_seconds": round(train_seconds, 3)})
        bar.set_postfix({headline: f"{metrics[headline]:.4f}"})
    bar.close()
    best = max(history, key=lambda h: h["validation"][headline])  # every headline metric is higher-is-better
    return {"history": history, "best": {"epoch": best["epoch"], **best["validation"]},
            "final": dict(history[-1]["validation"]), "steps": step, "samples": samples,
            "train_seconds": round(sum(h["train_seconds"] for h in history), 3)}
