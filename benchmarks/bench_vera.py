"""Training-step time and peak memory of VeRA against PEFT and the physical floor, measured in one run.

    python benchmarks/bench_vera.py                 # CPU: reduced depth and batch (same layer widths)
    python benchmarks/bench_vera.py --size full     # CUDA: RoBERTa-base / ViT-B sizes, 64x256 tokens, 64 images
    python benchmarks/bench_vera.py --check         # numerics of the merged-ΔW kernel vs the reference path

Rows: floor (every weight frozen, gradients flow back to the inputs: no adapter can be cheaper), full fine-tuning,
PEFT LoRA r=8, PEFT VeRA r=256/1024, veralab LoRA r=8, veralab VeRA r=256/1024 (auto kernel choice) and veralab
VeRA r=1024 on its reference (unmerged) path. Models are randomly initialised: nothing is downloaded.
Writes benchmarks/results_<device>.csv and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import veralab as vl  # noqa: E402

SIZES = {  # name: (text layers, batch, tokens, vit depth, images)
    "cpu": (2, 4, 128, 2, 4),
    "full": (12, 64, 256, 12, 64),
}


def text_model(layers):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    return RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=layers, hidden_size=768,
                                                          intermediate_size=3072, num_attention_heads=12,
                                                          vocab_size=50265, num_labels=2))


def vit_model(depth):
    import timm

    return timm.models.vision_transformer.VisionTransformer(img_size=224, patch_size=16, embed_dim=768, depth=depth,
                                                            num_heads=12, num_classes=100)


MODEL_NAMES = {"text": "RoBERTa-base", "vit": "ViT-B/16"}
# timm's fused qkv: veralab adapts only its q and v slices (the paper's q/v); PEFT adapts the whole qkv
VERALAB_TARGETS = {"text": ("query", "value"), "vit": ("qkv.q", "qkv.v")}
PEFT_TARGETS = {"text": ["query", "value"], "vit": ["qkv"]}


def build(kind, layers, depth):
    return text_model(layers) if kind == "text" else vit_model(depth)


def sample_inputs(kind, batch, tokens, images, device):
    if kind == "text":
        return {"input_ids": torch.randint(5, 50000, (batch, tokens), device=device)}
    return torch.randn(images, 3, 224, 224, device=device)


def run_model(model, inputs):
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def configure(model, method, kind):
    """Freeze/adapt `model` for one benchmark row; returns the model to run."""
    if method == "floor":
        for p in model.parameters():
            p.requires_grad_(False)
        embed = model.roberta.embeddings if kind == "text" else model.patch_embed
        embed.register_forward_hook(lambda m, i, o: o.requires_grad_(True))
        return model
    if method == "full":
        return model
    if method.startswith("peft"):
        import peft

        _, name, r = method.split("-")
        targets = PEFT_TARGETS[kind]
        config = (peft.LoraConfig(r=int(r), target_modules=targets) if name == "lora"
                  else peft.VeraConfig(r=int(r), target_modules=targets))
        return peft.get_peft_model(model, config)
    _, name, r, *path = method.split("-")
    return vl.add_adapters(model, vl.AdapterConfig(method=name, rank=int(r), target_modules=VERALAB_TARGETS[kind],
                                                   train_head=False, fast_path=path[0] if path else "auto"))


def step_time(model, inputs, device, steps, warmup=2):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4) if params else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)

    def one():
        with autocast:
            out = run_model(model, inputs)
            logits = out.logits if hasattr(out, "logits") else out
        logits.float().sum().backward()
        if optimizer:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    sync()
    ms = (time.perf_counter() - start) / steps * 1000
    # Peak memory is measured on CUDA only: the CPU allocator reuses freed blocks, so RSS does not show a step's peak.
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return ms, peak


METHODS = ["floor", "full", "peft-lora-8", "peft-vera-256", "peft-vera-1024", "veralab-lora-8", "veralab-vera-256",
           "veralab-vera-1024", "veralab-vera-1024-never"]


def benchmark(size, device, steps):
    layers, batch, tokens, depth, images = SIZES[size]
    rows = []
    for kind in ("text", "vit"):
        inputs = sample_inputs(kind, batch, tokens, images, device)
        for method in METHODS:
            torch.manual_seed(0)
            base = build(kind, layers, depth)
            model = configure(base, method, kind).to(device)
            ms, peak = step_time(model, inputs, device, steps)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            rows.append({"model": MODEL_NAMES[kind], "method": method,
                         "ms_per_step": round(ms, 1), "peak_mib": None if peak is None else round(peak, 1),
                         "trainable": trainable})
            print(f"{kind:5s} {method:26s} {ms:9.1f} ms  {peak or float('nan'):9.1f} MiB", flush=True)
            del model, base
        rows += merged_inference(kind, layers, depth, inputs, device, steps)
    frame = pd.DataFrame(rows)
    for _, group in frame.groupby("model"):
        train = group[~group["method"].str.startswith("inference")]
        infer = group[group["method"].str.startswith("inference")]
        ms = lambda g, name: g[g["method"] == name]["ms_per_step"].iloc[0]  # noqa: E731
        frame.loc[train.index, "x_floor"] = (train["ms_per_step"] / ms(train, "floor")).round(2)
        frame.loc[train.index, "x_peft_vera_1024"] = (train["ms_per_step"] / ms(train, "peft-vera-1024")).round(2)
        frame.loc[infer.index, "x_base_inference"] = (infer["ms_per_step"] / ms(infer, "inference-base")).round(2)
    return frame


def merged_inference(kind, layers, depth, inputs, device, steps):
    """Inference latency of a merged VeRA model against the plain base model (should be 1.00x)."""
    torch.manual_seed(0)
    plain = build(kind, layers, depth).to(device).eval()
    merged = build(kind, layers, depth)
    merged.load_state_dict(plain.state_dict())
    vl.add_adapters(merged, vl.AdapterConfig(rank=1024, target_modules=VERALAB_TARGETS[kind]))
    merged = vl.merge_adapters(merged.to(device).eval())
    out = []
    for name, model in (("inference-base", plain), ("inference-vera-merged", merged)):
        with torch.no_grad():
            for _ in range(2):
                run_model(model, inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                run_model(model, inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
        out.append({"model": MODEL_NAMES[kind], "method": name,
                    "ms_per_step": round((time.perf_counter() - start) / steps * 1000, 1), "peak_mib": None,
                    "trainable": 0})
    return out


def check(device):
    """The merged-ΔW kernel against the reference path on random inputs (float32 and bf16)."""
    worst = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        layers = []
        for fast in ("never", "always"):
            holder = torch.nn.Module()
            holder.query = torch.nn.Linear(768, 768)
            torch.manual_seed(1)
            holder.query.reset_parameters()
            vl.add_adapters(holder, vl.AdapterConfig(rank=1024, fast_path=fast, target_modules=("query",)))
            with torch.no_grad():
                holder.query.deltas["out"].vera_b.normal_(generator=torch.Generator().manual_seed(2))
            layers.append(holder.query.to(device))
        x = torch.randn(8, 256, 768, device=device)
        outs = []
        for layer in layers:
            ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
            with ctx:
                y = layer(x)
            y.float().pow(2).mean().backward()
            outs.append((y.float(), layer.deltas["out"].vera_d.grad, layer.deltas["out"].vera_b.grad))
        rel = [float((a - b).norm() / b.norm()) for a, b in zip(outs[1], outs[0])]
        worst[str(dtype)] = rel
        limit = 1e-5 if dtype == torch.float32 else 1e-2
        print(f"{dtype}: relative error output {rel[0]:.2e}, grad d {rel[1]:.2e}, grad b {rel[2]:.2e} "
              f"(limit {limit:g}) -> {'ok' if max(rel) <= limit else 'FAIL'}")
    return all(max(v) <= (1e-5 if "float32" in k else 1e-2) for k, v in worst.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SIZES), default=None, help="default: full on CUDA, cpu otherwise")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.check:
        sys.exit(0 if check(device) else 1)
    size = args.size or ("full" if device.type == "cuda" else "cpu")
    frame = benchmark(size, device, args.steps or (10 if device.type == "cuda" else 3))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    header = (f"device: {name}; size: {size} {SIZES[size]}; torch {torch.__version__}; "
              f"{time.strftime('%Y-%m-%d')}")
    print(header)
    print(frame.to_string(index=False))
    out = Path(__file__).resolve().parent / f"results_{device.type}"
    frame.to_csv(out.with_suffix(".csv"), index=False)
    out.with_suffix(".md").write_text(header + "\n\n" + frame.to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main()
