"""Bad numbers on the command line get one line naming the flag and what is allowed, before any work: never a
silent default, never a traceback."""

import json
from pathlib import Path

import pytest

from veralab.core.config import AdapterConfig, ConfigError
from veralab.experiment import RunConfig
from veralab.studies.cli import build_parser, main


@pytest.mark.parametrize("name, value", [("lr", float("inf")), ("lr", float("nan")), ("head_lr", float("inf")),
                                         ("weight_decay", float("nan")), ("lr", "1e-3")])
def test_a_run_setting_that_is_not_a_finite_number_is_refused(name, value):
    with pytest.raises(ConfigError, match=rf"^{name} must be a finite number; got "):
        RunConfig(**{name: value})


@pytest.mark.parametrize("name", ["d_init", "b_init", "dropout"])
def test_an_adapter_setting_that_is_not_a_finite_number_is_refused(name):
    with pytest.raises(ConfigError, match=rf"^{name} must be a finite number, got nan"):
        AdapterConfig(**{name: float("nan")})


@pytest.mark.parametrize("argv, message", [
    (["run", "--lr", "-1e-3"], "lr must be > 0, or None for the method's default; got -0.001"),
    (["run", "--lr", "inf"], "lr must be a finite number; got inf"),
    (["run", "--d-init", "-1e-7", "--train-b"], None),  # a negative number is a value, not an option
])
def test_negative_and_non_finite_numbers_reach_the_configs_own_check(argv, message, capsys, tmp_path):
    if message is None:
        assert build_parser().parse_args(argv).d_init == -1e-7
        return
    assert main([*argv, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {message}" and not list(tmp_path.iterdir())


@pytest.mark.parametrize("flag, value", [("--timeout", "0"), ("--timeout", "-5"), ("--limit", "-1"),
                                         ("--limit", "0"), ("--jobs", "0")])
def test_sweep_limits_must_be_positive(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "vit", flag, value, "--dry-run"])
    assert exit_.value.code == 2
    assert f"argument {flag}: must be a positive whole number, got '{value}'" in capsys.readouterr().err


def test_compare_refuses_a_folder_that_is_not_there(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "runs-typo"), str(tmp_path)]) == 2
    assert f"error: {tmp_path / 'runs-typo'} is not a folder of run records" in capsys.readouterr().err


@pytest.mark.slow
def test_a_max_length_past_the_models_positions_is_refused_before_training(tmp_path, capsys):
    assert main(["run", "--task", "rotten_tomatoes", "--max-length", "4096", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: max_length 4096 is longer than model 'minilm' can read; allowed: 1 to 512 tokens"
    assert not list(tmp_path.glob("*/record.json"))


def test_figures_refuse_a_folder_of_failed_runs_and_an_out_that_is_a_file(tmp_path, capsys):
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({"status": "failed", "name": "x", "error": "loss became nan",
                                                 "config": {"method": "vera", "rank": 4, "task": "digits"}}))
    assert main(["figures", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "figs")]) == 2
    assert "are all unfinished or failed (first: x: loss became nan); nothing to draw" in capsys.readouterr().err
    assert not (tmp_path / "figs").exists()
    (tmp_path / "afile").write_text("")
    committed = str(Path(__file__).resolve().parents[2] / "results" / "default")
    assert main(["figures", "--runs", committed, "--out", str(tmp_path / "afile")]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_sweep_into_a_folder_that_cannot_be_written_is_refused_up_front(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["sweep", "vit", "--output-dir", str(tmp_path / "afile" / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the sweep's output folder {tmp_path / 'afile' / 'runs'}: Not a directory" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("name, value", [("train_b", "no"), ("shared", "False"), ("train_head", 0),
                                         ("group_by_length", "yes"), ("force", 1)])
def test_a_switch_that_is_not_true_or_false_is_refused_not_read_as_truthy(name, value):
    with pytest.raises(ConfigError, match=rf"^{name} must be True or False, got {value!r}"):
        RunConfig.from_dict({name: value})


def test_a_bad_papermill_parameter_is_one_line_in_the_notebook_not_a_traceback(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "papermill", str(root / "notebooks" / "06_main_table.ipynb"),
                           str(tmp_path / "out.ipynb"), "-p", "lr", "1e-3x", "--cwd", str(root)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    error = next(o for cell in json.loads((tmp_path / "out.ipynb").read_text())["cells"]
                 for o in cell.get("outputs", []) if o.get("output_type") == "error")
    assert error["traceback"] == ["ParameterError: a notebook parameter (its parameters cell, or papermill -p): lr "
                                  "must be a finite number; got '1e-3x'"]
    assert "TypeError" not in done.stderr


def test_a_glue_sweep_offline_without_a_glue_folder_is_refused_before_any_point(tmp_path):
    import os
    import re
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "veralab", "sweep", "main_table", "--profile", "glue_cpu",
                           "--output-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert re.search(r"GLUE task '(sst2|mrpc|stsb)' reads its data from glue_dir", done.stderr)
    assert "set glue_dir (--glue-dir)" in done.stderr
    assert not list((tmp_path / "runs").glob("*/*.ipynb"))


def test_set_overrides_every_point_and_refuses_what_it_cannot_set(tmp_path):
    import subprocess
    import sys

    def sweep(*sets):
        return subprocess.run([sys.executable, "-m", "veralab", "sweep", "vit", "--dry-run", "--output-dir",
                               str(tmp_path), *[a for s in sets for a in ("--set", s)]],
                              capture_output=True, text=True, timeout=120)

    done = sweep("epochs=1", "lr=1e-3", "train_b=false", "d_init=0")
    points = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(points) == 24
    assert all(p["epochs"] == 1 and p["lr"] == 1e-3 and p["train_b"] is False for p in points)
    for bad, message in (("epoch=1", "unknown setting(s) 'epoch' (did you mean 'epochs'?)"),
                         ("run_seed=3", "--set cannot set ['run_seed']"), ("epochs", "expected KEY=VALUE"),
                         ("lr=fast", "lr must be a finite number; got 'fast'")):
        refused = sweep(bad)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr, bad
