"""The adapter layers: a frozen random projection pair, VeRA and LoRA deltas, and the Linear wrapper that adds them.

An adapted ``nn.Linear`` becomes an :class:`AdaptedLinear`: the frozen base layer plus one delta per adapted output
slice (the whole output for an ordinary Linear; the q and v thirds of timm's fused ``qkv``). Each delta is an
independent "adapted layer" in the paper's sense, with its own vectors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .fast import merged_vera_linear, prefer_merged_path


def random_projection(shape: tuple[int, int], init: str, generator: torch.Generator) -> torch.Tensor:
    """One frozen matrix, drawn on the CPU generator so a seed gives bit-identical values on every device.

    "kaiming_uniform" is PEFT's: U(-b, b) with b = √3·√2/√fan_in, fan_in = shape[1]; "kaiming_normal" is
    N(0, 2/fan_in); "uniform" is U[0, 1] (the paper's A/B-init ablation).
    """
    fan_in = shape[1]
    tensor = torch.empty(shape)
    if init == "kaiming_uniform":
        bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(fan_in)
        return tensor.uniform_(-bound, bound, generator=generator)
    if init == "kaiming_normal":
        return tensor.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
    return tensor.uniform_(0.0, 1.0, generator=generator)


class Projection(nn.Module):
    """A frozen pair A (r × in_max), B (out_max × r) and contiguous per-shape slices of it.

    The slices are made once here, not on every forward (PEFT re-slices non-contiguous views each call). All
    tensors are buffers, so they follow ``model.to()`` once, even when many layers share this module, and are
    never parameters. They are non-persistent: adapters are saved as vectors plus the seed.
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor):
        super().__init__()
        self.register_buffer("A", A, persistent=False)
        self.register_buffer("B", B, persistent=False)

    @classmethod
    def generate(cls, rank: int, in_max: int, out_max: int, init: str, generator: torch.Generator) -> Projection:
        A = random_projection((rank, in_max), init, generator)  # A first, then B, from one stream (as PEFT does)
        B = random_projection((out_max, rank), init, generator)
        return cls(A, B)

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    @torch.no_grad()
    def assign(self, A: torch.Tensor, B: torch.Tensor) -> None:
        """Replace A/B with stored matrices (a checkpoint saved with its projection) and refresh the slices."""
        if A.shape[0] != self.rank or B.shape[1] != self.rank or A.shape[1] < self.A.shape[1] \
                or B.shape[0] < self.B.shape[0]:
            raise ValueError(f"stored projection A{tuple(A.shape)}, B{tuple(B.shape)} does not fit this model's "
                             f"A{tuple(self.A.shape)}, B{tuple(self.B.shape)}")
        self.A = A[:, : self.A.shape[1]].to(self.A).contiguous()
        self.B = B[: self.B.shape[0]].to(self.B).contiguous()
        for name, _ in list(self.named_buffers(recurse=False)):
            size = int(name[2:]) if name[:2] in ("A_", "B_") else None
            if size is not None:
                setattr(self, name, (self.A[:, :size] if name[0] == "A" else self.B[:size]).contiguous())

    def slices(self, in_features: int, out_features: int) -> tuple[torch.Tensor, torch.Tensor]:
        name_a, name_b = f"A_{in_features}", f"B_{out_features}"
        if not hasattr(self, name_a):
            self.register_buffer(name_a, self.A[:, :in_features].contiguous(), persistent=False)
        if not hasattr(self, name_b):
            self.register_buffer(name_b, self.B[:out_features, :].contiguous(), persistent=False)
        return getattr(self, name_a), getattr(self, name_b)


def _vector(length: int, value: float, trainable: bool) -> torch.Tensor:
    t = torch.full((length,), float(value))
    return nn.Parameter(t) if trainable else t


class VeraDelta(nn.Module):
    """ΔW·x = Λb·B·Λd·A·x with shared frozen A, B and trained vectors d (rank) and b (out_features).

    A removed vector (train_d/train_b False) is a buffer of ones, kept so that merging and export see one formula.
    """

    def __init__(self, in_features, out_features, projection: Projection, *, d_init, b_init, train_d, train_b,
                 dropout=0.0, fast_path="auto"):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.projection = projection
        projection.slices(in_features, out_features)
        for name, length, init, trainable in (("vera_d", projection.rank, d_init, train_d),
                                               ("vera_b", out_features, b_init, train_b)):
            value = _vector(length, init if trainable else 1.0, trainable)
            if trainable:
                self.register_parameter(name, value)
            else:
                self.register_buffer(name, value)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fast_path = fast_path

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.projection.slices(self.in_features, self.out_features)

    def delta_weight(self) -> torch.Tensor:
        A, B = self.matrices()
        return (self.vera_b[:, None] * B) @ (self.vera_d[:, None] * A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        A, B = self.matrices()
        h = F.linear(self.dropout(x), A.to(x.dtype))
        h = h * self.vera_d.to(h.dtype)
        return F.linear(h, B.to(h.dtype)) * self.vera_b.to(h.dtype)

    def can_fuse(self) -> bool:
        """The merged-ΔW kernel computes (W0 + ΔW)·x, which equals the formula only without adapter dropout."""
        return self.fast_path != "never" and isinstance(self.dropout, nn.Identity)

    def wants_fused(self, tokens: int, training: bool, cpu_bf16: bool = False) -> bool:
        if not self.can_fuse():
            return False
        if self.fast_path == "always":
            return True
        return prefer_merged_path(tokens, self.out_features, self.in_features, self.projection.rank, training,
                                  cpu_bf16)

    def __repr__(self) -> str:
        return f"VeraDelta(in={self.in_features}, out={self.out_features}, r={self.projection.rank})"


class LoraDelta(nn.Module):
    """ΔW·x = (alpha/r)·B·A·x with trained A (Kaiming uniform, as loralib) and B (zeros)."""

    def __init__(self, in_features, out_features, rank, alpha, dropout=0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(self.dropout(x), self.lora_A.to(x.dtype))
        return F.linear(h, self.lora_B.to(h.dtype)) * self.scaling

    def wants_fused(self, tokens: int, training: bool, cpu_bf16: bool = False) -> bool:
        return False


class AdaptedLinear(nn.Module):
    """A frozen ``nn.Linear`` plus deltas on output slices {name: (start, stop)}.

    Merging folds every delta into ``base.weight``; a merged layer runs only the base layer.
    """

    def __init__(self, base: nn.Linear, slices: dict[str, tuple[int, int]], deltas: dict[str, nn.Module]):
        super().__init__()
        self.base = base
        self.slices = dict(slices)
        self.deltas = nn.ModuleDict(deltas)
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:  # code that reads `.weight` of the wrapped Linear (e.g. dtype probes) still works
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def _full(self, name: str) -> bool:
        return self.slices[name] == (0, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        tokens = x.numel() // x.shape[-1]
        grad = torch.is_grad_enabled()
        cpu_bf16 = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        if all(delta.wants_fused(tokens, grad, cpu_bf16) for delta in self.deltas.values()):
            spans = [self.slices[name] for name in self.deltas]
            factors = [(*delta.matrices(), delta.vera_d, delta.vera_b) for delta in self.deltas.values()]
            return merged_vera_linear(x, self.base.weight, self.base.bias, spans, factors)
        y = self.base(x)
        if all(self._full(n) for n in self.deltas):
            for delta in self.deltas.values():
                y = y + delta(x)
            return y
        pieces, cursor = [], 0
        for name in sorted(self.deltas, key=lambda n: self.slices[n]):
            start, stop = self.slices[name]
            pieces += [y[..., cursor:start], y[..., start:stop] + self.deltas[name](x)]
            cursor = stop
        pieces.append(y[..., cursor:])
        return torch.cat(pieces, dim=-1)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self._fold(+1)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self._fold(-1)
            self.merged = False

    def _fold(self, sign: int) -> None:
        weight = self.base.weight
        for name, delta in self.deltas.items():
            start, stop = self.slices[name]
            weight[start:stop] += sign * delta.delta_weight().to(device=weight.device, dtype=weight.dtype)

    def extra_repr(self) -> str:
        return f"slices={self.slices}, merged={self.merged}"
