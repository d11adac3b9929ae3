"""The learning-rate selection, read from its records: each task's and method's candidates on the held-out slice,
the rate chosen, how far it separates from the next best, and whether it sits at the grid's edge.

A candidate's score is its median over the selection seeds on the slice held out of the training split
(`validation_holdout`); the highest median wins, a tie going to the lower rate (the steadier one). Only a candidate
that shows skill (its median above the no-skill level by more than one run's standard error) can win: where none
does, its rank is noise, so the selection chooses nothing and the profile says which rate it uses instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..experiment.glue import GLUE_DIRS
from .profiles import GLUE_CPU_HEAD_LR, GLUE_CPU_LR, NO_SKILL_HEAD_LR, SELECTION_GRID
from .verdicts import skill

RATE = {"head": "head_lr"}  # the rate a method's candidates differ in: the head's own for head only, else lr


def candidates(frame: pd.DataFrame, seeds: list[int] | None = None) -> pd.DataFrame:
    """A row per (task, method, rate): median, seeds, per-seed scores, failed seeds (a diverged run) and skill, the
    chosen one marked (among those with skill where no seed failed), and whether it sits at its grid's edge. With
    `seeds` (the selection's), a task's method still missing one of its grid's runs (`pending`, counted on its every
    row) chooses nothing yet: a partial ranking is no choice."""
    runs = frame[frame["status"].isin(["ok", "failed"])].copy()
    columns = ["task", "method", "rate", "median", "n", "scores", "failed", "skill", "chosen", "edge", "pending"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs["rate"] = [float(r[RATE.get(r["method"], "lr")]) for _, r in runs.iterrows()]
    rows = []
    for (task, method, rate), group in runs.groupby(["task", "method", "rate"]):
        ok = group[group["status"] == "ok"]
        scores = dict(zip(ok["run_seed"].astype(int), 100 * ok["score"].astype(float)))
        rows.append({"task": task, "method": method, "rate": rate,
                     "median": float(np.median(list(scores.values()))) if scores else float("nan"),
                     "n": len(scores), "scores": scores, "skill": bool(len(ok)) and not skill(ok),
                     "failed": sorted(int(s) for s in group.loc[group["status"] != "ok", "run_seed"])})
    table = pd.DataFrame(rows).sort_values(["task", "method", "rate"]).reset_index(drop=True)
    table["chosen"], table["pending"] = False, 0
    for (_, method), group in table.groupby(["task", "method"]):
        pending = 0
        if seeds is not None:
            ran = int((group["n"] + group["failed"].map(len)).sum())
            pending = max(0, len(SELECTION_GRID.get(method, ())) * len(seeds) - ran)
            table.loc[group.index, "pending"] = pending
        ranked = _ranked(group)
        if len(ranked) and not pending:
            table.loc[ranked.index[0], "chosen"] = True
    table["edge"] = [grid_edge(r.method, r.rate) if r.chosen else "" for r in table.itertuples()]
    return table[columns]


def _ranked(group: pd.DataFrame) -> pd.DataFrame:
    """A task's and method's candidates that show skill and where no seed failed, best first: highest median, a tie
    to the lower rate."""
    eligible = group[(group["failed"].map(len) == 0) & group["skill"]]
    return eligible.sort_values(["median", "rate"], ascending=[False, True])


def grid_edge(method: str, rate: float) -> str:
    """'lowest' or 'highest' where `rate` is at its method's grid edge (the optimum may lie beyond), else ''."""
    grid = SELECTION_GRID.get(method, ())
    if not grid or not np.isclose(rate, grid, rtol=1e-9).any():
        return ""
    return "lowest" if np.isclose(rate, min(grid)) else "highest" if np.isclose(rate, max(grid)) else ""


def separation(table: pd.DataFrame, task: str, method: str) -> dict | None:
    """The chosen rate against the runner-up, paired by seed: per-seed differences and their mean, in points."""
    group = _ranked(table[(table["task"] == task) & (table["method"] == method)])
    if len(group) < 2:
        return None
    best, second = group.iloc[0], group.iloc[1]
    seeds = sorted(set(best["scores"]) & set(second["scores"]))
    differences = [best["scores"][s] - second["scores"][s] for s in seeds]
    return {"runner_up": second["rate"], "differences": differences,
            "mean": float(np.mean(differences)) if differences else float("nan")}


def profile_rates() -> dict:
    """(task, method) -> the rate the glue_cpu profiles use."""
    rates = {(task, "head"): rate for task, rate in GLUE_CPU_HEAD_LR.items()}
    rates.update({(task, m): lr for task, methods in GLUE_CPU_LR.items() for m, lr in methods.items()})
    return rates


def disagreements(table: pd.DataFrame) -> list[str]:
    """Where the profile's rate is not the selection records' choice (a selection re-run elsewhere chose another)."""
    used, found = profile_rates(), []
    for r in table[table["chosen"]].itertuples():
        if (r.task, r.method) in used and not np.isclose(used[r.task, r.method], r.rate):
            found.append(f"{r.task} {r.method}: the records choose {r.rate:g}, the profile uses "
                         f"{used[r.task, r.method]:g}")
    return found


def selection_section(table: pd.DataFrame, holdout: int, seeds: list[int]) -> list[str]:
    """RESULTS.md's account of the selection: every candidate's median, the choice, its margin over the runner-up."""
    if table.empty:
        return ["No selection records: `make glue` runs the selection first.", ""]
    lines = [f"Every candidate ran on {holdout:,} training examples held out of the training split (never the dev "
             f"split that is scored), with the campaign's settings and seeds {', '.join(map(str, seeds))}; the "
             "highest median among the candidates that show skill and where no seed diverged wins (a tie: the lower "
             "rate; where none shows skill, nothing is chosen). Head only "
             "chose the head's rate, which every other method's head then used. Scores in points (× 100), per seed "
             "in brackets. Grids (each extended where a first, narrower grid's edge won): "
             + "; ".join(f"{m} {', '.join(f'{r:g}' for r in rates)}" for m, rates in SELECTION_GRID.items()) + ".",
             "",
             "| task | method | candidates: median (per seed) | chosen | over the runner-up, per seed |",
             "|---|---|---|---|---|"]
    for (task, method), group in table.groupby(["task", "method"], sort=True):
        cells = []
        for r in group.itertuples():
            seeds = [f"{v:.1f}" for v in r.scores.values()] + [f"seed {s} diverged" for s in r.failed]
            text = f"{r.rate:g}: " + (f"{r.median:.1f}" if r.scores else "–") + f" ({', '.join(seeds)})"
            cells.append(f"**{text}**" if r.chosen else text)
        if not group["chosen"].any():
            pending = int(group["pending"].iloc[0])
            why = (f"under way: {pending} of its runs still to come" if pending else
                   "every candidate failed" if (group["n"] == 0).all() else "no candidate shows skill")
            used = profile_rates().get((task, method))
            like = NO_SKILL_HEAD_LR.get(task) if method == "head" else None
            instead = "" if not used else f"; the profile uses {used:g}" + (f", {GLUE_DIRS[like]}'s" if like else "")
            lines.append(f"| {task} | {method} | {'; '.join(cells)} | none ({why}){instead} | |")
            continue
        chosen = group[group["chosen"]].iloc[0]
        gap = separation(table, task, method)
        margin = (f"{gap['mean']:+.1f} over {gap['runner_up']:g} ({', '.join(f'{d:+.1f}' for d in gap['differences'])})"
                  if gap else "the only candidate that shows skill and where no seed diverged")
        edge = f" (at the grid's {chosen['edge']} rate)" if chosen["edge"] else ""
        lines.append(f"| {task} | {method} | {'; '.join(cells)} | {chosen['rate']:g}{edge} | {margin} |")
    lines.append("")
    problems = disagreements(table)
    if problems:
        lines += ["**The profile's rates are not these records' choice**: " + "; ".join(problems) + ". The verdicts "
                  "below ran at the profile's rates.", ""]
    return lines
