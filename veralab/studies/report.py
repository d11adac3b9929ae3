"""RESULTS.md as a pure function of run records: what ran, how it differs from the paper, the rules, a verdict per
finding with its numbers, the sensitivity rows, the learning-rate selection and where the model learns at all."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd

from ..experiment.glue import GLUE_DEV_SIZES, GLUE_DIRS
from .findings import Finding, glue_findings, vit_findings
from .profiles import GLUE_CPU, GLUE_CPU_TRAIN
from .selection import candidates, selection_section
from .verdicts import (
    MARGIN,
    NO_SKILL,
    NOT_ABOVE_HEAD,
    POWER,
    VERDICT_RULES,
    compare,
    counts,
    finding_verdict,
    one_run_error,
    skill,
    what_would_decide,
)

MARKS = {NO_SKILL: " †", NOT_ABOVE_HEAD: " ‡"}
MARK_NOTES = {"†": "† no skill: median within one run's standard error of the no-skill level (accuracy: the majority "
                   "class, the best constant answer; Pearson: 0).",
              "‡": "‡ an adapter arm whose median is within one standard error of head only's: it adds nothing to the "
                   "trained head.",
              "⚠": "⚠ a flagged arm (listed under the table)."}


def _signed(value: float) -> str:
    return f"{value:+.1f}"


def _interval(row: dict) -> str:
    if np.isnan(row["low"]):
        return f"[no interval from {row['n']} pair{'s' if row['n'] != 1 else ''}]"
    return f"[{_signed(row['low'])}, {_signed(row['high'])}]"


def _spread(runs: pd.DataFrame, mark: str, flagged: bool) -> str:
    values = 100 * runs["score"].astype(float)
    text = f"{values.iloc[0]:.1f} (n=1)" if len(values) == 1 else \
        f"{values.median():.1f} [{values.min():.1f}, {values.max():.1f}] (n={len(values)})"
    return text + MARKS.get(mark, "") + (" ⚠" if flagged else "")


def comparison_table(results: list[dict], outcome: str = "task verdict") -> list[str]:
    """A row per comparison and task, then the flags, then a line per comparison with its verdict and where it
    counted."""
    lines = ["| comparison | task (metric) | X: median [min, max] | Y: median [min, max] | adapter params X / Y "
             f"| pairs | X − Y: mean [95% interval] | detectable at {POWER:.0%} power | {outcome} |",
             "|---|---|---|---|---|---:|---|---:|---|"]
    notes = []
    for result in results:
        c = result["comparison"]
        for row in result["rows"]:
            p = f", p={row['p']:.2g}" if c.claim == "beats" and row["n"] else ""
            mdd = f"{row['mdd']:.1f}" if np.isfinite(row["mdd"]) else "–"
            lines.append(f"| {c.x_label} vs {c.y_label} | {row['task']} ({row['metric']}) | "
                         f"{_spread(row['x_runs'], row['x_skill'], bool(row['x_flags']))} | "
                         f"{_spread(row['y_runs'], row['y_skill'], bool(row['y_flags']))} | "
                         f"{row['x_params']:,} / {row['y_params']:,} | {row['n']} | {_signed(row['mean'])} "
                         f"{_interval(row)}{p} | {mdd} | {row['verdict']} |")
            notes += [f"⚠ {label} on {row['task']}: {'; '.join(row[key])}." for label, key in
                      ((c.x_label, "x_flags"), (c.y_label, "y_flags")) if row[key]]
    used = " ".join(MARK_NOTES[mark] for mark in MARK_NOTES if any(mark in line for line in lines[2:]))
    legend = ([used] if used else []) + sorted(set(f"- {n}" for n in notes))
    lines += ["", *legend, *([""] if legend else [])]
    for result in results:
        c, rows = result["comparison"], result["rows"]
        counted = [r["task"] for r in rows if counts(r["verdict"])]
        text = f"- {c.x_label} − {c.y_label} → **{result['verdict']}**: counted on {', '.join(counted) or 'no task'}"
        open_tasks = [r for r in rows if r["verdict"] == "inconclusive"]
        if open_tasks:
            text += "; would be decided by " + ", ".join(f"{what_would_decide(c.claim, r)} on {r['task']}"
                                                       for r in open_tasks)
        if result["missing"]:
            text += f"; runs or seeds still missing on {', '.join(result['missing'])}"
        lines.append(text + ".")
    return lines


def finding_section(number: int, finding: Finding, frame: pd.DataFrame, edges: dict,
                    lower: pd.DataFrame | None = None, lower_grid: dict | None = None) -> tuple[list[str], str, str]:
    """(markdown lines, verdict, one-line summary) of a finding; `lower`: its runs at VeRA's next rate down, shown as
    sensitivity rows that do not enter the verdict, complete against their own grid's tasks and seeds (`lower_grid`;
    the campaign's may run more seeds)."""
    results = [compare(frame, finding, c, edges) for c in finding.comparisons]
    overall = finding_verdict(results)
    lines = [f"### {number}. {finding.title}: **{overall}**", "", f"Paper: {finding.paper}.", "",
             *comparison_table(results), *(f"- {note}" for note in finding.notes), ""]
    if lower is not None and not lower.empty:
        rates = lower[lower["method"] == "vera"].groupby("task")["lr"].first()  # (the heads have no VeRA rate)
        rate = ", ".join(f"{t} {lr:g}" for t, lr in sorted(rates.items()))
        at_lower = replace(finding, **{k: tuple(lower_grid[k]) for k in ("tasks", "seeds") if k in (lower_grid or {})})
        sensitivity = [compare(lower, at_lower, c, edges) for c in finding.comparisons]
        lines += [f"Sensitivity, not counted: the same comparisons with VeRA at its next grid rate down ({rate}).",
                  "", *comparison_table(sensitivity, outcome="result at this rate"), ""]
    summary = "; ".join(f"{r['comparison'].x_label} − {r['comparison'].y_label}: " + (", ".join(
        f"{row['task']} {_signed(row['mean'])} {_interval(row)}"
        + ("" if counts(row["verdict"]) else " (not counted)") for row in r["rows"])
        or "not run yet") for r in results)
    return lines, overall, summary


def what_ran(frame: pd.DataFrame) -> list[str]:
    """Model, data sizes, seeds, epochs, rates, precision (and how bf16 products ran), device and time of the records,
    one bullet each."""
    ok = frame[frame["status"] == "ok"]
    settings = [json.loads(s) for s in ok["setting"]]
    sizes = ok.groupby("task").agg(train=("train_size", "max"), dev=("eval_size", "max"))
    rates = ok.groupby(["task", "method"]).agg(adapter_lr=("lr", _rates), head_rate=("head_lr", _rates))
    wall = ok["wall_seconds"].sum()
    levels = ok.dropna(subset=["majority_score"]).groupby("task")["majority_score"].first()
    return [
        f"model: {', '.join(sorted(ok['model'].unique()))}; device: {', '.join(sorted(ok['device'].unique()))}, "
        f"{', '.join(sorted(ok['precision'].astype(str).unique()))}, "
        f"{', '.join(str(int(t)) for t in sorted(ok['threads'].dropna().unique()))} thread(s) per run",
        "examples used (train / scored): " + ", ".join(f"{t} {int(r.train):,} / {int(r.dev):,}"
                                                      for t, r in sizes.iterrows()),
        f"seeds: {sorted({int(s) for s in ok['run_seed']})}; epochs: {sorted({s['epochs'] for s in settings})}; "
        f"max length: {sorted({s['max_length'] for s in settings})}; "
        f"batch: {sorted({s['batch_size'] for s in settings})}",
        "learning rates (task: method lr / head lr): " + "; ".join(
            f"{task}: " + ", ".join(f"{m} {r.adapter_lr or '–'} / {r.head_rate}" for (t, m), r in rates.iterrows()
                                    if t == task)
            for task in sorted(ok["task"].unique())),
        *(["bf16 products (README, \"Precision\"): " + ", ".join(f"{path} {n} runs" for path, n in products.items())]
          if len(products := ok["bf16_products"].value_counts().sort_index()) else []),
        f"{len(ok)} ok runs ({(frame['status'] != 'ok').sum()} not ok), {wall / 3600:.2f} CPU-worker hours in all",
        *(["majority class (the no-skill level of accuracy: the scored split's most frequent label): "
           + ", ".join(f"{task} {100 * v:.1f}" for task, v in levels.items())
           + "; for STS-B's Pearson the level is 0"] if len(levels) else []),
    ]


def _rates(values) -> str:
    return ", ".join(f"{v:g}" for v in sorted(pd.Series(values, dtype=float).dropna().unique()))


DIFFERENCES = """\
- Model: all-MiniLM-L6-v2 (6 layers, width 384, 22.7M parameters), not RoBERTa-base (12 layers, width 768): the
  adapters are smaller (VeRA r=1024 on query/value: 12 × (384 + 1024) = 16,896 parameters against the paper's
  43,008; LoRA r=8: 73,728 against 294,912), and the scores are not comparable with the paper's. The trained head is
  BERT's pooler (a dense layer and tanh over [CLS]) with its classifier, 148,610 parameters on SST-2 (148,225 on
  STS-B's one output) counted as head, never adapter: the counterpart of RoBERTa's classification head (dense +
  out_proj) that the paper trains.{head}
- Data: GLUE's real train and dev TSVs, scored on the whole dev split as the paper does; {reduction}
- Training: {epochs} epochs (the paper 25–160) in bf16 autocast (float32 weights and optimizer), at learning rates
  chosen per task and method on a slice held out of the training split (the paper's are per task too); maximum
  length 128 tokens (the paper 512).
- Tasks: {tasks}. CoLA and QNLI are not in the local GLUE folder.{pending}{studies}
- Statistic: the median over seeds, as the paper's; the verdicts rest on paired differences across seeds."""


PROBES = ("linear probes on frozen SST-2 features (1,024 examples, an outside review): BERT's pooler 64.3, [CLS] "
          "71.6, mean-pooled 75.3; v1's head only, the classifier alone over a frozen pooler, 59.9")


def _head_line(frame: pd.DataFrame) -> str:
    """Head only on SST-2 dev against the linear probes that showed v1's frozen pooler held it back."""
    runs = frame[(frame["status"] == "ok") & (frame["method"] == "head") & (frame["task"] == "sst2")]
    if runs.empty:
        return ""
    return (f" Head only now reaches {100 * runs['score'].median():.1f} on SST-2 dev (median of {len(runs)} seeds); "
            f"{PROBES}.")


def _pending_line(tasks: list[str]) -> str:
    """The CPU tasks still choosing their rates, and where RTE's absence is explained."""
    text = "".join(f" {GLUE_DIRS[t]} joins once its learning rates are chosen (under way)."
                   for t in GLUE_CPU_TRAIN if t not in tasks)
    return text + (' RTE: see "Where MiniLM learns at the CPU budget".' if "rte" not in tasks else "")


def _studies_line(grids: dict) -> str:
    rank = grids.get("rank_sweep", {}).get("tasks", [])
    if set(rank) <= {"rte", "mrpc"}:
        return ""
    names = ", ".join(GLUE_DIRS.get(t, t) for t in rank)
    return f"\n- Studies: the rank sweep runs on {names}, the paper's on RTE and MRPC."


def check_section(check: pd.DataFrame) -> list[str]:
    """Whether the sentence-pair tasks that the CPU reduction's 1,024 examples do not teach learn from their whole
    training sets: each arm's median on the held-out slice against the majority class, and what follows per task."""
    ok = check[check["status"] == "ok"]
    if ok.empty:
        return []
    lines = ["## Where MiniLM learns at the CPU budget", "",
             f"On {GLUE_CPU['max_train_samples']:,} training examples MRPC's and RTE's arms stayed at the majority "
             "class (v1). Both were measured on their whole training sets (less the held-out slice, which is scored; "
             f"`glue_cpu_check`), {int(ok['epochs'].iloc[0])} epochs, {ok['run_seed'].nunique()} seeds, at STS-B's "
             "rates:", "",
             "| task | arm | held-out accuracy: median (per seed) | majority class | final training loss / constant "
             "answer's | skill |", "|---|---|---|---:|---|---|"]
    for (task, variant), runs in ok.groupby(["task", "variant"], sort=True):
        head = ok[(ok["task"] == task) & (ok["method"] == "head")]
        scores = ", ".join(f"{100 * s:.1f}" for s in runs.sort_values("run_seed")["score"])
        lines.append(f"| {task} | {variant} | {100 * runs['score'].median():.1f} ({scores}) | "
                     f"{100 * runs['majority_score'].iloc[0]:.1f} | {runs['train_loss'].median():.3f} / "
                     f"{runs['constant_loss'].median():.3f} | {skill(runs, head) or 'yes'} |")
    return lines + [""] + [_check_reading(task, runs) for task, runs in ok.groupby("task", sort=True)] + [""]


def _check_reading(task: str, runs: pd.DataFrame) -> str:
    """What the check says of one task: how far its adapters got, and whether the CPU studies run on it."""
    adapters = runs[runs["method"].isin(["lora", "vera"])]
    level, slice_size = float(runs["majority_score"].iloc[0]), int(runs["eval_size"].max())
    lead = 100 * (adapters["score"].astype(float).median() - level)
    errors = lead / (100 * one_run_error(level, slice_size))
    loss = adapters["train_loss"].astype(float).median() / adapters["constant_loss"].astype(float).median()
    text = (f"- {GLUE_DIRS.get(task, task)}: LoRA and VeRA lead the majority class by {lead:.1f} points ({errors:.1f} "
            f"standard errors of one run on the {slice_size:,}-example slice), their training loss at {loss:.0%} of "
            f"the constant answer's")
    if task in GLUE_CPU_TRAIN:
        return text + ": they learn, so its studies run on the CPU, on its whole training set, once its rates are " \
                      "chosen on the held-out slice like the other tasks'."
    dev = GLUE_DEV_SIZES[task]
    return (text + f": they have barely started to learn in {int(runs['epochs'].iloc[0])} epochs, and its dev split "
            f"has {dev} examples (one run's standard error {100 * one_run_error(0.5, dev):.1f} points at 50%), so the "
            f"ablations' few-point differences would be the size of one run's noise. It stays in the `glue` profile "
            f"(a GPU's: the paper trains RTE for 160 epochs).")


def results_report(glue: pd.DataFrame, *, rank: int, lora_rank: int, grids: dict,
                   vit: pd.DataFrame | None = None, selection: pd.DataFrame | None = None,
                   lower: pd.DataFrame | None = None, lower_grids: dict | None = None,
                   check: pd.DataFrame | None = None,
                   expected_runs: int | None = None, reduction: str = "", selection_info: tuple = (0, []),
                   figures_prefix: str = "figures/glue_", sources: dict | None = None) -> str:
    """RESULTS.md: what ran, what differs from the paper, the rules, a verdict per finding with its numbers."""
    ok = glue[glue["status"] == "ok"]
    table = candidates(glue.iloc[0:0] if selection is None else selection, seeds=list(selection_info[1]) or None)
    edges = {(r.task, r.method): (r.rate, r.edge) for r in table.itertuples() if r.chosen and r.edge}
    heads = ok[ok["method"] == "head"]
    lower = pd.concat([lower, heads], ignore_index=True) if lower is not None and not lower.empty else None
    sections, summary = [], []
    findings = glue_findings(rank, lora_rank, grids)
    for i, finding in enumerate(findings, 1):
        lines, overall, numbers = finding_section(i, finding, glue, edges, lower if finding.ablation else None,
                                                  (lower_grids or {}).get(finding.study))
        sections += lines
        summary.append(f"| {i}. {finding.title} | **{overall}** | {numbers} |")
    if vit is not None and not vit.empty:
        points = vit[(vit["status"] == "ok") & (vit["kind"] == "image")]
        tasks = tuple(sorted(points["task"].unique()))
        vit_rank = int(points[points["method"] == "vera"]["rank"].mode().iloc[0])
        vit_lora = int(points[points["method"] == "lora"]["rank"].mode().iloc[0])
        for j, finding in enumerate(vit_findings(vit_rank, vit_lora, tasks), len(findings) + 1):
            lines, overall, numbers = finding_section(j, finding, vit, {})
            sections += lines
            summary.append(f"| {j}. {finding.title} | **{overall}** | {numbers} |")
    epochs = sorted({json.loads(s)["epochs"] for s in ok["setting"]}) or ["?"]
    done = f"{len(ok)} of {expected_runs} runs" if expected_runs else f"{len(ok)} runs"
    all_tasks = sorted({t for grid in grids.values() for t in grid['tasks']})
    parts = [
        "# Results: the paper's findings on real GLUE (MiniLM) and on the tiny ViT", "",
        "Generated by `veralab results` from the run records ("
        + "; ".join(f"{what}: `{folder}`" for what, folder in (sources or {}).items() if folder)
        + "); do not edit by hand: `make glue GLUE_DIR=...` reruns the studies (resuming) and regenerates this file, "
        "`make glue-report` only regenerates it.",
        f"Records: {done} of the GLUE campaign.", "",
        "## What ran", "", *(f"- {line}" for line in what_ran(glue)), "",
        "## What differs from the paper", "",
        DIFFERENCES.format(reduction=reduction, epochs="/".join(map(str, epochs)),
                           tasks=", ".join(GLUE_DIRS.get(t, t) for t in all_tasks), studies=_studies_line(grids),
                           pending=_pending_line(all_tasks),
                           head=_head_line(glue)),
        "",
        "## How the verdicts are reached", "",
        "Each comparison pairs the runs of two settings that share a task and a seed (the same training subsample, "
        "data order and head initialization; VeRA's shared A/B too where both arms have them). Differences are in "
        "points (accuracy × 100; Pearson × 100 for STS-B), per task, never pooled across tasks: mean, 95% "
        "t-interval and, for \"beats\" claims, the exact two-sided sign-flip p-value. The score is the final "
        "epoch's on the dev split (the paper reports dev scores); the dev split never chose a setting. "
        f"\"Detectable\" is the smallest true difference the comparison's pairs would find with {POWER:.0%} power at "
        f"the spread they show: a \"close\" verdict within ±{MARGIN:g} means little where it is large.",
        "", VERDICT_RULES, "",
        "| finding | verdict | X − Y per task: mean [95% interval] |", "|---|---|---|", *summary, "",
        "## Findings", "", *sections,
        "## How the learning rates were chosen", "", *selection_section(table, *selection_info),
        *(check_section(check) if check is not None else []),
        "## Figures and tables", "",
        f"`{figures_prefix}main.png` (head / full / LoRA / VeRA per task), `{figures_prefix}rank_sweep.png`, "
        f"`{figures_prefix}init_ablation.png`, `{figures_prefix}vector_ablation.png`; every setting's median "
        f"[min, max] in `{figures_prefix}results.md`.", ""]
    return "\n".join(parts)
