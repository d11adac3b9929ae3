"""A run's numeric precision: float32, or bf16 autocast.

bf16 autocast runs the matrix products in bf16 while every trained tensor (vectors, LoRA factors, heads, full
weights) and the optimizer state stay float32 parameters, as PEFT's mixed-precision training does. On a CPU it pays
only with native bf16 matrix units (Intel AMX, AVX512-BF16 on Intel and AMD), so "auto" means float32 elsewhere.
An explicit "bf16" still runs there, so that a bf16 study can be continued or repeated on any CPU: PyTorch's own
bf16 products on such a CPU take over ten times float32's time, so each one runs on float32 kernels instead, from
the same bf16 operands (exact in float32), summed in float32 and rounded to bf16 once, which is what the native
units compute (up to summation order, which differs between native units too). The record says which ran.
"""

from __future__ import annotations

import functools
import platform
from contextlib import contextmanager, nullcontext
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
    """Refuse, before any work, a bf16 run on a GPU without bf16."""
    if resolve_precision(precision, device) == "bf16" and device.startswith("cuda") and not cuda_bf16():
        raise ConfigError(f"precision 'bf16' was asked for but {device} has no bf16 support; use precision 'fp32' or "
                          f"'auto'")


def bf16_products(device_type: str, precision: str) -> str | None:
    """How a bf16 run's matrix products run: "native", "float32 kernels" (a CPU without bf16 units; see above), or
    None for a float32 run or a GPU."""
    if precision != "bf16" or device_type != "cpu":
        return None
    return "native" if cpu_bf16_path() != "none" else "float32 kernels"


def float32_kernels(device_type: str, precision: str):
    """The context under which a bf16 run's products (forward and backward) take float32 kernels; a no-op wherever
    they run natively."""
    if bf16_products(device_type, precision) != "float32 kernels":
        return nullcontext()
    from .bf16_on_float32 import Bf16ProductsInFloat32

    return Bf16ProductsInFloat32()


@contextmanager
def autocast(device_type: str, precision: str):
    """The autocast a run trains and evaluates under: bf16, or none for fp32 (`precision` already resolved)."""
    import torch

    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"), \
            float32_kernels(device_type, precision):
        yield
