"""The run record: one JSON file per run (written with core.io's atomic writer), with everything needed to trust and
redraw it."""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from pathlib import Path

from ..core.checkpoint import veralab_version

RECORD = "record.json"
# Settings added since records were first written, as the runs that lack them ran: the setting's default, except
# where it is listed here (a BERT's head was its classifier alone before `head_scope` existed).
BEFORE_FIELD = {"head_scope": "classifier"}


def record_config(record: dict) -> dict:
    """A record's flat config, with the settings it predates filled in as that run used them: records written
    before and after a setting was added are then the same setting (tables pool their seeds), as they are the same
    run."""
    return {**_defaults(), **BEFORE_FIELD, **record["config"]}


@functools.lru_cache(maxsize=1)
def _defaults() -> dict:
    from .config import RunConfig

    return RunConfig().to_dict()


def read_record(directory) -> dict | None:
    """The record in `directory`, or None where there is none that can be read (a damaged one counts as absent, so
    the run is done again; `collect_records` names damaged records)."""
    path = Path(directory) / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:  # invalid JSON or not UTF-8
        return None
    return record if isinstance(record, dict) else None


def versions() -> dict:
    import torch
    import transformers

    found = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
             "veralab": veralab_version()}
    try:
        import timm

        found["timm"] = timm.__version__
    except ImportError:
        found["timm"] = None
    return found


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


def device_info(device, precision: str = "fp32") -> dict:
    """The machine a run ran on; for a bf16 run on a CPU also how its bf16 products ran (see precision.py)."""
    import torch

    from .precision import bf16_products, cpu_bf16_path

    info = {"type": device.type, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cpu_bf16": cpu_bf16_path()}
    if products := bf16_products(device.type, precision):
        info["bf16_products"] = products
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    return info


def peak_memory(device) -> dict:
    import psutil
    import torch

    rss = psutil.Process().memory_info().rss
    result = {"rss_mib": round(rss / 2**20, 1)}
    try:
        import resource

        result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except ImportError:
        pass
    if device.type == "cuda":
        result["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result
