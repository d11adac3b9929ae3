"""Profiles and grids: expansion, validation, per-task overrides, the paper profile's sources, and --dry-run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import veralab.studies.paper_settings as paper_settings
import veralab.studies.profiles as profiles
from veralab.core.config import ConfigError
from veralab.studies.grids import expand, load_grid


def _grid_file(tmp_path, grid):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return str(path)


def test_grid_expansion_dedups_shared_points_and_validates(tmp_path):
    points = expand("init_ablation", load_grid("init_ablation", "default"), tmp_path)
    assert len(points) == 5 * 3 and len({p.run_dir for p in points}) == 15  # 5 settings x 3 seeds
    bad = _grid_file(tmp_path, {"points": [{"method": "vera", "rank": -1}]})
    with pytest.raises(ConfigError, match="rank must be a positive integer, got -1"):
        expand("rank_sweep", load_grid("rank_sweep", "default", bad), tmp_path)
    with pytest.raises(ConfigError, match=r"sets \['task'\]: give tasks and seeds in the grid's `tasks`"):
        expand("rank_sweep", load_grid("rank_sweep", "default", _grid_file(tmp_path, {"points": [{"task": "rte"}]})),
               tmp_path)
    (tmp_path / "typo.yaml").write_text("pionts: []\n")
    with pytest.raises(ConfigError, match=r"unknown grid key\(s\) \['pionts'\]"):
        load_grid("rank_sweep", "default", str(tmp_path / "typo.yaml"))
    with pytest.raises(ConfigError, match="unknown profile 'fast'; allowed: default, paper"):
        load_grid("rank_sweep", "fast")


def test_every_default_point_has_three_seeds_or_more():
    for study in profiles.PROFILES["default"]:
        assert len(load_grid(study, "default")["seeds"]) >= 3, study


def _by(points, **where):
    return [p.params for p in points if all(p.params[k] == v for k, v in where.items())]


def test_paper_profile_uses_the_per_task_settings_of_the_replication():
    rank = expand("rank_sweep", load_grid("rank_sweep", "paper"), "/tmp/unused")
    assert {p.params["model"] for p in rank} == {"roberta-base"}
    assert {p.params["batch_size"] for p in rank if p.params["method"] != "lora"} == {64}
    assert {p.params["max_length"] for p in rank} == {512}
    assert paper_settings.LORA_BASE_TABLE["rte"] == (32, 80, 5e-4)  # the LoRA paper's RTE row (not the hybrid 4e-4)
    expected = {"rte": (160, 4e-3, 1e-2), "mrpc": (30, 1e-2, 4e-3), "cola": (80, 1e-2, 1e-2), "stsb": (80, 1e-2, 1e-2)}
    for task, (epochs, lr, head_lr) in expected.items():
        (vera,) = _by(rank, task=task, method="vera", rank=1024, run_seed=0)
        assert (vera["epochs"], vera["lr"], vera["head_lr"]) == (epochs, lr, head_lr), task
        (lora,) = _by(rank, task=task, method="lora", rank=8, run_seed=0)  # LoRA at its own paper's settings
        batch, lora_epochs, lora_lr = paper_settings.LORA_BASE_TABLE[task]
        assert (lora["epochs"], lora["lr"], lora["head_lr"], lora["batch_size"], lora["weight_decay"]) == \
            (lora_epochs, lora_lr, lora_lr, batch, 0.1), task
    for study in ("init_ablation", "vector_ablation"):
        points = expand(study, load_grid(study, "paper"), "/tmp/unused")
        assert {p.params["rank"] for p in points} == {1024}
        assert {(p.params["task"], p.params["epochs"]) for p in points} == {(t, e[0]) for t, e in expected.items()}
    vit = expand("vit", load_grid("vit", "paper"), "/tmp/unused")
    assert {p.params["task"] for p in vit} == {"cifar100", "food101", "flowers102", "resisc45"}
    assert {p.params["run_seed"] for p in vit} == {0, 1, 2, 3, 4}
    assert {p["rank"] for p in _by(vit, method="vera")} == {256}
    assert {p.params["shots_per_class"] for p in vit} == {10}


def test_every_paper_setting_names_its_source():
    settings = [line for line in Path(paper_settings.__file__).read_text().splitlines()
                if re.match(r'\s+"\w+": ', line) or re.match(r"PAPER_\w+ = [^{]", line)]
    assert settings
    unsourced = [line for line in settings
                 if not re.search(r"#.*(paper|replication|LoRA paper|our choice)", line)
                 and not re.match(r'\s+"(sst2|mrpc|cola|qnli|rte|stsb)": \{"epochs"', line)]  # under a sourced header
    assert any("unverified" in line for line in settings)  # VeRA's RoBERTa-large settings say what they are
    assert not unsourced, unsourced


def test_task_overrides_from_a_grid_file_and_their_typos(tmp_path):
    grid = _grid_file(tmp_path, {"tasks": ["digits", "mnist_5k"], "seeds": [0], "points": [{"method": "head"}],
                                 "task_overrides": {"digits": {"epochs": 7}}})
    points = expand("vit", load_grid("vit", "default", grid), tmp_path)
    assert {(p.params["task"], p.params["epochs"]) for p in points} == {("digits", 7), ("mnist_5k", profiles.DEFAULT_IMAGE["epochs"])}
    typo = _grid_file(tmp_path, {"tasks": ["digits"], "task_overrides": {"digit": {"epochs": 7}}})
    with pytest.raises(ConfigError, match=r"task_overrides names task\(s\) \['digit'\] that are neither in the "
                                          r"grid's tasks \['digits'\] nor known tasks"):
        expand("vit", load_grid("vit", "default", typo), tmp_path)
    # a grid file narrowing a profile's tasks keeps the profile's overrides for the tasks it leaves out, unused
    narrow = _grid_file(tmp_path, {"tasks": ["sst2"], "seeds": [0], "points": [{"method": "head"}]})
    points = expand("main_table", load_grid("main_table", "glue_cpu", narrow), tmp_path)
    assert [p.params["head_lr"] for p in points] == [profiles.GLUE_CPU_HEAD_LR["sst2"]]


def test_dry_run_prints_every_resolved_point_and_runs_nothing(tmp_path):
    out = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "veralab", "sweep", "vector_ablation", "--profile", "paper",
                           "--dry-run", "--output-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 4 * 4 * 5  # 4 variants x 4 tasks x 5 seeds
    rte_d_only = [p for p in lines if p["task"] == "rte" and not p["train_b"]]
    assert len(rte_d_only) == 5 and all(p["epochs"] == 160 and p["lr"] == 4e-3 and p["d_init"] == 0.0
                                        for p in rte_d_only)
    assert all({"study", "run", "method", "rank", "projection_prng_key", "device"} <= set(p) for p in lines)
    assert not out.exists()


def test_glue_profile_holds_the_papers_studies_on_real_glue(tmp_path):
    profile = profiles.PROFILES["glue"]
    assert list(profile) == ["main_table", "vector_ablation", "init_ablation", "rank_sweep"]  # no ViT on GLUE
    points = {s: expand(s, load_grid(s, "glue"), tmp_path) for s in profile}
    ranks = {(p.params["method"], p.params["rank"]) for p in points["rank_sweep"] if p.params["method"] != "head"}
    assert ranks == {("vera", r) for r in (1, 4, 16, 64, 256, 1024)} | {("lora", r) for r in (1, 2, 4, 8, 16)}
    assert {p.params["task"] for p in points["rank_sweep"]} == {"rte", "mrpc"}  # the paper's rank figure
    assert {p.params["task"] for p in points["main_table"]} == {"sst2", "mrpc", "rte", "stsb"}
    assert {p.params["task"] for p in points["vector_ablation"]} == {"rte", "mrpc", "stsb"}
    assert {p.params["task"] for p in points["init_ablation"]} == {"mrpc", "stsb"}
    assert all(sorted({p.params["run_seed"] for p in ps}) == [0, 1, 2, 3, 4] for ps in points.values())
    assert "max_train_samples" not in profile["main_table"]["base"]  # whole training sets


def test_glue_cpu_runs_where_the_model_learns_with_each_tasks_chosen_rates_and_enough_seeds(tmp_path):
    profile = profiles.PROFILES["glue_cpu"]
    points = {s: expand(s, load_grid(s, "glue_cpu"), tmp_path) for s in profile}
    for study, study_points in points.items():
        assert {p.params["task"] for p in study_points} == set(profiles.rates_chosen()) >= {"sst2", "stsb"}
        seeds = sorted({p.params["run_seed"] for p in study_points})
        assert seeds == (list(range(9)) if study in ("main_table", "vector_ablation") else list(range(5))), study
        for p in study_points:
            task, method = p.params["task"], p.params["method"]
            assert p.params["head_lr"] == profiles.GLUE_CPU_HEAD_LR[task]
            assert p.params["lr"] == (profiles.GLUE_CPU_LR[task][method] if method != "head" else None)
            assert (p.params["precision"], p.params["max_train_samples"], p.params["head_scope"]) == \
                ("bf16", profiles.GLUE_CPU_TRAIN[task], "paper")
            assert p.params["validation_holdout"] is None  # the campaign scores the dev split


def test_the_lower_rate_rows_differ_from_the_campaign_only_in_veras_rate(tmp_path):
    lower = [p for s in profiles.PROFILES["glue_cpu_lower"] for p in expand(s, load_grid(s, "glue_cpu_lower"),
                                                                             tmp_path)]
    campaign = {(p.params["task"], p.params["run_seed"], p.params["d_init"], p.params["projection_init"],
                 p.params["train_d"], p.params["train_b"], p.params["shared"]): p.params
                for s in ("vector_ablation", "init_ablation") for p in expand(s, load_grid(s, "glue_cpu"), tmp_path)}
    assert len({p.run_dir for p in lower}) == len(profiles.rates_chosen()) * 5 * 8  # 5 seeds, the default, 7 variants
    for point in lower:
        p = point.params
        same = campaign[p["task"], p["run_seed"], p["d_init"], p["projection_init"], p["train_d"], p["train_b"],
                        p["shared"]]
        assert {k for k in p if p[k] != same[k]} == {"lr"}
        grid = profiles.SELECTION_GRID["vera"]
        assert grid.index(p["lr"]) == grid.index(same["lr"]) - 1


def test_the_selection_scores_a_held_out_slice_with_the_campaigns_settings(tmp_path):
    heads = expand("main_table", load_grid("main_table", "glue_cpu_select_head"), tmp_path)
    rates = expand("main_table", load_grid("main_table", "glue_cpu_select"), tmp_path)
    campaign = {(p.params["task"], p.params["method"]): p.params
                for p in expand("main_table", load_grid("main_table", "glue_cpu"), tmp_path)}
    for point in heads + rates:
        p = point.params
        assert p["validation_holdout"] == profiles.SELECTION_HOLDOUT and p["run_seed"] in profiles.SELECTION_SEEDS
        assert p["max_train_samples"] == profiles.GLUE_CPU_TRAIN[p["task"]]
        if p["task"] not in profiles.rates_chosen():
            continue  # its studies wait for its rates
        differs = {k for k in p if p[k] != campaign[p["task"], p["method"]][k]}
        assert differs <= {"validation_holdout", "run_seed", "projection_prng_key", "lr", "head_lr"}, differs
    assert {p.params["head_lr"] for p in heads} == set(profiles.SELECTION_GRID["head"])
    assert {p.params["task"] for p in heads} == set(profiles.GLUE_CPU_TASKS)
    assert {p.params["task"] for p in rates} == set(profiles.head_chosen())
    for point in rates:  # every adapter candidate trains its head at the head-only runs' chosen rate
        assert point.params["head_lr"] == profiles.GLUE_CPU_HEAD_LR[point.params["task"]]
    assert {(p.params["method"], p.params["lr"]) for p in rates} == {
        (m, lr) for m in ("vera", "lora", "full") for lr in profiles.SELECTION_GRID[m]}


def test_task_overrides_may_set_a_rate_per_method_and_a_point_still_wins(tmp_path):
    grid = {"tasks": ["rotten_tomatoes"], "seeds": [0], "base": {"epochs": 1},
            "task_overrides": {"rotten_tomatoes": {"head_lr": 0.5, "vera": {"lr": 0.25}, "lora": {"lr": 0.125}}},
            "points": [{"method": "vera"}, {"method": "lora", "rank": 2}, {"method": "vera", "rank": 8, "lr": 0.75},
                       {"method": "head"}]}
    got = [(p.params["method"], p.params["lr"], p.params["head_lr"]) for p in expand("main_table", grid, tmp_path)]
    assert got == [("vera", 0.25, 0.5), ("lora", 0.125, 0.5), ("vera", 0.75, 0.5), ("head", None, 0.5)]
    nested = {**grid, "task_overrides": {"rotten_tomatoes": {"vera": {"run_seed": 3}}}}
    with pytest.raises(ConfigError, match=r"task_overrides\['rotten_tomatoes'\].*sets \['run_seed'\]"):
        expand("main_table", nested, tmp_path)
    with pytest.raises(ConfigError, match="task_overrides must be a mapping from task to a mapping of settings"):
        load_grid("rank_sweep", "default", _grid_file(tmp_path, {"task_overrides": {"rotten_tomatoes": {"vera": 1}}}))


def test_glue_dry_run_gives_every_glue_point_the_folder_and_a_study_it_lacks_is_refused(tmp_path, glue_dir):
    done = subprocess.run([sys.executable, "-m", "veralab", "sweep", "all", "--profile", "glue_cpu", "--dry-run",
                           "--glue-dir", str(glue_dir), "--output-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    per_task = 36 + 3 * 9 + 4 * 5 + 8 * 5  # shared points run once
    assert len(lines) == len({p["run"] for p in lines}) == per_task * len(profiles.rates_chosen())
    assert {p["glue_dir"] for p in lines} == {str(Path(glue_dir).resolve())}
    vit = subprocess.run([sys.executable, "-m", "veralab", "sweep", "vit", "--profile", "glue", "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert vit.returncode == 2 and "profile 'glue' has no study 'vit'; its studies: main_table" in vit.stderr
    empty = subprocess.run([sys.executable, "-m", "veralab", "sweep", "main_table", "--profile", "glue", "--dry-run",
                            "--glue-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "Traceback" not in empty.stderr  # refused before any run, in one line
    assert f"GLUE dir {tmp_path} has no SST-2/train.tsv for task 'sst2' (it holds: nothing)" in empty.stderr


def test_glue_cpu_rates_are_the_committed_selections_choice_inside_its_grid(glue_dir):
    """The profile's rates are what the committed selection records choose, none at a grid edge: the profile and its
    evidence cannot drift apart."""
    from veralab.studies.collect import collect_records
    from veralab.studies.selection import candidates, disagreements

    root = Path(__file__).resolve().parents[2] / "results" / "glue"
    frame = pd.concat([collect_records(root / name) for name in ("glue_cpu_select_head", "glue_cpu_select")])
    if frame.empty:
        pytest.skip("no committed selection records")
    chosen = {"glue_cpu_select_head": profiles.head_chosen(), "glue_cpu_select": profiles.rates_chosen()}
    task_of = {p.run_dir.name: (name, p.params["task"]) for name in chosen
               for p in expand("main_table", load_grid("main_table", name), root / name, glue_dir)}
    expected = {run for run, (name, task) in task_of.items() if task in chosen[name]}
    selecting = set(profiles.head_chosen()) - set(profiles.rates_chosen())  # adapters' selection not ended
    under_way = {run for run, (name, task) in task_of.items() if name == "glue_cpu_select" and task in selecting}
    assert expected <= set(frame["name"]) <= expected | under_way and set(frame["status"]) == {"ok"}
    table = candidates(frame, seeds=profiles.SELECTION_SEEDS)  # a task's records come with the choice they make
    assert disagreements(table) == []
    done = table[table["chosen"] & ~table["task"].isin(selecting)]
    assert set(zip(done["task"], done["method"])) == {  # (a task under way may have chosen for some methods)
        (t, "head") for t in profiles.head_chosen() if t not in profiles.NO_SKILL_HEAD_LR} | {
        (t, m) for t in profiles.rates_chosen() for m in ("vera", "lora", "full")}
    for task in profiles.NO_SKILL_HEAD_LR:  # a head rate taken from another task only where no candidate learned
        heads = table[(table["task"] == task) & (table["method"] == "head")]
        assert len(heads) == len(profiles.SELECTION_GRID["head"]) and not heads["skill"].any()
    assert not done["edge"].any()


@pytest.mark.parametrize("grid, message", [
    ({"seeds": [0, 0]}, r"task rotten_tomatoes, seed 0, point \{'method': 'head'\} is the same run as task "
                        r"rotten_tomatoes, seed 0, point \{'method': 'head'\}"),
    ({"seeds": [0], "points": [{"method": "vera", "rank": 4}, {"method": "vera", "rank": 4}]},
     r"seed 0, point \{'method': 'vera', 'rank': 4\} is the same run as"),
    ({"seeds": [0], "base": {"run_name": "mine"}}, r"the grid's base .* sets \['run_name'\]"),
])
def test_a_grid_that_names_one_run_twice_is_refused_not_merged(tmp_path, grid, message):
    with pytest.raises(ConfigError, match=message):
        expand("rank_sweep", load_grid("rank_sweep", "default", _grid_file(tmp_path, grid)), tmp_path)


def test_every_profile_expands_without_a_repeated_run(tmp_path):
    for name, profile in profiles.PROFILES.items():
        for study in profile:
            expand(study, load_grid(study, name), tmp_path)  # raises on a repeat


@pytest.mark.parametrize("text, message", [
    ("seeds: 0\n", r"grid.yaml \(study rank_sweep\): seeds must be a list of whole numbers; got 0"),
    ("points: {method: vera}\n", r"points must be a list of mappings of settings; got \{'method': 'vera'\}"),
    ("tasks: rte\n", r"tasks must be a list of task names; got 'rte'"),
    ("points: [\n  {method: vera\n", r"grid.yaml line 3, column 1 is not valid YAML: expected ',' or '\}'"),
    ("seeds: [0]\npoints:\n  - {method: vera, lr: 1e-3x}\n",
     r"study 'rank_sweep', task rotten_tomatoes, seed 0, point \{'method': 'vera', 'lr': '1e-3x'\}: lr must be a "
     r"finite number; got '1e-3x'"),
])
def test_a_malformed_grid_file_is_refused_in_one_message(tmp_path, text, message):
    (tmp_path / "grid.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        expand("rank_sweep", load_grid("rank_sweep", "default", str(tmp_path / "grid.yaml")), tmp_path)


def test_numbers_that_yaml_reads_as_strings_are_numbers(tmp_path):
    """PyYAML reads 1e-7 (no dot) as a string: a float setting gets its number, and the run its right name."""
    (tmp_path / "grid.yaml").write_text("seeds: [0]\npoints:\n  - {method: vera, rank: 4, lr: 3e-2, d_init: 1e-7}\n")
    [point] = expand("rank_sweep", load_grid("rank_sweep", "default", str(tmp_path / "grid.yaml")), tmp_path)
    assert point.params["lr"] == 3e-2 and point.params["d_init"] == 1e-7 and isinstance(point.params["d_init"], float)


def test_committed_glue_records_are_ok_points_of_their_profiles(glue_dir, tmp_path):
    """Every committed GLUE record is an ok point of the profile whose folder holds it: no record of another protocol
    (v1's classifier-only head, float32, rates chosen on dev) is mixed in."""
    from veralab.studies.collect import collect_records
    from veralab.studies.grids import sweep_points

    root = Path(__file__).resolve().parents[2] / "results" / "glue"
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        pytest.skip("no committed GLUE records")
    for folder in folders:
        assert folder.name in profiles.PROFILES, f"{folder} is no profile's folder"
        frame = collect_records(folder)
        expected = {p.run_dir.name for p in sweep_points("all", folder.name, output_dir=folder, glue_dir=glue_dir)}
        assert set(frame["name"]) <= expected, sorted(set(frame["name"]) - expected)[:3]
        assert set(frame["status"]) <= {"ok", "failed"}
        failed = frame[frame["status"] == "failed"]
        assert failed.empty or folder.name.startswith("glue_cpu_select"), failed["name"].tolist()  # a diverged rate


def test_points_from_a_grid_file_keep_the_studys_rates_unless_they_set_their_own(tmp_path):
    grid = _grid_file(tmp_path, {"points": [{"method": "vera", "rank": 8}, {"method": "lora", "rank": 2},
                                            {"method": "vera", "rank": 16, "lr": 0.5}, {"method": "head"}]})
    got = [(p.params["method"], p.params["lr"]) for p in expand("rank_sweep", load_grid("rank_sweep", "default", grid),
                                                               tmp_path) if p.params["run_seed"] == 0]
    assert got == [("vera", profiles.TEXT_LR["vera"]), ("lora", profiles.TEXT_LR["lora"]), ("vera", 0.5),
                   ("head", None)]
    rates = _grid_file(tmp_path, {"base": {"vera": {"lr": 0.25}}, "points": [{"method": "vera", "rank": 8}]})
    assert {p.params["lr"] for p in expand("rank_sweep", load_grid("rank_sweep", "default", rates), tmp_path)} == {0.25}
    bad = _grid_file(tmp_path, {"base": {"vera": 0.25}})
    with pytest.raises(ConfigError, match=r"base must be a mapping of settings \(and of method to settings\)"):
        load_grid("rank_sweep", "default", bad)


def test_your_images_are_a_task_of_any_image_study(tmp_path):
    """A grid of task custom_images with --set data=FOLDER: every point a valid run on your folder."""
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        Image.new("L", (8, 8), 40 if name == "cat" else 200).save(tmp_path / "pets" / name / "0.png")
    grid = _grid_file(tmp_path, {"tasks": ["custom_images"], "seeds": [0, 1]})
    points = expand("vit", load_grid("vit", "default", grid), tmp_path / "runs",
                    sets={"data": str(tmp_path / "pets"), "shots_per_class": 1})
    assert len(points) == 2 * len(profiles.PROFILES["default"]["vit"]["points"])
    assert {p.params["data"] for p in points} == {str(tmp_path / "pets")} and {p.params["task"] for p in points} == \
        {"custom_images"}


def test_the_paper_main_table_is_table_2_for_both_roberta_sizes_at_each_methods_own_settings():
    points = [p.params for p in expand("main_table", load_grid("main_table", "paper"), "/tmp/unused")]
    assert len(points) == 2 * 6 * 4 * 5  # RoBERTa-base and -large, six tasks, four methods, five seeds
    assert {p["task"] for p in points} == {"sst2", "mrpc", "cola", "qnli", "rte", "stsb"}
    vera = {p["model"]: p["rank"] for p in points if p["method"] == "vera"}
    assert vera == {"roberta-base": 1024, "roberta-large": 256}  # 43,008 and 61,440 adapter parameters
    (lora,) = _by_params(points, model="roberta-large", task="stsb", method="lora", run_seed=0)
    assert (lora["batch_size"], lora["max_length"], lora["epochs"], lora["lr"], lora["alpha"]) == (4, 128, 10, 2e-4, 16)
    (full,) = _by_params(points, model="roberta-base", task="rte", method="full", run_seed=0)
    assert (full["lr"], full["head_lr"], full["epochs"], full["weight_decay"]) == (2e-5, 2e-5, 10, 0.1)
    (vera_rte,) = _by_params(points, model="roberta-base", task="rte", method="vera", run_seed=0)
    assert (vera_rte["epochs"], vera_rte["lr"], vera_rte["head_lr"], vera_rte["batch_size"]) == (160, 4e-3, 1e-2, 64)
    vit = expand("vit", load_grid("vit", "paper"), "/tmp/unused")
    assert {p.params["model"] for p in vit} == {"vit_base_patch16_224.augreg_in21k", "vit_large_patch16_224.augreg_in21k"}


def _by_params(points, **where):
    return [p for p in points if all(p[k] == v for k, v in where.items())]


def test_a_glue_cpu_task_joins_in_stages_and_the_check_keeps_its_rates(tmp_path, monkeypatch):
    """Head rate, then adapter rates, then studies: a task enters each stage once the previous choice is recorded,
    with its own training size throughout; the check that qualified MRPC keeps STS-B's rates whatever MRPC's."""
    check = {p.run_dir.name for p in expand("main_table", load_grid("main_table", "glue_cpu_check"), tmp_path)}
    monkeypatch.setitem(profiles.GLUE_CPU_TRAIN, "newtask", None)
    monkeypatch.setattr(profiles, "GLUE_CPU_TASKS", [*profiles.GLUE_CPU_TASKS, "newtask"])
    stages = ("glue_cpu_select_head", "glue_cpu_select", "glue_cpu")

    def tasks():
        built = {"glue_cpu_select_head": profiles._selection_head(), "glue_cpu_select": profiles._selection(),
                 "glue_cpu": profiles._glue_cpu_profile()}
        return [set(built[name]["main_table"]["tasks"]) for name in stages]
    assert ["newtask" in t for t in tasks()] == [True, False, False]
    assert profiles._selection_head()["main_table"]["task_overrides"]["newtask"] == {"max_train_samples": None}
    monkeypatch.setitem(profiles.GLUE_CPU_HEAD_LR, "newtask", 3e-2)
    assert ["newtask" in t for t in tasks()] == [True, True, False]
    monkeypatch.setitem(profiles.GLUE_CPU_LR, "newtask", {"vera": 1e-2, "lora": 1e-3, "full": 1e-4})
    assert ["newtask" in t for t in tasks()] == [True, True, True]
    assert profiles._glue_cpu_profile()["main_table"]["task_overrides"]["newtask"] == {
        "max_train_samples": None, **profiles.task_rates("newtask")}
    monkeypatch.setitem(profiles.GLUE_CPU_LR, "mrpc", {"vera": 1e-2, "lora": 1e-3, "full": 1e-4})
    assert {p.run_dir.name for p in expand("main_table", profiles._pair_check()["main_table"], tmp_path)} == check
