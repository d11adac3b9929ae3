"""Tables and figures as pure functions of the run records (the DataFrame of collect_records).

Statistics as the paper reports them: the runs of one setting (its seeds) are summarized by their median, with the
spread shown (min–max bars) and every seed drawn as a dot; ``stat="mean"`` gives mean ± sd instead, and a single
run says n=1. Only repeats of one whole setting are aggregated (collect.setting_of): a group that would mix
settings, such as a 10-epoch and a 4-epoch run of one method, is refused with a message. Parameter counts are the
adapter's alone, as the paper counts them; the task head is listed beside them in the tables. Every figure names
the model, data, seeds, score and statistic it shows, and says when the data is an embedded stand-in rather than
one of the paper's benchmarks; where the paper reports a value for the same model and task (paper_results.csv),
it is drawn beside ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

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
               "flowers102": "Flowers-102 (re-split)", "resisc45": "RESISC45"}
METHODS = ("head", "full", "lora", "vera")  # the order of every legend and table
METHOD_LABELS = {"head": "head only", "full": "full fine-tune", "lora": "LoRA", "vera": "VeRA"}
PALETTE = {"head": "#949494", "full": "#029e73", "lora": "#d55e00", "vera": "#0173b2"}  # seaborn "colorblind"
MIN_SPAN = 10.0  # percentage points: the least a panel's y-axis spans (point panels and rank sweeps)
SCORES = {"final": ("score", "final epoch"), "best": ("score_best", "best epoch")}
STATS = {"median": "median over seeds, bars min–max", "mean": "mean over seeds, bars ± sd"}
VECTOR_VARIANTS = (("both d and b", dict(train_d=True, train_b=True, shared=True)),
                   ("d only (b=1)", dict(train_d=True, train_b=False, shared=True)),
                   ("b only (d=1)", dict(train_d=False, train_b=True, shared=True)),
                   ("independent A/B", dict(train_d=True, train_b=True, shared=False)))

sns.set_theme(context="notebook", style="whitegrid", font_scale=0.85)


# ---- statistics -----------------------------------------------------------------------------------------------

def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"].copy()


def check_one_setting(frame: pd.DataFrame, by: list[str]) -> None:
    """Refuse a group of `by` that holds runs of more than one setting: averaging them would be wrong."""
    for key, group in frame.groupby(by, dropna=False):
        if group["setting"].nunique() > 1:
            settings = [json.loads(s) for s in group["setting"].unique()]
            differ = sorted(k for k in set().union(*settings) if len({json.dumps(s.get(k)) for s in settings}) > 1)
            values = {k: sorted({str(s.get(k)) for s in settings}) for k in differ[:4]}
            raise ValueError(f"runs grouped as {dict(zip(by, key if isinstance(key, tuple) else (key,)))} come "
                             f"from {len(settings)} different settings ({values}); they are not repeats of one "
                             f"setting, so they are not aggregated: select one (e.g. frame[frame.epochs == 3]) or "
                             f"keep such runs in separate folders")


def aggregate(frame: pd.DataFrame, by: list[str], score: str = "final", stat: str = "median") -> pd.DataFrame:
    """One row per group of `by`: center and spread of the score over seeds (in %), n and the seeds."""
    column = SCORES[score][0]
    check_one_setting(frame, by)
    rows = []
    for key, group in frame.groupby(by, dropna=False, sort=False):
        values = 100 * group[column].astype(float)
        if stat == "median":
            center, low, high = values.median(), values.min(), values.max()
        else:
            sd = values.std(ddof=1) if len(values) > 1 else 0.0
            center, low, high = values.mean(), values.mean() - sd, values.mean() + sd
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "center": center, "low": low,
                     "high": high, "n": len(values), "seeds": sorted(int(s) for s in group["run_seed"]),
                     "adapter_params": int(group["adapter_params"].iloc[0]),
                     "head_params": int(group["head_params"].iloc[0])})
    return pd.DataFrame(rows)


def cell(row, stat: str = "median") -> str:
    """'75.8 [74.0, 77.1] (n=3)', '75.8 ± 1.2 (n=3)', or '75.8 (n=1)': a single run shows no spread."""
    if row["n"] == 1:
        return f"{row['center']:.1f} (n=1)"
    if stat == "median":
        return f"{row['center']:.1f} [{row['low']:.1f}, {row['high']:.1f}] (n={row['n']})"
    return f"{row['center']:.1f} ± {row['high'] - row['center']:.1f} (n={row['n']})"


def _estimator(stat: str):
    return ("median", ("pi", 100)) if stat == "median" else ("mean", "sd")


# ---- labels ---------------------------------------------------------------------------------------------------

def score_label(frame: pd.DataFrame, score: str = "final") -> str:
    """'accuracy, final epoch, test split (512 examples)': what each dot is."""
    metric = ", ".join(sorted(frame["metric"].dropna().unique()))
    if score == "best":
        return f"{metric}, best epoch on the validation split"
    splits = ", ".join(sorted(frame["score_split"].dropna().unique()))
    sizes = sorted({int(s) for s in frame["eval_size"].dropna()})
    examples = f" ({', '.join(f'{s:,}' for s in sizes)} examples)" if sizes else ""
    return f"{metric}, final epoch, {splits} split{examples}"


def provenance(frame: pd.DataFrame, score: str = "final", stat: str = "median") -> str:
    """Model · seeds · train size · score · statistic, for a figure's footer."""
    models = ", ".join(MODEL_LABELS.get(m, m) for m in sorted(frame["model"].dropna().unique()))
    seeds = sorted({int(s) for s in frame["run_seed"].dropna()})
    sizes = sorted({int(s) for s in frame["train_size"].dropna()})
    return (f"{models}; seeds {seeds}; {', '.join(f'{s:,}' for s in sizes)} training examples; score: "
            f"{score_label(frame, score)}; {STATS[stat]}; dots: one per seed")


def _paper_points(task: str, model: str) -> pd.DataFrame:
    paper = pd.read_csv(PAPER_RESULTS, comment="#")
    return paper[(paper["task"] == task) & (paper["model"] == model)]


def _finish(fig, title: str, frame: pd.DataFrame, score: str, stat: str):
    fig.suptitle(title, fontsize=12, fontweight="bold")
    if frame.empty:
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        return fig
    fig.text(0.5, 0.005, provenance(frame, score, stat), ha="center", va="bottom", fontsize=7.5, color="#444444",
             wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig


def _empty(ax, message="no runs for this panel yet"):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


# ---- figures --------------------------------------------------------------------------------------------------

def _percent(frame: pd.DataFrame, score: str) -> pd.DataFrame:
    return frame.assign(percent=100 * frame[SCORES[score][0]].astype(float))


def rank_sweep_tasks(frame: pd.DataFrame) -> list[str]:
    """The text tasks where VeRA or LoRA ran at several ranks: a task run at one rank per method (a main table's
    comparison) is no rank sweep."""
    data = _ok(frame)
    adapters = data[(data["kind"] == "text") & data["method"].isin(["vera", "lora"]) & data["default_variant"]]
    ranks = adapters.groupby(["task", "method"])["rank"].nunique()
    return sorted({task for (task, _), n in ranks.items() if n > 1})


def _label_ranks(ax, summary: pd.DataFrame) -> None:
    """"r=..." beside each rank's point; VeRA's ranks lie close together on the parameter axis (12 x (384 + r) on
    MiniLM), so a label near its neighbour moves further up or down, alternately, instead of overlapping it."""
    for _, rows in summary.groupby("method"):
        previous, stack = None, 0
        for _, row in rows.sort_values("adapter_params").iterrows():
            stack = stack + 1 if previous and row["adapter_params"] / previous < 1.3 else 0
            previous = row["adapter_params"]
            ax.annotate(f"r={int(row['rank'])}", (row["adapter_params"], row["center"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 6 + 9 * stack if stack % 2 else -11 - 9 * stack),
                        color=PALETTE[row["method"]])


def rank_sweep_figure(frame: pd.DataFrame, score: str = "final", stat: str = "median"):
    """Score vs adapter parameters (log x) for VeRA and LoRA across ranks, one panel per text task; head only is
    the dashed line (no adapter parameters); the paper's values are stars."""
    data = _ok(frame)
    data = _percent(data[(data["kind"] == "text") & data["method"].isin(["vera", "lora", "head"])
                         & data["default_variant"].astype(bool)], score)
    tasks = rank_sweep_tasks(data)
    data = data[data["task"].isin(tasks)]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(6 * max(1, len(tasks)), 4.6), squeeze=False)
    if not tasks:
        _empty(axes[0][0], "no text task with VeRA or LoRA runs at several ranks")
    estimator, errorbar = _estimator(stat)
    for ax, task in zip(axes[0], tasks):
        sub = data[data["task"] == task]
        summary = aggregate(sub, ["method", "rank"], score, stat)
        adapters = sub[sub["method"] != "head"]
        if not adapters.empty:
            sns.scatterplot(adapters, x="adapter_params", y="percent", hue="method", palette=PALETTE, alpha=0.35,
                            s=18, legend=False, ax=ax)
            sns.lineplot(adapters, x="adapter_params", y="percent", hue="method", hue_order=["vera", "lora"],
                         palette=PALETTE, estimator=estimator, errorbar=errorbar, err_style="bars", marker="o",
                         err_kws={"capsize": 3}, ax=ax)
        _label_ranks(ax, summary[summary["method"] != "head"])
        _majority_line(ax, sub)
        for _, row in summary[summary["method"] == "head"].iterrows():
            ax.axhline(row["center"], color=PALETTE["head"], ls="--", lw=1.2)
            ax.axhspan(row["low"], row["high"], color=PALETTE["head"], alpha=0.12, lw=0)
        for _, row in _paper_points(task, sub["model"].iloc[0]).iterrows():
            ax.scatter(row["adapter_params"], 100 * row["score"], marker="*", s=160, color=PALETTE[row["method"]],
                       edgecolor="k", zorder=5)
        handles = [plt.Line2D([], [], color=PALETTE[m], marker="o", label=f"{METHOD_LABELS[m]} (n={n} per rank)")
                   for m, n in summary[summary["method"] != "head"].groupby("method")["n"].min().items()]
        handles += [plt.Line2D([], [], color=PALETTE["head"], ls="--", label=f"head only (no adapter; n={n})")
                    for n in summary[summary["method"] == "head"]["n"]]
        if not _paper_points(task, sub["model"].iloc[0]).empty:
            handles.append(plt.Line2D([], [], marker="*", color="k", ls="", markersize=10, label="paper"))
        ax.set_xscale("log")
        _at_least_min_span(ax)
        low, high = ax.get_ylim()  # room above and below for the stacked rank labels, which are not clipped
        ax.set_ylim(low - 0.08 * (high - low), high + 0.15 * (high - low))
        ax.legend(handles=handles, fontsize=7.5, loc="best")  # after the limits are set: where the data is not
        ax.set_xlabel("adapter parameters (log scale; the task head is not counted)")
        ax.set_ylabel(f"{sub['metric'].iloc[0]} (%)")
        ax.set_title(TASK_LABELS.get(task, task), fontsize=9)
    return _finish(fig, "VeRA vs LoRA: score vs adapter parameters", data, score, stat)


def _point_panel(ax, data: pd.DataFrame, labels: list[tuple[str, pd.DataFrame]], title: str, score: str,
                 stat: str) -> None:
    """One column per (label, runs): every seed a dot, the center with its spread, its value and n written."""
    ax.set_title(title, fontsize=9)
    labels = [(label, runs) for label, runs in labels if not runs.empty]
    if not labels:
        _empty(ax)
        return
    rows = []
    for label, runs in labels:
        check_one_setting(runs, ["variant"])
        rows.append(runs.assign(column=f"{label}\n({int(runs['adapter_params'].iloc[0]):,})"))
    plotted = _percent(pd.concat(rows, ignore_index=True), score)
    order = list(dict.fromkeys(plotted["column"]))
    estimator, errorbar = _estimator(stat)
    state = np.random.get_state()  # seaborn jitters with numpy's global generator: fix it, so figures regenerate
    np.random.seed(0)  # byte for byte, and leave the caller's random state as it was
    sns.stripplot(plotted, x="column", y="percent", order=order, hue="method", palette=PALETTE, jitter=0.12,
                  alpha=0.5, size=4, legend=False, ax=ax)
    np.random.set_state(state)
    sns.pointplot(plotted, x="column", y="percent", order=order, hue="method", palette=PALETTE, estimator=estimator,
                  errorbar=errorbar, linestyle="none", markers="D", markersize=5, capsize=0.1,
                  err_kws={"linewidth": 1.2}, legend=False, ax=ax)
    for i, column in enumerate(order):
        row = aggregate(plotted[plotted["column"] == column], ["column"], score, stat).iloc[0]
        ax.annotate(f"{row['center']:.1f}\nn={row['n']}", (i, row["high"]), textcoords="offset points",
                    xytext=(0, 4), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("(adapter parameters; the task head is not counted)", fontsize=7.5, color="#555555")
    ax.set_ylabel(f"{data['metric'].iloc[0]} (%)")
    ax.tick_params(axis="x", labelsize=7.5)
    _majority_line(ax, plotted)
    _at_least_min_span(ax)
    ax.margins(y=0.25)


def _at_least_min_span(ax) -> None:
    """A 1-point difference must not fill the axis: runs differ by ~2 points by chance."""
    low, high = ax.get_ylim()
    if high - low < MIN_SPAN:
        middle = (low + high) / 2
        ax.set_ylim(middle - MIN_SPAN / 2, middle + MIN_SPAN / 2)


def _majority_line(ax, runs: pd.DataFrame) -> None:
    """A dotted line at the majority-class score (the best constant answer on the scored split), where records hold it:
    a score on or under it is no skill."""
    levels = runs["majority_score"].dropna().unique()
    if len(levels) == 1:
        ax.axhline(100 * levels[0], color="#888888", ls=":", lw=1.2, zorder=0)
        ax.annotate("majority class", (0, 100 * levels[0]), xycoords=("axes fraction", "data"), xytext=(3, -2),
                    textcoords="offset points", ha="left", va="top", fontsize=7, color="#666666")


def _vera_at(frame: pd.DataFrame, rank: int) -> pd.DataFrame:
    data = _ok(frame)
    return data[(data["method"] == "vera") & (data["rank"] == rank)]


def ablation_rank(frame: pd.DataFrame) -> int | None:
    """The VeRA rank the ablation runs used (the default profile 256, the paper 1024): the rank with the most runs
    of a non-default variant (d init, A/B init, a removed vector, independent A/B); None without such runs."""
    vera = _ok(frame)
    variants = vera[(vera["method"] == "vera") & ~vera["default_variant"].astype(bool)]
    return None if variants.empty else int(variants["rank"].value_counts().idxmax())


def init_ablation_figure(frame: pd.DataFrame, rank: int | None = None, score: str = "final", stat: str = "median"):
    """d initial values (A/B at their default init) and A/B initializations (d at its default), VeRA at one rank
    (default: the ablation runs' rank)."""
    rank = rank or ablation_rank(frame)
    data = _vera_at(frame, rank)
    data = data[data["train_d"].astype(bool) & data["train_b"].astype(bool) & data["shared"].astype(bool)]
    varied = data[(data["d_init"] != DEFAULT.d_init) | (data["projection_init"] != DEFAULT.projection_init)]
    tasks = sorted(varied["task"].unique())  # tasks where initializations were ablated
    data = data[data["task"].isin(tasks)]
    fig, axes = plt.subplots(len(tasks) or 1, 2, figsize=(10, 4 * max(1, len(tasks))), squeeze=False)
    if not tasks:
        _empty(axes[0][0], "no records of VeRA initialization variants")
        axes[0][1].set_axis_off()
    for row_axes, task in zip(axes, tasks):
        sub = data[data["task"] == task]
        d = sub[sub["projection_init"] == DEFAULT.projection_init]
        _point_panel(row_axes[0], sub, [(f"d_init={v:g}", d[d["d_init"] == v]) for v in sorted(d["d_init"].unique())],
                     f"{TASK_LABELS.get(task, task)}\nd initial value (A/B {DEFAULT.projection_init}, r={rank})",
                     score, stat)
        ab = sub[sub["d_init"] == DEFAULT.d_init]
        _point_panel(row_axes[1], sub, [(init.replace("_", " "), ab[ab["projection_init"] == init])
                                        for init in PROJECTION_INITS],
                     f"{TASK_LABELS.get(task, task)}\nA/B initialization (d_init={DEFAULT.d_init:g}, r={rank})",
                     score, stat)
    return _finish(fig, "Initialization ablation (VeRA)", data, score, stat)


def vector_ablation_figure(frame: pd.DataFrame, rank: int | None = None, score: str = "final", stat: str = "median"):
    """Both vectors vs d only vs b only, and shared vs independent A/B per layer (default rank: the ablation runs')."""
    rank = rank or ablation_rank(frame)
    data = _vera_at(frame, rank)
    data = data[(data["projection_init"] == DEFAULT.projection_init) & data["d_init"].isin([DEFAULT.d_init, 0.0])]
    varied = data[~(data["train_d"].astype(bool) & data["train_b"].astype(bool) & data["shared"].astype(bool))]
    tasks = sorted(varied["task"].unique())  # tasks where a vector was removed or A/B made independent
    data = data[data["task"].isin(tasks)]
    fig, axes = plt.subplots(1, len(tasks) or 1, figsize=(7 * max(1, len(tasks)), 4.4), squeeze=False)
    if not tasks:
        _empty(axes[0][0], "no records of VeRA vector variants")
    for ax, task in zip(axes[0], tasks):
        sub = data[data["task"] == task]
        columns = []
        for label, where in VECTOR_VARIANTS:
            runs = sub
            for key, value in where.items():
                runs = runs[runs[key].astype(bool) == value]
            columns.append((label, runs))
        _point_panel(ax, sub, columns, f"{TASK_LABELS.get(task, task)} (r={rank})", score, stat)
    return _finish(fig, "Scaling-vector ablation (VeRA)", data, score, stat)


def main_runs(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The method comparison of `kind` ("text" or "image"): the tasks with a full fine-tuning run, and of their
    runs the default variants present on every one of those tasks (head, full, one LoRA and one VeRA rank), so a
    rank sweep's other ranks on the same tasks stay out of the table."""
    data = _ok(frame)
    data = data[(data["kind"] == kind) & data["default_variant"].astype(bool)]
    tasks = sorted(data[data["method"] == "full"]["task"].unique())
    data = data[data["task"].isin(tasks)]
    common = set.intersection(*(set(g["variant"]) for _, g in data.groupby("task"))) if tasks else set()
    return data[data["variant"].isin(common)]


MAIN_TITLES = {"image": "ViT image classification: head / full / LoRA / VeRA (few-shot)",
               "text": "Main table: head / full / LoRA / VeRA"}


def main_figure(frame: pd.DataFrame, kind: str = "image", score: str = "final", stat: str = "median"):
    """Head only / full fine-tune / LoRA / VeRA per task (main_runs), the paper's values as stars where they
    apply."""
    data = main_runs(frame, kind)
    tasks = sorted(data["task"].unique())
    fig, axes = plt.subplots(1, len(tasks) or 1, figsize=(5.5 * max(1, len(tasks)), 4.4), squeeze=False)
    if not tasks:
        _empty(axes[0][0], f"no {kind} task with head, full, LoRA and VeRA runs")
    for ax, task in zip(axes[0], tasks):
        sub = data[data["task"] == task]
        columns = [(variant + suffix, runs) for method in METHODS
                   for variant in sorted(sub[sub["method"] == method]["variant"].unique())
                   for suffix, runs in split_settings(sub[sub["variant"] == variant])]
        _point_panel(ax, sub, columns, TASK_LABELS.get(task, task), score, stat)
        labels = [label for label, runs in columns if not runs.empty]
        for _, row in _paper_points(task, sub["model"].iloc[0]).iterrows():
            matches = [i for i, (label, runs) in enumerate(columns) if runs["method"].iloc[0] == row["method"]]
            if matches and len(labels) == len(columns):
                ax.scatter(matches[0], 100 * row["score"], marker="*", s=160, color=PALETTE[row["method"]],
                           edgecolor="k", zorder=5)
    return _finish(fig, MAIN_TITLES[kind], data, score, stat)


# ---- tables ---------------------------------------------------------------------------------------------------

def results_table(frame: pd.DataFrame, score: str = "final", stat: str = "median") -> pd.DataFrame:
    """Every setting's summary: adapter and head parameters, the score's center and spread over seeds, n, seeds."""
    data = _ok(frame)
    summary = aggregate(data, ["task", "model", "method", "variant", "setting"], score, stat)
    summary["order"] = summary["method"].map({m: i for i, m in enumerate(METHODS)})
    summary = summary.sort_values(["task", "order", "adapter_params", "variant"]).reset_index(drop=True)
    summary["score (%)"] = [cell(row, stat) for _, row in summary.iterrows()]
    summary["seeds"] = [", ".join(map(str, s)) for s in summary["seeds"]]
    repeated = summary.duplicated(["task", "model", "variant"], keep=False)
    summary["setting differs in"] = [_differs(summary, row) if dup else "" for dup, (_, row) in
                                     zip(repeated, summary.iterrows())]
    columns = ["task", "model", "variant", "adapter_params", "head_params", "score (%)", "n", "seeds"]
    return summary[columns + (["setting differs in"] if repeated.any() else [])]


def _differs(summary: pd.DataFrame, row) -> str:
    """The settings in which `row` differs from other rows of its task and variant (so the table says why they are
    separate rows)."""
    others = summary[(summary["task"] == row["task"]) & (summary["variant"] == row["variant"])]
    mine, theirs = json.loads(row["setting"]), [json.loads(s) for s in others["setting"] if s != row["setting"]]
    return ", ".join(f"{k}={mine.get(k)}" for k in sorted(mine) if any(t.get(k) != mine.get(k) for t in theirs))


def split_settings(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The runs of one variant split by setting, each labelled by what sets it apart (" (lr=0.03)"); one setting
    gets no label. So runs of a learning-rate search are shown side by side, never averaged together."""
    settings = {s: json.loads(s) for s in runs["setting"].unique()}
    if len(settings) == 1:
        return [("", runs)]
    keys = sorted(k for k in set().union(*settings.values())
                  if len({json.dumps(v.get(k)) for v in settings.values()}) > 1)
    return [(" (" + ", ".join(f"{k}={value.get(k)}" for k in keys) + ")", runs[runs["setting"] == setting])
            for setting, value in settings.items()]


def main_table(frame: pd.DataFrame, kind: str = "image", score: str = "final", stat: str = "median") -> pd.DataFrame:
    """Head / full / LoRA / VeRA (rows) on the tasks (columns) of main_runs, with adapter and head parameters; a
    variant run with several settings gets a row per setting, labelled by what differs."""
    data = main_runs(frame, kind)
    if data.empty:
        return pd.DataFrame(columns=["method", "adapter_params"])
    data = pd.concat([runs.assign(variant=variant + suffix)
                      for (_, variant), group in data.groupby(["task", "variant"], sort=False)
                      for suffix, runs in split_settings(group)])
    summary = aggregate(data, ["task", "method", "variant"], score, stat)
    summary["cell"] = [cell(row, stat) for _, row in summary.iterrows()]
    # the head's size is a column where every task has the same head, else the table's note lists it per task
    one_head = summary.groupby("method")["head_params"].nunique().max() == 1
    index = ["method", "variant", "adapter_params"] + (["head_params"] if one_head else [])
    table = summary.pivot_table(index=index, columns="task", values="cell", aggfunc="first").reset_index()
    table.columns.name = None
    table = table.sort_values(by="method", key=lambda s: s.map({m: i for i, m in enumerate(METHODS)}))
    table = table.reset_index(drop=True)
    table.attrs["head_params"] = {} if one_head else summary.groupby("task")["head_params"].first().to_dict()
    return table


def table_note(frame: pd.DataFrame, score: str = "final", stat: str = "median") -> str:
    """The line above a Markdown table: what each cell is."""
    data = _ok(frame)
    return (f"Score: {score_label(data, score)}, in %; cells: {STATS[stat]}, (n) runs; adapter_params: the adapter "
            f"alone (as the paper counts), head_params: the task head trained beside it. Records: "
            f"{len(data)} ok runs.\n\n")


# ---- everything -----------------------------------------------------------------------------------------------

def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return paths


def _write_table(table: pd.DataFrame, note: str, out: Path, stem: str) -> list[Path]:
    table.to_csv(out / f"{stem}.csv", index=False)
    (out / f"{stem}.md").write_text(note + table.to_markdown(index=False) + "\n")
    return [out / f"{stem}.csv", out / f"{stem}.md"]


def make_all(runs="runs", out="figures", score: str = "final", stat: str = "median", prefix: str = "") -> list[Path]:
    """Regenerate every table and figure in `out` (file names starting with `prefix`) from the records under `runs`;
    without any record (a mistyped --runs) nothing is written, so `out`'s tables are not replaced by empty ones."""
    frame = collect_records(runs)
    if frame.empty:
        why = "" if Path(runs).is_dir() else ", which does not exist"
        if frame.attrs["skipped"]:
            why = f", only {len(frame.attrs['skipped'])} unreadable ones (named in the warnings above)"
        raise FileNotFoundError(f"no run records ({RECORD}) under {runs}{why}; nothing written to {out}")
    if not (frame["status"] == "ok").any():
        failed = frame[frame["status"] != "ok"]
        raise FileNotFoundError(f"the {len(failed)} run record(s) under {runs} are all unfinished or failed (first: "
                                f"{failed['name'].iloc[0]}: {failed['error'].iloc[0] or failed['status'].iloc[0]}); "
                                f"nothing to draw, nothing written to {out}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a folder for the figures and tables")
    out.mkdir(parents=True, exist_ok=True)
    written = _write_table(results_table(frame, score, stat), table_note(frame, score, stat), out, f"{prefix}results")
    if rank_sweep_tasks(frame):
        written += _save(rank_sweep_figure(frame, score, stat), out, f"{prefix}rank_sweep")
    rank = ablation_rank(frame)
    if rank is not None:
        written += _save(init_ablation_figure(frame, rank, score, stat), out, f"{prefix}init_ablation")
        written += _save(vector_ablation_figure(frame, rank, score, stat), out, f"{prefix}vector_ablation")
    for kind, stem in (("text", "main"), ("image", "vit")):
        table = main_table(frame, kind, score, stat)
        if table.empty:
            continue
        note = table_note(main_runs(frame, kind), score, stat)
        if table.attrs["head_params"]:
            heads = ", ".join(f"{task} {n:,}" for task, n in table.attrs["head_params"].items())
            note += f"Task head parameters (trained beside the adapter, not counted in adapter_params): {heads}.\n\n"
        written += _write_table(table, note, out, f"{prefix}{stem}_table")
        written += _save(main_figure(frame, kind, score, stat), out, f"{prefix}{stem}")
    return written
