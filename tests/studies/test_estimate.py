"""`veralab sweep --dry-run --estimate`: what a sweep will cost, from FLOPs calibrated on a measured GPU step."""

import subprocess
import sys

import pytest

from veralab.core.config import AdapterConfig, ConfigError
from veralab.experiment import RunConfig
from veralab.studies import estimate
from veralab.studies.estimate import CALIBRATION, point_cost


def _calibration_step(method: str, rank: int) -> RunConfig:
    """One step of the calibration's shape: RoBERTa-base, 64 examples of 256 tokens."""
    return RunConfig(task="rte", model="roberta-base", batch_size=64, max_length=256, max_train_samples=64, epochs=1,
                     adapter=AdapterConfig(method=method, rank=rank))


def test_the_calibration_step_is_reproduced(monkeypatch):
    monkeypatch.setitem(estimate.LONG_TOKENS, "rte", 256)  # every example as long as the calibration's
    vera, lora = point_cost(_calibration_step("vera", 1024)), point_cost(_calibration_step("lora", 8))
    assert vera.steps == 1 and vera.tokens == 64 * 256
    ms = CALIBRATION["floor_ms"]
    assert vera.hours * 3600e3 == pytest.approx(ms * CALIBRATION["vera_ratio"], rel=1e-6)
    assert lora.hours * 3600e3 == pytest.approx(ms * CALIBRATION["lora_ratio"], rel=0.01)
    assert vera.peak_gib * 1024 == pytest.approx(CALIBRATION["vera_mib"], rel=1e-6)
    full = point_cost(_calibration_step("full", 8))
    assert full.flops == pytest.approx(1.5 * 2 * vera.tokens * estimate._forward_per_token(12, 768, 256))
    assert full.peak_gib > vera.peak_gib  # gradients and Adam's moments for all 125M weights


def test_steps_tokens_and_sizes_follow_the_run_config():
    sst2 = RunConfig(task="sst2", model="roberta-base", batch_size=64, epochs=60, max_length=512)
    cost = point_cost(sst2)
    assert cost.examples == 67_349 and cost.steps == 60 * 1053
    assert point_cost(RunConfig(task="sst2", model="roberta-large", batch_size=64, epochs=60)).hours > cost.hours
    vit = point_cost(RunConfig(task="cifar100", model="vit_base_patch16_224.augreg_in21k", shots_per_class=10,
                               epochs=10, batch_size=32))
    assert vit.examples == 1000 and vit.steps == 10 * 32 and vit.tokens == vit.steps * 32 * 197
    with pytest.raises(ConfigError, match="--estimate knows no shape for model 'bert-base-uncased'"):
        point_cost(RunConfig(task="sst2", model="bert-base-uncased"))
    with pytest.raises(ConfigError, match="unknown GPU 'a100'"):
        point_cost(sst2, "a100")


def test_the_paper_profile_prints_its_cost_per_point_and_per_study():
    done = subprocess.run([sys.executable, "-m", "veralab", "sweep", "all", "--profile", "paper", "--dry-run",
                           "--estimate", "--gpu", "h200"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["study", "variant", "task", "model"]
    total = next(line for line in lines if line.split()[:1] == ["total"]).split()
    assert int(total[1]) == len([line for line in lines if line.split()[:1] and line.split()[0] in
                                 ("main_table", "rank_sweep", "init_ablation", "vector_ablation", "vit")]) - 5
    assert "on one H200 in bf16" in done.stdout and "roberta-large" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "veralab", "sweep", "vit", "--profile", "paper", "--estimate"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "--estimate goes with --dry-run" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_readme_shows_the_paper_profiles_current_estimate():
    from pathlib import Path

    from veralab.studies.estimate import estimate_text
    from veralab.studies.grids import sweep_points

    printed = estimate_text(sweep_points("all", "paper", output_dir="/tmp/unused-estimate")).splitlines()
    per_study = printed[printed.index(next(line for line in printed if line.strip().startswith("study  runs"))):]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "\n".join(line for line in per_study if line.strip()) in readme, "README's estimate is stale: rerun it"


def test_the_gpu_kits_measured_step_recalibrates_the_estimate(tmp_path, monkeypatch):
    """bench_vera.py --size full's table (its format; the values here are made up for the test) replaces the
    built-in step: a calibration-shaped VeRA r=1024 step then costs what that table measured."""
    from veralab.studies.estimate import calibration_from_bench

    table = tmp_path / "results_cuda_full_bf16.csv"
    table.write_text("model,method,ms_per_step,peak_mib\nRoBERTa-base,floor,20.0,4000\n"
                     "RoBERTa-base,veralab-lora-8,22.0,4100\nRoBERTa-base,veralab-vera-1024,30.0,5000\n")
    calibration = calibration_from_bench(table)
    monkeypatch.setitem(estimate.LONG_TOKENS, "rte", 256)
    vera = point_cost(_calibration_step("vera", 1024), calibration=calibration)
    assert vera.hours * 3600e3 == pytest.approx(30.0) and vera.peak_gib * 1024 == pytest.approx(5000)
    with pytest.raises(ConfigError, match="expected bench_vera.py's results_cuda_full"):
        calibration_from_bench(tmp_path / "results_cpu_small.csv")
    done = subprocess.run([sys.executable, "-m", "veralab", "sweep", "vit", "--profile", "paper", "--dry-run",
                           "--estimate", "--calibration", str(table)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"from the GPU kit's step in {table}" in done.stdout
