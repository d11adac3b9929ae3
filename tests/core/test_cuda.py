"""The CUDA paths: the merged-ΔW kernel against the reference path, a training step and a whole run, merging,
saving and loading, PEFT export and sweep workers' GPU pinning, all on a GPU.

Every test here needs one: they skip without CUDA (CI has none). benchmarks/gpu_run.sh runs them on the GPU machine
(see BENCHMARKS.md, "GPU kit"); `pytest -m cuda` selects them.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

import veralab as vl
from tests.conftest import TinyEncoder
from veralab.core.layers import AdaptedLinear
from veralab.experiment.train import TrainingDiverged, fit, to_device

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")
LAYERS = {  # label: (module name, target modules, out features); input width 768, r=1024 (the paper's RoBERTa rank)
    "query": ("query", ("query",), 768),
    "fused qkv (q, v)": ("qkv", ("qkv.q", "qkv.v"), 2304),
}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def vera_layer(layer: str, fast_path: str, b_scale: float = 1.0) -> AdaptedLinear:
    name, targets, out_features = LAYERS[layer]
    torch.manual_seed(1)
    holder = torch.nn.Module()
    holder.add_module(name, torch.nn.Linear(768, out_features))
    vl.add_adapters(holder, vl.AdapterConfig(rank=1024, fast_path=fast_path, target_modules=targets))
    adapted = getattr(holder, name)
    with torch.no_grad():
        for delta in adapted.deltas.values():  # b starts at 0; random b makes every gradient non-trivial
            delta.vera_b.normal_(generator=torch.Generator().manual_seed(2)).mul_(b_scale)
    return adapted.to(CUDA)


def output_and_grads(layer: AdaptedLinear, x: torch.Tensor, bf16: bool) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        y = layer(x)
    y.float().pow(2).mean().backward()
    grads = [torch.cat([d.get_parameter(v).grad for d in layer.deltas.values()]) for v in ("vera_d", "vera_b")]
    return [y.detach().float(), x.grad, *grads]


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 means fp32: TF32 off for the duration of each test (torch's default, asserted rather than assumed)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("layer", list(LAYERS))
def test_merged_kernel_matches_the_reference_path_on_cuda_in_float32(layer):
    x = torch.randn(8, 256, 768, device=CUDA, generator=torch.Generator(CUDA).manual_seed(0))
    reference = output_and_grads(vera_layer(layer, "never"), x, bf16=False)
    merged = output_and_grads(vera_layer(layer, "always"), x, bf16=False)
    for what, a, b in zip(("output", "grad x", "grad d", "grad b"), merged, reference):
        assert a.dtype == torch.float32 and rel(a, b) <= 1e-5, (what, rel(a, b))


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("b_scale", [1.0, 1e-2])
def test_merged_kernel_under_bf16_autocast_is_within_1e_2_of_float32(layer, b_scale):
    x = torch.randn(8, 256, 768, device=CUDA, generator=torch.Generator(CUDA).manual_seed(0))
    reference = output_and_grads(vera_layer(layer, "never", b_scale), x, bf16=False)
    merged = output_and_grads(vera_layer(layer, "always", b_scale), x, bf16=True)
    assert merged[0].dtype == torch.float32  # (cast above) the layer itself returned bf16
    for what, a, b in zip(("output", "grad x", "grad d", "grad b"), merged, reference):
        assert rel(a, b) <= 1e-2, (what, rel(a, b))


def test_merged_kernel_saves_x_in_bf16_under_autocast_on_cuda():
    layer = vera_layer("query", "always")
    x = torch.randn(4, 64, 768, device=CUDA)  # float32, as a LayerNorm's output under autocast is
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            layer(x.requires_grad_(True))
    activations = [t for t in saved if t.shape == x.shape]
    assert activations and all(t.dtype == torch.bfloat16 for t in activations)


def test_a_training_step_on_cuda_changes_the_vectors_and_keeps_them_float32():
    model = vl.add_adapters(TinyEncoder(width=64, hidden=96), vl.AdapterConfig(rank=32, fast_path="always")).to(CUDA)
    vectors = {n: p.detach().clone() for n, p in model.named_parameters() if "vera_" in n}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, labels = torch.randn(8, 128, 64, device=CUDA), torch.randint(0, 3, (8,), device=CUDA)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x).float(), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    for name, before in vectors.items():
        after = model.get_parameter(name)
        assert after.dtype == torch.float32 and after.is_cuda and not torch.equal(after, before), name


def test_fit_on_cuda_reads_the_loss_every_few_steps_and_names_the_diverging_step():
    model = torch.nn.Linear(4, 2).to(CUDA)
    data = [(torch.randn(3, 4, device=CUDA), torch.tensor([0, 1, 0], device=CUDA)) for _ in range(7)]
    calls = []

    def forward(m, x):
        calls.append(1)
        out = m(x)
        return out * float("nan") if len(calls) == 5 else out

    groups = [{"params": list(model.parameters()), "lr": 1e-3}]
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 5; try a lower learning rate"):
        fit(model, lambda epoch: iter(data), 7, lambda: {"accuracy": 0.0}, epochs=1, groups=groups,
            warmup_ratio=0.0, max_grad_norm=1.0, device=CUDA, forward=forward, headline="accuracy")
    assert len(calls) == 7  # read at the epoch's end (sync_every is 25 on a GPU): one host sync, not 14


def test_evaluation_runs_under_bf16_autocast_on_cuda():
    model = torch.nn.Linear(4, 2).to(CUDA)
    seen = []

    def evaluate():
        seen.append((torch.is_autocast_enabled("cuda"), model(torch.randn(2, 4, device=CUDA)).dtype))
        return {"accuracy": 1.0}

    fit(model, lambda epoch: iter([(torch.randn(3, 4, device=CUDA), torch.tensor([0, 1, 0], device=CUDA))]), 1,
        evaluate, epochs=1, groups=[{"params": list(model.parameters()), "lr": 1e-3}], warmup_ratio=0.0,
        max_grad_norm=1.0, device=CUDA, forward=lambda m, x: m(x), headline="accuracy")
    assert seen == [(True, torch.bfloat16)]


def test_to_device_copies_from_pinned_memory_without_blocking():
    batch = {"input_ids": torch.arange(6).view(2, 3), "labels": torch.tensor([1, 0])}
    moved = to_device(batch, CUDA)
    torch.cuda.synchronize()
    assert all(v.is_cuda for v in moved.values()) and torch.equal(moved["input_ids"].cpu(), batch["input_ids"])


def test_merge_and_unmerge_on_cuda():
    model = vl.add_adapters(TinyEncoder(), vl.AdapterConfig(rank=8)).to(CUDA).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.5)
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if "base.weight" in n}
        x = torch.randn(2, 5, 16, device=CUDA)
        y = model(x)
        vl.merge_adapters(model)
        assert rel(model(x), y) <= 1e-5
        vl.unmerge_adapters(model)
        assert rel(model(x), y) <= 1e-5
    for name, before in weights.items():
        assert rel(model.get_parameter(name), before) <= 1e-6, name


def test_save_on_cuda_load_on_cuda_and_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    model = TinyEncoder()
    fresh_gpu, fresh_cpu = TinyEncoder(), TinyEncoder()
    fresh_gpu.load_state_dict(model.state_dict())
    fresh_cpu.load_state_dict(model.state_dict())
    vl.add_adapters(model, vl.AdapterConfig(rank=6)).to(CUDA).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.5)
    vl.save_adapter(model, tmp_path / "a")
    vl.load_adapter(fresh_gpu.to(CUDA).eval(), tmp_path / "a")
    vl.load_adapter(fresh_cpu.eval(), tmp_path / "a")
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        y = model(x.to(CUDA))
        assert torch.equal(fresh_gpu(x.to(CUDA)), y)
        assert rel(fresh_cpu(x), y.cpu()) <= 1e-5


def test_peft_export_from_a_cuda_model_loads_in_peft_on_cuda(minilm_path, tmp_path):
    peft = pytest.importorskip("peft")
    from veralab.experiment.models import load_text_model

    model, tokenizer = load_text_model(str(minilm_path), num_labels=2)
    base, _ = load_text_model(str(minilm_path), num_labels=2)
    base.load_state_dict(model.state_dict())
    vl.add_adapters(model, vl.AdapterConfig(rank=32, projection_init="kaiming_normal")).to(CUDA).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.5)
    vl.export_peft(model, tmp_path / "peft")
    assert json.loads((tmp_path / "peft" / "adapter_config.json").read_text())["peft_type"] == "VERA"
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "peft").to(CUDA).eval()  # loaded as PEFT users do
    batch = to_device(dict(tokenizer(["a gripping, funny film", "dull and far too long"], return_tensors="pt",
                                     padding=True)), CUDA)
    with torch.no_grad():
        ours, peft_logits = model(**batch).logits, theirs(**batch).logits
    assert rel(peft_logits, ours) <= 1e-5
    assert not torch.allclose(ours, ours.mean())


def test_a_whole_run_on_cuda_records_the_gpu(tmp_path):
    from veralab.experiment import run_experiment

    record = run_experiment({"task": "digits", "method": "vera", "rank": 16, "epochs": 2, "shots_per_class": 10,
                             "device": "cuda", "output_dir": str(tmp_path)})
    assert record["status"] == "ok" and record["device"]["type"] == "cuda" and record["device"]["name"]
    assert record["memory"]["cuda_peak_mib"] > 0 and record["final"]["accuracy"] > 0.1


def test_a_sweep_worker_sees_only_its_gpu():
    from veralab.studies.sweep import worker_env

    env = {**os.environ, **worker_env(0, 2)}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"
