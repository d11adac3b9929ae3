"""The merged-ΔW VeRA kernel computes the same function and gradients as the reference path."""

import pytest
import torch

import veralab as vl
from tests.conftest import assert_close_to_rounding
from veralab.core.fast import prefer_merged_path
from veralab.core.layers import AdaptedLinear

LAYERS = {  # module name, target modules, (in, out): a whole layer, and the q and v thirds of a fused qkv
    "query": ("query", ("query",), (48, 40)),
    "qkv": ("qkv", ("qkv.q", "qkv.v"), (48, 120)),
}


def _pair(layer="query", **kwargs):
    name, targets, (n_in, n_out) = LAYERS[layer]
    torch.manual_seed(0)
    base = torch.nn.Linear(n_in, n_out)
    layers = []
    for fast_path in ("never", "always"):
        holder = torch.nn.Module()
        holder.add_module(name, torch.nn.Linear(n_in, n_out))
        getattr(holder, name).load_state_dict(base.state_dict())
        vl.add_adapters(holder, vl.AdapterConfig(rank=64, fast_path=fast_path, target_modules=targets,
                                                 train_head=False, **kwargs))
        with torch.no_grad():
            g = torch.Generator().manual_seed(3)
            for p in holder.parameters():
                if p.requires_grad:
                    p.copy_(torch.randn(p.shape, generator=g))
        layers.append(getattr(holder, name))
    return layers


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("kwargs", [{}, {"train_b": False, "d_init": 0.0}, {"train_d": False}])
def test_fast_path_matches_reference_in_float32(layer, kwargs):
    ref, fast = _pair(layer, **kwargs)
    x = torch.randn(4, 33, 48, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, y_fast = ref(x), fast(x2)
    assert_close_to_rounding(y_fast, y_ref)
    g = torch.randn_like(y_ref)
    y_ref.backward(g)
    y_fast.backward(g)
    assert_close_to_rounding(x2.grad, x.grad)
    for name, p in ref.named_parameters():
        if p.requires_grad:
            q = dict(fast.named_parameters())[name]
            assert torch.linalg.norm(q.grad - p.grad) <= 1e-5 * torch.linalg.norm(p.grad), name


@pytest.mark.parametrize("layer", list(LAYERS))
def test_fast_path_in_bfloat16_autocast_is_within_1e_2(layer):
    ref, fast = _pair(layer)
    x = torch.randn(4, 33, 48)
    with torch.no_grad():
        y32 = ref(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_fast = fast(x)
    assert y_fast.dtype == torch.bfloat16
    assert torch.linalg.norm(y_fast.float() - y32) <= 1e-2 * torch.linalg.norm(y32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast(x).float().pow(2).mean().backward()
    ref(x).pow(2).mean().backward()
    for name, p in ref.named_parameters():
        if p.requires_grad:
            q = dict(fast.named_parameters())[name]
            assert q.grad.dtype == torch.float32
            assert torch.linalg.norm(q.grad - p.grad) <= 1e-2 * torch.linalg.norm(p.grad), name


@pytest.mark.parametrize("targets, out_features", [(("query",), 768), (("qkv.q", "qkv.v"), 2304)])
@pytest.mark.parametrize("b_scale", [1.0, 1e-2])
def test_at_full_width_cpu_bf16_training_is_within_1e_2_of_float32(targets, out_features, b_scale):
    """The CUDA kernel test's setting on the CPU path that bf16 runs take: 768 wide, r=1024, 8 x 256 tokens."""
    def output_and_grads(fast_path, bf16):
        torch.manual_seed(1)
        holder = torch.nn.Module()
        holder.add_module(targets[0].split(".")[0], torch.nn.Linear(768, out_features))
        vl.add_adapters(holder, vl.AdapterConfig(rank=1024, fast_path=fast_path, target_modules=targets))
        layer = getattr(holder, targets[0].split(".")[0])
        with torch.no_grad():
            for delta in layer.deltas.values():  # b starts at 0; random b makes every gradient non-trivial
                delta.vera_b.normal_(generator=torch.Generator().manual_seed(2)).mul_(b_scale)
        x = torch.randn(8, 256, 768, generator=torch.Generator().manual_seed(0), requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.float().pow(2).mean().backward()
        vectors = [torch.cat([d.get_parameter(v).grad for d in layer.deltas.values()]) for v in ("vera_d", "vera_b")]
        return [y.detach().float(), x.grad, *vectors]

    reference, merged = output_and_grads("never", False), output_and_grads("always", True)
    for what, a, b in zip(("output", "grad x", "grad d", "grad b"), merged, reference):
        assert a.dtype == torch.float32 and (a - b).norm() <= 1e-2 * b.norm(), what


def test_auto_choice_follows_the_cost_model():
    # inference: merged iff T > m·n/(m+n)
    assert not prefer_merged_path(383, 768, 768, 1024, training=False)
    assert prefer_merged_path(385, 768, 768, 1024, training=False)
    # training at r=1024 on a 768-wide layer: merged from about 470 tokens; at small rank, never
    assert not prefer_merged_path(400, 768, 768, 1024, training=True)
    assert prefer_merged_path(600, 768, 768, 1024, training=True)
    assert prefer_merged_path(64 * 256, 768, 768, 1024, training=True)
    assert not prefer_merged_path(64 * 256, 768, 768, 8, training=True)
    # under CPU bf16 the float32 build of W0 + ΔW weighs more: merged from about 640 tokens (measured)
    assert not prefer_merged_path(600, 768, 768, 1024, training=True, cpu_bf16=True)
    assert prefer_merged_path(660, 768, 768, 1024, training=True, cpu_bf16=True)


def test_dropout_forces_the_reference_path():
    holder = torch.nn.Module()
    holder.query = torch.nn.Linear(8, 8)
    vl.add_adapters(holder, vl.AdapterConfig(rank=4, dropout=0.1, fast_path="always", target_modules=("query",)))
    assert isinstance(holder.query, AdaptedLinear) and not holder.query.deltas["out"].wants_fused(10_000, True)


def test_fused_qkv_adapts_only_its_q_and_v_rows_on_the_fast_path():
    ref, fast = _pair("qkv")
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        y, plain = fast(x), fast.base(x)
    torch.testing.assert_close(y[..., 40:80], plain[..., 40:80])  # k untouched
    assert not torch.allclose(y[..., :40], plain[..., :40]) and not torch.allclose(y[..., 80:], plain[..., 80:])


@pytest.mark.parametrize("layer", list(LAYERS))
def test_fast_path_keeps_no_tokens_by_rank_activations_for_backward(layer):
    """The point of the kernel's custom backward: autograd keeps x and one weight, never a T x r tensor."""
    ref, fast = _pair(layer)
    x = torch.randn(4, 33, 48)

    def saved_shapes(module):
        shapes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
            module(x)
        return shapes

    tokens_by_rank = (4, 33, 64)
    assert tokens_by_rank in saved_shapes(ref)  # the reference path does keep one (the check can fail)
    assert tokens_by_rank not in saved_shapes(fast)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_float32_kernel_is_bit_for_bit_the_float32_formula(layer):
    """The committed float32 study records came from this kernel: in float32 it must stay exactly
    y = x·(W0 + Λb·B·Λd·A)ᵀ + bias with ΔW built in float32, and ∂L/∂b = M·d, ∂L/∂d = Mᵀ·b with M = (G·Aᵀ) ⊙ B."""
    _, fast = _pair(layer)
    x = torch.randn(4, 33, 48, requires_grad=True)
    y = fast(x)
    g = torch.randn_like(y)
    y.backward(g)
    w = fast.base.weight.detach().clone()
    expected_grads = {}
    for name, delta in fast.deltas.items():
        start, stop = fast.slices[name]
        A, B = delta.matrices()
        d, b = delta.vera_d.detach(), delta.vera_b.detach()
        w[start:stop] += (b[:, None] * B) @ (d[:, None] * A)
        m = ((g.reshape(-1, g.shape[-1])[:, start:stop].t() @ x.detach().reshape(-1, 48)) @ A.t()) * B
        expected_grads[name] = (m.t() @ b, m @ d)
    assert torch.equal(y, torch.nn.functional.linear(x.detach(), w, fast.base.bias.detach()))
    for name, (grad_d, grad_b) in expected_grads.items():
        assert torch.equal(fast.deltas[name].vera_d.grad, grad_d) and torch.equal(fast.deltas[name].vera_b.grad, grad_b)


def test_fast_path_under_bf16_autocast_saves_a_bf16_x_not_a_float32_copy():
    _, fast = _pair("query")
    x = torch.randn(4, 33, 48, requires_grad=True)  # float32, as a LayerNorm's output under autocast is
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fast(x)
    activations = [t for t in saved if t.shape == x.shape]
    assert activations and all(t.dtype == torch.bfloat16 for t in activations)
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32  # the input's gradient keeps the input's dtype
