"""Verdicts on the paper's findings: the paired statistics, the rules, and RESULTS.md from records."""

import json
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
from veralab.studies.sweep import sweep_points
from veralab.studies.verdicts import (
    Comparison,
    Finding,
    compare,
    paired_difference,
    results_report,
    sign_flip_p,
    task_verdict,
    vera,
    verdict,
)


def _record(task, seed, score, epochs=4, majority=None, lr=None, metric="accuracy", **adapter):
    config = RunConfig(adapter=AdapterConfig(**{"method": "vera", "rank": 1024, **adapter}), task=task,
                       run_seed=seed, epochs=epochs, lr=lr)
    counts = {"adapter": 16896 if config.adapter.method == "vera" else 73728, "head": 770}
    return flatten({"status": "ok", "name": config.name(), "config": config.to_dict(), "kind": "text",
                    "model": "minilm", "metric": metric, "final": {metric: score},
                    "best": {metric: score, "epoch": epochs}, "evaluated_on": "validation", "test": None,
                    "params": {**counts, "trainable": counts["adapter"] + 770, "total": 22_700_000},
                    "time": {"wall_seconds": 60.0, "samples_per_second": 50.0}, "device": {"type": "cpu"},
                    "data": {"train_used": 1024, "eval_used": {"validation": 408},
                             **({"majority_class": {"label": {"validation": 1}, "accuracy": {"validation": majority}}}
                                if majority is not None else {})}})


def _frame(rows):
    return pd.DataFrame(rows)


def test_sign_flip_p_is_exact_for_few_pairs():
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)  # only all-plus and all-minus are as extreme
    assert sign_flip_p([0.0, 0.0]) == 1.0
    assert sign_flip_p([1.0, -1.0, 1.0, -1.0]) == 1.0


def test_paired_interval_is_the_t_interval_of_the_differences():
    d = np.array([2.0, 0.5, 3.1, 1.2, -0.4])
    result = paired_difference(d)
    expected = stats.ttest_1samp(d, 0).confidence_interval(0.95)
    assert result["n"] == 5 and result["mean"] == pytest.approx(d.mean())
    assert (result["low"], result["high"]) == pytest.approx((expected.low, expected.high))


@pytest.mark.parametrize("claim,low,high,expected", [
    ("beats", 0.2, 3.0, "reproduced"), ("beats", -4.0, -0.5, "not reproduced"),
    ("beats", -0.6, 0.8, "not reproduced"),  # the whole interval within ±1 point: no difference that large
    ("beats", -0.5, 3.0, "inconclusive"), ("close", -1.5, 3.0, "reproduced"), ("close", -5.0, -2.5, "not reproduced"),
    ("close", -3.0, 1.0, "inconclusive"), ("beats", float("nan"), float("nan"), "inconclusive")])
def test_verdict_rules(claim, low, high, expected):
    assert verdict(claim, low, high) == expected


NOISE = (0.004, -0.003, 0.001)  # per seed, so paired differences have a spread


def test_arms_are_paired_by_task_and_seed_and_judged_per_task():
    rows = [_record(task, seed, 0.70 + 0.01 * seed + (0.03 if task == "rte" else 0.02) + NOISE[seed])
            for task in ("rte", "mrpc") for seed in (0, 1, 2)]
    rows += [_record(task, seed, 0.70 + 0.01 * seed, train_d=False) for task in ("rte", "mrpc") for seed in (0, 1, 2)]
    finding = Finding("both beat b only", "", ("rte", "mrpc"),
                      [Comparison(vera(1024), vera(1024, train_d=False), "both", "b only", "beats")])
    result = compare(_frame(rows), finding, finding.comparisons[0])
    rte, mrpc = result["rows"]
    assert (rte["task"], rte["n"], mrpc["n"]) == ("rte", 3, 3)  # every seed paired with its own seed
    assert rte["mean"] == pytest.approx(3.0 + 100 * np.mean(NOISE)) and mrpc["mean"] == pytest.approx(
        2.0 + 100 * np.mean(NOISE))
    assert rte["verdict"] == mrpc["verdict"] == "reproduced" and result["verdict"] == "reproduced"


def test_tasks_are_not_pooled_so_one_large_gain_cannot_hide_a_loss():
    rows = [_record("sst2", s, 0.80 + NOISE[s]) for s in (0, 1, 2)] + [_record("rte", s, 0.60 + NOISE[s])
                                                                         for s in (0, 1, 2)]
    rows += [_record("sst2", s, 0.30, method="lora", rank=8) for s in (0, 1, 2)]  # +50 points: a failed arm
    rows += [_record("rte", s, 0.66, method="lora", rank=8) for s in (0, 1, 2)]  # -6 points
    finding = Finding("close", "", ("sst2", "rte"), [Comparison(vera(1024), {"method": "lora", "rank": 8}, "VeRA",
                                                                "LoRA", "close")])
    result = compare(_frame(rows), finding, finding.comparisons[0])
    assert [r["verdict"] for r in result["rows"]] == ["reproduced", "not reproduced"]
    assert result["verdict"] == "inconclusive"  # pooled, the mean of +22 points would have said "reproduced"


def test_a_task_where_an_arm_shows_no_skill_does_not_count():
    rows = [_record("rte", s, 0.53 + NOISE[s], majority=0.527076) for s in (0, 1, 2)]  # at the majority class
    rows += [_record("rte", s, 0.40, majority=0.527076, shared=False) for s in (0, 1, 2)]
    rows += [_record("mrpc", s, 0.80 + NOISE[s], majority=0.683824) for s in (0, 1, 2)]
    rows += [_record("mrpc", s, 0.80, majority=0.683824, shared=False) for s in (0, 1, 2)]
    finding = Finding("close", "", ("rte", "mrpc"), [Comparison(vera(1024), vera(1024, shared=False), "shared",
                                                                "independent", "close")])
    result = compare(_frame(rows), finding, finding.comparisons[0])
    assert [r["verdict"] for r in result["rows"]] == ["not informative (no skill)", "reproduced"]
    assert result["verdict"] == "reproduced"


def test_degenerate_tasks_are_inconclusive_not_decided():
    assert task_verdict("beats", paired_difference([0.2] * 3), True) == "inconclusive (no spread across seeds)"
    assert task_verdict("close", paired_difference([0.0] * 3), True) == "inconclusive (no spread across seeds)"
    assert task_verdict("beats", paired_difference([5.0, 6.0]), True) == "inconclusive (fewer than 3 pairs)"


def test_an_arm_missing_seeds_leaves_the_finding_open():
    rows = [_record(task, s, 0.80 + NOISE[s]) for task in ("rte", "mrpc", "stsb") for s in (0, 1, 2)]
    rows += [_record(task, s, 0.70, shared=False) for task in ("rte", "mrpc", "stsb") for s in (0, 1, 2)
             if task != "mrpc" or s == 0]  # mrpc: one seed of three so far
    text = results_report(_frame(rows), rank=1024, lora_rank=8, expected_runs=153, reduction="a reduction.")
    assert "### 7. Shared A/B are as good as independent ones per layer: **inconclusive (not every run" in text
    assert "runs or seeds still missing on mrpc" in text


def test_an_arm_that_mixes_settings_is_refused_not_averaged():
    rows = [_record("rte", 0, 0.7), _record("rte", 1, 0.7, epochs=10), _record("rte", 0, 0.6, train_d=False)]
    finding = Finding("x", "", ("rte",), [Comparison(vera(1024), vera(1024, train_d=False), "a", "b", "beats")])
    with pytest.raises(ValueError, match="different settings"):
        compare(_frame(rows), finding, finding.comparisons[0])


def test_report_states_what_ran_the_rules_and_missing_runs():
    rows = [_record("rte", seed, 0.60 + 0.01 * seed) for seed in (0, 1, 2)]
    rows += [_record("rte", seed, 0.55, shared=False) for seed in (0, 1, 2)]
    text = results_report(_frame(rows), rank=1024, lora_rank=8, expected_runs=153, reduction="a reduction.")
    assert "Records: 6 of 153 runs" in text and "a reduction." in text and "seeds: [0, 1, 2]" in text
    assert "95% interval" in text and "sign-flip" in text
    assert "### 7. Shared A/B are as good as independent ones per layer: **inconclusive (not every run" in text
    assert "runs or seeds still missing on mrpc, stsb" in text
    assert "### 1. VeRA is close to LoRA with fewer adapter parameters: **inconclusive (not every run" in text


def test_one_pair_gets_no_interval_and_says_so_instead_of_nan():
    rows = [_record("rte", 0, 0.60), _record("rte", 0, 0.55, shared=False)]
    text = results_report(_frame(rows), rank=1024, lora_rank=8, expected_runs=153, reduction="a reduction.")
    assert "nan" not in text
    assert "| 1 | +5.0 [no interval from 1 pair] | inconclusive (fewer than 3 pairs) |" in text


def test_committed_glue_records_are_ok_points_of_the_glue_cpu_profile(glue_dir, tmp_path):
    """RESULTS.md draws on results/glue/glue_cpu: each record there must be a point the profile still makes, from
    these GLUE files (the run name holds their sha256), so a changed profile cannot leave stale records behind."""
    folder = Path(__file__).resolve().parents[2] / "results" / "glue" / "glue_cpu"
    committed = {p.parent.name: json.loads(p.read_text())["status"] for p in folder.glob("*/record.json")}
    if not committed:
        pytest.skip("no committed glue_cpu records")
    expected = {p.run_dir.name for p in sweep_points("all", "glue_cpu", output_dir=str(tmp_path),
                                                     glue_dir=str(glue_dir))}
    assert set(committed) <= expected, sorted(set(committed) - expected)
    assert set(committed.values()) == {"ok"}


def test_report_gives_each_classification_tasks_majority_class_level():
    rows = [_record("rte", seed, 0.50, majority=0.527076) for seed in (0, 1)]
    rows += [_record("stsb", 0, 0.80)]  # a regression: no classes, no level
    text = results_report(_frame(rows), rank=1024, lora_rank=8, expected_runs=153, reduction="a reduction.")
    assert "majority class (the best constant answer: the scored split's most frequent label): rte 52.7; a " \
           "classifier at or below it has learned nothing" in text


def test_a_selection_among_near_equal_scores_says_it_only_weakly_determines_the_rates():
    rows = [_record("mrpc", 0, score, majority=0.683824, lr=lr) for score, lr in ((0.706, 1e-2), (0.723, 1e-1))]
    text = results_report(_frame(rows[:1]), selection=_frame(rows), rank=1024, lora_rank=8)
    assert "Every candidate scored 70.6–72.3 on the 408 dev examples, where the majority class scores 68.4 and one " \
           "run's standard error is about 2.2 points: the candidates are not separated by more than two standard " \
           "errors, so this selection only weakly determines the chosen rates." in text


def test_an_arm_at_the_majority_class_level_is_marked_as_showing_no_skill():
    rows = [_record("rte", seed, 0.53 + 0.1 * (seed == 2), majority=0.527076) for seed in (0, 1, 2)]
    rows += [_record("rte", seed, 0.70, majority=0.527076, shared=False) for seed in (0, 1, 2)]
    text = results_report(_frame(rows), rank=1024, lora_rank=8, expected_runs=153, reduction="a reduction.")
    assert "| 53.0 [53.0, 63.0] (n=3) † | 70.0 [70.0, 70.0] (n=3) |" in text  # 53.0 < 52.7 + 2.5 (one SE at 408)
    assert "† median at most one standard error above the no-skill level (accuracy: the majority class" in text


def test_results_cli_writes_the_report_from_the_committed_records_and_names_its_sources(tmp_path):
    root = Path(__file__).resolve().parents[2]
    if not list((root / "results" / "glue" / "glue_cpu").glob("*/record.json")):
        pytest.skip("no committed glue_cpu records")
    out = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, "-m", "veralab", "results", "--runs", "results/glue/glue_cpu", "--profile",
                           "glue_cpu", "--selection", "results/glue/glue_select", "--out", str(out)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert ("(glue: `results/glue/glue_cpu`; vit: `results/default`; selection: `results/glue/glue_select`; "
            "rate check: `results/glue/glue_cpu_rates`)") in text
    assert "of 180 runs of the GLUE campaign" in text and "nan" not in text
    assert "| VeRA r=1024 at lr 0.1 vs LoRA r=8 at lr 0.005 | stsb (pearson) |" in text.split("## Sensitivity")[1]
    assert text.count("### ") == 9  # every finding, GLUE and ViT, has its section


def test_a_rank_sweep_beyond_the_papers_tasks_is_named_as_a_difference_and_judged_there():
    rows = [_record(task, seed, 0.80 + 0.01 * seed + (0.05 if rank == 1024 else 0), rank=rank)
            for task in ("sst2",) for seed in (0, 1, 2) for rank in (1, 1024)]
    paper_only = results_report(_frame(rows), rank=1024, lora_rank=8, reduction="a reduction.")
    assert "- Studies:" not in paper_only
    text = results_report(_frame(rows), rank=1024, lora_rank=8, rank_tasks=("rte", "mrpc", "sst2"),
                          reduction="a reduction.")
    assert "- Studies: the rank sweep runs on SST-2 too (our addition" in text
    assert "| VeRA r=1024 vs VeRA r=1 | sst2 (accuracy) |" in text


def test_the_rate_check_pairs_vera_and_lora_at_each_rate_and_stays_out_of_the_verdicts():
    glue = [_record("stsb", seed, 0.77 + 0.01 * seed, lr=0.1) for seed in (0, 1, 2)]
    glue += [_record("stsb", seed, 0.25 + 0.02 * seed, method="lora", rank=8, lr=5e-4) for seed in (0, 1, 2)]
    check = [_record("stsb", seed, 0.82 + 0.005 * seed, method="lora", rank=8, lr=2e-3) for seed in (0, 1, 2)]
    check += [_record("stsb", seed, 0.60 + 0.01 * seed, lr=0.3) for seed in (0, 1, 2)]
    without = results_report(_frame(glue), rank=1024, lora_rank=8, reduction="a reduction.")
    text = results_report(_frame(glue), rank=1024, lora_rank=8, reduction="a reduction.", rate_runs=_frame(check))
    assert "Sensitivity" not in without
    section = text.split("## Sensitivity: finding 1 at other learning rates")[1]
    assert "with VeRA r=1024 at lr 0.1, 0.3 and LoRA r=8 at lr 0.0005, 0.002" in section
    assert "The runs at the chosen rates (VeRA 0.1, LoRA 0.0005) are the campaign's own" in section
    rows = {(line.split(" | ")[0][2:]): line for line in section.splitlines() if "| stsb (accuracy) |" in line}
    assert len(rows) == 4  # every pair of rates
    assert rows["VeRA r=1024 at lr 0.1 vs LoRA r=8 at lr 0.0005"].endswith("| +51.0 [+48.5, +53.5] | reproduced |")
    assert rows["VeRA r=1024 at lr 0.1 vs LoRA r=8 at lr 0.002"].endswith("| not reproduced |")  # 4.5 points below
    assert "| pairs | X − Y: mean [95% interval] | result at these rates |" in section
    best = "stsb (VeRA at 0.1, LoRA at 0.002): -4.5 [-5.7, -3.3], not reproduced"  # VeRA's 0.3 is worse than its 0.1
    assert f"With each method at its best rate per task (the highest median): {best}." in section
    assert f"This verdict is at the rates chosen on MRPC; with each method at its best rate per task, {best}" in text
    assert f"** at the rates chosen on MRPC; sensitivity check with each method at its best rate per task, {best} |" \
        in text
    headings = [[line for line in report.splitlines() if line.startswith("### ")] for report in (text, without)]
    assert headings[0] == headings[1]  # every finding's verdict is the one it has without the check


def test_a_pearson_arm_with_no_correlation_shows_no_skill_as_a_classifier_at_its_majority_class_does():
    """STS-B has no majority class; its no-skill level is Pearson 0, one standard error 1/sqrt(n) (n=408 here)."""
    finding = Finding("X beats Y", "", ("stsb",), [Comparison(vera(1024), vera(1024, projection_init="uniform"),
                                                                "X", "Y", "beats")])
    for y_score, informative in ((0.03, False), (0.08, True)):  # 1/sqrt(408) = 0.0495
        rows = [_record("stsb", s, 0.77 + 0.01 * s, metric="pearson") for s in (0, 1, 2)]
        rows += [_record("stsb", s, y_score + 0.001 * s, metric="pearson", projection_init="uniform")
                 for s in (0, 1, 2)]
        row = compare(_frame(rows), finding, finding.comparisons[0])["rows"][0]
        assert row["informative"] is informative and ("†" in row["y"]) is not informative
