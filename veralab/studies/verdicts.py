"""The verdict rules: paired differences per task, each arm's skill, and the two kinds of claim.

A finding compares two settings (arms) run with the same seeds on the same tasks. The difference is taken per
(task, seed) pair, which shares the training subsample, data order, head initialization and projection key, in
points (the metric × 100), and judged per task, never pooled across tasks. "X beats Y" is a superiority claim;
"X is close to Y" an equivalence claim, judged two-sided against ±MARGIN. An arm without skill (at the no-skill
level, or an adapter no better than training the head alone) decides a "beats" task by itself and makes a "close"
task uninformative. Each rule is stated in VERDICT_RULES, which RESULTS.md prints.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from .findings import Comparison, Finding
from .tables import check_one_setting

MARGIN = 2.0  # points: "X is close to Y" when the whole interval of X − Y lies within ± this
NO_EFFECT = 1.0  # points: "X beats Y" is refuted when the whole interval lies within ± this
MIN_PAIRS = 3  # fewer pairs give an interval too wide (t with 1 degree of freedom: 12.7 sd) to decide anything
POWER = 0.8  # the power at which a comparison's minimal detectable difference is given
VERDICT_RULES = (
    f"Per task, over its seeds, on the 95% t-interval of the mean paired difference X − Y. **\"X beats Y\"** is "
    f"reproduced when the interval lies above 0; otherwise not reproduced when it lies below 0, or within "
    f"±{NO_EFFECT:g} point (no difference that large); else inconclusive. **\"X is close to Y\"** (an equivalence "
    f"claim) is reproduced when the interval lies inside ±{MARGIN:g} points (looser than the paper's \"about a "
    f"point\"); not reproduced when it lies wholly outside (the verdict says on which side: X better or X worse by "
    f"more than {MARGIN:g}); else inconclusive. With fewer than {MIN_PAIRS} pairs, or the same difference at every "
    f"seed, a task is inconclusive. **Skill**: an arm shows none when its median is at most one run's standard "
    f"error above the no-skill level (accuracy: the majority class; Pearson: 0), and an adapter arm (VeRA, LoRA, "
    f"full fine-tuning) compared with another adapter shows none when its median is at most one standard error "
    f"above head only's. For \"X beats Y\", Y without skill and X with skill counts for X, X without skill counts "
    f"against it, neither with skill makes the task uninformative; for \"close\", an arm without skill makes the "
    f"task uninformative. A comparison is reproduced (not reproduced) when every task that counts is; one counted "
    f"on a single task says \"on one task only\". A finding is reproduced when every comparison is. Each finding "
    f"is judged at 95% on its own, with no correction for testing several. **Flags** (⚠, listed under each table; "
    f"they change no verdict): an arm whose rate was chosen at its selection grid's edge, and an arm with runs "
    f"that learned nothing of the inputs (a final training loss at or above the constant answer's, or a score "
    f"within one run's standard error of the no-skill level; the flag says how many).")


# ---- statistics -----------------------------------------------------------------------------------------------

def sign_flip_p(differences: np.ndarray, draws: int = 200_000) -> float:
    """Two-sided p-value of the mean difference under random sign flips (exact up to 16 pairs, else sampled)."""
    d = np.asarray(differences, float)
    if len(d) == 0 or not d.any():
        return 1.0
    if len(d) <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(draws, len(d)))
    null = np.abs(signs @ d) / len(d)
    return float(np.mean(null >= abs(d.mean()) - 1e-12))


def paired_difference(differences) -> dict:
    """Mean of paired differences with its 95% t-interval, the sign-flip p-value and the minimal detectable
    difference (the true difference this many pairs find with POWER, at the spread seen)."""
    d = np.asarray(differences, float)
    n, mean = len(d), float(d.mean()) if len(d) else float("nan")
    sd = float(d.std(ddof=1)) if n >= 2 else float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n >= 2 else float("nan")
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half, "p": sign_flip_p(d), "sd": sd,
            "mdd": detectable_difference(sd, n)}


def detectable_difference(sd: float, n: int, power: float = POWER) -> float:
    """The smallest true mean difference that a two-sided 95% paired t-test on n pairs detects with `power`."""
    if n < 2 or not np.isfinite(sd):
        return float("nan")
    return float((stats.t.ppf(0.975, n - 1) + stats.t.ppf(power, n - 1)) * sd / np.sqrt(n))


def seeds_needed(sd: float, margin: float = MARGIN, power: float = POWER, most: int = 100) -> int:
    """Pairs for the 95% interval to fall inside ±margin with `power` when the true difference is 0 (an equivalence
    claim at spread sd): the interval must clear both edges, so each side gets half the miss rate."""
    two_sided = 1 - (1 - power) / 2
    return next((n for n in range(MIN_PAIRS, most + 1)
                 if (stats.t.ppf(0.975, n - 1) + stats.t.ppf(two_sided, n - 1)) * sd / np.sqrt(n) <= margin), most)


def what_would_decide(claim: str, stat: dict, most: int = 100) -> str:
    """For an inconclusive task: the pairs that would likely decide it at the spread seen (a "close" claim: the
    interval inside ±MARGIN with a true difference of 0; "beats": a true difference as large as the mean seen)."""
    sd, mean = stat.get("sd", float("nan")), abs(stat["mean"])
    if not np.isfinite(sd):
        return "more seeds (no spread to size them by)"
    if claim == "close":
        n = seeds_needed(sd, MARGIN, most=most)
    else:
        n = next((k for k in range(MIN_PAIRS, most + 1) if detectable_difference(sd, k) <= mean), most)
    return f"about {n} seeds at the spread seen" + (" (or more)" if n >= most else "")


def one_run_error(score: float, examples: float, metric: str = "accuracy") -> float:
    """The standard error of one run's score on `examples` scored examples: binomial for accuracy, (1 − r²)/√(n − 1)
    for a Pearson correlation r."""
    if metric == "pearson":
        return float((1 - min(score, 1.0) ** 2) / np.sqrt(max(examples - 1, 1)))
    return float(np.sqrt(score * (1 - score) / examples))


# ---- skill -----------------------------------------------------------------------------------------------------

NO_SKILL, NOT_ABOVE_HEAD = "no skill", "not above head only"


def no_skill_level(runs: pd.DataFrame) -> float | None:
    """The best score an answer unrelated to the input gets: the majority class's accuracy, 0 for Pearson."""
    if (runs["metric"] == "pearson").all():
        return 0.0
    levels = runs["majority_score"].dropna()
    return float(levels.iloc[0]) if len(levels) else None


def no_skill_ceiling(runs: pd.DataFrame) -> float | None:
    """The score at or below which a run or an arm shows no skill: the no-skill level plus one run's standard error
    there (None where the level is unknown)."""
    level = no_skill_level(runs)
    if level is None:
        return None
    return level + one_run_error(max(level, 1e-9), runs["eval_size"].max(), runs["metric"].iloc[0])


def skill(runs: pd.DataFrame, head: pd.DataFrame | None = None) -> str:
    """'' when the arm shows skill; else why not: its median within one standard error of the no-skill level, or, for
    an adapter arm, of head only's median (`head`: the task's head-only runs)."""
    median, examples = float(runs["score"].astype(float).median()), runs["eval_size"].max()
    metric, ceiling = runs["metric"].iloc[0], no_skill_ceiling(runs)
    if ceiling is not None and median <= ceiling:
        return NO_SKILL
    if head is not None and len(head) and (runs["method"] != "head").all():
        floor = float(head["score"].astype(float).median())
        if median <= floor + one_run_error(floor, examples, metric):
            return NOT_ABOVE_HEAD
    return ""


# ---- rules -----------------------------------------------------------------------------------------------------

def verdict(claim: str, low: float, high: float) -> str:
    """The interval rule for two arms that both show skill."""
    if np.isnan(low):
        return "inconclusive"
    if claim == "beats":
        if low > 0:
            return "reproduced"
        return "not reproduced" if high < 0 or (-NO_EFFECT < low and high < NO_EFFECT) else "inconclusive"
    if -MARGIN < low and high < MARGIN:
        return "reproduced"
    if high < -MARGIN:
        return f"not reproduced (X worse by more than {MARGIN:g})"
    if low > MARGIN:
        return f"not reproduced (X better by more than {MARGIN:g})"
    return "inconclusive"


def task_verdict(claim: str, stat: dict, x_skill: str, y_skill: str) -> str:
    """One task's verdict: inconclusive with too few pairs; else decided by skill where an arm lacks it, else by the
    interval."""
    if stat["n"] < MIN_PAIRS:
        return f"inconclusive (fewer than {MIN_PAIRS} pairs)"
    if x_skill or y_skill:
        if claim == "close" or (x_skill and y_skill):
            return "not informative (" + ("neither arm shows" if x_skill and y_skill else "an arm lacks") + " skill)"
        return "reproduced (Y shows no skill, X does)" if y_skill else "not reproduced (X shows no skill, Y does)"
    if np.isclose(stat["high"], stat["low"], rtol=0, atol=1e-6):
        return "inconclusive (no spread across seeds)"
    return verdict(claim, stat["low"], stat["high"])


def counts(task_verdict_text: str) -> bool:
    return not task_verdict_text.startswith("not informative")


def overall_verdict(task_verdicts: list[str]) -> str:
    """A comparison's verdict over the tasks that count: reproduced / not reproduced where every one agrees."""
    counted = [v for v in task_verdicts if counts(v)]
    if not task_verdicts:
        return "not run yet"
    if not counted:
        return "inconclusive (no task where the arms show skill)"
    kinds = {_kind(v) for v in counted}
    overall = counted[0] if len(set(counted)) == 1 else kinds.pop() if len(kinds) == 1 else "inconclusive"
    return overall + (" on one task only" if len(counted) == 1 and _kind(overall) != "inconclusive" else "")


def _kind(verdict_text: str) -> str:
    """A verdict without its reason: reproduced, not reproduced or inconclusive."""
    return next((k for k in ("reproduced", "not reproduced") if verdict_text.startswith(k)), "inconclusive")


# ---- comparisons -----------------------------------------------------------------------------------------------

def select(frame: pd.DataFrame, task: str, where: dict) -> pd.DataFrame:
    runs = frame[(frame["task"] == task) & (frame["status"] == "ok")]
    for key, value in where.items():
        runs = runs[runs[key].astype(type(value)) == value] if key in ("train_d", "train_b", "shared") else \
            runs[np.isclose(runs[key].astype(float), value)] if isinstance(value, float) else runs[runs[key] == value]
    check_one_setting(runs.assign(arm="x"), ["arm"])
    return runs


def flags(runs: pd.DataFrame, edges: dict | None = None) -> list[str]:
    """Warnings on an arm: its rate chosen at the selection grid's edge (the optimum may lie beyond), or runs that
    learned nothing of the inputs (a collapse that a median over seeds hides): a final training loss at or above the
    constant answer's, or a score within one run's standard error of the no-skill level."""
    found = []
    method = runs["method"].iloc[0]
    edge = (edges or {}).get((runs["task"].iloc[0], method))
    rate = runs["head_lr" if method == "head" else "lr"].astype(float).iloc[0]
    if edge and np.isclose(edge[0], rate):
        found.append(f"rate at the grid's {edge[1]} edge")
    scores, ceiling = runs["score"].astype(float), no_skill_ceiling(runs)
    collapsed = runs["train_loss"].astype(float) >= runs["constant_loss"].astype(float)
    if ceiling is not None:
        collapsed |= scores <= ceiling
    if collapsed.any():
        found.append(f"{collapsed.sum()} of {len(runs)} runs learned nothing (a final training loss at or above the "
                     f"constant answer's, or a score at the no-skill level): "
                     f"{', '.join(f'{100 * v:.1f}' for v in sorted(scores[collapsed]))}")
    return found


def compare(frame: pd.DataFrame, finding: Finding, comparison: Comparison, edges: dict | None = None) -> dict:
    """Per task: both arms' runs, skill and flags, the paired differences' statistics and the task's verdict; then
    the comparison's verdict over the tasks that count. A task is missing while it lacks runs or pairs."""
    rows, missing = [], []
    for task in finding.tasks:
        x, y = select(frame, task, comparison.x), select(frame, task, comparison.y)
        if x.empty or y.empty:
            missing.append(task)
            continue
        pairs = x.merge(y, on="run_seed", suffixes=("_x", "_y"))
        if finding.seeds:  # the study's seeds: an arm run at more seeds elsewhere (the main table) pairs at these
            pairs = pairs[pairs["run_seed"].isin(finding.seeds)]
        if len(pairs) < (len(finding.seeds) or max(len(x), len(y))):
            missing.append(task)
        stat = paired_difference(100 * (pairs["score_x"].astype(float) - pairs["score_y"].astype(float)))
        head = select(frame, task, {"method": "head"})
        # against head only itself the paired interval is the test: its median is no floor to clear first
        reference = None if "head" in set(x["method"]) | set(y["method"]) else head
        x_skill, y_skill = skill(x, reference), skill(y, reference)
        threads = [sorted(int(t) for t in runs["threads"].dropna().unique()) for runs in (x, y)]
        unlike = [f"ran with {threads[0]} thread(s) per run, the other arm with {threads[1]}"] \
            if threads[0] != threads[1] else []  # float sums, so scores, follow the thread count
        rows.append({"task": task, "metric": x["metric"].iloc[0], "x_runs": x, "y_runs": y, "x_skill": x_skill,
                     "y_skill": y_skill, "x_flags": flags(x, edges) + unlike, "y_flags": flags(y, edges),
                     "x_params": int(x["adapter_params"].iloc[0]), "y_params": int(y["adapter_params"].iloc[0]),
                     **stat, "verdict": task_verdict(comparison.claim, stat, x_skill, y_skill)})
    return {"rows": rows, "missing": missing, "comparison": comparison,
            "verdict": overall_verdict([r["verdict"] for r in rows])}


def finding_verdict(results: list[dict]) -> str:
    verdicts = [r["verdict"] for r in results]
    if "not run yet" in verdicts or any(r["missing"] for r in results):
        return "inconclusive (not every run is there yet)"
    if len(set(verdicts)) == 1:
        return verdicts[0]
    kinds = {_kind(v) for v in verdicts}
    if len(kinds) > 1 or kinds == {"inconclusive"}:
        return "inconclusive"
    return kinds.pop() + (" (on one task only for some comparison)" if any("on one task only" in v for v in verdicts)
                          else "")
