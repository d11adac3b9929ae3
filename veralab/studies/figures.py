"""The studies' figures as pure functions of the run records (the DataFrame of collect_records), and make_all,
which regenerates every figure and table.

Statistics as the paper reports them (tables.py): the median over seeds with its min–max spread, every seed drawn as
a dot; parameter counts are the adapter's alone, as the paper counts them. Every figure names
the model, data, seeds, score and statistic it shows, and says when the data is an embedded stand-in rather than
one of the paper's benchmarks; where the paper reports a value for the same model and task (paper_results.csv),
it is drawn beside ours.

Every figure function draws on new axes sized per panel (figsize= overrides), or on the caller's (ax=: one Axes, or
one per panel), in its own style (never the caller's global one); its caption is also `fig.veralab_caption`, and
caption=False keeps it out of the image. A frame from notebook.load_records draws the user's runs on the study.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..core.config import DEFAULT, PROJECTION_INITS
from ..experiment.record import RECORD
from .collect import collect_records
from .plotting import (
    METHOD_LABELS,
    PALETTE,
    TASK_LABELS,
    at_least_min_span,
    comparable_to,
    empty_panel,
    finish,
    head_reference,
    majority_line,
    overlay_yours,
    panels,
    paper_points,
    percent_of,
    point_panel,
    seaborn_estimator,
    split_yours,
    styled,
)
from .rank_labels import label_ranks
from .table2 import table2, to_latex, to_markdown
from .tables import METHODS, aggregate, main_runs, main_table, ok_runs, results_table, split_settings, table_note

VECTOR_VARIANTS = (("both d and b", dict(train_d=True, train_b=True, shared=True)),
                   ("d only\n(b=1, d from 0)", dict(train_d=True, train_b=False, shared=True)),
                   ("b only\n(d=1)", dict(train_d=False, train_b=True, shared=True)),
                   ("independent A/B", dict(train_d=True, train_b=True, shared=False)))



# ---- statistics -----------------------------------------------------------------------------------------------

# ---- figures --------------------------------------------------------------------------------------------------

def rank_sweep_tasks(frame: pd.DataFrame) -> list[str]:
    """The text tasks where VeRA or LoRA ran at several ranks: a task run at one rank per method (a main table's
    comparison) is no rank sweep."""
    data = ok_runs(frame)
    adapters = data[(data["kind"] == "text") & data["method"].isin(["vera", "lora"]) & data["default_variant"]]
    ranks = adapters.groupby(["task", "method"])["rank"].nunique()
    return sorted({task for (task, _), n in ranks.items() if n > 1})


@styled
def rank_sweep_figure(frame: pd.DataFrame, score: str = "final", stat: str = "median",
                ax=None, figsize=None, caption: bool = True):
    """Score vs adapter parameters (log x) for VeRA and LoRA across ranks, one panel per text task; head only is
    the dashed line (no adapter parameters); the paper's values are stars."""
    data = ok_runs(frame)
    data = percent_of(data[(data["kind"] == "text") & data["method"].isin(["vera", "lora", "head"])
                         & data["default_variant"].astype(bool)], score)
    tasks = rank_sweep_tasks(data)
    data = data[data["task"].isin(tasks)]
    own = ax is None  # (the loops below rebind ax)
    fig, axes = panels(1, max(1, len(tasks)), (6, 4.6), ax, figsize)
    if not tasks:
        empty_panel(axes[0][0], "no text task with VeRA or LoRA runs at several ranks")
    estimator, errorbar = seaborn_estimator(stat)
    labels = []  # (axes, ranks to label), labelled once the layout is final
    for ax, task in zip(axes[0], tasks):
        sub, yours = split_yours(data[data["task"] == task])
        if sub.empty:  # nothing of the study on this task: the user's runs are it
            sub, yours = yours, yours.iloc[:0]
        summary = aggregate(sub, ["method", "rank"], score, stat)
        adapters = sub[sub["method"] != "head"]
        if not adapters.empty:
            sns.scatterplot(adapters, x="adapter_params", y="percent", hue="method", palette=PALETTE, alpha=0.35,
                            s=18, legend=False, ax=ax)
            sns.lineplot(adapters, x="adapter_params", y="percent", hue="method", hue_order=["vera", "lora"],
                         palette=PALETTE, estimator=estimator, errorbar=errorbar, err_style="bars", marker="o",
                         err_kws={"capsize": 3}, ax=ax)
        labels.append((ax, summary[summary["method"] != "head"]))
        majority_line(ax, sub)
        head = head_reference(ax, sub, score, stat)
        paper = paper_points(task, sub["model"].iloc[0])
        paper = paper[paper["method"].isin(["vera", "lora"])]  # the adapters of the rank axis
        for _, row in paper.iterrows():
            ax.scatter(row["adapter_params"], 100 * row["score"], marker="*", s=160, color=PALETTE[row["method"]],
                       edgecolor="k", zorder=5)
        seeds = summary[summary["method"] != "head"].groupby("method")["n"].agg(["min", "max"])
        handles = [(plt.Line2D([], [], color=PALETTE[m], marker="o"),
                    f"{METHOD_LABELS[m]} (n={lo}{'' if lo == hi else f'–{hi}'} per rank)")
                   for m, (lo, hi) in seeds.iterrows()]
        handles += head + _rank_overlay(ax, sub, yours, score, stat)
        if not paper.empty:
            handles.append((plt.Line2D([], [], marker="*", color="k", ls="", markersize=10), "paper"))
        ax.set_xscale("log")
        if not adapters.empty:  # room left of the lowest ranks for their column of labels
            ax.set_xlim(left=min(ax.get_xlim()[0], adapters["adapter_params"].min() / 1.6))
        at_least_min_span(ax)
        low, high = ax.get_ylim()  # room above and below for the stacked rank labels, which are not clipped
        ax.set_ylim(low - 0.08 * (high - low), high + 0.15 * (high - low))
        ax.legend(*zip(*handles), fontsize=7.5, loc="best")  # after the limits are set: where the data is not
        ax.set_xlabel("adapter parameters (log scale; the task head is not counted)")
        ax.set_ylabel(f"{sub['metric'].iloc[0]} (%)")
        ax.set_title(TASK_LABELS.get(task, task), fontsize=9)
    fig = finish(fig, "VeRA vs LoRA: score vs adapter parameters", data, score, stat, caption, own)
    for ax, ranks in labels:
        label_ranks(ax, ranks)
    return fig


def _rank_overlay(ax, study: pd.DataFrame, yours: pd.DataFrame, score: str, stat: str) -> list:
    """The user's VeRA and LoRA runs on a rank sweep's panel, where their setting is the study's but for the rank."""
    drawn, left_out = [], []
    for method, runs in yours[yours["method"].isin(["vera", "lora"])].groupby("method"):
        own = study[study["method"] == method]
        if own.empty:
            left_out.append({"method"})
            continue
        fits, differ = comparable_to(runs, json.loads(own["setting"].iloc[0]), ("rank",))
        left_out += [differ] * (len(runs) - len(fits))
        drawn.append(fits.assign(x=fits["adapter_params"], alone=~fits["rank"].isin(own["rank"])))
    return overlay_yours(ax, drawn, score, stat, left_out)


def _vera_at(frame: pd.DataFrame, rank: int) -> pd.DataFrame:
    data = ok_runs(frame)
    return data[(data["method"] == "vera") & (data["rank"] == rank)]


def ablation_rank(frame: pd.DataFrame) -> int | None:
    """The VeRA rank the ablation runs used (the default profile 256, the paper 1024): the rank with the most runs
    of a non-default variant (d init, A/B init, a removed vector, independent A/B); None without such runs."""
    vera = ok_runs(frame)
    variants = vera[(vera["method"] == "vera") & ~vera["default_variant"].astype(bool)]
    return None if variants.empty else int(variants["rank"].value_counts().idxmax())


@styled
def init_ablation_figure(frame: pd.DataFrame, rank: int | None = None, score: str = "final", stat: str = "median",
                ax=None, figsize=None, caption: bool = True):
    """d initial values (A/B at their default init) and A/B initializations (d at its default), VeRA at one rank
    (default: the ablation runs' rank)."""
    rank = rank or ablation_rank(frame)
    heads = ok_runs(frame)[ok_runs(frame)["method"] == "head"]
    data = _vera_at(frame, rank)
    data = data[data["train_d"].astype(bool) & data["train_b"].astype(bool) & data["shared"].astype(bool)]
    varied = data[(data["d_init"] != DEFAULT.d_init) | (data["projection_init"] != DEFAULT.projection_init)]
    tasks = sorted(varied["task"].unique())  # tasks where initializations were ablated
    data = data[data["task"].isin(tasks)]
    own = ax is None  # (the loops below rebind ax)
    fig, axes = panels(len(tasks) or 1, 2, (5, 4), ax, figsize)
    if not tasks:
        empty_panel(axes[0][0], "no records of VeRA initialization variants")
        axes[0][1].set_axis_off()
    for row_axes, task in zip(axes, tasks):
        sub = data[data["task"] == task]
        d = sub[sub["projection_init"] == DEFAULT.projection_init]
        head = heads[heads["task"] == task]
        point_panel(row_axes[0], sub, [(f"d_init={v:g}", d[d["d_init"] == v]) for v in sorted(d["d_init"].unique())],
                    f"{TASK_LABELS.get(task, task)}\nd initial value (A/B {DEFAULT.projection_init}, r={rank})",
                    score, stat, head, varied=("d_init",))
        ab = sub[sub["d_init"] == DEFAULT.d_init]
        point_panel(row_axes[1], sub, [(init.replace("_", " "), ab[ab["projection_init"] == init])
                                       for init in PROJECTION_INITS],
                    f"{TASK_LABELS.get(task, task)}\nA/B initialization (d_init={DEFAULT.d_init:g}, r={rank})",
                    score, stat, head, varied=("projection_init",))
    return finish(fig, "Initialization ablation (VeRA)", pd.concat([data, heads[heads["task"].isin(tasks)]]), score,
                  stat, caption, own)


@styled
def vector_ablation_figure(frame: pd.DataFrame, rank: int | None = None, score: str = "final", stat: str = "median",
                ax=None, figsize=None, caption: bool = True):
    """Both vectors vs d only vs b only, and shared vs independent A/B per layer (default rank: the ablation runs')."""
    rank = rank or ablation_rank(frame)
    heads = ok_runs(frame)[ok_runs(frame)["method"] == "head"]
    data = _vera_at(frame, rank)
    data = data[(data["projection_init"] == DEFAULT.projection_init) & data["d_init"].isin([DEFAULT.d_init, 0.0])]
    varied = data[~(data["train_d"].astype(bool) & data["train_b"].astype(bool) & data["shared"].astype(bool))]
    tasks = sorted(varied["task"].unique())  # tasks where a vector was removed or A/B made independent
    data = data[data["task"].isin(tasks)]
    own = ax is None  # (the loops below rebind ax)
    fig, axes = panels(1, len(tasks) or 1, (7, 4.4), ax, figsize)
    if not tasks:
        empty_panel(axes[0][0], "no records of VeRA vector variants")
    for ax, task in zip(axes[0], tasks):
        sub = data[data["task"] == task]
        columns = []
        for label, where in VECTOR_VARIANTS:
            runs = sub
            for key, value in where.items():
                runs = runs[runs[key].astype(bool) == value]
            columns.append((label, runs))
        point_panel(ax, sub, columns, f"{TASK_LABELS.get(task, task)} (r={rank})", score, stat,
                    heads[heads["task"] == task], varied=("train_d", "train_b", "shared", "d_init"))
    return finish(fig, "Scaling-vector ablation (VeRA)", pd.concat([data, heads[heads["task"].isin(tasks)]]), score,
                  stat, caption, own)


def _main_columns(study: pd.DataFrame, yours: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A column per method variant and setting of the study (split_settings); the user's runs join the column of
    their variant and setting, else get their own."""
    columns = []
    for part in (study, yours):
        for method in METHODS:
            for variant in sorted(part[part["method"] == method]["variant"].unique()):
                for suffix, runs in split_settings(part[part["variant"] == variant]):
                    same = [i for i, (_, col) in enumerate(columns) if col["variant"].iloc[0] == variant
                            and col["setting"].iloc[0] == runs["setting"].iloc[0]]
                    if same:
                        columns[same[0]] = (columns[same[0]][0], pd.concat([columns[same[0]][1], runs]))
                    else:
                        columns.append((variant + suffix, runs))
    return columns


MAIN_TITLES = {"image": "ViT image classification: head / full / LoRA / VeRA",
               "text": "Main table: head / full / LoRA / VeRA"}


def main_title(data: pd.DataFrame, kind: str) -> str:
    """The main figure's title; for images it says how many training images per class (10 is the paper's few-shot
    setting; the embedded study trains on 50)."""
    shots = sorted({int(s) for s in data.get("shots_per_class", pd.Series(dtype=float)).dropna()})
    if kind != "image" or not shots:
        return MAIN_TITLES[kind]
    return f"{MAIN_TITLES[kind]} ({'/'.join(map(str, shots))} training images per class)"


@styled
def main_figure(frame: pd.DataFrame, kind: str = "image", score: str = "final", stat: str = "median",
                ax=None, figsize=None, caption: bool = True):
    """Head only / full fine-tune / LoRA / VeRA per task (main_runs), the paper's values as stars where they
    apply."""
    data = main_runs(frame, kind)
    tasks = sorted(data["task"].unique())
    own = ax is None  # (the loops below rebind ax)
    fig, axes = panels(1, len(tasks) or 1, (5.5, 4.4), ax, figsize)
    if not tasks:
        empty_panel(axes[0][0], f"no {kind} task with head, full, LoRA and VeRA runs")
    for ax, task in zip(axes[0], tasks):
        sub = data[data["task"] == task]
        columns = _main_columns(*split_yours(sub))
        point_panel(ax, sub, columns, TASK_LABELS.get(task, task), score, stat,
                    varied=("method", "rank", "lr", "head_lr"))
        labels = [label for label, runs in columns if not runs.empty]
        for _, row in paper_points(task, sub["model"].iloc[0]).iterrows():
            matches = [i for i, (label, runs) in enumerate(columns) if runs["method"].iloc[0] == row["method"]]
            if matches and len(labels) == len(columns):
                ax.scatter(matches[0], 100 * row["score"], marker="*", s=160, color=PALETTE[row["method"]],
                           edgecolor="k", zorder=5)
    return finish(fig, main_title(data, kind), data, score, stat, caption, own)


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
    if rank is not None:  # each ablation figure where its variants ran: no empty placeholder
        for figure, stem in ((init_ablation_figure, "init_ablation"), (vector_ablation_figure, "vector_ablation")):
            fig = figure(frame, rank, score, stat)
            if any(ax.get_title() for ax in fig.axes):
                written += _save(fig, out, f"{prefix}{stem}")
            else:
                plt.close(fig)
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
        paper_layout = table2(frame, score, stat) if kind == "text" else pd.DataFrame()
        if not paper_layout.empty:  # the GLUE tasks' main table as the paper's Table 2, for a paper's own source
            for suffix, text in (("md", to_markdown(paper_layout)), ("tex", to_latex(paper_layout))):
                (out / f"{prefix}table2.{suffix}").write_text(text)
                written.append(out / f"{prefix}table2.{suffix}")
    return written
