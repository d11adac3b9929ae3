"""What bf16 autocast does to VeRA training through the merged-ΔW kernel, measured against the reference path.

    python benchmarks/bench_bf16_training.py                              # stack, 3 seeds, 200 steps (~10 min)
    python benchmarks/bench_bf16_training.py --setup minilm2 --steps 300 --seeds 0 1 2    # about an hour here
    python benchmarks/bench_bf16_training.py --setup stack --steps 60 --seeds 0 1 2 3 4 5 --batch-size 16

Under bf16 autocast the merged kernel rounds W0 + ΔW to bf16 once per weight, so a ΔW far below W0's bf16 spacing
lands on W0's grid; the reference (unmerged) path computes x·W0ᵀ and the delta's product separately, each in bf16.
This measures what that does to TRAINING, three ways:

1. trajectories: per setup and seed, a float32 run on the reference path (the truth) and, from the same initial
   weights and batch order, bf16-autocast runs on the reference path and on the merged kernel (and a float32 run on
   the merged kernel: the round-off floor). Against the truth: loss (mean and max over steps of |loss - loss_fp32|),
   and d, b (||v - v_fp32|| / ||v_fp32|| of the trained vectors at the end). x_bf16_reference: the merged kernel's
   worst deviation over the reference path's own (1 = as good). bf16 runs drift from float32 chaotically, so this
   ratio scatters from seed to seed even between two equally exact implementations.
2. steps: along the float32 trajectory (no drift), every 10 steps one bf16 forward and backward of each path from
   the same state: relative error of the loss and of the d and b gradients (mean over the checkpoints).
3. contribution: one layer, the adapter's contribution y - x·W0ᵀ and the whole output against float32, at several
   |b| (W0 = MiniLM's layer-0 query, d = 0.1).

Setups: "stack", MiniLM's real token embeddings, embedding LayerNorm and layer-0 query and value weights as a
2-layer stack (real widths and magnitudes) with a trained head; "minilm2", the embedded all-MiniLM-L6-v2 cut to its
first 2 layers; "minilm", all 6. All: Rotten Tomatoes snippets, VeRA r=256 on query and value, b starting at 0
(VeRA's init, so ΔW starts far below W0's bf16 spacing), the default profile's learning rates, dropout off.
Writes bf16_training_cpu, bf16_steps_cpu and bf16_contribution_cpu (.csv, .md) under --out (default benchmarks/).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import write_table  # noqa: E402

import veralab as vl  # noqa: E402
from veralab.core.inject import adapted_layers  # noqa: E402
from veralab.experiment.train import warmup_linear  # noqa: E402

RANK = 256
RUNS = {  # name: (fast_path, bf16)
    "fp32 reference": ("never", False),
    "fp32 merged": ("always", False),
    "bf16 reference": ("never", True),
    "bf16 merged": ("always", True),
}


def vectors(model) -> dict[str, torch.Tensor]:
    """Every adapted layer's d and b, concatenated in module order."""
    out = {"d": [], "b": []}
    for layer in adapted_layers(model).values():
        for delta in layer.deltas.values():
            out["d"].append(delta.vera_d.detach().float().flatten())
            out["b"].append(delta.vera_b.detach().float().flatten())
    return {k: torch.cat(v) for k, v in out.items()}


def delta_ratio(model) -> float:
    """||ΔW|| / ||W0|| over the adapted layers."""
    dw = w0 = 0.0
    for layer in adapted_layers(model).values():
        for name, delta in layer.deltas.items():
            start, stop = layer.slices[name]
            dw += float(delta.delta_weight().detach().pow(2).sum())
            w0 += float(layer.base.weight.detach()[start:stop].pow(2).sum())
    return math.sqrt(dw / w0)


def train(model, batches, forward, loss_fn, *, steps, lr, head_lr, bf16, warmup_ratio=0.06, max_grad_norm=1.0):
    """The training loop of veralab.experiment.train.fit (AdamW, linear warmup and decay, clipping) on the CPU, with
    bf16 autocast when asked (fit uses it on CUDA only). Returns per-step losses and the final vectors."""
    adapter = [p for n, p in model.named_parameters() if p.requires_grad and "vera_" in n]
    head = [p for n, p in model.named_parameters() if p.requires_grad and "vera_" not in n]
    groups = [{"params": adapter, "lr": lr}] + ([{"params": head, "lr": head_lr}] if head else [])
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    scheduler = warmup_linear(optimizer, int(warmup_ratio * steps), steps)
    params = adapter + head
    losses = []
    model.train()
    for step in range(steps):
        inputs, labels = batches(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(forward(model, inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return {"loss": np.array(losses), **vectors(model), "delta_ratio": delta_ratio(model)}


def step_errors(setup: str, seed: int, steps: int, every: int, **setup_args) -> pd.DataFrame:
    """Per-step fidelity along the float32 trajectory, free of the chaos that makes whole trajectories drift: train
    in float32 (reference path); every `every` steps, load that state into a merged and a reference model and take
    one bf16-autocast forward and backward on that step's batch. Rows: step, ||ΔW||/||W0||, and per path the
    relative error of the loss and of the d and b gradients against float32."""
    make_model, batches, forward, loss_fn, lr, head_lr = SETUPS[setup](seed, **setup_args)
    torch.manual_seed(seed)
    truth = make_model("never")
    probes = {"reference": make_model("never"), "merged": make_model("always")}
    adapter = [p for n, p in truth.named_parameters() if p.requires_grad and "vera_" in n]
    head = [p for n, p in truth.named_parameters() if p.requires_grad and "vera_" not in n]
    optimizer = torch.optim.AdamW([{"params": adapter, "lr": lr}] + ([{"params": head, "lr": head_lr}] if head else []),
                                  weight_decay=0.0)
    scheduler = warmup_linear(optimizer, int(0.06 * steps), steps)

    def loss_and_grads(model, inputs, labels, bf16):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(forward(model, inputs), labels)
        loss.backward()
        grads = {k: torch.cat([p.grad.flatten() for n, p in model.named_parameters() if f"vera_{k}" in n])
                 for k in ("d", "b")}
        return loss.item(), grads

    rows = []
    truth.train()
    for step in range(steps):
        inputs, labels = batches(step)
        if step % every == 0:
            loss32, grads32 = loss_and_grads(truth, inputs, labels, False)
            row = {"step": step, "delta_ratio": delta_ratio(truth)}
            for name, model in probes.items():
                model.load_state_dict(truth.state_dict())
                model.train()
                loss16, grads16 = loss_and_grads(model, inputs, labels, True)
                row[f"loss_err_{name}"] = abs(loss16 - loss32) / abs(loss32)
                for k in ("d", "b"):
                    norm = grads32[k].norm()
                    row[f"grad_{k}_err_{name}"] = float((grads16[k] - grads32[k]).norm() / norm) if norm else 0.0
            rows.append(row)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(truth, inputs), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(adapter + head, 1.0)
        optimizer.step()
        scheduler.step()
    return pd.DataFrame(rows)


def deviations(run: dict, truth: dict) -> dict:
    diff = np.abs(run["loss"] - truth["loss"])
    rel = {k: float((run[k] - truth[k]).norm() / truth[k].norm()) for k in ("d", "b")}
    return {"loss_mean_abs": float(diff.mean()), "loss_max_abs": float(diff.max()), "d_rel": rel["d"],
            "b_rel": rel["b"]}


# ---- setups -----------------------------------------------------------------------------------------------------

def minilm_setup(seed: int, layers=None, batch_size=32, max_length=64):
    """(make_model(fast_path), batches(step), forward, loss_fn, lr, head_lr) for MiniLM on Rotten Tomatoes; `layers`
    keeps only the first encoder layers (the pretrained weights, so real widths and magnitudes)."""
    from veralab.experiment.models import load_text_model
    from veralab.experiment.tasks import load_text_task

    data = load_text_task("rotten_tomatoes")
    train_split = data.splits["train"]
    base, tokenizer = load_text_model("minilm", data.num_labels)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    texts, labels = list(train_split["text_a"]), list(train_split["label"])
    order = np.random.default_rng(seed).permutation(len(labels))

    def batches(step):
        idx = [order[(step * batch_size + i) % len(order)] for i in range(batch_size)]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        return dict(enc), torch.tensor([labels[i] for i in idx])

    def make_model(fast_path):
        model, _ = load_text_model("minilm", data.num_labels)
        model.load_state_dict(state)  # the same head init in every run
        if layers:
            model.bert.encoder.layer = model.bert.encoder.layer[:layers]
        for module in model.modules():  # no dropout: the runs then differ only in their arithmetic
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            if hasattr(module, "dropout_prob"):
                module.dropout_prob = 0.0
        vl.add_adapters(model, vl.AdapterConfig(rank=RANK, fast_path=fast_path, projection_prng_key=seed))
        return model

    return make_model, batches, lambda m, inputs: m(**inputs).logits, F.cross_entropy, 3e-2, 1e-2


class EmbeddingStack(torch.nn.Module):
    """MiniLM's frozen token embeddings and embedding LayerNorm, then two Linear layers holding MiniLM's layer-0
    query and value weights (real widths and magnitudes), GELU between them, a masked mean and a trained head."""

    def __init__(self, tensors: dict, outputs=2):
        super().__init__()
        n = tensors["embeddings.word_embeddings.weight"].shape[1]
        self.embed = torch.nn.Embedding.from_pretrained(tensors["embeddings.word_embeddings.weight"].float())
        self.norm = torch.nn.LayerNorm(n, eps=1e-12)
        self.query, self.value, self.head = torch.nn.Linear(n, n), torch.nn.Linear(n, n), torch.nn.Linear(n, outputs)
        prefix = "encoder.layer.0.attention.self."
        with torch.no_grad():
            self.norm.weight.copy_(tensors["embeddings.LayerNorm.weight"])
            self.norm.bias.copy_(tensors["embeddings.LayerNorm.bias"])
            for name in ("query", "value"):
                getattr(self, name).weight.copy_(tensors[prefix + name + ".weight"])
                getattr(self, name).bias.copy_(tensors[prefix + name + ".bias"])

    def forward(self, input_ids, attention_mask):
        h = self.value(F.gelu(self.query(self.norm(self.embed(input_ids)))))
        mask = attention_mask[..., None].to(h.dtype)
        return self.head((h * mask).sum(1) / mask.sum(1))


def stack_setup(seed: int, batch_size=32, max_length=32, examples=2048):
    """The 2-layer EmbeddingStack on Rotten Tomatoes: seconds per hundred steps, for tests/core/test_bf16_training."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from veralab.experiment.resources import minilm_dir
    from veralab.experiment.tasks import load_text_task

    tensors = load_file(str(minilm_dir() / "model.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    train_split = load_text_task("rotten_tomatoes").splits["train"]
    texts, labels = list(train_split["text_a"])[:examples], list(train_split["label"])[:examples]
    order = np.random.default_rng(seed).permutation(len(labels))
    encoded = tokenizer([texts[i] for i in order], padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="pt")
    targets = torch.tensor([labels[i] for i in order])

    def batches(step):
        start = (step * batch_size) % (len(order) - batch_size + 1)
        window = slice(start, start + batch_size)
        return (encoded["input_ids"][window], encoded["attention_mask"][window]), targets[window]

    def make_model(fast_path):
        torch.manual_seed(seed)  # the same head init in every run
        return vl.add_adapters(EmbeddingStack(tensors), vl.AdapterConfig(
            rank=RANK, fast_path=fast_path, target_modules=("query", "value"), projection_prng_key=seed,
            head_modules=("head",)))

    return make_model, batches, lambda m, inputs: m(*inputs), F.cross_entropy, 3e-2, 1e-2


SETUPS = {"stack": stack_setup,
          "minilm2": lambda seed, **kw: minilm_setup(seed, **{"layers": 2, "batch_size": 16, "max_length": 32, **kw}),
          "minilm": minilm_setup}


def compare(setup: str, seed: int, steps: int, runs=tuple(RUNS), **setup_args) -> dict[str, dict]:
    make_model, batches, forward, loss_fn, lr, head_lr = SETUPS[setup](seed, **setup_args)
    results = {}
    for name in runs:
        fast_path, bf16 = RUNS[name]
        torch.manual_seed(seed)
        start = time.perf_counter()
        results[name] = train(make_model(fast_path), batches, forward, loss_fn, steps=steps, lr=lr, head_lr=head_lr,
                              bf16=bf16)
        results[name]["seconds"] = time.perf_counter() - start
        print(f"{setup} seed {seed} {name:15s}: final loss {results[name]['loss'][-10:].mean():.4f}, "
              f"||dW||/||W0|| {results[name]['delta_ratio']:.2e} ({results[name]['seconds']:.0f} s)", flush=True)
    return results


def rows(setup: str, seed: int, results: dict) -> list[dict]:
    truth = results["fp32 reference"]
    out = []
    for name, run in results.items():
        if name == "fp32 reference":
            continue
        out.append({"setup": setup, "seed": seed, "run": name, **deviations(run, truth),
                    "final_loss": float(run["loss"][-10:].mean()), "delta_ratio": run["delta_ratio"]})
    ref = next(r for r in out if r["run"] == "bf16 reference")
    for r in out:
        r["x_bf16_reference"] = round(max(r["loss_mean_abs"] / ref["loss_mean_abs"], r["b_rel"] / ref["b_rel"],
                                          r["d_rel"] / ref["d_rel"]), 2)
    return out


def contribution_probe(n=384, tokens=512, scales=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)) -> pd.DataFrame:
    """One adapted layer under bf16 autocast at several |b| (d = 0.1, VeRA's init; W0 = MiniLM's layer-0 query),
    merged vs reference, against float32:

    - contribution_vs_bf16_base: the adapter's own contribution read off the layer, y - x·W0ᵀ with the base product
      in bf16 as the model computes it, against the float32 x·ΔWᵀ (the merged kernel's weak point);
    - output: ||y - y_fp32|| / ||y_fp32||, the error the next layer sees (both paths round W0 to bf16).
    """
    from safetensors.torch import load_file

    from veralab.experiment.resources import minilm_dir

    w0 = load_file(str(minilm_dir() / "model.safetensors"))["encoder.layer.0.attention.self.query.weight"].float()
    x = F.layer_norm(torch.randn(tokens, n, generator=torch.Generator().manual_seed(1)), (n,))
    out = []
    for scale in scales:
        layers = {}
        for fast_path in ("never", "always"):
            holder = torch.nn.Module()
            holder.query = torch.nn.Linear(n, n)
            with torch.no_grad():
                holder.query.weight.copy_(w0)
                holder.query.bias.zero_()
            vl.add_adapters(holder, vl.AdapterConfig(rank=RANK, fast_path=fast_path, target_modules=("query",)))
            with torch.no_grad():
                holder.query.deltas["out"].vera_b.copy_(
                    torch.randn(n, generator=torch.Generator().manual_seed(0)) * scale)
            layers[fast_path] = holder.query
        row = {"b_scale": scale}
        with torch.no_grad():
            y32 = layers["never"](x)
            true = y32 - F.linear(x, w0)
            row["dW_over_W0"] = float(layers["never"].deltas["out"].delta_weight().norm() / w0.norm())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                base16 = F.linear(x, w0).float()
                ys = {path: layer(x).float() for path, layer in layers.items()}
        for path, label in (("never", "reference"), ("always", "merged")):
            row[f"contribution_vs_bf16_base_{label}"] = float((ys[path] - base16 - true).norm() / true.norm())
        for path, label in (("never", "reference"), ("always", "merged")):
            row[f"output_{label}"] = float((ys[path] - y32).norm() / y32.norm())
        row["contribution_x_reference"] = round(row["contribution_vs_bf16_base_merged"]
                                                / row["contribution_vs_bf16_base_reference"], 2)
        row["output_x_reference"] = round(row["output_merged"] / row["output_reference"], 2)
        out.append(row)
    return pd.DataFrame(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", nargs="+", choices=tuple(SETUPS), default=["stack"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--out", default=None, help="folder for the tables (default: benchmarks/)")
    args = parser.parse_args()
    kw = {"batch_size": args.batch_size} if args.batch_size else {}
    probe = contribution_probe()
    print(probe.to_string(index=False), flush=True)
    trajectories, steps = [], []
    for setup in args.setup:
        for seed in args.seeds:
            mean = step_errors(setup, seed, args.steps, 10, **kw).drop(columns="step").mean()
            steps.append({"setup": setup, "seed": seed, **mean.to_dict(),
                          **{f"{k}_x_reference": mean[f"{k}_merged"] / mean[f"{k}_reference"]
                             for k in ("loss_err", "grad_d_err", "grad_b_err")}})
            print(pd.Series(steps[-1]).to_string(), flush=True)
            trajectories += rows(setup, seed, compare(setup, seed, args.steps, **kw))
    when = f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    write_table(pd.DataFrame(trajectories).round(5), f"bf16 autocast training on the CPU, {args.steps} steps, VeRA "
                f"r={RANK}, b starting at 0: each run's deviation from the float32 reference-path run; {when}",
                "bf16_training_cpu", out_dir=args.out)
    write_table(pd.DataFrame(steps).round(5), f"bf16 per-step error along the float32 trajectory ({args.steps} "
                f"steps, every 10th), mean relative error of loss and gradients; {when}", "bf16_steps_cpu",
                out_dir=args.out)
    write_table(probe.round(5), f"one layer under bf16 autocast (W0 = MiniLM layer-0 query, r={RANK}, d = 0.1); "
                f"{when}", "bf16_contribution_cpu", out_dir=args.out)


if __name__ == "__main__":
    main()
