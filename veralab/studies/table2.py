"""The main table in the paper's Table 2 layout, as Markdown and as a LaTeX booktabs table: a row per model and
method, the trainable parameters in millions (the adapter alone; full fine-tuning: the whole model), a column per
GLUE task in the paper's order with its metric, and the average over the tasks. Where the paper reports the same
model (paper_results.csv), its rows sit under ours, marked as the paper's.
"""

from __future__ import annotations

import pandas as pd

from .plotting import METHOD_LABELS, PAPER_RESULTS
from .tables import METHODS, STATS, aggregate, main_runs, score_label

PAPER_TASKS = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "rte": "RTE", "stsb": "STS-B"}
METRIC_NAMES = {"accuracy": "Acc.", "matthews": "MCC", "pearson": "Pearson", "f1": "F1", "spearman": "Spearman"}
AVERAGE = "Avg."
MODEL_NAMES = {"minilm": "all-MiniLM-L6-v2", "roberta-base": "RoBERTa-base", "roberta-large": "RoBERTa-large"}


def table2(frame: pd.DataFrame, score: str = "final", stat: str = "median") -> pd.DataFrame:
    """Ours (main_runs of the text tasks: one row per model and variant, the center over seeds in %), then the
    paper's rows for the same models. Columns: model, method, source, params (M), a column per task, Avg. (over the
    tasks the row has, named in the table's attrs when a row lacks some)."""
    data = main_runs(frame, "text")
    data = data[data["task"].isin(PAPER_TASKS)]
    if data.empty:
        return pd.DataFrame()
    summary = aggregate(data, ["model", "method", "variant", "task"], score, stat)
    tasks = [t for t in PAPER_TASKS if t in set(summary["task"])]
    metrics = {t: data[data["task"] == t]["metric"].iloc[0] for t in tasks}
    rows = []
    for (model, method, variant), group in summary.groupby(["model", "method", "variant"], sort=False):
        cells = dict(zip(group["task"], group["center"]))
        rows.append({"model": model, "method": variant, "order": METHODS.index(method), "source": "ours",
                     "params (M)": group["adapter_params"].max() / 1e6, **cells})
    paper = pd.read_csv(PAPER_RESULTS, comment="#")
    for (model, method), group in paper[paper["model"].isin(summary["model"]) &
                                        paper["task"].isin(tasks)].groupby(["model", "method"], sort=False):
        rows.append({"model": model, "method": METHOD_LABELS[method], "order": METHODS.index(method),
                     "source": "paper", "params (M)": group["adapter_params"].iloc[0] / 1e6,
                     **{t: 100 * s for t, s in zip(group["task"], group["score"])}})
    table = pd.DataFrame(rows).sort_values(["model", "source", "order"], ascending=[True, False, True],
                                           kind="stable")
    table[AVERAGE] = table[tasks].mean(axis=1)
    table = table[["model", "method", "source", "params (M)", *tasks, AVERAGE]].reset_index(drop=True)
    table["model"] = table["model"].map(lambda m: MODEL_NAMES.get(m, m))
    table = table.rename(columns={t: f"{PAPER_TASKS[t]} ({METRIC_NAMES.get(metrics[t], metrics[t])})"
                                  for t in tasks})
    partial = table[table[table.columns[4:-1]].isna().any(axis=1)]
    table.attrs["note"] = (
        f"Cells: {STATS[stat].split(',')[0]} of the score in % ({score_label(data, score)}); the paper's rows: its "
        f"Table 2 (median of 5 seeds), beside ours only for the same model. params (M): trainable parameters in "
        f"millions, the adapter alone as the paper counts them (full fine-tuning: the whole model; the task head is "
        f"not counted). {AVERAGE}: the mean over the row's tasks"
        + (f" ({len(partial)} row(s) lack a task, so their average is over fewer tasks)." if len(partial) else "."))
    return table


def _number(value, digits: int) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def _params(value) -> str:
    return _number(value, 3 if value < 1 else 1)


def to_markdown(table: pd.DataFrame) -> str:
    """Table 2 as a Markdown table, with its note above it."""
    shown = table.copy()
    shown["params (M)"] = [_params(v) for v in shown["params (M)"]]
    for column in shown.columns[4:]:
        shown[column] = [_number(v, 1) for v in shown[column]]
    aligned = ("left",) * 3 + ("right",) * (len(shown.columns) - 3)  # numbers as written (1 decimal), right-aligned
    markdown = shown.to_markdown(index=False, disable_numparse=True, colalign=aligned)
    return f"{table.attrs.get('note', '')}\n\n{markdown}\n"


def _latex(text: str) -> str:
    return "".join("\\" + c if c in "&%$#_{}" else c for c in str(text))


def to_latex(table: pd.DataFrame, caption: str | None = None, label: str = "tab:glue") -> str:
    """Table 2 as a LaTeX table (booktabs: \\toprule, \\midrule between models, \\bottomrule); the paper's rows in
    italics. Needs \\usepackage{booktabs} in the document."""
    tasks = list(table.columns[4:])
    header = " & ".join(["Model", "Method", "\\# Params (M)", *map(_latex, tasks)]) + " \\\\"
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             f"\\caption{{{_latex(caption or table.attrs.get('note', ''))}}}", f"\\label{{{label}}}",
             "\\begin{tabular}{ll" + "r" * (1 + len(tasks)) + "}", "\\toprule", header]
    previous = None
    for _, row in table.iterrows():
        if row["model"] != previous:
            lines.append("\\midrule")
            previous = row["model"]
        cells = [_latex(row["model"]), _latex(row["method"]), _params(row["params (M)"]),
                 *(_number(row[t], 1) for t in tasks)]
        if row["source"] == "paper":
            cells = [f"\\textit{{{c}}}" for c in cells[:2]] + cells[2:]
            cells[1] = cells[1][:-1] + " (paper)}"
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"
