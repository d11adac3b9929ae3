"""What a sweep will cost before it runs (`veralab sweep STUDY --dry-run --estimate`): per point and summed per study,
the training steps, tokens, training FLOPs, and GPU hours and peak memory on a named GPU.

FLOPs: a transformer's forward pass costs 24·L·d² + 4·L·s·d per token (L layers of width d, s tokens a sequence;
the matmuls only), an adapter 2·r·(n + m) per adapted layer and token. Training costs the forward, the gradient
through the activations (the same again: the frozen floor), the weights' gradients for full fine-tuning (once more),
and three times the adapter's own. Time: a step's FLOPs at the rate of a measured step (CALIBRATION), but no less
than its kernel launches take (short sequences), with the measured overhead of the adapter code above its FLOPs.
Memory: the weights (fp32; full fine-tuning adds gradients and Adam's two moments) plus activations scaled from the
measured peak. Both are estimates (±30%), stated as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..core.config import ConfigError
from ..experiment import RunConfig
from .collect import variant

# A measured step (issue 24, from an H100 run of PEFT): RoBERTa-base, batch 64 x 256 tokens, q/v adapted, bf16.
# The frozen floor (no adapter, base frozen) 27.3 ms and 4,824 MiB peak; PEFT LoRA r=8 1.22x the floor's time; PEFT
# VeRA r=1024 2.02x and 6,212 MiB. The H200 has the H100's tensor-core rate (its extra memory bandwidth is not
# counted: an upper bound).
CALIBRATION = {"model": "roberta-base", "batch": 64, "seq": 256, "floor_ms": 27.3, "floor_mib": 4824,
               "lora_rank": 8, "lora_ratio": 1.22, "vera_rank": 1024, "vera_ratio": 2.02, "vera_mib": 6212}
GPUS = {"h100": 1.0, "h200": 1.0}  # step time relative to the calibration's H100


def calibration_from_bench(path) -> dict:
    """A calibration from the GPU kit's own measurement: benchmarks/bench_vera.py --size full on CUDA (RoBERTa-base,
    64 x 256 tokens, q/v) writes results_cuda_full[_bf16].csv; its floor and veralab's LoRA r=8 and VeRA r=1024 rows
    replace the PEFT step above (`--calibration FILE`)."""
    from pathlib import Path

    path = Path(path)
    if not path.name.startswith("results_cuda_full"):
        raise ConfigError(f"--calibration {path}: expected bench_vera.py's results_cuda_full[_bf16].csv (RoBERTa-base "
                          f"at 64 x 256 tokens on a GPU), the shape this calibration is for")
    try:
        rows = pd.read_csv(path).set_index("method")
        floor, lora, vera = (rows.loc[m] for m in ("floor", "veralab-lora-8", "veralab-vera-1024"))
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(f"--calibration {path}: not a bench_vera.py results table with floor, veralab-lora-8 and "
                          f"veralab-vera-1024 rows ({err})") from None
    return {**CALIBRATION, "floor_ms": float(floor["ms_per_step"]), "floor_mib": float(floor["peak_mib"]),
            "lora_ratio": float(lora["ms_per_step"] / floor["ms_per_step"]),
            "vera_ratio": float(vera["ms_per_step"] / floor["ms_per_step"]), "vera_mib": float(vera["peak_mib"]),
            "source": str(path)}

# name -> (layers, width, parameters, tokens per image for a ViT or None); from the models' published configs
MODEL_SHAPES = {"roberta-base": (12, 768, 124_645_632, None), "roberta-large": (24, 1024, 355_359_744, None),
                "minilm": (6, 384, 22_713_216, None),
                "vit_base_patch16_224.augreg_in21k": (12, 768, 85_798_656, 197),
                "vit_large_patch16_224.augreg_in21k": (24, 1024, 303_301_632, 197),
                "tiny_vit": (4, 96, 450_000, 50)}
# GLUE training-set sizes (the GLUE benchmark's train splits) and images' class counts
TRAIN_SIZES = {"sst2": 67_349, "mrpc": 3_668, "cola": 8_551, "qnli": 104_743, "rte": 2_490, "stsb": 5_749,
               "rotten_tomatoes": 8_320}
CLASSES = {"cifar100": 100, "food101": 101, "flowers102": 102, "resisc45": 45, "mnist_5k": 10, "digits": 10,
           "fashion_mnist": 10}
# Mean tokens per training example (with special tokens): SST-2, MRPC, RTE, STS-B measured with MiniLM's WordPiece
# tokenizer on the GLUE TSVs (RoBERTa's BPE gives similar counts); CoLA, QNLI and Rotten Tomatoes our estimate.
MEAN_TOKENS = {"sst2": 13.3, "mrpc": 53.2, "rte": 70.2, "stsb": 27.8, "cola": 11.0, "qnli": 51.0,
               "rotten_tomatoes": 30.0}
# A batch pads to its longest example: without length grouping, about the 95th percentile (measured as above; CoLA,
# QNLI, Rotten Tomatoes our estimate); with it, about the mean.
LONG_TOKENS = {"sst2": 33, "mrpc": 74, "rte": 157, "stsb": 60, "cola": 25, "qnli": 100, "rotten_tomatoes": 60}
# The least a step takes however few its tokens: kernel launches of the forward and backward pass, per layer (our
# assumption for eager PyTorch on an H100, about 40 kernels of 15 µs; the GPU kit's measurement should replace it).
LAUNCH_MS_PER_LAYER = 0.6
ADAPTED_PER_LAYER = 2  # query and value, the paper's targets


@dataclass
class Cost:
    examples: int
    steps: int
    tokens: float
    flops: float
    hours: float
    peak_gib: float


def _forward_per_token(layers: int, width: int, seq: float) -> float:
    return 24 * layers * width ** 2 + 4 * layers * seq * width


def _adapter_per_token(layers: int, width: int, rank: int) -> float:
    return ADAPTED_PER_LAYER * layers * 2 * rank * (width + width)


def _shape(config: RunConfig):
    name = config.model_name
    if name not in MODEL_SHAPES:
        raise ConfigError(f"--estimate knows no shape for model {name!r}; known: {', '.join(MODEL_SHAPES)}")
    return MODEL_SHAPES[name]


def point_cost(config: RunConfig, gpu: str = "h100", calibration: dict | None = None) -> Cost:
    """The estimated cost of one run (calibration: CALIBRATION, or calibration_from_bench's)."""
    if gpu not in GPUS:
        raise ConfigError(f"unknown GPU {gpu!r} for --estimate; allowed: {', '.join(GPUS)}")
    layers, width, params, image_tokens = _shape(config)
    if config.kind == "image":
        if config.task not in CLASSES:
            raise ConfigError(f"--estimate does not know the classes of {config.task!r}; known: {', '.join(CLASSES)}")
        examples = config.shots_per_class * CLASSES[config.task] if config.shots_per_class else None
        seq = image_tokens
    else:
        examples = TRAIN_SIZES.get(config.task)
        lengths = MEAN_TOKENS if config.group_by_length else LONG_TOKENS
        seq = min(config.max_length, lengths.get(config.task, config.max_length))
    if config.max_train_samples is not None:
        examples = min(examples or config.max_train_samples, config.max_train_samples)
    if examples is None:
        raise ConfigError(f"--estimate does not know the training-set size of {config.task!r}; set "
                          f"max_train_samples, or use one of {', '.join(TRAIN_SIZES)}")
    steps = math.ceil(examples / config.batch_size) * config.epochs
    tokens = steps * config.batch_size * seq
    method, rank = config.adapter.method, config.adapter.rank
    forward = _forward_per_token(layers, width, seq)
    adapter = _adapter_per_token(layers, width, rank) if method in ("vera", "lora") else 0.0
    flops = tokens * ({"head": 1, "full": 3}.get(method, 2) * forward + 3 * adapter)
    # time: the floor's rate, times the adapter code's measured overhead (a fixed part, LoRA's, and a part in
    # proportion to the adapter's FLOPs, fitted to VeRA r=1024)
    c = calibration or CALIBRATION
    c_layers, c_width = MODEL_SHAPES[c["model"]][:2]
    c_tokens = c["batch"] * c["seq"]
    rate = 2 * c_tokens * _forward_per_token(c_layers, c_width, c["seq"]) / (c["floor_ms"] / 1000)
    fixed = c["lora_ratio"] - 1
    c_share = 3 * _adapter_per_token(c_layers, c_width, c["vera_rank"]) / (2 * _forward_per_token(c_layers, c_width,
                                                                                                    c["seq"]))
    per_share = (c["vera_ratio"] - 1 - fixed) / c_share
    step_flops = config.batch_size * seq * {"head": 1, "full": 3}.get(method, 2) * forward
    step_s = max(step_flops / rate, LAUNCH_MS_PER_LAYER * layers / 1000)
    overhead = 1 + fixed + per_share * (3 * adapter / (2 * forward)) if adapter else 1.0
    hours = steps * step_s * overhead * GPUS[gpu] / 3600
    # memory: weights (+ gradients and Adam's moments for full fine-tuning), activations scaled from the floor's peak,
    # the adapter's per-rank activations scaled from VeRA r=1024's extra
    mib = 2 ** 20
    weights = params * (16 if method == "full" else 4) / mib
    c_weights = MODEL_SHAPES[c["model"]][2] * 4 / mib
    per_activation = (c["floor_mib"] - c_weights) / (c_tokens * c_layers * c_width)
    per_rank = (c["vera_mib"] - c["floor_mib"]) / (c_tokens * ADAPTED_PER_LAYER * c_layers * c["vera_rank"])
    batch_tokens = config.batch_size * (config.max_length if config.kind == "text" else seq)  # a batch pads to max
    activations = per_activation * batch_tokens * layers * width * (0.25 if method == "head" else 1.0)
    extra = per_rank * batch_tokens * ADAPTED_PER_LAYER * layers * rank if adapter else 0.0
    return Cost(examples, steps, tokens, flops, hours, (weights + activations + extra) / 1024)


def estimate_table(points, gpu: str = "h100", calibration: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(a row per point, a row per study and a total): what each run and each study will cost."""
    rows = []
    for point in points:
        config = RunConfig.from_dict(point.params)
        cost = point_cost(config, gpu, calibration)
        rows.append({"study": point.study, "variant": variant(point.params), "task": config.task,
                     "model": config.model_name, "seed": config.run_seed, "examples": cost.examples,
                     "epochs": config.epochs, "steps": cost.steps, "tokens (M)": cost.tokens / 1e6,
                     "PFLOPs": cost.flops / 1e15, "GPU hours": cost.hours, "peak GiB": cost.peak_gib})
    table = pd.DataFrame(rows)
    sums = table.groupby("study", sort=False).agg(runs=("seed", "size"), steps=("steps", "sum"),
                                                  tokens_M=("tokens (M)", "sum"), PFLOPs=("PFLOPs", "sum"),
                                                  GPU_hours=("GPU hours", "sum"), peak_GiB=("peak GiB", "max"))
    sums.loc["total"] = [sums["runs"].sum(), sums["steps"].sum(), sums["tokens_M"].sum(), sums["PFLOPs"].sum(),
                         sums["GPU_hours"].sum(), sums["peak_GiB"].max()]
    return table, sums.reset_index().rename(columns={"tokens_M": "tokens (M)", "GPU_hours": "GPU hours",
                                                     "peak_GiB": "peak GiB"})


def estimate_text(points, gpu: str = "h100", calibration: dict | None = None) -> str:
    table, sums = estimate_table(points, gpu, calibration)
    source = (f"from the GPU kit's step in {calibration['source']}" if calibration else
              "from an H100 step of PEFT's VeRA and LoRA on RoBERTa-base")
    return (f"{table.to_string(index=False, float_format=lambda v: f'{v:,.2f}')}\n\nPer study (estimates, ±30%, on "
            f"one {gpu.upper()} in bf16, {source}; a sweep's parallel jobs share the hours):\n"
            f"{sums.to_string(index=False, float_format=lambda v: f'{v:,.2f}')}\n")
