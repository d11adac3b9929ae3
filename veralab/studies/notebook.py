"""Small helpers that keep the study notebooks thin."""

from __future__ import annotations

from ..experiment import RunConfig

PARAMETER_TYPES = (bool, int, float, str, type(None), list, tuple, dict)
IPYTHON_NAMES = {"In", "Out"}


def config_from(namespace: dict) -> RunConfig:
    """The RunConfig whose fields are the notebook's parameter variables (its parameters cell, or papermill's).

    Call it right after the parameters cell: every plain value defined by then (numbers, strings, None, lists)
    must be a RunConfig field, so a typo such as `rnak = 16` is an error instead of silently running the default.
    """
    params = {k: v for k, v in namespace.items()
              if not k.startswith("_") and k not in IPYTHON_NAMES and isinstance(v, PARAMETER_TYPES)}
    return RunConfig.from_dict(params)


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
