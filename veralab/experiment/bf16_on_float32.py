"""bf16 matrix products on float32 kernels, for CPUs without bf16 matrix units (see precision.py)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
PRODUCTS = frozenset({aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default,
                      aten.mv.default, aten.addmv.default, aten.dot.default})


class Bf16ProductsInFloat32(TorchDispatchMode):
    """Runs each bf16 CPU matrix product as float32 on the same operands and rounds the result to bf16 once.

    bf16 operands are exact in float32 and so are their pairwise products (8 + 8 significant bits), so only the sum's
    order can differ from a native bf16 unit's, as it does between native units. Sits below autograd: the backward
    pass's products are caught too. Everything else (elementwise ops, softmax, norms) runs untouched.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in PRODUCTS and any(_cpu_bf16(a) for a in args):
            widened = [a.float() if _cpu_bf16(a) else a for a in args]
            return func(*widened, **kwargs).to(torch.bfloat16)
        return func(*args, **kwargs)


def _cpu_bf16(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16 and value.device.type == "cpu"
