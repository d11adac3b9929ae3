"""float32 against bf16 autocast on this CPU, for the runs the GLUE studies make (all-MiniLM-L6-v2, glue_cpu's
batch of 32 and length cap of 128).

    python benchmarks/bench_precision.py                     # per training step, every method, interleaved rounds
    python benchmarks/bench_precision.py --records runs/precision   # whole points: wall time and scores, paired

Steps: head only, full fine-tuning, LoRA r=8, VeRA r=256 and r=1024, each model built twice (float32, and bf16 as
a bf16 run builds it: eager attention) and timed one step (forward, backward, AdamW) per round, every row in every
round, the order reversed each round; the median per row. One more row, VeRA r=1024 under bf16 with PyTorch's fused
attention (SDPA), shows why bf16 runs switch to eager attention on the CPU. On a CPU without bf16 units the bf16
rows run their products on float32 kernels (precision.py), and one more row, VeRA r=1024 on PyTorch's own bf16
kernels, shows why. Writes precision_steps_cpu.csv / .md (--stem).

--records reads a sweep of benchmarks/precision_sweep.yaml (each glue_cpu main-table point in both precisions) and
writes precision_points_cpu.csv / .md: per method, the wall time of a whole point (the executed notebook's, from
papermill, and the run's own) in both precisions and their ratio; per task and method, the paired bf16 - float32
score difference over seeds, its mean and 95% t-interval in points.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import write_table  # noqa: E402

import veralab as vl  # noqa: E402
from veralab.experiment import RunConfig  # noqa: E402
from veralab.experiment.precision import autocast, bf16_products, cpu_bf16_path, float32_kernels  # noqa: E402
from veralab.studies.collect import collect_records, variant  # noqa: E402

METHODS = {"head only": ("head", 1), "full fine-tune": ("full", 1), "LoRA r=8": ("lora", 8),
           "VeRA r=256": ("vera", 256), "VeRA r=1024": ("vera", 1024)}


def minilm(method, rank, attention):
    from transformers import AutoModelForSequenceClassification

    from veralab.experiment.models import _quiet_transformers
    from veralab.experiment.resources import minilm_dir

    _quiet_transformers()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=2,
                                                               attn_implementation=attention)
    return vl.add_adapters(model, vl.AdapterConfig(method=method, rank=rank))


def training_step(model, inputs, labels, precision, pytorch_kernels=False):
    """One training step as `fit` takes it; `pytorch_kernels`: bf16 on PyTorch's own CPU kernels, as if veralab
    never ran them on float32 kernels."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16) if pytorch_kernels else autocast("cpu", precision):
            logits = model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        with nullcontext() if pytorch_kernels else float32_kernels("cpu", precision):
            loss.backward()
        optimizer.step()

    return step


def steps(batch, tokens, rounds):
    generator = torch.Generator().manual_seed(0)
    inputs = {"input_ids": torch.randint(1000, 30000, (batch, tokens), generator=generator),
              "attention_mask": torch.ones(batch, tokens, dtype=torch.long)}
    labels = torch.randint(0, 2, (batch,), generator=generator)
    rows, ours = {}, bf16_products("cpu", "bf16")
    for name, (method, rank) in METHODS.items():
        for precision, attention in (("fp32", "sdpa"), ("bf16", "eager")):
            products = ours if precision == "bf16" else "-"
            rows[name, precision, attention, products] = training_step(minilm(method, rank, attention), inputs,
                                                                       labels, precision)
    rows["VeRA r=1024", "bf16", "sdpa", ours] = training_step(minilm("vera", 1024, "sdpa"), inputs, labels, "bf16")
    if ours == "float32 kernels":
        rows["VeRA r=1024", "bf16", "eager", "PyTorch's"] = training_step(minilm("vera", 1024, "eager"), inputs,
                                                                          labels, "bf16", pytorch_kernels=True)
    for step in rows.values():
        step()  # warm-up
    times = {key: [] for key in rows}
    keys = list(rows)
    for i in range(rounds):
        for key in keys if i % 2 == 0 else keys[::-1]:
            start = time.perf_counter()
            rows[key]()
            times[key].append((time.perf_counter() - start) * 1000)
        print(f"round {i + 1}/{rounds}", flush=True)
    out = []
    for (name, precision, attention, products), values in times.items():
        base = statistics.median(times[name, "fp32", "sdpa", "-"])
        ms = statistics.median(values)
        out.append({"tokens": f"{batch}x{tokens}", "method": name, "precision": precision, "attention": attention,
                    "bf16_products": products, "ms_per_step": round(ms, 1), "x_fp32": round(ms / base, 2)})
    return out


def notebook_seconds(run_dir: Path) -> float | None:
    """The executed notebook's duration as papermill recorded it: the point's whole wall time inside its kernel."""
    for path in run_dir.glob("*.ipynb"):
        duration = json.loads(path.read_text())["metadata"].get("papermill", {}).get("duration")
        if duration is not None:
            return float(duration)
    return None


def points(folders: list[Path]) -> pd.DataFrame:
    rows = []
    for path in sorted(p for folder in folders for p in folder.glob("*/record.json")):
        record = json.loads(path.read_text())
        if record.get("status") != "ok":
            raise SystemExit(f"{path} is not an ok record: re-run the sweep first")
        config = record["config"]
        rate = f", lr {config['lr']:g}" if config.get("lr") else ""
        twin = RunConfig.from_dict({**config, "precision": "fp32"}).name()  # the same point in float32
        rows.append({"task": config["task"], "method": variant(config) + rate, "seed": config["run_seed"],
                     "family": config["method"], "fp32_name": twin,
                     "precision": record["precision"], "score": 100 * record["final"][record["metric"]],
                     "run_s": record["time"]["wall_seconds"], "train_s": record["time"]["train_seconds"],
                     "notebook_s": notebook_seconds(path.parent), "threads": record["device"]["threads"],
                     "cpu_bf16": record["device"].get("cpu_bf16")})
    return pd.DataFrame(rows)


def paired(frame: pd.DataFrame, times: bool = True) -> pd.DataFrame:
    """Per task and method, the seeds run in both precisions: scores, their paired difference and, with `times`
    (both precisions measured in one sweep), the notebook times."""
    wide = frame.pivot_table(index=["task", "method", "seed"], columns="precision",
                             values=["score", "run_s", "notebook_s"])
    wide = wide.dropna(subset=[("score", "bf16"), ("score", "fp32")])
    rows = []
    for (task, method), group in wide.groupby(level=[0, 1]):
        diff = (group["score", "bf16"] - group["score", "fp32"]).to_numpy()
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
        rows.append({"task": task, "method": method, "seeds": len(diff),
                     "fp32": round(group["score", "fp32"].mean(), 2), "bf16": round(group["score", "bf16"].mean(), 2),
                     "bf16_minus_fp32": round(diff.mean(), 2), "ci95_low": round(diff.mean() - half, 2),
                     "ci95_high": round(diff.mean() + half, 2)})
        if times:
            rows[-1].update(notebook_s_fp32=round(group["notebook_s", "fp32"].mean(), 1),
                            notebook_s_bf16=round(group["notebook_s", "bf16"].mean(), 1),
                            x_fp32=round(group["notebook_s", "bf16"].sum() / group["notebook_s", "fp32"].sum(), 2))
    return pd.DataFrame(rows)


def campaign_estimate(sample: pd.DataFrame, campaign: Path, outside_s: float) -> str:
    """Worker-hours of the whole `campaign` (records run in float32 by an earlier veralab) if it ran in bf16 now.

    Per task and method family (head, full, LoRA, VeRA), the ratio of a sample point's bf16 notebook time now to the
    float32 record's run time of the same point in `campaign`, applied to every campaign record of that task and
    family; the old points also paid `outside_s` seconds outside their run (kernel start, imports, the per-point
    figure), measured in the old sweep. Families: every LoRA rank and every VeRA rank and variant share one ratio.
    """
    old = collect_records(campaign)
    old = old[old["status"] == "ok"]
    sample = sample[sample["precision"] == "bf16"]
    ratios = {}
    for _, row in sample.iterrows():
        match = old[(old["name"] == row["fp32_name"])]
        if len(match):
            ratio = row["notebook_s"] / match["wall_seconds"].iloc[0]
            ratios.setdefault((row["task"], row["family"]), []).append(ratio)
    old = old.assign(family=old["method"])
    missing = sorted({(t, f) for t, f in zip(old["task"], old["family"])} - set(ratios))
    if missing:
        return f"no sample point for {missing}: no estimate"
    factor = [np.mean(ratios[t, f]) for t, f in zip(old["task"], old["family"])]
    before = (old["wall_seconds"].sum() + outside_s * len(old)) / 3600
    after = (old["wall_seconds"] * factor).sum() / 3600
    return (f"{campaign}: {len(old)} runs took {old['wall_seconds'].sum() / 3600:.2f} worker-hours of run time in "
            f"float32, {before:.2f} with {outside_s:g} s a point outside the run; in bf16 now about {after:.2f} "
            f"({after / before:.2f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, nargs="+", default=None,
                        help="folders of a precision sweep's records (and of the float32 runs they pair with)")
    parser.add_argument("--tokens", nargs="+", type=int, default=[64, 128], help="tokens per example")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stem", default=None,
                        help="the tables' file name (default precision_steps_cpu; precision_points_cpu with --records)")
    parser.add_argument("--scores-only", action="store_true", help="--records from several sweeps: no times")
    parser.add_argument("--campaign", type=Path, default=None,
                        help="--records: estimate this float32 campaign's worker-hours in bf16 from the sample")
    parser.add_argument("--outside-s", type=float, default=0.0,
                        help="--campaign: seconds each of its points spent outside its run (kernel, imports, figure)")
    parser.add_argument("--out", default=None, help="folder for the tables (default: benchmarks/)")
    args = parser.parse_args()
    where = (f"cpu ({torch.get_num_threads()} threads, bf16 path: {cpu_bf16_path()}); torch {torch.__version__}; "
             f"{time.strftime('%Y-%m-%d')}")
    if args.records:
        frame = points(args.records)
        table = paired(frame, times=not args.scores_only)
        header = (f"{len(frame)} records from {', '.join(map(str, args.records))}: threads per run "
                  f"{sorted(set(frame['threads']))}, bf16 path {sorted(set(frame['cpu_bf16'].dropna()))}; "
                  f"torch {torch.__version__}")
        if not args.scores_only:
            total = frame.pivot_table(index=["task", "method", "seed"], columns="precision", values="notebook_s").sum()
            header += f"; whole points: bf16 took {total['bf16'] / total['fp32']:.2f}x the float32 notebook time"
        if args.campaign:
            header += "\n\n" + campaign_estimate(frame, args.campaign, args.outside_s)
        write_table(table, header, args.stem or "precision_points_cpu", out_dir=args.out)
        return
    rows = []
    for tokens in args.tokens:
        rows += steps(args.batch, tokens, args.rounds)
    write_table(pd.DataFrame(rows), f"{where}; all-MiniLM-L6-v2, median of {args.rounds} interleaved rounds",
                args.stem or "precision_steps_cpu", out_dir=args.out)


if __name__ == "__main__":
    main()
