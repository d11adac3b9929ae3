"""The adapter core: the VeRA formula, freezing, merging, counting, the projection PRNG, and bad input."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import veralab as vl
from tests.conftest import assert_close_to_rounding
from veralab.core.inject import adapted_layers
from veralab.core.layers import VeraDelta


def _randomize_vectors(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def test_vera_layer_equals_the_formula(tiny):
    x = torch.randn(3, 5, 16)
    base = tiny.blocks[1].value
    w0, bias = base.weight.detach().clone(), base.bias.detach().clone()
    vl.add_adapters(tiny, vl.AdapterConfig(rank=7, fast_path="never"))
    _randomize_vectors(tiny)
    layer = tiny.blocks[1].value
    delta = layer.deltas["out"]
    A, B = delta.projection.A[:, :16], delta.projection.B[:24]
    expected = x @ w0.T + bias + (torch.diag(delta.vera_b) @ B @ torch.diag(delta.vera_d) @ A @ x.unsqueeze(-1)).squeeze(-1)
    assert_close_to_rounding(layer(x), expected)


def test_b_zero_at_init_leaves_a_real_model_unchanged(minilm):
    ids = torch.randint(0, 30000, (2, 12))
    with torch.no_grad():
        before = minilm(ids).logits
        vl.add_adapters(minilm, vl.AdapterConfig(rank=256))
        after = minilm(ids).logits
    assert torch.equal(before, after)
    assert len(adapted_layers(minilm)) == 12  # query and value in each of the 6 layers


def test_only_vectors_and_head_receive_gradients(tiny):
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4))
    tiny(torch.randn(2, 3, 16)).sum().backward()
    with_grad = {n for n, p in tiny.named_parameters() if p.grad is not None}
    assert with_grad and all(n.endswith(("vera_d", "vera_b")) or n.startswith("classifier.") for n in with_grad)
    assert {"classifier.weight", "classifier.bias"} <= with_grad
    assert not any(n.endswith((".A", ".B")) for n, _ in tiny.named_parameters())  # A/B are buffers
    projection = tiny.blocks[0].query.deltas["out"].projection
    assert not projection.A.requires_grad and projection.A.grad is None


def test_head_only_and_full(tiny):
    vl.add_adapters(tiny, vl.AdapterConfig(method="head"))
    assert {n for n, p in tiny.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    torch.manual_seed(0)
    full = vl.add_adapters(type(tiny)(), vl.AdapterConfig(method="full"))
    assert all(p.requires_grad for p in full.parameters())


@pytest.mark.parametrize("method", ["vera", "lora"])
def test_merge_then_forward_equals_unmerged(tiny, method):
    vl.add_adapters(tiny, vl.AdapterConfig(method=method, rank=6))
    _randomize_vectors(tiny)
    x = torch.randn(4, 3, 16)
    with torch.no_grad():
        unmerged = tiny(x)
        vl.merge_adapters(tiny)
        assert all(layer.merged for layer in adapted_layers(tiny).values())
        merged = tiny(x)
        vl.unmerge_adapters(tiny)
        again = tiny(x)
    assert_close_to_rounding(merged, unmerged)
    assert_close_to_rounding(again, unmerged)


def test_merged_layer_is_the_plain_base_layer(tiny):
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4))
    _randomize_vectors(tiny)
    layer = tiny.blocks[0].query
    vl.merge_adapters(tiny)
    x = torch.randn(2, 16)
    assert torch.equal(layer(x), layer.base(x))


def test_same_seed_gives_identical_projections_in_two_processes():
    code = ("import torch, veralab as vl; from tests.conftest import TinyEncoder; m = TinyEncoder(); "
            "vl.add_adapters(m, vl.AdapterConfig(rank=8, projection_prng_key=123)); p = m.blocks[0].query.deltas['out'].projection; "
            "print(float(p.A.double().sum()), float(p.B.double().sum()), p.A.flatten()[:3].tolist())")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert outs[0] == outs[1] and outs[0].strip()
    other = subprocess.run([sys.executable, "-c", code.replace("key=123", "key=124")], capture_output=True,
                           text=True, check=True).stdout
    assert other != outs[0]


def test_projection_matches_peft_kaiming_uniform(tiny):
    peft_vera = pytest.importorskip("peft.tuners.vera.model")
    vl.add_adapters(tiny, vl.AdapterConfig(rank=8, projection_prng_key=5))
    p = tiny.blocks[0].query.deltas["out"].projection
    g = torch.Generator().manual_seed(5)
    A = peft_vera._kaiming_init((8, 16), generator=g)
    B = peft_vera._kaiming_init((24, 8), generator=g)
    assert torch.equal(p.A, A) and torch.equal(p.B, B)


@pytest.mark.parametrize("init", ["kaiming_uniform", "kaiming_normal", "uniform"])
def test_projection_inits_have_their_distribution(init):
    from veralab.core.layers import random_projection

    t = random_projection((256, 400), init, torch.Generator().manual_seed(0))
    if init == "uniform":
        assert t.min() >= 0 and t.max() <= 1 and abs(t.mean() - 0.5) < 0.01
    else:
        assert abs(t.mean()) < 0.01 and abs(t.std() - (2 / 400) ** 0.5) < 0.002
        assert (t.abs().max() <= (6 / 400) ** 0.5 + 1e-6) == (init == "kaiming_uniform")


def test_shared_versus_independent_projections(tiny):
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4))
    shared = {id(d.projection) for layer in adapted_layers(tiny).values() for d in layer.deltas.values()}
    assert len(shared) == 1
    torch.manual_seed(0)
    other = vl.add_adapters(type(tiny)(), vl.AdapterConfig(rank=4, shared=False))
    projections = [d.projection for layer in adapted_layers(other).values() for d in layer.deltas.values()]
    assert len({id(p) for p in projections}) == 4
    assert not torch.equal(projections[0].A, projections[1].A)


def test_shared_slices_are_contiguous_and_made_once(tiny):
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4))
    delta = tiny.blocks[0].query.deltas["out"]
    A1, B1 = delta.matrices()
    tiny(torch.randn(1, 2, 16))
    A2, B2 = delta.matrices()
    assert A1.is_contiguous() and B1.is_contiguous()
    assert A1.data_ptr() == A2.data_ptr() and B1.data_ptr() == B2.data_ptr()


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_trainable_counts_match_closed_forms(tiny):
    # Adapted: query (16->16) x2, value (16->16), value (16->24).  VeRA: sum(m + r); LoRA: sum r(m + n).
    shapes = [(16, 16), (16, 16), (16, 16), (24, 16)]  # (m=out, n=in)
    r = 5
    vl.add_adapters(tiny, vl.AdapterConfig(rank=r, train_head=False))
    assert _trainable(tiny) == sum(m + r for m, _ in shapes)
    assert vl.count_parameters(tiny)["trainable"] == sum(m + r for m, _ in shapes)
    torch.manual_seed(0)
    lora = vl.add_adapters(type(tiny)(), vl.AdapterConfig(method="lora", rank=r, train_head=False))
    assert _trainable(lora) == sum(r * (m + n) for m, n in shapes)


def test_roberta_base_count_is_the_papers_43008():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    model = RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=12, hidden_size=768,
                                                           intermediate_size=3072, vocab_size=1000))
    vl.add_adapters(model, vl.AdapterConfig(rank=1024))  # the head trains too, as in the paper's GLUE runs
    counts = vl.count_parameters(model)
    head = 768 * 768 + 768 + 768 * 2 + 2  # RoBERTa's classification head: dense + out_proj
    assert counts["adapter"] == 24 * (768 + 1024) == 43008  # the paper counts the adapter only
    assert counts["head"] == head and counts["trainable"] == 43008 + head
    assert counts["adapter_bytes"] < 5_000_000  # megabytes at most: A/B are regenerated from the seed


@pytest.mark.parametrize("method,adapter", [("lora", 4 * (16 + 16) * 3 + 4 * (24 + 16)), ("head", 0)])
def test_adapter_and_head_counts_are_separate(tiny, method, adapter):
    vl.add_adapters(tiny, vl.AdapterConfig(method=method, rank=4))
    counts = vl.count_parameters(tiny)
    assert counts["head"] == 16 * 3 + 3 and counts["adapter"] + counts["head"] == counts["trainable"]
    assert counts["adapter"] == adapter


@pytest.mark.parametrize("train_d,train_b,d_init", [(True, False, 0.0), (False, True, 0.1)])
def test_single_vector_ablations(tiny, train_d, train_b, d_init):
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        before = tiny(x)
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4, train_d=train_d, train_b=train_b, d_init=d_init))
    delta = tiny.blocks[0].query.deltas["out"]
    removed, kept = ("vera_b", "vera_d") if not train_b else ("vera_d", "vera_b")
    assert not isinstance(getattr(delta, removed), nn.Parameter) and torch.all(getattr(delta, removed) == 1)
    assert isinstance(getattr(delta, kept), nn.Parameter) and torch.all(getattr(delta, kept) == 0)
    with torch.no_grad():
        assert torch.equal(tiny(x), before)  # ΔW = 0 at step 0 in both ablations
    tiny(x).sum().backward()
    assert getattr(delta, kept).grad.abs().sum() > 0


def test_timm_vit_qkv_adapts_only_q_and_v_slices():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(img_size=16, patch_size=8, embed_dim=24, depth=2,
                                                            num_heads=2, num_classes=3)
    qkv = vit.blocks[0].attn.qkv
    vl.add_adapters(vit, vl.AdapterConfig(rank=4))
    layer = vit.blocks[0].attn.qkv
    assert set(layer.slices) == {"q", "v"} and layer.slices == {"q": (0, 24), "v": (48, 72)}
    _randomize_vectors(vit)
    x = torch.randn(2, 5, 24)
    with torch.no_grad():
        y, y0 = layer(x), qkv(x)
    assert torch.equal(y[..., 24:48], y0[..., 24:48])  # k untouched
    assert not torch.allclose(y[..., :24], y0[..., :24]) and not torch.allclose(y[..., 48:], y0[..., 48:])
    assert vl.count_parameters(vit)["trainable"] == 2 * 2 * (24 + 4) + 24 * 3 + 3
    vit(torch.randn(1, 3, 16, 16)).sum().backward()


def test_hf_vit_defaults_to_its_q_and_v():
    from transformers import ViTConfig, ViTForImageClassification

    model = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                intermediate_size=64, image_size=16, patch_size=8, num_labels=3))
    vl.add_adapters(model, vl.AdapterConfig(rank=4))
    names = sorted(adapted_layers(model))
    assert len(names) == 4 and all(n.endswith(("query", "value", "q_proj", "v_proj")) for n in names)  # by version
    assert {n for n, p in model.named_parameters() if p.requires_grad and "classifier" in n}


# ---- bad input ------------------------------------------------------------------------------------------------

def test_unknown_target_names_the_linear_modules(tiny):
    with pytest.raises(vl.ConfigError, match=r"'qq_proj' matched no nn.Linear.*'key'.*'query'"):
        vl.add_adapters(tiny, vl.AdapterConfig(target_modules=("qq_proj",)))


def test_lora_rank_larger_than_layer_allows(tiny):
    with pytest.raises(vl.ConfigError, match=r"LoRA rank 17 is larger than layer 'blocks.0.query' allows.*<= 16"):
        vl.add_adapters(tiny, vl.AdapterConfig(method="lora", rank=17))
    vl.add_adapters(tiny, vl.AdapterConfig(method="vera", rank=64))  # VeRA may exceed the width, as the paper does


@pytest.mark.parametrize("kwargs,message", [
    ({"projection_init": "xavier"}, r"unknown projection_init 'xavier'; allowed: kaiming_uniform, kaiming_normal, uniform"),
    ({"method": "dora"}, r"unknown method 'dora'; allowed: vera, lora, head, full"),
    ({"rank": 0}, r"rank must be a positive integer, got 0"),
    ({"train_d": False, "train_b": False}, r"train_d=False and train_b=False together leave VeRA nothing to train"),
    ({"train_b": False}, r"train_b=False fixes b to ones.*d_init=0.0 \(got d_init=0.1\)"),
])
def test_bad_config_values(kwargs, message):
    with pytest.raises(vl.ConfigError, match=message):
        vl.AdapterConfig(**kwargs)


def test_no_default_targets_says_what_exists():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(vl.ConfigError, match=r"no default target_modules for Sequential.*pass target_modules"):
        vl.add_adapters(model, vl.AdapterConfig())


def test_fast_path_is_a_vera_delta_option(tiny):
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4, fast_path="always"))
    assert all(isinstance(d, VeraDelta) and d.fast_path == "always"
               for layer in adapted_layers(tiny).values() for d in layer.deltas.values())
