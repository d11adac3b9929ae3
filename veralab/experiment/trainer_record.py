"""A transformers TrainerCallback that writes a veralab run record when your own Trainer finishes: a run trained
outside veralab (your loop, your data collator) lands in veralab's tables, figures and verdicts like its own runs.

    trainer = Trainer(model, args, ..., compute_metrics=..., callbacks=[RecordCallback(task="sst2")])

The model is one veralab adapted (add_adapters, which also takes a peft VeraConfig / LoraConfig) or a PEFT model;
the record's config comes from its adapter and the TrainingArguments, its scores from the Trainer's evaluations
(the first metric compute_metrics returns is the headline one, unless `metric` names another).
"""

from __future__ import annotations

import time

import torch
from transformers import TrainerCallback

from ..core.checkpoint import count_parameters
from ..core.config import AdapterConfig, ConfigError
from ..core.io import write_json_atomic
from .config import RunConfig
from .record import RECORD, git_commit, versions


class RecordCallback(TrainerCallback):
    def __init__(self, task: str, output_dir: str = "runs", metric: str | None = None, model_name: str | None = None):
        self.task, self.output_dir, self.metric, self.model_name = task, output_dir, metric, model_name
        self.evaluations, self.started, self.sizes = [], None, {}

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.started = time.time()
        if train_dataloader is not None:
            self.sizes["train"] = len(train_dataloader.dataset)

    def on_evaluate(self, args, state, control, metrics=None, eval_dataloader=None, **kwargs):
        scores = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items()
                  if k.startswith("eval_") and k not in ("eval_loss", "eval_runtime", "eval_samples_per_second",
                                                         "eval_steps_per_second", "eval_epoch")}
        self.evaluations.append({"epoch": state.epoch, **scores})
        if eval_dataloader is not None:
            self.sizes["validation"] = len(eval_dataloader.dataset)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.evaluations:
            raise ConfigError("RecordCallback needs the Trainer to evaluate (eval_strategy='epoch' and a "
                              "compute_metrics): a record without scores would show in no table")
        metric = self.metric or next(k for k in self.evaluations[-1] if k != "epoch")
        adapter = adapter_config(model)
        config = RunConfig(adapter=adapter, task=self.task, model=self.model_name or _base_name(model),
                           run_seed=args.seed, epochs=max(1, round(args.num_train_epochs)),
                           batch_size=args.per_device_train_batch_size, lr=args.learning_rate,
                           weight_decay=args.weight_decay, warmup_ratio=_warmup_ratio(args),
                           output_dir=self.output_dir)
        counts = count_parameters(model) if getattr(model, "veralab_config", None) else _peft_counts(model)
        losses = [h for h in state.log_history if "loss" in h]
        train = next((h for h in reversed(state.log_history) if "train_samples_per_second" in h), {})
        best = max(self.evaluations, key=lambda e: e[metric])
        record = {
            "status": "ok", "name": config.name(), "config": config.to_dict(), "kind": config.kind,
            "model": config.model, "metric": metric, "source": "your transformers Trainer (RecordCallback)",
            "final": {k: v for k, v in self.evaluations[-1].items() if k != "epoch"},
            "best": {**{k: v for k, v in best.items() if k != "epoch"}, "epoch": best["epoch"]},
            "evaluated_on": "validation", "test": None,
            "epochs": [{"epoch": e["epoch"], "validation": e,
                        "train_loss": next((h["loss"] for h in reversed(losses) if h["epoch"] <= e["epoch"]), None)}
                       for e in self.evaluations],
            "params": {k: counts[k] for k in ("adapter", "head", "trainable", "total")},
            "adapter_bytes": counts.get("adapter_bytes"),
            "time": {"wall_seconds": round(time.time() - (self.started or time.time()), 2),
                     "samples_per_second": train.get("train_samples_per_second")},
            "device": {"type": args.device.type, "threads": torch.get_num_threads()},
            "data": {"source": "your Trainer's datasets", "train_used": self.sizes.get("train"),
                     "eval_used": {"validation": self.sizes.get("validation")}},
            "versions": versions(), "git_commit": git_commit(),
        }
        write_json_atomic(config.run_dir() / RECORD, record)
        self.record = record


def adapter_config(model) -> AdapterConfig:
    """The adapter of a veralab-adapted model, or of a PEFT model (converted)."""
    if getattr(model, "veralab_config", None) is not None:
        return model.veralab_config
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and peft_config:
        return AdapterConfig.from_peft(next(iter(peft_config.values())))
    raise ConfigError("RecordCallback reads the adapter of a model adapted by veralab (add_adapters) or PEFT "
                      f"(get_peft_model); this {type(model).__name__} has neither")


def _base_name(model) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", None) or type(model).__name__)


def _peft_counts(model) -> dict:
    """PEFT's trainable parameters split as the paper counts them: the task head (modules_to_save) apart."""
    trained = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    head = sum(v for n, v in trained.items() if "modules_to_save" in n)
    return {"trainable": sum(trained.values()), "head": head, "adapter": sum(trained.values()) - head,
            "total": sum(p.numel() for p in model.parameters())}


def _warmup_ratio(args) -> float:
    """The warm-up as a fraction of training (transformers 5 folds warmup_ratio into a fractional warmup_steps)."""
    ratio = getattr(args, "warmup_ratio", None)
    steps = getattr(args, "warmup_steps", 0) or 0
    return float(ratio) if ratio is not None else float(steps) if 0 < steps < 1 else 0.0
