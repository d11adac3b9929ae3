"""Small helpers that keep the study notebooks thin."""

from __future__ import annotations

import dataclasses

from .experiment import RunConfig


def config_from(namespace: dict) -> RunConfig:
    """The RunConfig whose fields are the notebook's parameter variables (papermill injects them)."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in namespace.items() if k in names})


def summarize(record: dict) -> None:
    """Print what ran and how it scored, so an executed notebook documents itself."""
    metric = record["metric"]
    test = (record.get("test") or {}).get(metric)
    print(f"{record['name']}: {record['status']}")
    print(f"  model {record['model']} on {record['data']['source']}, {record['data']['train_used']} training examples")
    if record["status"] == "ok":
        print(f"  {metric}: final {record['final'][metric]:.4f} on {record['evaluated_on']}, best "
              f"{record['best'][metric]:.4f} (epoch {record['best']['epoch']})"
              + (f", test {test:.4f}" if test is not None else ""))
        print(f"  trainable {record['params']['trainable']:,} of {record['params']['total']:,} parameters; "
              f"adapter {record['adapter_bytes'] / 1024:.1f} KiB; {record['time']['wall_seconds']:.0f} s on "
              f"{record['device']['type']}")
    else:
        print(f"  error: {record.get('error')}")
