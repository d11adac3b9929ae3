"""The merged-ΔW VeRA kernel: y = x·(W0 + Λb·B·Λd·A)ᵀ + bias in one matmul, with d and b gradients from the
layer's weight gradient G = gᵀ·x.

With M = (G·Aᵀ) ⊙ B (out × r):  ∂L/∂b = M·d  and  ∂L/∂d = Mᵀ·b.  No T × r activations are kept; the saved
tensors are x (which the frozen layer keeps anyway) and the m × n effective weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prefer_merged_path(tokens: int, out_features: int, in_features: int, rank: int, training: bool) -> bool:
    """Whether building ΔW costs fewer FLOPs than the unmerged x→A→Λd→B→Λb path (per layer, per call).

    Inference: unmerged adds T·r·(m+n); merged adds m·n·r to build ΔW.
    Training: unmerged adds about 2·T·r·(m+n) (one product each way in forward and in backward); merged adds the
    weight gradient T·m·n plus two m·n·r products (ΔW and G·Aᵀ). On a CPU the crossover measured for m=n=768,
    r=1024 sits near T=500 tokens, where this model puts it (472).
    """
    m, n, r = out_features, in_features, rank
    if training:
        return 2 * tokens * r * (m + n) > tokens * m * n + 2 * m * n * r
    return tokens * r * (m + n) > m * n * r


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _delta(A, B, d, b):
    return (b.float()[:, None] * B.float()) @ (d.float()[:, None] * A.float())


class _MergedVeraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, A, B, d, b):
        dtype = _compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            w = (weight.float() + _delta(A, B, d, b)).to(dtype)
            y = F.linear(x.to(dtype), w, None if bias is None else bias.to(dtype))
        ctx.save_for_backward(x, w, A, B, d, b)  # w (m × n) is small beside the T × n input
        ctx.dtype = dtype
        ctx.bias_needs_grad = bias is not None and bias.requires_grad
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, w, A, B, d, b = ctx.saved_tensors
        need_x, need_d, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[5], ctx.needs_input_grad[6]
        grad_x = grad_d = grad_b = grad_bias = None
        g = grad_y.to(ctx.dtype)
        if need_x:
            grad_x = (g @ w).to(x.dtype)
        if need_d or need_b:
            g2, x2 = g.reshape(-1, g.shape[-1]), x.to(ctx.dtype).reshape(-1, x.shape[-1])
            grad_w = (g2.t() @ x2).float()  # out × in, accumulated in float32 for the vectors' sake
            m = (grad_w @ A.float().t()) * B.float()  # out × r
            if need_b:
                grad_b = (m @ d.float()).to(b.dtype)
            if need_d:
                grad_d = (m.t() @ b.float()).to(d.dtype)
        if ctx.bias_needs_grad:
            grad_bias = g.reshape(-1, g.shape[-1]).sum(0).to(ctx.bias_dtype)
        return grad_x, None, grad_bias, None, None, grad_d, grad_b


def merged_vera_linear(x, weight, bias, A, B, d, b) -> torch.Tensor:
    return _MergedVeraLinear.apply(x, weight, bias, A, B, d, b)
