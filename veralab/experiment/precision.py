"""A run's numeric precision: float32, or bf16 autocast where the hardware multiplies bf16 natively.

bf16 autocast runs the matrix products in bf16 while every trained tensor (vectors, LoRA factors, heads, full
weights) and the optimizer state stay float32 parameters, as PEFT's mixed-precision training does. On a CPU it pays
only with native bf16 matrix units (Intel AMX, AVX512-BF16 on Intel and AMD): elsewhere bf16 is emulated and slower
than float32, so "auto" means float32 there and "bf16" is refused.
"""

from __future__ import annotations

import functools
import platform
from contextlib import AbstractContextManager
from pathlib import Path

from ..core.config import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_bf16_path(cpuinfo: str | None = None) -> str:
    """This CPU's native bf16 matrix support: "amx" (Intel AMX-BF16 tiles), "avx512_bf16" (AVX512-BF16 dot products,
    Intel Cooper Lake on and AMD Zen 4 on), "arm_bf16" (Armv8.6 BF16) or "none". Read from /proc/cpuinfo's flags;
    "none" where that cannot be read (bf16 is then never chosen by "auto")."""
    if cpuinfo is None:
        cpuinfo = _read(CPUINFO)
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags |= set(value.split())
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "bf16" in flags and platform.machine().lower() in ("aarch64", "arm64"):
        return "arm_bf16"
    return "none"


@functools.lru_cache(maxsize=4)
def _read(path: Path) -> str:
    """The file's text, read once per process (run identities resolve "auto" many times over a sweep); "" if
    it cannot be read."""
    try:
        return path.read_text()
    except OSError:
        return ""


def cuda_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device: str) -> str:
    """"fp32" or "bf16": "auto" is bf16 on a GPU with bf16 and on a CPU with native bf16 matrix units, else fp32."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if cuda_bf16() else "fp32"
    return "bf16" if cpu_bf16_path() != "none" else "fp32"


def check_precision(precision: str, device: str) -> None:
    """Refuse, before any work, a bf16 run on hardware that would only emulate bf16."""
    if resolve_precision(precision, device) != "bf16":
        return
    if device.startswith("cuda"):
        if not cuda_bf16():
            raise ConfigError(f"precision 'bf16' was asked for but {device} has no bf16 support; use precision "
                              f"'fp32' or 'auto'")
    elif cpu_bf16_path() == "none":
        raise ConfigError("precision 'bf16' was asked for but this CPU has no native bf16 matrix support (neither "
                          "AMX-BF16 nor AVX512-BF16 in /proc/cpuinfo), where bf16 is emulated and slower than "
                          "float32; use precision 'fp32' or 'auto' (float32 here)")


def autocast(device_type: str, precision: str) -> AbstractContextManager:
    """The autocast a run trains and evaluates under: bf16, or none for fp32 (`precision` already resolved)."""
    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")
