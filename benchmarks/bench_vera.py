"""Training-step time and peak memory of VeRA against PEFT and the physical floor, measured in one run.

    python benchmarks/bench_vera.py                 # CPU: size small, reduced depth and batch (same widths)
    python benchmarks/bench_vera.py --size medium   # CPU: same depth, compute-bound batch (4096 tokens per layer)
    python benchmarks/bench_vera.py --size full     # CUDA: RoBERTa-base / ViT-B sizes, 64x256 tokens, 64 images
    python benchmarks/bench_vera.py --check         # numerics of the merged-ΔW kernel vs the reference path
    python benchmarks/bench_vera.py --crossover     # one 768x768 r=1024 layer, merged vs reference, by token count
    python benchmarks/bench_vera.py --size tiny --rounds 1   # a smoke run of every row (benchmarks/gpu_run.sh)

Rows: floor (every weight frozen, gradients flow back to the inputs: no adapter can be cheaper), full fine-tuning,
PEFT LoRA r=8, PEFT VeRA r=256/1024, veralab LoRA r=8, veralab VeRA r=256/1024 (auto kernel choice) and veralab
VeRA r=1024 on its reference (unmerged) path. Models are randomly initialised: nothing is downloaded.
Memory: peak allocated MiB (CUDA only) and, on every device, the MiB of tensors autograd keeps for the backward
pass (activations; frozen weights and buffers excluded), which is what an adapter's training memory adds.
Writes <out>/results_<device>_<size>[_bf16].csv and .md (--out, default benchmarks/); --crossover writes
crossover_<device>_<precision>.csv and .md: where the merged kernel starts to pay, against prefer_merged_path's
FLOP model. --precision: as a run's (auto: bf16 on CUDA and on CPUs with native bf16).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import write_table  # noqa: E402

import veralab as vl  # noqa: E402
from veralab.core.fast import prefer_merged_path  # noqa: E402
from veralab.experiment.precision import PRECISIONS, autocast, resolve_precision  # noqa: E402

SIZES = {  # name: (text layers, batch, tokens, vit depth, images)
    "tiny": (1, 2, 32, 1, 2),
    "small": (2, 4, 128, 2, 4),
    "medium": (2, 16, 256, 2, 16),
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


def saved_activation_mib(model, inputs, device, precision):
    """MiB of distinct storages autograd saves for backward in one forward, model parameters and buffers excluded."""
    resident = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in resident:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast(device.type, precision):
        run_model(model, inputs)
    return sum(saved.values()) / 2**20


def training_step(model, inputs, device, precision):
    """One forward/backward/AdamW step of `model`, as a closure."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4) if params else None

    def step():
        with autocast(device.type, precision):
            out = run_model(model, inputs)
            logits = out.logits if hasattr(out, "logits") else out
        logits.float().sum().backward()
        if optimizer:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_times(steps_by_name, device, rounds):
    """Median ms per call of each closure, the closures interleaved round by round (rotating the order) so that
    drift in clock speed or memory state spreads over all rows instead of biasing the ones measured last."""
    names = list(steps_by_name)
    times = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            sync(device)
            start = time.perf_counter()
            steps_by_name[name]()
            sync(device)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


METHODS = ["floor", "full", "peft-lora-8", "peft-vera-256", "peft-vera-1024", "veralab-lora-8", "veralab-vera-256",
           "veralab-vera-1024", "veralab-vera-1024-never"]


def benchmark(size, device, rounds, precision, warmup=None):
    layers, batch, tokens, depth, images = SIZES[size]
    warmup = warmup if warmup is not None else (1 if size == "tiny" else 2)
    rows = []
    for kind in ("text", "vit"):
        inputs = sample_inputs(kind, batch, tokens, images, device)
        steps, kind_rows = {}, {}
        for method in METHODS:  # built one after another; each row's own memory is measured as it is added
            sync(device)
            resident_before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
            torch.manual_seed(0)
            model = configure(build(kind, layers, depth), method, kind).to(device)
            steps[method] = training_step(model, inputs, device, precision)
            for _ in range(warmup):
                steps[method]()
            peak = None
            if device.type == "cuda":
                sync(device)
                torch.cuda.reset_peak_memory_stats()
                steps[method]()
                peak = round((torch.cuda.max_memory_allocated() - resident_before) / 2**20, 1)
            saved = saved_activation_mib(model, inputs, device, precision)
            kind_rows[method] = {"model": MODEL_NAMES[kind], "method": method, "peak_mib": peak,
                                 "saved_for_backward_mib": round(saved, 1),
                                 "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
        for method, ms in median_times(steps, device, rounds).items():
            kind_rows[method]["ms_per_step"] = round(ms, 1)
            print(f"{kind:5s} {method:26s} {ms:9.1f} ms", flush=True)
        rows += kind_rows.values()
        del steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rows += merged_inference(kind, layers, depth, inputs, device, rounds)
    frame = pd.DataFrame(rows)[["model", "method", "ms_per_step", "peak_mib", "saved_for_backward_mib", "trainable"]]
    for _, group in frame.groupby("model"):
        train = group[~group["method"].str.startswith("inference")]
        infer = group[group["method"].str.startswith("inference")]
        at = lambda g, name, col="ms_per_step": g[g["method"] == name][col].iloc[0]  # noqa: E731
        frame.loc[train.index, "x_floor"] = (train["ms_per_step"] / at(train, "floor")).round(2)
        frame.loc[train.index, "x_peft_vera_1024"] = (train["ms_per_step"] / at(train, "peft-vera-1024")).round(2)
        frame.loc[train.index, "saved_x_peft_vera_1024"] = (
            train["saved_for_backward_mib"] / at(train, "peft-vera-1024", "saved_for_backward_mib")).round(2)
        frame.loc[infer.index, "x_base_inference"] = (infer["ms_per_step"] / at(infer, "inference-base")).round(2)
    return frame


def merged_inference(kind, layers, depth, inputs, device, rounds):
    """Inference latency of a merged VeRA model against the plain base model (should be 1.00x)."""
    torch.manual_seed(0)
    plain = build(kind, layers, depth).to(device).eval()
    merged = build(kind, layers, depth)
    merged.load_state_dict(plain.state_dict())
    vl.add_adapters(merged, vl.AdapterConfig(rank=1024, target_modules=VERALAB_TARGETS[kind]))
    merged = vl.merge_adapters(merged.to(device).eval())
    calls = {}
    for name, model in (("inference-base", plain), ("inference-vera-merged", merged)):
        calls[name] = torch.no_grad()(lambda model=model: run_model(model, inputs))
        for _ in range(2):
            calls[name]()
    return [{"model": MODEL_NAMES[kind], "method": name, "ms_per_step": round(ms, 1), "trainable": 0}
            for name, ms in median_times(calls, device, rounds * 2).items()]


CHECK_LAYERS = {  # label: (module name, target modules, out features); input width 768, r=1024
    "query 768->768": ("query", ("query",), 768),
    "fused qkv 768->2304 (q, v)": ("qkv", ("qkv.q", "qkv.v"), 2304),
}


def _vera_layer(name, targets, out_features, fast_path, device, in_features=768):
    torch.manual_seed(1)
    holder = torch.nn.Module()
    holder.add_module(name, torch.nn.Linear(in_features, out_features))
    vl.add_adapters(holder, vl.AdapterConfig(rank=1024, fast_path=fast_path, target_modules=targets))
    layer = getattr(holder, name)
    with torch.no_grad():
        for delta in layer.deltas.values():  # b starts at zero; random b makes every gradient non-trivial
            delta.vera_b.normal_(generator=torch.Generator().manual_seed(2))
    return layer.to(device)


def _output_and_vector_grads(layer, x, bf16):
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        y = layer(x)
    y.float().pow(2).mean().backward()
    grads = [torch.cat([delta.get_parameter(v).grad for delta in layer.deltas.values()]) for v in ("vera_d", "vera_b")]
    return [y.detach().float(), *grads]


def check(device):
    """The merged-ΔW kernel (bf16 autocast and float32) against the float32 reference path on random inputs."""
    ok = True
    for label, (name, targets, out_features) in CHECK_LAYERS.items():
        x = torch.randn(8, 256, 768, device=device, generator=torch.Generator(device).manual_seed(0))
        reference = _output_and_vector_grads(_vera_layer(name, targets, out_features, "never", device), x, False)
        for bf16, limit in ((False, 1e-5), (True, 1e-2)):
            fast = _output_and_vector_grads(_vera_layer(name, targets, out_features, "always", device), x, bf16)
            rel = [float((a - b).norm() / b.norm()) for a, b in zip(fast, reference)]
            ok &= max(rel) <= limit
            print(f"{label:28s} {'bf16' if bf16 else 'fp32'}: relative error output {rel[0]:.2e}, grad d {rel[1]:.2e}, "
                  f"grad b {rel[2]:.2e} (limit {limit:g}) -> {'ok' if max(rel) <= limit else 'FAIL'}")
    return ok


CROSSOVER_TOKENS = {"cuda": (256, 512, 1024, 2048, 4096, 8192, 16384), "cpu": (128, 256, 512, 1024, 2048)}


def crossover(device, rounds, precision, tokens=None, width=768, rank=1024):
    """Training-step time (forward, backward to x, d and b) of one width x width VeRA layer at rank `rank`, merged
    kernel vs reference path, by token count, under the training autocast; with what prefer_merged_path chooses."""
    rows = []
    for t in tokens or CROSSOVER_TOKENS[device.type]:
        x = torch.randn(t, width, device=device, requires_grad=True)
        steps = {}
        for path in ("always", "never"):
            layer = _vera_layer("query", ("query",), width, path, device, in_features=width)

            def step(layer=layer, x=x):
                with autocast(device.type, precision):
                    y = layer(x)
                y.float().sum().backward()

            step()
            steps[path] = step
        ms = median_times(steps, device, rounds)
        model = prefer_merged_path(t, width, width, rank, training=True,
                                   cpu_bf16=device.type == "cpu" and precision == "bf16")
        faster = "merged" if ms["always"] < ms["never"] else "reference"
        rows.append({"tokens": t, "merged_ms": round(ms["always"], 3), "reference_ms": round(ms["never"], 3),
                     "merged_x_reference": round(ms["always"] / ms["never"], 2), "faster": faster,
                     "model_chooses": "merged" if model else "reference",
                     "agrees": (faster == "merged") == model})
        print(f"{t:6d} tokens: merged {ms['always']:.3f} ms, reference {ms['never']:.3f} ms -> model chooses "
              f"{'merged' if model else 'reference'}", flush=True)
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SIZES), default=None, help="default: full on CUDA, small otherwise")
    parser.add_argument("--rounds", type=int, default=None, help="timed steps per row (interleaved); default 20 "
                        "on CUDA, 7 on CPU")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--crossover", action="store_true", help="merged vs reference by token count, one layer")
    parser.add_argument("--tokens", nargs="+", type=int, default=None, help="--crossover's token counts")
    parser.add_argument("--width", type=int, default=768, help="--crossover's layer width (MiniLM's: 384)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="as a run's: auto is bf16 on CUDA "
                        "and on CPUs with native bf16 (AMX, AVX512-BF16), float32 elsewhere")
    parser.add_argument("--out", default=None, help="folder for the tables (default: benchmarks/)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(args.precision, device.type)
    if args.check:
        sys.exit(0 if check(device) else 1)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    rounds = args.rounds or (20 if device.type == "cuda" else 7)
    if args.crossover:
        frame = crossover(device, rounds, precision, args.tokens, width=args.width)
        header = (f"device: {name}; one {args.width}x{args.width} VeRA r=1024 layer, training step (forward + "
                  f"backward), {precision}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
        width = "" if args.width == 768 else f"_{args.width}"
        write_table(frame, header, f"crossover_{device.type}_{precision}{width}", out_dir=args.out)
        return
    size = args.size or ("full" if device.type == "cuda" else "small")
    frame = benchmark(size, device, rounds, precision)
    header = (f"device: {name}; size: {size} {SIZES[size]}; {precision}; torch {torch.__version__}; "
              f"{time.strftime('%Y-%m-%d')}")
    write_table(frame, header, f"results_{device.type}_{size}" + ("_bf16" if precision == "bf16" else ""),
                out_dir=args.out)


if __name__ == "__main__":
    main()
