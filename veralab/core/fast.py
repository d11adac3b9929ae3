"""The merged-ΔW VeRA kernel: y = x·(W0 + Λb·B·Λd·A)ᵀ + bias in one matmul, with d and b gradients from the
layer's weight gradient G = gᵀ·x.

With M = (G·Aᵀ) ⊙ B (out × r):  ∂L/∂b = M·d  and  ∂L/∂d = Mᵀ·b.  The saved tensors are x (T × n) and the
m × n effective weight, where the unmerged path keeps T × r and T × m activations.

Precision. In float32 every product runs in float32: the same function and gradients as the reference path up to
round-off. Under autocast (bf16 on CUDA) the kernel computes in the autocast dtype as the rest of the model does:
x is saved in that dtype (not a float32 copy: half the activation bytes), and ΔW and G·Aᵀ are tensor-core products
of the autocast dtype with float32 accumulation; W0 + ΔW is summed in float32 and rounded to the autocast dtype
once. That rounding puts a small ΔW on W0's bf16 grid (the adapter's own contribution is then known to about
2⁻⁹·|W0| per weight rather than 2⁻⁹·|ΔW|): the output's error is that of the base layer's own bf16 product, and
benchmarks/bench_bf16_training.py and tests/core/test_bf16_training.py measure what it does to training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CPU_BF16_BUILD = 725  # FLOP-equivalents per weight of building W0 + ΔW under CPU bf16 autocast (fitted: see below)


def prefer_merged_path(tokens: int, out_features: int, in_features: int, rank: int, training: bool,
                       cpu_bf16: bool = False) -> bool:
    """Whether building ΔW costs fewer FLOPs than the unmerged x→A→Λd→B→Λb path (per layer, per call).

    Inference: unmerged adds T·r·(m+n); merged adds m·n·r to build ΔW.
    Training: unmerged adds about 2·T·r·(m+n) (one product each way in forward and in backward); merged adds the
    weight gradient T·m·n plus two m·n·r products (ΔW and G·Aᵀ). On a CPU the crossover measured for m=n=768,
    r=1024 sits near T=500 tokens, where this model puts it (472). Under bf16 autocast on a CPU the products get
    about twice as fast while building W0 + ΔW in float32 and rounding it to bf16 does not: `cpu_bf16` adds
    CPU_BF16_BUILD·m·n to the merged side, which puts that crossover at 640 tokens, where it was measured.
    """
    m, n, r = out_features, in_features, rank
    build = CPU_BF16_BUILD * m * n if cpu_bf16 else 0
    if training:
        return 2 * tokens * r * (m + n) > tokens * m * n + 2 * m * n * r + build
    return tokens * r * (m + n) > m * n * r + build


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _delta(A, B, d, b, dtype=torch.float32):
    """ΔW = Λb·B·Λd·A: in float32 as before, or as one product in `dtype` (float32 accumulation) under autocast."""
    if dtype == torch.float32:
        return (b.float()[:, None] * B.float()) @ (d.float()[:, None] * A.float())
    return ((b.float()[:, None] * B.float()).to(dtype) @ (d.float()[:, None] * A.float()).to(dtype)).float()


class _MergedVeraLinear(torch.autograd.Function):
    """One VeRA delta per output span (start, stop): the whole layer, or e.g. the q and v rows of a fused qkv."""

    @staticmethod
    def forward(ctx, x, weight, bias, spans, *factors):
        dtype = _compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            w = weight.to(torch.float32, copy=True)
            for (start, stop), (A, B, d, b) in zip(spans, _grouped(factors)):
                w[start:stop] += _delta(A, B, d, b, dtype)
            w = w.to(dtype)
            xc = x.to(dtype)  # x itself in float32; under bf16 autocast the bf16 copy the product reads
            y = F.linear(xc, w, None if bias is None else bias.to(dtype))
        ctx.save_for_backward(xc, w, *factors)  # w (m × n) is small beside the T × n input
        ctx.spans, ctx.dtype, ctx.x_dtype = spans, dtype, x.dtype
        ctx.bias_needs_grad = bias is not None and bias.requires_grad
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, w, *factors = ctx.saved_tensors
        g = grad_y.to(ctx.dtype)
        grad_x = (g @ w).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        factor_grads = []
        for i, ((start, stop), (A, B, d, b)) in enumerate(zip(ctx.spans, _grouped(factors))):
            need_d, need_b = ctx.needs_input_grad[4 + 4 * i + 2], ctx.needs_input_grad[4 + 4 * i + 3]
            grad_d = grad_b = None
            if need_d or need_b:
                grad_w = g2[:, start:stop].t() @ x2  # span × in, in the compute dtype
                if ctx.dtype == torch.float32:
                    m = (grad_w @ A.float().t()) * B.float()  # span × r
                else:  # G·Aᵀ on the tensor cores (float32 accumulation), then float32 for the vectors' sake
                    m = (grad_w @ A.to(ctx.dtype).t()).float() * B.float()
                grad_b = (m @ d.float()).to(b.dtype) if need_b else None
                grad_d = (m.t() @ b.float()).to(d.dtype) if need_d else None
            factor_grads += [None, None, grad_d, grad_b]
        grad_bias = g2.sum(0).to(ctx.bias_dtype) if ctx.bias_needs_grad else None
        return grad_x, None, grad_bias, None, *factor_grads


def _grouped(factors):
    return zip(*[iter(factors)] * 4)


def merged_vera_linear(x, weight, bias, spans, factors) -> torch.Tensor:
    """y = x·(W0 + ΔW)ᵀ + bias where span (start, stop) of W0's rows gets Λb·B·Λd·A from factors (A, B, d, b)."""
    return _MergedVeraLinear.apply(x, weight, bias, tuple(spans), *[t for group in factors for t in group])
