"""Tables and figures as pure functions of the run records (DataFrame from collect_records).

Every figure names the model, the data and the seeds it came from, and says when the data is an embedded stand-in
rather than one of the paper's benchmarks. Where the paper reports a value for the same model and task
(paper_results.csv), it is drawn beside ours.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..core.config import DEFAULT, PROJECTION_INITS
from ..experiment.record import RECORD
from .collect import collect_records

PAPER_RESULTS = Path(__file__).resolve().parent / "paper_results.csv"
MODEL_LABELS = {"minilm": "all-MiniLM-L6-v2 (22.7M, embedded)",
                "tiny_vit": "tiny ViT, 0.45M, pretrained on Fashion-MNIST (embedded)"}
TASK_LABELS = {"rotten_tomatoes": "Rotten Tomatoes snippets (embedded stand-in, not SST-2)",
               "mnist_5k": "MNIST-5k (embedded stand-in)", "digits": "sklearn digits 8x8 (embedded stand-in)",
               "sst2": "GLUE SST-2 dev", "mrpc": "GLUE MRPC dev", "cola": "GLUE CoLA dev", "qnli": "GLUE QNLI dev",
               "rte": "GLUE RTE dev", "stsb": "GLUE STS-B dev", "cifar100": "CIFAR-100", "food101": "Food-101",
               "flowers102": "Flowers-102", "resisc45": "RESISC45"}
COLORS = {"vera": "#1f77b4", "lora": "#d62728", "head": "#7f7f7f", "full": "#2ca02c"}


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"].copy()


def provenance(frame: pd.DataFrame) -> str:
    """'model · data · seeds · what was trained', for a figure's subtitle."""
    sizes = sorted(int(s) for s in frame["train_size"].dropna().unique())
    metric = ", ".join(sorted(frame["metric"].dropna().unique()))
    split = ", ".join(sorted(frame["score_split"].dropna().unique()))
    return (f"{_panel_provenance(frame)} (mean ± std); {metric} on {split}; "
            f"train size {sizes if len(sizes) > 1 else sizes[0] if sizes else '?'}")


def _panel_provenance(frame: pd.DataFrame) -> str:
    model = ", ".join(MODEL_LABELS.get(m, m) for m in sorted(frame["model"].dropna().unique()))
    seeds = sorted(int(x) for x in frame["run_seed"].dropna().unique())
    return f"{model}; seeds {seeds}"


def _summary(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    grouped = frame.groupby(by, dropna=False)
    out = grouped.agg(score_mean=("score", "mean"), score_std=("score", "std"), n=("score", "size"),
                      trainable=("trainable", "first"), adapter_bytes=("adapter_bytes", "first")).reset_index()
    out["score_std"] = out["score_std"].fillna(0.0)
    return out


def _paper_points(task: str, model: str) -> pd.DataFrame:
    if not PAPER_RESULTS.is_file():
        return pd.DataFrame()
    paper = pd.read_csv(PAPER_RESULTS, comment="#")
    return paper[(paper["task"] == task) & (paper["model"] == model)]


def _finish(fig, title: str, frame: pd.DataFrame):
    fig.suptitle(title, fontsize=12, fontweight="bold")
    fig.text(0.5, 0.005, provenance(frame), ha="center", va="bottom", fontsize=7.5, color="#444444", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig


def rank_sweep_figure(frame: pd.DataFrame):
    """Metric vs trainable parameters (log x) for VeRA and LoRA across ranks, one panel per task."""
    data = _ok(frame)
    data = data[data["method"].isin(["vera", "lora", "head"]) & data["default_variant"].astype(bool)]
    tasks = sorted(data["task"].unique())
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5.5 * max(1, len(tasks)), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = _summary(data[data["task"] == task], ["method", "rank"])
        for method, label in (("vera", "VeRA"), ("lora", "LoRA")):
            line = sub[sub["method"] == method].sort_values("trainable")
            if line.empty:
                continue
            ax.errorbar(line["trainable"], line["score_mean"], yerr=line["score_std"], marker="o", capsize=3,
                        color=COLORS[method], label=label)
            for _, row in line.iterrows():
                ax.annotate(f"r={int(row['rank'])}", (row["trainable"], row["score_mean"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 5), color=COLORS[method])
        head = sub[sub["method"] == "head"]
        if not head.empty:
            ax.axhline(head["score_mean"].iloc[0], color=COLORS["head"], ls="--", lw=1,
                       label=f"head only ({int(head['trainable'].iloc[0]):,} params)")
        model = data[data["task"] == task]["model"].iloc[0]
        paper = _paper_points(task, model)
        for _, row in paper.iterrows():
            ax.scatter(row["trainable"], row["score"], marker="*", s=120, color=COLORS.get(row["method"], "k"),
                       edgecolor="k", zorder=5, label=f"paper {row['method']} ({row['source']})")
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (log scale; adapter + head)")
        ax.set_ylabel(data["metric"].iloc[0])
        ax.set_title(f"{TASK_LABELS.get(task, task)}\n{_panel_provenance(data[data['task'] == task])}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _finish(fig, "VeRA vs LoRA: performance vs trainable parameters", data)


def _bar_panel(ax, summary: pd.DataFrame, labels, title: str, metric: str):
    ax.set_title(title, fontsize=9)
    if summary.empty:
        ax.text(0.5, 0.5, "no runs for this panel yet", ha="center", va="center", transform=ax.transAxes,
                color="#777777")
        ax.set_xticks([])
        return
    ax.bar(range(len(summary)), summary["score_mean"], yerr=summary["score_std"], capsize=4,
           color=[COLORS["vera"]] * len(summary))
    ax.set_xticks(range(len(summary)), labels, fontsize=8, rotation=15)
    low = (summary["score_mean"] - summary["score_std"]).min()
    high = (summary["score_mean"] + summary["score_std"]).max()
    pad = max(0.02, (high - low) * 0.3)
    ax.set_ylim(max(0, low - pad), min(1.0, high + pad) if high <= 1 else high + pad)
    for i, (_, row) in enumerate(summary.iterrows()):
        ax.text(i, row["score_mean"] + row["score_std"], f"{row['score_mean']:.3f}\nn={int(row['n'])}", ha="center",
                va="bottom", fontsize=7)
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)


def _vera_at(frame: pd.DataFrame, rank: int) -> pd.DataFrame:
    data = _ok(frame)
    return data[(data["method"] == "vera") & (data["rank"] == rank)]


def ablation_rank(frame: pd.DataFrame) -> int | None:
    """The VeRA rank the ablation runs used (the default profile 256, the paper 1024): the rank with the most runs
    of a non-default variant (d init, A/B init, a removed vector, independent A/B); None without such runs."""
    vera = _ok(frame)
    vera = vera[vera["method"] == "vera"]
    variants = vera[~vera["default_variant"].astype(bool)]
    return None if variants.empty else int(variants["rank"].value_counts().idxmax())


def init_ablation_figure(frame: pd.DataFrame, rank: int | None = None):
    """d initial values (A/B Kaiming uniform) and A/B initializations (d_init 0.1), VeRA at one rank (default: the
    ablation runs' rank)."""
    rank = rank or ablation_rank(frame)
    data = _vera_at(frame, rank)
    data = data[data["train_d"].astype(bool) & data["train_b"].astype(bool) & data["shared"].astype(bool)]
    tasks = sorted(data["task"].unique())
    fig, axes = plt.subplots(len(tasks) or 1, 2, figsize=(10, 3.8 * max(1, len(tasks))), squeeze=False)
    for row_axes, task in zip(axes, tasks):
        sub = data[data["task"] == task]
        d = _summary(sub[sub["projection_init"] == DEFAULT.projection_init], ["d_init"]).sort_values("d_init")
        _bar_panel(row_axes[0], d, [f"d_init={v:g}" for v in d["d_init"]],
                   f"{TASK_LABELS.get(task, task)}\nd initial value (A/B Kaiming uniform, r={rank})",
                   sub["metric"].iloc[0])
        p = _summary(sub[sub["d_init"] == DEFAULT.d_init], ["projection_init"])
        order = [x for x in PROJECTION_INITS if x in set(p["projection_init"])]
        p = p.set_index("projection_init").loc[order].reset_index()
        _bar_panel(row_axes[1], p, [x.replace("_", " ") for x in p["projection_init"]],
                   f"{TASK_LABELS.get(task, task)}\nA/B initialization (d_init={DEFAULT.d_init:g}, r={rank})",
                   sub["metric"].iloc[0])
    return _finish(fig, "Initialization ablation (VeRA)", data)


VECTOR_VARIANTS = (("both d and b", dict(train_d=True, train_b=True, shared=True)),
                   ("d only (b=1)", dict(train_d=True, train_b=False, shared=True)),
                   ("b only (d=1)", dict(train_d=False, train_b=True, shared=True)),
                   ("independent A/B", dict(train_d=True, train_b=True, shared=False)))


def vector_ablation_figure(frame: pd.DataFrame, rank: int | None = None):
    """Both vectors vs d only vs b only, and shared vs independent A/B per layer (default rank: the ablation runs')."""
    rank = rank or ablation_rank(frame)
    data = _vera_at(frame, rank)
    data = data[data["projection_init"] == DEFAULT.projection_init]
    tasks = sorted(data["task"].unique())
    fig, axes = plt.subplots(1, len(tasks) or 1, figsize=(6 * max(1, len(tasks)), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows, labels = [], []
        task_runs = data[(data["task"] == task) & data["d_init"].isin([DEFAULT.d_init, 0.0])]
        for label, where in VECTOR_VARIANTS:
            sub = task_runs
            for key, value in where.items():
                sub = sub[sub[key].astype(bool) == value]
            if not sub.empty:
                rows.append(_summary(sub.assign(v=label), ["v"]))
                labels.append(f"{label}\n{int(sub['trainable'].iloc[0]):,} params")
        if rows:
            _bar_panel(ax, pd.concat(rows, ignore_index=True), labels, f"{TASK_LABELS.get(task, task)} (r={rank})",
                       data["metric"].iloc[0])
    return _finish(fig, "Scaling-vector ablation (VeRA)", data)


def vit_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Head / full / LoRA / VeRA on image tasks: mean ± std over seeds, with trainable parameters."""
    data = _ok(frame)
    data = data[data["kind"] == "image"]
    if data.empty:
        return pd.DataFrame(columns=["method", "trainable"])
    summary = _summary(data, ["task", "variant", "method"])
    summary["cell"] = [f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(summary["score_mean"], summary["score_std"])]
    table = summary.pivot_table(index=["method", "variant", "trainable"], columns="task", values="cell",
                                aggfunc="first").reset_index()
    order = {"head": 0, "full": 1, "lora": 2, "vera": 3}
    return table.sort_values(by="method", key=lambda s: s.map(order)).reset_index(drop=True)


def vit_figure(frame: pd.DataFrame):
    data = _ok(frame)
    data = data[data["kind"] == "image"]
    tasks = sorted(data["task"].unique())
    fig, axes = plt.subplots(1, len(tasks) or 1, figsize=(5 * max(1, len(tasks)), 4), squeeze=False)
    order = ("head", "full", "lora", "vera")
    for ax, task in zip(axes[0], tasks):
        s = _summary(data[data["task"] == task], ["method", "variant"])
        s = s.set_index("method").loc[[m for m in order if m in set(s["method"])]].reset_index()
        ax.bar(range(len(s)), s["score_mean"], yerr=s["score_std"], capsize=4, color=[COLORS[m] for m in s["method"]])
        ax.set_xticks(range(len(s)), [f"{v}\n{int(t):,} params" for v, t in zip(s["variant"], s["trainable"])],
                      fontsize=7)
        for i, (_, row) in enumerate(s.iterrows()):
            ax.text(i, row["score_mean"] + row["score_std"], f"{100 * row['score_mean']:.1f}", ha="center",
                    va="bottom", fontsize=8)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{TASK_LABELS.get(task, task)}\n{_panel_provenance(data[data['task'] == task])}", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _finish(fig, "ViT image classification: head / full / LoRA / VeRA (few-shot)", data)


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    data = _ok(frame)
    summary = _summary(data, ["task", "model", "variant", "method"])
    summary["score"] = [f"{m:.4f} ± {s:.4f}" for m, s in zip(summary["score_mean"], summary["score_std"])]
    return summary[["task", "model", "variant", "trainable", "adapter_bytes", "score", "n"]]


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return paths


def make_all(runs="runs", out="figures") -> list[Path]:
    """Regenerate every table and figure in `out` from the records under `runs`; without any record (a mistyped
    --runs) nothing is written, so `out`'s tables are not replaced by empty ones."""
    frame = collect_records(runs)
    if frame.empty:
        why = "" if Path(runs).is_dir() else ", which does not exist"
        if frame.attrs["skipped"]:
            why = f", only {len(frame.attrs['skipped'])} unreadable ones (named in the warnings above)"
        raise FileNotFoundError(f"no run records ({RECORD}) under {runs}{why}; nothing written to {out}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    ok = _ok(frame)
    table = results_table(frame)
    table.to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text(table.to_markdown(index=False) + "\n")
    written += [out / "results.csv", out / "results.md"]
    if ok.empty:
        return written
    if not ok[ok["method"].isin(["vera", "lora"])].empty:
        written += _save(rank_sweep_figure(frame), out, "rank_sweep")
    rank = ablation_rank(frame)
    if rank is not None:
        written += _save(init_ablation_figure(frame, rank), out, "init_ablation")
        written += _save(vector_ablation_figure(frame, rank), out, "vector_ablation")
    vit = vit_table(frame)
    if not vit.empty:
        vit.to_csv(out / "vit_table.csv", index=False)
        (out / "vit_table.md").write_text(vit.to_markdown(index=False) + "\n")
        written += [out / "vit_table.csv", out / "vit_table.md"] + _save(vit_figure(frame), out, "vit")
    return written
