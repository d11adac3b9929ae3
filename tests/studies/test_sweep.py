"""Sweeps with real papermill and real kernels: every study notebook, resume after an interrupt, failures, Ray."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from veralab.studies.grids import STUDIES, Point
from veralab.studies.kernels import execute_point
from veralab.studies.sweep import run_sweep

pytestmark = pytest.mark.slow  # real papermill kernels and training runs

TINY_TEXT = {"epochs": 1, "max_train_samples": 16, "max_eval_samples": 16, "max_length": 24, "batch_size": 16,
             "save_adapter": False}
TINY_IMAGE = {"epochs": 1, "shots_per_class": 2, "batch_size": 16, "max_eval_samples": 64, "save_adapter": False}
STUDY_POINTS = {
    "rank_sweep": {"task": "rotten_tomatoes", "method": "lora", "rank": 2, **TINY_TEXT},
    "init_ablation": {"task": "rotten_tomatoes", "method": "vera", "rank": 8, "projection_init": "uniform", **TINY_TEXT},
    "vector_ablation": {"task": "rotten_tomatoes", "method": "vera", "rank": 8, "train_b": False, "d_init": 0.0,
                        **TINY_TEXT},
    "vit": {"task": "digits", "method": "vera", "rank": 4, **TINY_IMAGE},
    "main_table": {"task": "mrpc", "method": "vera", "rank": 8, **TINY_TEXT},
}
MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def _tiny_mrpc(root: Path) -> str:
    """A GLUE folder with a 24-pair MRPC in the official layout (the main-table notebook's data)."""
    (root / "MRPC").mkdir(parents=True)
    rows = [f"{i % 2}\t{i}\t{i + 100}\tThe company said sales rose {i} percent .\t"
            f"{'Sales rose' if i % 2 else 'Profits fell'} {i} percent , the company said .\n" for i in range(24)]
    (root / "MRPC" / "train.tsv").write_text(MRPC_HEADER + "".join(rows))
    (root / "MRPC" / "dev.tsv").write_text(MRPC_HEADER + "".join(rows[:16]))
    return str(root)


def _grid_file(tmp_path, points, tasks=("rotten_tomatoes",), seeds=(0,), base=TINY_TEXT):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"tasks": list(tasks), "seeds": list(seeds), "base": dict(base),
                                    "points": points}))
    return str(path)


@pytest.mark.parametrize("study", list(STUDIES))
def test_each_study_notebook_runs_under_papermill_and_writes_its_record(study, tmp_path):
    glue = {"glue_dir": _tiny_mrpc(tmp_path / "glue")} if study == "main_table" else {}
    point = Point(study, {**STUDY_POINTS[study], **glue, "run_seed": 0, "projection_prng_key": 0,
                          "output_dir": str(tmp_path)})
    result = execute_point(point)
    assert result["status"] == "ok", result
    record = json.loads((point.run_dir / "record.json").read_text())
    assert record["status"] == "ok"
    for key, value in STUDY_POINTS[study].items():
        assert record["config"][key] == value, key
    executed = json.loads(point.notebook_out.read_text())
    tags = [c["metadata"].get("tags", []) for c in executed["cells"]]
    assert ["injected-parameters"] in tags
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    skipped = [c for c in executed["cells"] if "sweep-skip" in c["metadata"].get("tags", [])]
    assert len(skipped) == 1 and "figure" in "".join(skipped[0]["source"])  # the study figure: drawn once, at the end
    assert not skipped[0]["outputs"] and skipped[0]["execution_count"] is None
    assert any(f"{record['name']}: ok" in "".join(o.get("text", "")) for o in outputs), outputs  # the summary
    assert not any("it/s]" in o.get("text", "") for o in outputs)  # progress bars stay quiet under papermill
    warnings = [o.get("text", "") for o in outputs if o.get("name") == "stderr" or o["output_type"] == "error"]
    assert not warnings, warnings  # no pink box: every warning is dealt with, none is left to the reader


def test_interrupted_sweep_resumes_and_redoes_nothing(tmp_path):
    grid = _grid_file(tmp_path, [{"method": "vera", "rank": r} for r in (2, 4, 8)])
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "veralab", "sweep", "rank_sweep", "--grid", grid, "--output-dir", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("*/record.json")):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    proc.wait(timeout=60)
    time.sleep(2)
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*/record.json")
                if json.loads(p.read_text())["status"] == "ok"}
    assert 1 <= len(finished) < 3
    summary = run_sweep("rank_sweep", grid_file=grid, output_dir=str(out))
    assert summary["skipped"] == len(finished) and summary["done"] == 3 - len(finished) and not summary["failed"]
    assert all(p.stat().st_mtime_ns == m for p, m in finished.items())
    again = run_sweep("rank_sweep", grid_file=grid, output_dir=str(out))
    assert again == {"points": 3, "skipped": 3, "done": 0, "busy": 0, "failed": []}


def test_a_failing_point_does_not_stop_the_others(tmp_path, capsys):
    (tmp_path / "glue" / "MRPC").mkdir(parents=True)  # MRPC's files are there but lack MRPC's columns
    for split in ("train", "dev"):
        (tmp_path / "glue" / "MRPC" / f"{split}.tsv").write_text("x\ty\n1\t2\n")
    grid = _grid_file(tmp_path, [{"method": "vera", "rank": 4}], tasks=("mrpc", "rotten_tomatoes"),
                      base={**TINY_TEXT, "glue_dir": str(tmp_path / "glue")})
    summary = run_sweep("rank_sweep", grid_file=grid, output_dir=str(tmp_path / "runs"), jobs=2)
    assert summary["done"] == 1 and len(summary["failed"]) == 1
    failure = summary["failed"][0]
    assert failure["name"].startswith("mrpc-vera") and "lacks column(s)" in failure["error"]
    assert Path(failure["notebook"]).is_file()
    printed = capsys.readouterr().out
    assert "1 failed" in printed and f"executed notebook: {failure['notebook']}" in printed


def test_ray_executor_runs_a_sweep_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    grid = _grid_file(tmp_path, [{"method": "vera", "rank": 2}, {"method": "lora", "rank": 1}])
    summary = run_sweep("rank_sweep", grid_file=grid, output_dir=str(tmp_path / "runs"), executor="ray", jobs=2)
    assert summary["done"] == 2 and not summary["failed"]
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/record.json")]
    assert sorted(r["config"]["method"] for r in records) == ["lora", "vera"]
    assert all((tmp_path / "runs" / r["name"] / "01_rank_sweep.ipynb").is_file() for r in records)
