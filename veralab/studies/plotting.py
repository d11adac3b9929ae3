"""What every figure shares: its labels and footer (model, seeds, data, score, statistic, learning rates), point
panels with every seed drawn, the head-only and majority-class references, and the paper's values."""

from __future__ import annotations

import functools
import json
import textwrap
from pathlib import Path

import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .tables import (
    METHODS,
    SCORES,
    STATS,
    aggregate,
    check_one_setting,
    counts_per_task,
    differing_keys,
    once_or_per_task,
    score_label,
)

PAPER_RESULTS = Path(__file__).resolve().parent / "paper_results.csv"
MODEL_LABELS = {"minilm": "all-MiniLM-L6-v2 (22.7M, embedded)",
                "tiny_vit": "tiny ViT, 0.45M, pretrained on Fashion-MNIST (embedded)"}
TASK_LABELS = {"rotten_tomatoes": "Rotten Tomatoes snippets (embedded stand-in, not SST-2)",
               "mnist_5k": "MNIST-5k (embedded stand-in)", "digits": "sklearn digits 8x8 (embedded stand-in)",
               "sst2": "GLUE SST-2 dev", "mrpc": "GLUE MRPC dev", "cola": "GLUE CoLA dev", "qnli": "GLUE QNLI dev",
               "rte": "GLUE RTE dev", "stsb": "GLUE STS-B dev", "cifar100": "CIFAR-100", "food101": "Food-101",
               "flowers102": "Flowers-102 (re-split)", "resisc45": "RESISC45"}
METHOD_LABELS = {"head": "head only", "full": "full fine-tune", "lora": "LoRA", "vera": "VeRA"}
PALETTE = {"head": "#949494", "full": "#029e73", "lora": "#d55e00", "vera": "#0173b2"}  # seaborn "colorblind"
MIN_SPAN = 10.0  # percentage points: the least a panel's y-axis spans (point panels and rank sweeps)

# the figures' look, applied while each is drawn (styled), never to the user's global matplotlib settings
STYLE = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85)}


def styled(figure):
    """Draw `figure` under STYLE, restoring the caller's values of those settings afterwards (only those: a whole
    rc_context also restores what Jupyter's inline backend set meanwhile, and later figures then never show)."""
    @functools.wraps(figure)
    def draw(*args, **kwargs):
        saved = {key: plt.rcParams[key] for key in STYLE}
        plt.rcParams.update(STYLE)
        try:
            return figure(*args, **kwargs)
        finally:
            plt.rcParams.update(saved)
    return draw


def seaborn_estimator(stat: str):
    return ("median", ("pi", 100)) if stat == "median" else ("mean", "sd")


# ---- labels ----------------------------------------------------------------------------------------------------

def provenance(frame: pd.DataFrame, score: str = "final", stat: str = "median") -> str:
    """Model · seeds · train size · score · statistic, for a figure's footer."""
    models = ", ".join(MODEL_LABELS.get(m, m) for m in sorted(frame["model"].dropna().unique()))
    seeds = sorted({int(s) for s in frame["run_seed"].dropna()})
    return (f"{models}; seeds {seeds}; {counts_per_task(frame, 'train_size')} training examples; score: "
            f"{score_label(frame, score)}; {STATS[stat]}; dots: one per seed; {rates_text(frame)}")


def rates_text(frame: pd.DataFrame) -> str:
    """Each method's learning rate and head rate, per task where the tasks differ: 'VeRA lr 0.03, head lr 0.01'."""
    parts = []
    for method in METHODS:
        runs = frame[frame["method"] == method]
        if runs.empty:
            continue
        per_task = {t: (g["lr"].dropna().unique(), g["head_lr"].dropna().unique()) for t, g in runs.groupby("task")}

        def rate(lrs, heads, method=method):
            head = f"head lr {'/'.join(f'{h:g}' for h in sorted(heads))}"
            return head if method == "head" else f"lr {'/'.join(f'{v:g}' for v in sorted(lrs))}, {head}"

        texts = {t: rate(*v) for t, v in per_task.items()}
        parts.append(f"{METHOD_LABELS[method]}: " + once_or_per_task(texts, "{task}: {text}", "; "))
    return "learning rates: " + " | ".join(parts)


def paper_points(task: str, model: str) -> pd.DataFrame:
    paper = pd.read_csv(PAPER_RESULTS, comment="#")
    return paper[(paper["task"] == task) & (paper["model"] == model)]


FOOTER_CHARS_PER_INCH = 17  # characters of the 7.5-point footer that fit in an inch of figure width


def panels(rows: int, cols: int, panel_size: tuple[float, float], ax=None, figsize=None):
    """A figure's rows x cols panels: new axes (figsize, default panel_size each), or the caller's `ax` (one Axes, or
    as many as the figure has panels, in reading order), as seaborn's axes-level functions take them."""
    if ax is None:
        width, height = panel_size
        return plt.subplots(rows, cols, figsize=figsize or (width * cols, height * rows), squeeze=False)
    given = np.asarray(ax, dtype=object).ravel()
    if len(given) != rows * cols:
        raise ValueError(f"this figure draws {rows * cols} panel(s), {rows} row(s) of {cols}; ax= gave {len(given)} "
                         f"axes (pass that many, e.g. plt.subplots({rows}, {cols})[1])")
    return given[0].figure, given.reshape(rows, cols)


def finish(fig, title: str, frame: pd.DataFrame, score: str, stat: str, caption: bool = True, own: bool = True):
    """Title, and the provenance footer wrapped to the figure's width with room kept for all its lines. The caption
    (title and provenance) is also `fig.veralab_caption`, for a paper's own caption: caption=False keeps it out of the
    image; own=False (the caller's axes) leaves the caller's figure as it is: no title, footer or layout."""
    fig.veralab_caption = f"{title}. {provenance(frame, score, stat)}." if not frame.empty else title
    if not own:
        return fig
    fig.suptitle(title, fontsize=12, fontweight="bold")
    if frame.empty or not caption:
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        return fig
    footer = textwrap.wrap(provenance(frame, score, stat), int(fig.get_figwidth() * FOOTER_CHARS_PER_INCH))
    fig.text(0.5, 0.005, "\n".join(footer), ha="center", va="bottom", fontsize=7.5, color="#444444")
    height = (len(footer) * 7.5 * 1.3 / 72 + 0.06) / fig.get_figheight()  # the footer's lines, in figure height
    fig.tight_layout(rect=(0, height, 1, 0.95))
    return fig


def empty_panel(ax, message="no runs for this panel yet"):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def percent_of(frame: pd.DataFrame, score: str) -> pd.DataFrame:
    return frame.assign(percent=100 * frame[SCORES[score][0]].astype(float))


def point_panel(ax, data: pd.DataFrame, labels: list[tuple[str, pd.DataFrame]], title: str, score: str,
                stat: str, heads: pd.DataFrame | None = None, varied: tuple[str, ...] = ()) -> None:
    """One column per (label, runs): every seed a dot, the center with its spread, its value and n written; `heads`:
    head-only runs drawn as the reference an adapter variant must clear. The columns may differ only in `varied`
    (the panel's comparison), else they are no pair and the panel is refused (check_comparable). Runs marked as the
    user's own (split_yours) are drawn on top of the study, never pooled with it: see overlay_yours."""
    ax.set_title(title, fontsize=9)
    labels = [(label, runs) for label, runs in labels if not runs.empty]
    if not labels:
        empty_panel(ax)
        return
    if all(split_yours(runs)[0].empty for _, runs in labels):  # nothing of the study here: the user's runs are it
        labels = [(label, runs.assign(yours=False)) for label, runs in labels]
    parts = [(label, *split_yours(runs)) for label, runs in labels]
    check_comparable([(label, runs) for label, runs, _ in parts if not runs.empty], varied, title.replace("\n", " "))
    columns = [(f"{label}\n({int(pd.concat([runs, yours])['adapter_params'].iloc[0]):,})", runs, yours)
               for label, runs, yours in parts]
    study = [(column, runs) for column, runs, _ in columns if not runs.empty]
    for _, runs in study:
        check_one_setting(runs, ["variant"])
    plotted = percent_of(pd.concat([runs.assign(column=column) for column, runs in study], ignore_index=True), score)
    order = [column for column, _, _ in columns]
    estimator, errorbar = seaborn_estimator(stat)
    state = np.random.get_state()  # seaborn jitters with numpy's global generator: fix it, so figures regenerate
    np.random.seed(0)  # byte for byte, and leave the caller's random state as it was
    sns.stripplot(plotted, x="column", y="percent", order=order, hue="method", palette=PALETTE, jitter=0.12,
                  alpha=0.5, size=4, legend=False, ax=ax)
    np.random.set_state(state)
    sns.pointplot(plotted, x="column", y="percent", order=order, hue="method", palette=PALETTE, estimator=estimator,
                  errorbar=errorbar, linestyle="none", markers="D", markersize=5, capsize=0.1,
                  err_kws={"linewidth": 1.2}, legend=False, ax=ax)
    for i, column in enumerate(order):
        if column in set(plotted["column"]):
            row = aggregate(plotted[plotted["column"] == column], ["column"], score, stat).iloc[0]
            ax.annotate(f"{row['center']:.1f}\nn={row['n']}", (i, row["high"]), textcoords="offset points",
                        xytext=(0, 4), ha="center", va="bottom", fontsize=7)
    reference = json.loads(study[0][1]["setting"].iloc[0])
    drawn, left_out = [], []
    for i, (_, runs, yours) in enumerate(columns):
        own = json.loads(runs["setting"].iloc[0]) if not runs.empty else reference
        fits, differ = comparable_to(yours, own, varied)
        left_out += [differ] * (len(yours) - len(fits))
        if not fits.empty:
            drawn.append(percent_of(fits, score).assign(x=i, alone=runs.empty))
    entries = overlay_yours(ax, drawn, score, stat, left_out)
    ax.set_xlabel("(adapter parameters; the task head is not counted)", fontsize=7.5, color="#555555")
    ax.set_ylabel(f"{data['metric'].iloc[0]} (%)")
    ax.tick_params(axis="x", labelsize=7.5)
    entries = (head_reference(ax, heads, score, stat) if heads is not None else []) + entries
    if entries:
        ax.legend(*zip(*entries), fontsize=7, loc="best")
    majority_line(ax, plotted)
    at_least_min_span(ax)
    ax.margins(y=0.25)


# ---- the user's own runs, drawn on the study ---------------------------------------------------------------------

YOURS = {"marker": "X", "s": 70, "color": "black", "edgecolor": "white", "linewidth": 0.8, "zorder": 6}


def split_yours(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the study's runs, the user's own runs): notebook.load_records marks the user's `yours`, to be drawn on top of
    the committed study and never pooled with its seeds."""
    if "yours" not in frame:
        return frame, frame.iloc[:0]
    mine = frame["yours"].fillna(False).astype(bool)
    return frame[~mine], frame[mine]


def comparable_to(yours: pd.DataFrame, setting: dict, varied) -> tuple[pd.DataFrame, set[str]]:
    """The user's runs that differ from the study's `setting` only in `varied` (drawable beside it), and the fields
    in which the others differ from it."""
    keep, differ = [], set()
    for index, own in yours["setting"].items():
        keys = {k for k in differing_keys([setting, json.loads(own)]) if k not in varied}
        keep += [index] if not keys else []
        differ |= keys
    return yours.loc[keep], differ


def overlay_yours(ax, drawn: list[pd.DataFrame], score: str, stat: str, left_out: list[set[str]]) -> list:
    """Each of the user's runs as a black cross at its x (a column, or the parameter axis), its value written where
    the study has no runs there. Returns the legend entries: the crosses, and those left out (one set of differing
    fields each) because their setting differs from the study's."""
    runs = pd.concat(drawn, ignore_index=True) if drawn else pd.DataFrame()
    entries = []
    if not runs.empty:
        ax.scatter(runs["x"], runs["percent"], **YOURS)
        for x, group in runs[runs["alone"]].groupby("x"):
            row = aggregate(group, ["x"], score, stat).iloc[0]
            ax.annotate(f"yours {row['center']:.1f}\nn={row['n']}", (x, row["high"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", va="bottom", fontsize=7, fontweight="bold")
        entries.append((plt.Line2D([], [], ls="", marker="X", color="black", markeredgecolor="white", markersize=8),
                        f"your runs (n={len(runs)})"))
    if left_out:
        entries.append((plt.Line2D([], [], ls="", marker="X", color="#bbbbbb", markersize=8),
                        f"not drawn: {len(left_out)} of your runs (setting differs in "
                        f"{', '.join(sorted(set().union(*left_out)))})"))
    return entries


def check_comparable(columns: list[tuple[str, pd.DataFrame]], varied: tuple[str, ...], where: str) -> None:
    """Refuse to draw side by side runs that differ in more than the panel varies (a 1-epoch, 64-example run beside
    a 3-epoch, 768-example study), naming how they differ."""
    settings = {label.replace("\n", " "): json.loads(runs["setting"].iloc[0]) for label, runs in columns}
    differ = {k: {label: s.get(k) for label, s in settings.items()} for k in differing_keys(settings.values())
              if k not in varied}
    if differ:
        shown = "; ".join(f"{k}: " + ", ".join(f"{label} {v!r}" for label, v in values.items())
                          for k, values in list(differ.items())[:4])
        raise ValueError(f"{where}: the runs drawn side by side differ in {', '.join(differ)} besides what the panel "
                         f"compares ({', '.join(varied)}): {shown}. Select runs of one setting (e.g. "
                         f"frame[frame.epochs == 3]) or keep such runs in separate folders")


def head_reference(ax, runs: pd.DataFrame, score: str, stat: str) -> list:
    """Head only's center as a dashed line with its spread as a band: the level an adapter must clear to add anything
    to the trained head. Returns its legend entry, (handle, label), in a list (empty without head-only runs). The
    study's head-only runs where it has some, never pooled with the user's."""
    head = runs[runs["method"] == "head"]
    study = split_yours(head)[0]
    head = study if not study.empty else head
    if head.empty:
        return []
    row = aggregate(head, ["task"], score, stat).iloc[0]
    ax.axhline(row["center"], color=PALETTE["head"], ls="--", lw=1.2, zorder=0)
    ax.axhspan(row["low"], row["high"], color=PALETTE["head"], alpha=0.15, lw=0, zorder=0)
    spread = "min–max" if stat == "median" else "± sd"
    return [((plt.Line2D([], [], color=PALETTE["head"], ls="--"),
              matplotlib.patches.Patch(color=PALETTE["head"], alpha=0.3)),
             f"head only (no adapter): {stat}, band {spread}, n={row['n']}")]


def at_least_min_span(ax) -> None:
    """A 1-point difference must not fill the axis: runs differ by ~2 points by chance."""
    low, high = ax.get_ylim()
    if high - low < MIN_SPAN:
        middle = (low + high) / 2
        ax.set_ylim(middle - MIN_SPAN / 2, middle + MIN_SPAN / 2)


def majority_line(ax, runs: pd.DataFrame) -> None:
    """A dotted line at the majority-class score (the best constant answer on the scored split), where records hold it:
    a score on or under it is no skill."""
    levels = runs["majority_score"].dropna().unique()
    if len(levels) == 1:
        ax.axhline(100 * levels[0], color="#888888", ls=":", lw=1.2, zorder=0)
        ax.annotate("majority class", (0, 100 * levels[0]), xycoords=("axes fraction", "data"), xytext=(3, -2),
                    textcoords="offset points", ha="left", va="top", fontsize=7, color="#666666")
