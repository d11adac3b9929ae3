"""The verdict rules, each tested with synthetic records, and RESULTS.md built from them."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from veralab.core.config import AdapterConfig
from veralab.experiment import RunConfig
from veralab.studies.collect import flatten
from veralab.studies.findings import Comparison, Finding, vera
from veralab.studies.report import MARK_NOTES, check_section, comparison_table, results_report, what_ran
from veralab.studies.selection import candidates, selection_section
from veralab.studies.verdicts import (
    MARGIN,
    compare,
    detectable_difference,
    finding_verdict,
    overall_verdict,
    paired_difference,
    seeds_needed,
    sign_flip_p,
    task_verdict,
    verdict,
)

NOISE = [0.0, 0.004, -0.003, 0.002, -0.001, 0.003, -0.002, 0.001, -0.004]  # per-seed jitter: intervals need spread
SST2_MAJORITY = 0.509174


def _record(task, seed, score, majority=SST2_MAJORITY, lr=3e-2, metric="accuracy", train_loss=0.3,
            constant_loss=0.69, head_lr=1e-2, device=None, precision="bf16", **adapter):
    config = RunConfig(adapter=AdapterConfig(**{"method": "vera", "rank": 1024, **adapter}), task=task,
                       run_seed=seed, epochs=3, lr=lr if adapter.get("method", "vera") != "head" else None,
                       head_lr=head_lr)
    method = config.adapter.method
    counts = {"adapter": {"vera": 16896, "lora": 73728, "head": 0, "full": 22_565_376}[method], "head": 148_610}
    data = {"train_used": 1024, "eval_used": {"validation": 872}, "constant_loss": constant_loss}
    if metric == "accuracy":
        data["majority_class"] = {"label": {"validation": 1}, "accuracy": {"validation": majority}}
    return flatten({"status": "ok", "name": config.name(), "config": config.to_dict(), "kind": "text",
                    "model": "minilm", "metric": metric, "final": {metric: score},
                    "best": {metric: score, "epoch": 3}, "evaluated_on": "validation", "test": None,
                    "epochs": [{"epoch": 3, "train_loss": train_loss}],
                    "params": {**counts, "trainable": counts["adapter"] + counts["head"], "total": 22_700_000},
                    "time": {"wall_seconds": 60.0, "samples_per_second": 50.0},
                    "device": device or {"type": "cpu", "threads": 1, "cpu_bf16": "amx"}, "precision": precision,
                    "data": data})


def _arm(task, base, seeds=range(5), **kwargs):
    """An arm's runs: `base` plus a per-seed jitter that differs between arms (their differences need spread)."""
    shift = int(round(base * 1000)) + len(kwargs)
    return [_record(task, s, base + NOISE[(s + shift) % len(NOISE)], **kwargs) for s in seeds]


def _compare(rows, x, y, claim, tasks=("sst2",), edges=None):
    finding = Finding("f", "", tasks, [Comparison(x, y, "X", "Y", claim)])
    return compare(pd.DataFrame(rows), finding, finding.comparisons[0], edges)


def test_what_ran_says_how_each_bf16_runs_products_ran():
    """Records before float32 kernels existed ran bf16 on native units only; newer ones say which path ran."""
    zen3 = {"type": "cpu", "threads": 1, "cpu_bf16": "none", "bf16_products": "float32 kernels"}
    rows = [_record("sst2", 0, 0.8), _record("sst2", 1, 0.8, device=zen3),
            _record("sst2", 2, 0.8, device={"type": "cpu", "threads": 1, "cpu_bf16": "avx512_bf16",
                                            "bf16_products": "native"}),
            _record("sst2", 3, 0.8, precision="fp32", device={"type": "cpu", "threads": 1, "cpu_bf16": "none"})]
    frame = pd.DataFrame(rows)
    products = list(frame["bf16_products"])
    assert products[:3] == ["native (amx)", "float32 kernels", "native (avx512_bf16)"] and pd.isna(products[3])
    assert ('bf16 products (README, "Precision"): float32 kernels 1 runs, native (amx) 1 runs, '
            'native (avx512_bf16) 1 runs') in what_ran(frame)


# ---- statistics -----------------------------------------------------------------------------------------------

def test_sign_flip_p_is_exact_for_few_pairs():
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)  # only all-plus and all-minus are as extreme
    assert sign_flip_p([0.0, 0.0]) == 1.0


def test_paired_interval_is_the_t_interval_of_the_differences_with_its_detectable_difference():
    d = np.array([1.0, 2.5, 0.5, 1.8])
    stat = paired_difference(d)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert stat["low"] == pytest.approx(d.mean() - half) and stat["high"] == pytest.approx(d.mean() + half)
    assert stat["mdd"] == pytest.approx((stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * d.std(ddof=1) / 2)


def test_detectable_difference_shrinks_with_seeds_and_seeds_needed_meets_the_margin():
    assert detectable_difference(1.5, 7) < detectable_difference(1.5, 5) < detectable_difference(1.5, 3)
    n = seeds_needed(1.5)
    assert n == 9  # the glue_cpu profile's seeds for its "close" comparisons (sd 1.5 on STS-B in the v1 records)

    def inside_rate(pairs):  # simulated: how often the interval of `pairs` differences of sd 1.5 lies inside ±2
        rng = np.random.default_rng(0)
        return np.mean([(lambda s: -MARGIN < s["low"] and s["high"] < MARGIN)(
            paired_difference(rng.normal(0, 1.5, pairs))) for _ in range(4000)])

    assert inside_rate(n) > 0.75 > inside_rate(n - 3)


# ---- the rules -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("claim, low, high, expected", [
    ("beats", 0.5, 3.0, "reproduced"),
    ("beats", -3.0, -0.5, "not reproduced"),
    ("beats", -0.8, 0.9, "not reproduced"),  # no effect as large as a point
    ("beats", -0.5, 2.0, "inconclusive"),
    ("beats", -0.5, 1.3, "inconclusive"),  # reaches past the ±1 no-effect band: the band is not wider
    ("beats", 0.2, 0.8, "reproduced"),  # above 0 comes first, though the whole interval is smaller than a point
    ("close", -1.5, 1.5, "reproduced"),
    ("close", -1.5, 3.0, "inconclusive"),  # a one-sided rule would have said reproduced: X may be far better
    ("close", 2.5, 6.0, "not reproduced (X better by more than 2)"),  # wholly above the margin: not "close"
    ("close", -6.0, -2.5, "not reproduced (X worse by more than 2)"),
    ("close", -3.0, 1.0, "inconclusive"),
])
def test_interval_rules_are_two_sided_for_close(claim, low, high, expected):
    assert verdict(claim, low, high) == expected


def test_close_is_judged_on_both_sides_from_records():
    far_above = _arm("sst2", 0.85) + _arm("sst2", 0.80, method="lora", rank=8, lr=3e-3)
    result = _compare(far_above, vera(1024), {"method": "lora", "rank": 8}, "close")
    assert result["verdict"] == "not reproduced (X better by more than 2) on one task only"
    near = _arm("sst2", 0.805) + _arm("sst2", 0.80, method="lora", rank=8, lr=3e-3)
    assert _compare(near, vera(1024), {"method": "lora", "rank": 8}, "close")["verdict"] == \
        "reproduced on one task only"


def test_for_beats_a_skilled_x_over_a_skill_less_y_counts_for_x_and_the_reverse_against():
    skilled, no_skill = 0.80, SST2_MAJORITY + 0.002
    rows = _arm("sst2", skilled) + _arm("sst2", no_skill, shared=False)
    result = _compare(rows, vera(1024), vera(1024, shared=False), "beats")
    assert result["rows"][0]["verdict"] == "reproduced (Y shows no skill, X does)"
    result = _compare(rows, vera(1024, shared=False), vera(1024), "beats")
    assert result["rows"][0]["verdict"] == "not reproduced (X shows no skill, Y does)"
    both_none = _arm("sst2", no_skill) + _arm("sst2", no_skill - 0.001, shared=False)
    assert _compare(both_none, vera(1024), vera(1024, shared=False), "beats")["verdict"] == \
        "inconclusive (no task where the arms show skill)"


def test_for_close_an_arm_without_skill_makes_the_task_uninformative():
    rows = _arm("sst2", 0.80) + _arm("sst2", SST2_MAJORITY, shared=False)
    result = _compare(rows, vera(1024), vera(1024, shared=False), "close")
    assert result["rows"][0]["verdict"] == "not informative (an arm lacks skill)"


def test_an_adapter_no_better_than_head_only_shows_no_skill():
    head = _arm("sst2", 0.74, method="head")
    d_only = _arm("sst2", 0.735, train_b=False, d_init=0.0)  # below head only: it adds nothing to the head
    rows = head + _arm("sst2", 0.80) + d_only
    result = _compare(rows, vera(1024), vera(1024, train_b=False, d_init=0.0), "beats")
    assert result["rows"][0]["y_skill"] == "not above head only" and result["rows"][0]["x_skill"] == ""
    assert result["rows"][0]["verdict"] == "reproduced (Y shows no skill, X does)"


def test_an_adapter_within_one_standard_error_above_head_only_shows_no_skill():
    head = _arm("sst2", 0.74, method="head")
    rows = head + _arm("sst2", 0.80) + _arm("sst2", 0.745, shared=False)  # above head only, by less than 1.5 points
    assert _compare(rows, vera(1024), vera(1024, shared=False), "beats")["rows"][0]["y_skill"] == "not above head only"
    rows = head + _arm("sst2", 0.80) + _arm("sst2", 0.77, shared=False)
    assert _compare(rows, vera(1024), vera(1024, shared=False), "beats")["rows"][0]["y_skill"] == ""


def test_against_head_only_the_interval_decides_not_head_onlys_median():
    rows = _arm("sst2", 0.74, method="head") + _arm("sst2", 0.752)  # VeRA above head by about a point
    row = _compare(rows, vera(1024), {"method": "head"}, "beats")["rows"][0]
    assert row["x_skill"] == "" and row["verdict"] == "reproduced"


def test_a_pearson_arm_with_no_correlation_shows_no_skill():
    rows = _arm("stsb", 0.01, metric="pearson") + _arm("stsb", 0.80, metric="pearson", shared=False)
    result = _compare(rows, vera(1024), vera(1024, shared=False), "beats", tasks=("stsb",))
    assert result["rows"][0]["x_skill"] == "no skill"


def test_one_counted_task_says_so_and_tasks_are_never_pooled():
    rows = _arm("sst2", 0.82) + _arm("sst2", 0.80, shared=False)
    rows += _arm("stsb", 0.80, metric="pearson") + _arm("stsb", 0.85, metric="pearson", shared=False)
    result = _compare(rows, vera(1024), vera(1024, shared=False), "beats", tasks=("sst2", "stsb"))
    assert [r["verdict"] for r in result["rows"]] == ["reproduced", "not reproduced"]
    assert result["verdict"] == "inconclusive"
    assert overall_verdict(["reproduced", "not informative (an arm lacks skill)"]) == "reproduced on one task only"
    assert overall_verdict(["reproduced", "reproduced (Y shows no skill, X does)"]) == "reproduced"
    assert overall_verdict(["inconclusive (fewer than 3 pairs)", "not informative (an arm lacks skill)"]) == \
        "inconclusive (fewer than 3 pairs)"  # not "on one task only": nothing was decided


def test_a_finding_is_reproduced_when_every_comparison_is_whatever_the_reason():
    def result(text):
        return {"verdict": text, "missing": []}
    assert finding_verdict([result("reproduced"), result("reproduced (Y shows no skill, X does)")]) == "reproduced"
    assert finding_verdict([result("not reproduced"), result("not reproduced (X worse by more than 2)")]) == \
        "not reproduced"
    assert finding_verdict([result("reproduced on one task only"), result("reproduced")]) == \
        "reproduced (on one task only for some comparison)"
    assert finding_verdict([result("reproduced"), result("not reproduced")]) == "inconclusive"
    assert finding_verdict([result("reproduced"), {"verdict": "reproduced", "missing": ["stsb"]}]) == \
        "inconclusive (not every run is there yet)"


def test_degenerate_tasks_are_inconclusive_not_decided():
    assert task_verdict("beats", paired_difference([0.2] * 3), "", "") == "inconclusive (no spread across seeds)"
    assert task_verdict("beats", paired_difference([5.0, 6.0]), "", "") == "inconclusive (fewer than 3 pairs)"
    # too few pairs decide nothing, not even where one arm's median lacks skill
    assert task_verdict("beats", paired_difference([5.0, 6.0]), "", "no skill") == "inconclusive (fewer than 3 pairs)"


def test_an_arm_is_flagged_at_a_grid_edge_or_with_the_constant_answers_loss():
    rows = _arm("sst2", 0.80, lr=1e-1) + _arm("sst2", 0.79, shared=False, lr=1e-1, train_loss=0.70)
    result = _compare(rows, vera(1024), vera(1024, shared=False), "close",
                      edges={("sst2", "vera"): (1e-1, "highest")})
    row = result["rows"][0]
    assert row["x_flags"] == ["rate at the grid's highest edge"]
    assert row["y_flags"][0] == "rate at the grid's highest edge"
    assert row["y_flags"][1].startswith("5 of 5 runs learned nothing (a final training loss at or above the constant")


def test_a_collapse_in_some_seeds_is_flagged_though_the_median_run_learned():
    change = {"d_init": 0.0, "train_b": False}
    by_loss = _record("sst2", 3, 0.60, train_loss=0.71, **change)  # scores above the majority class all the same
    by_score = _record("sst2", 4, SST2_MAJORITY + 0.001, train_loss=0.68, **change)  # one class, loss just below
    rows = _arm("sst2", 0.80) + _arm("sst2", 0.78, seeds=range(3), **change) + [by_loss, by_score]
    row = _compare(rows, vera(1024), vera(1024, **change), "beats")["rows"][0]
    assert row["x_flags"] == [] and row["x_skill"] == row["y_skill"] == ""
    assert row["y_flags"] == ["2 of 5 runs learned nothing (a final training loss at or above the constant answer's, "
                              "or a score at the no-skill level): 51.0, 60.0"]


def test_a_finding_with_a_missing_arm_or_seed_stays_open():
    rows = _arm("sst2", 0.80) + _arm("sst2", 0.70, seeds=range(2), shared=False)
    result = _compare(rows, vera(1024), vera(1024, shared=False), "beats")
    assert result["missing"] == ["sst2"] and finding_verdict([result]).startswith("inconclusive (not every run")


def test_an_arm_that_mixes_settings_is_refused_not_averaged():
    rows = [_record("sst2", 0, 0.7), _record("sst2", 1, 0.7, lr=1e-2)]
    with pytest.raises(ValueError, match="different settings"):
        _compare(rows, vera(1024), vera(1024), "beats")


# ---- RESULTS.md ------------------------------------------------------------------------------------------------

def _campaign():
    rows = []
    for task, metric, shift in (("sst2", "accuracy", 0.0), ("stsb", "pearson", 0.0)):
        kw = {"metric": metric}
        rows += _arm(task, 0.74 + shift, method="head", seeds=range(9), **kw)
        rows += _arm(task, 0.83, method="full", lr=1e-4, seeds=range(9), **kw)
        rows += _arm(task, 0.80, method="lora", rank=8, lr=3e-3, seeds=range(9), **kw)
        rows += _arm(task, 0.795, seeds=range(9), **kw) + _arm(task, 0.79, shared=False, seeds=range(9), **kw)
        rows += _arm(task, 0.77, train_b=False, d_init=0.0, **kw) + _arm(task, 0.78, train_d=False, **kw)
        rows += _arm(task, 0.765, rank=1, **kw)
        for change in ({"d_init": 1.0}, {"d_init": 1e-7}, {"projection_init": "uniform"},
                       {"projection_init": "kaiming_normal"}):
            rows += _arm(task, 0.78, **change, **kw)
    return pd.DataFrame(rows)


def test_the_report_states_rules_power_one_task_findings_and_sensitivity_rows():
    frame = _campaign()
    lower = frame[(frame["method"] == "vera") & (frame["rank"] == 1024)].copy()
    lower["lr"], lower["score"] = 1e-2, lower["score"] - 0.01
    text = results_report(frame, rank=1024, lora_rank=8, expected_runs=len(frame), reduction="a reduction.",
                          grids={"main_table": {"tasks": ["sst2", "stsb"], "seeds": list(range(9))},
                                 "vector_ablation": {"tasks": ["sst2", "stsb"], "seeds": list(range(5))},
                                 "init_ablation": {"tasks": ["sst2", "stsb"], "seeds": list(range(5))},
                                 "rank_sweep": {"tasks": ["sst2"], "seeds": list(range(5))}},
                          lower=lower)
    assert "an equivalence claim" in text and "detectable at 80% power" in text
    assert "### 2. VeRA's score grows with its rank: **reproduced on one task only**" in text
    assert "### 1. VeRA is close to LoRA with fewer adapter parameters: **reproduced**" in text
    assert "Sensitivity, not counted: the same comparisons with VeRA at its next grid rate down (sst2 0.01, " \
           "stsb 0.01)" in text
    assert "d only (b fixed at 1, d from 0)" in text
    partial = results_report(frame, rank=1024, lora_rank=8, grids={"vector_ablation": {"tasks": ["sst2", "stsb"]}},
                             lower=lower[lower["task"] == "sst2"])  # STS-B's lower-rate runs not there yet
    assert "with VeRA at its next grid rate down (sst2 0.01)." in partial
    assert "bf16" not in text or "bf16 autocast" in text
    assert "148,610 parameters on SST-2 (148,225 on\n  STS-B's one output) counted as head" in text
    assert "sst2: full 0.0001 / 0.01, head – / 0.01, lora 0.003 / 0.01, vera 0.03 / 0.01; stsb:" in text


def test_sensitivity_rows_are_complete_against_their_own_grids_seeds_not_the_campaigns():
    frame = pd.DataFrame(_arm("sst2", 0.795, seeds=range(9)) + _arm("sst2", 0.77, train_b=False, d_init=0.0,
                                                                      seeds=range(9))
                         + _arm("sst2", 0.78, train_d=False, seeds=range(9)))  # both vectors, d only, b only
    lower = frame[frame["run_seed"] < 5].assign(lr=1e-2)  # the lower-rate profile runs 5 of the campaign's 9 seeds
    grids = {"vector_ablation": {"tasks": ["sst2"], "seeds": list(range(9))}}
    lower_grids = {"vector_ablation": {"tasks": ["sst2"], "seeds": list(range(5))}}

    def sensitivity(text):
        return text.split("Sensitivity, not counted")[1].split("###")[0]

    complete = results_report(frame, rank=1024, lora_rank=8, grids=grids, lower=lower, lower_grids=lower_grids)
    assert "still missing" not in sensitivity(complete)
    assert "still missing" in sensitivity(results_report(frame, rank=1024, lora_rank=8, grids=grids, lower=lower))
    short = results_report(frame, rank=1024, lora_rank=8, grids=grids, lower=lower[lower["run_seed"] < 4],
                           lower_grids=lower_grids)
    assert "runs or seeds still missing on sst2" in sensitivity(short)


def test_a_table_explains_only_the_marks_it_uses():
    skilled = _compare(_arm("sst2", 0.80) + _arm("sst2", 0.79, shared=False), vera(1024), vera(1024, shared=False),
                       "close")
    assert not any(mark in line for line in comparison_table([skilled]) for mark in MARK_NOTES)
    majority = _arm("sst2", SST2_MAJORITY, shared=False, train_loss=0.70)
    lines = comparison_table([_compare(_arm("sst2", 0.80) + majority, vera(1024), vera(1024, shared=False), "beats")])
    assert MARK_NOTES["†"] in "\n".join(lines) and MARK_NOTES["⚠"] in "\n".join(lines)
    assert MARK_NOTES["‡"] not in "\n".join(lines)


def test_results_cli_writes_the_report_from_the_committed_records_and_names_its_sources(tmp_path):
    root = Path(__file__).resolve().parents[2]
    if not list((root / "results" / "glue" / "glue_cpu").glob("*/record.json")):
        pytest.skip("no committed GLUE records")
    out = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, "-m", "veralab", "results", "--out", str(out)], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "(glue: `results/glue/glue_cpu`; lower rate: `results/glue/glue_cpu_lower`; vit: `results/default`" in text
    assert text == (root / "RESULTS.md").read_text()  # the committed report is this function of the records


def test_an_inconclusive_task_says_how_many_seeds_would_decide_it():
    from veralab.studies.verdicts import what_would_decide

    stat = paired_difference([1.5, -1.0, 2.0, -0.5, 0.0])
    assert what_would_decide("close", stat) == f"about {seeds_needed(stat['sd'])} seeds at the spread seen"
    n = int(what_would_decide("beats", stat).split()[1])
    assert detectable_difference(stat["sd"], n) <= abs(stat["mean"]) < detectable_difference(stat["sd"], n - 1)


def test_the_selection_takes_the_best_median_a_tie_to_the_lower_rate_and_flags_a_grid_edge():
    def candidate(task, lr, scores, failed=(), majority=SST2_MAJORITY):
        rows = [_record(task, seed, score, majority, lr=lr) for seed, score in enumerate(scores)]
        return rows + [{**_record(task, seed, 0.0, majority, lr=lr), "status": "failed"} for seed in failed]
    rows = (candidate("sst2", 1e-2, [0.80, 0.81]) + candidate("sst2", 3e-2, [0.79, 0.82])  # tied medians
            + candidate("sst2", 1e-1, [0.78, 0.79]) + candidate("sst2", 3e-1, [0.90], failed=[1])  # one seed diverged
            + candidate("mrpc", 3e-3, [0.70, 0.71]) + candidate("mrpc", 1e-2, [0.60, 0.61])
            + candidate("qnli", 1e-2, [0.80, 0.81], majority=0.684) + candidate("qnli", 3e-2, [0.68, 0.69], majority=0.684)
            + candidate("rte", 1e-2, [0.512, 0.507]) + candidate("rte", 3e-2, [0.50, 0.51]))  # all at the majority
    table = candidates(pd.DataFrame(rows))
    chosen = table[table["chosen"]].set_index("task")
    assert chosen.loc["sst2", "rate"] == 1e-2 and chosen.loc["sst2", "edge"] == ""
    assert chosen.loc["mrpc", "rate"] == 3e-3 and chosen.loc["mrpc", "edge"] == "lowest"
    assert table.loc[table["rate"] == 3e-1, "failed"].iloc[0] == [1]
    assert "rte" not in chosen.index and not table.loc[table["task"] == "rte", "skill"].any()  # noise chooses nothing
    section = selection_section(table, 1000, [0, 1])
    text = "\n".join(section)
    assert "| rte | vera | 0.01: 51.0 (51.2, 50.7); 0.03: 50.5 (50.0, 51.0) | none (no candidate shows skill) | |" in section
    assert "| 0.01 | +0.0 over 0.03 (+1.0, -1.0) |" in text  # sst2: paired by seed
    assert "| 0.003 (at the grid's lowest rate) | +10.0 over 0.01 (+10.0, +10.0) |" in text  # mrpc
    assert "| 0.01 | the only candidate that shows skill and where no seed diverged |" in text  # qnli: 3e-2 at its majority


def test_a_selection_still_under_way_chooses_nothing_yet():
    from veralab.studies.profiles import SELECTION_GRID

    grid = SELECTION_GRID["vera"]
    # rte: a task whose rates the profile does not set, so RESULTS.md names no rate in their stead
    rows = [_record("rte", seed, 0.70 + 0.01 * i, lr=lr) for i, lr in enumerate(grid) for seed in (0, 1)]
    complete = candidates(pd.DataFrame(rows), seeds=[0, 1])
    assert complete["chosen"].sum() == 1 and not complete["pending"].any()
    partial = candidates(pd.DataFrame(rows[:-3]), seeds=[0, 1])  # the top rate's runs and one seed of the next
    assert not partial["chosen"].any() and set(partial["pending"]) == {3}
    assert "| none (under way: 3 of its runs still to come) | |" in "\n".join(selection_section(partial, 1000, [0, 1]))
    assert candidates(pd.DataFrame(rows[:-3]))["chosen"].sum() == 1  # without the seeds: a choice among those run


def test_the_check_says_which_tasks_learn_and_why_rte_stays_off_the_cpu():
    rows = []
    for task, level, adapter, loss in (("mrpc", 0.67, 0.72, 0.50), ("rte", 0.505, 0.532, 0.665)):
        rows += _arm(task, level, method="head", seeds=range(2), majority=level, constant_loss=0.69)
        rows += _arm(task, adapter, method="lora", rank=8, seeds=range(2), majority=level, train_loss=loss,
                     constant_loss=0.69)
        rows += _arm(task, adapter, seeds=range(2), majority=level, train_loss=loss, constant_loss=0.69)
    text = "\n".join(check_section(pd.DataFrame(rows)))
    assert "| mrpc | VeRA r=1024 |" in text and "| rte | head only |" in text
    assert "- MRPC: LoRA and VeRA lead the majority class by 5.0 points" in text
    assert "they learn, so its studies run on the CPU, on its whole training set" in text
    assert "- RTE: LoRA and VeRA lead the majority class by 2.7 points (1.6 standard errors" in text
    assert "its dev split has 277 examples (one run's standard error 3.0 points at 50%)" in text
    assert "It stays in the `glue` profile" in text
