"""Tables as pure functions of the run records (the DataFrame of collect_records), and the statistics every table
and figure shares.

The runs of one setting (its seeds) are summarized by their median with their min–max spread (``stat="mean"``: mean
± sd); a single run says n=1. Only repeats of one whole setting are aggregated (collect.setting_of): a group that
would mix settings, such as a 10-epoch and a 4-epoch run of one method, is refused with a message. Parameter counts
are the adapter's alone, as the paper counts them; the task head is listed beside them.
"""

from __future__ import annotations

import json

import pandas as pd

METHODS = ("head", "full", "lora", "vera")  # the order of every legend and table
SCORES = {"final": ("score", "final epoch"), "best": ("score_best", "best epoch")}
STATS = {"median": "median over seeds, bars min–max", "mean": "mean over seeds, bars ± sd"}


# ---- statistics -----------------------------------------------------------------------------------------------

def ok_runs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"].copy()


def differing_keys(settings) -> list[str]:
    """The keys whose values are not the same in every one of `settings` (dicts), sorted."""
    settings = list(settings)
    return sorted(k for k in set().union(*settings) if len({json.dumps(s.get(k)) for s in settings}) > 1)


def check_one_setting(frame: pd.DataFrame, by: list[str]) -> None:
    """Refuse a group of `by` that holds runs of more than one setting: averaging them would be wrong."""
    for key, group in frame.groupby(by, dropna=False):
        if group["setting"].nunique() > 1:
            settings = [json.loads(s) for s in group["setting"].unique()]
            differ = differing_keys(settings)
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



def main_runs(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The method comparison of `kind` ("text" or "image"): the tasks with a full fine-tuning run, and of their
    runs the default variants present on every one of those tasks (head, full, one LoRA and one VeRA rank), so a
    rank sweep's other ranks stay out of the table: where the sweep runs on the same tasks, a model's method keeps
    the variant with the most runs (the main table's, at more seeds than the sweep's: glue_cpu), all where tied."""
    data = ok_runs(frame)
    data = data[(data["kind"] == kind) & data["default_variant"].astype(bool)]
    tasks = sorted(data[data["method"] == "full"]["task"].unique())
    data = data[data["task"].isin(tasks)]
    common = set.intersection(*(set(g["variant"]) for _, g in data.groupby("task"))) if tasks else set()
    data = data[data["variant"].isin(common)]
    runs = data.groupby(["model", "method", "variant"])["task"].transform("size")
    return data[runs == runs.groupby([data["model"], data["method"]]).transform("max")]


def score_label(frame: pd.DataFrame, score: str = "final") -> str:
    """'accuracy, final epoch, test split (512 examples)': what each dot is."""
    metric = ", ".join(sorted(frame["metric"].dropna().unique()))
    if score == "best":
        return f"{metric}, best epoch on the validation split"
    splits = ", ".join(sorted(frame["score_split"].dropna().unique()))
    sizes = counts_per_task(frame, "eval_size")
    return f"{metric}, final epoch, {splits} split" + (f" ({sizes} examples)" if sizes else "")


def counts_per_task(frame: pd.DataFrame, column: str) -> str:
    """A count column's values, once where every task has the same, else named per task ('mrpc 3,668, sst2 1,024')."""
    return once_or_per_task({task: "/".join(f"{int(v):,}" for v in sorted(group[column].dropna().unique()))
                             for task, group in frame.groupby("task")})


def once_or_per_task(texts: dict[str, str], form: str = "{task} {text}", sep: str = ", ") -> str:
    """Per-task texts said once where every task has the same, else each named: a footer must not leave the reader
    to guess which task ran on which. Tasks without a text are left out."""
    texts = {task: text for task, text in texts.items() if text}
    if len(set(texts.values())) <= 1:
        return next(iter(texts.values()), "")
    return sep.join(form.format(task=task, text=text) for task, text in texts.items())


# ---- tables ----------------------------------------------------------------------------------------------------

def results_table(frame: pd.DataFrame, score: str = "final", stat: str = "median") -> pd.DataFrame:
    """Every setting's summary: adapter and head parameters, the score's center and spread over seeds, n, seeds."""
    data = ok_runs(frame)
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
    keys = differing_keys(settings.values())
    return [(" (" + ", ".join(f"{k}={value.get(k)}" for k in keys) + ")", runs[runs["setting"] == setting])
            for setting, value in settings.items()]


def main_table(frame: pd.DataFrame, kind: str = "image", score: str = "final", stat: str = "median") -> pd.DataFrame:
    """Head / full / LoRA / VeRA (rows) on the tasks (columns) of main_runs, with adapter and head parameters; a
    variant run with several settings gets a row per setting, labelled by what differs."""
    data = main_runs(frame, kind)
    if data.empty:
        return pd.DataFrame(columns=["method", "adapter_params"])
    if "yours" in data:  # the user's runs on a committed study (notebook.load_records): rows of their own
        data = data.assign(variant=data["variant"] + data["yours"].fillna(False).astype(bool).map({True: " (yours)",
                                                                                                  False: ""}))
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
    data = ok_runs(frame)
    return (f"Score: {score_label(data, score)}, in %; cells: {STATS[stat]}, (n) runs; adapter_params: the adapter "
            f"alone (as the paper counts), head_params: the task head trained beside it. Records: "
            f"{len(data)} ok runs{unreadable(frame)}.\n\n")


def unreadable(frame: pd.DataFrame) -> str:
    """', 2 unreadable records left out (runs/x/record.json, ...)' where collect_records skipped some, else ''."""
    skipped = frame.attrs.get("skipped") or []
    if not skipped:
        return ""
    named = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    return f"; {len(skipped)} unreadable record(s) left out ({named})"
