"""Sweeps under stress, with real papermill kernels: timeouts, Ctrl-C, two sweeps into one folder, unwritable
output, leaked socket folders, and the Slurm executor through submitit's local cluster."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from veralab.studies.grids import Point
from veralab.studies.kernels import CLAIM, execute_point
from veralab.studies.sweep import SlurmOptions, run_sweep

pytestmark = pytest.mark.slow

QUICK = {"task": "digits", "shots_per_class": 2, "epochs": 1, "batch_size": 16, "max_eval_samples": 32,
         "save_adapter": False}
LONG = {**QUICK, "method": "vera", "rank": 4, "shots_per_class": 20, "epochs": 400}  # minutes of training


def _grid(tmp_path, points, base=QUICK):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["digits"], "seeds": [0], "base": dict(base), "points": points}))
    return str(path)


def _sweep_cmd(grid, out, *extra):
    return [sys.executable, "-m", "veralab", "sweep", "vit", "--grid", grid, "--output-dir", str(out), *extra]


def _socket_dirs():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "veralab-kernel-*")))


def test_a_cell_past_the_timeout_fails_the_point_and_leaves_no_socket_folder(tmp_path, monkeypatch):
    own_tmp = tmp_path / "tmp"  # this run's temporary folders alone: other sweeps on the machine make their own
    own_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    point = Point("vit", {**LONG, "output_dir": str(tmp_path)})
    result = execute_point(point, timeout=5)
    assert result["status"] == "failed", result
    assert result["error"] == "CellTimeoutError: a cell ran longer than the timeout of 5 s"
    assert os.path.isfile(result["notebook"])  # the executed notebook shows where it stopped
    assert not point.done()
    assert not _socket_dirs()


def _descendants(proc):
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("jobs, to_group, executor", [(1, True, "local"), (2, True, "local"), (1, False, "local"),
                                                     (2, True, "slurm"), (2, False, "slurm")])
def test_ctrl_c_stops_at_once_kills_the_kernels_and_says_one_line(tmp_path, jobs, to_group, executor):
    if executor == "slurm":
        pytest.importorskip("submitit")
    grid = _grid(tmp_path, [{"method": "vera", "rank": r} for r in (4, 8)], base=LONG)
    out = tmp_path / "runs"
    extra = ("--executor", "slurm", "--submitit-cluster", "local") if executor == "slurm" else ()
    proc = subprocess.Popen(_sweep_cmd(grid, out, "--jobs", str(jobs), *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "VERALAB_QUIET": "1"})
    deadline = time.time() + 180
    while time.time() < deadline and len(glob.glob(str(out / "*" / "*.ipynb"))) < jobs:
        time.sleep(0.5)
    time.sleep(8)  # inside the training cell by now
    started = _descendants(proc)
    assert any("ipykernel" in " ".join(p.cmdline()) for p in started)
    if to_group:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    else:
        proc.send_signal(signal.SIGINT)  # `kill -INT <pid>`: the sweep alone, not its kernels
    output, _ = proc.communicate(timeout=20)  # a few seconds, not the rest of the training
    assert proc.returncode == 130
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    assert re.fullmatch(r"sweep vit \(default\) interrupted: 0 of 2 points done; run the same command again to "
                        r"resume", lines[0])
    _, alive = psutil.wait_procs(started, timeout=5)  # multiprocessing's resource tracker leaves with its parent
    assert not alive, [p.cmdline() for p in alive]
    assert not glob.glob(str(out / "*" / "record.json"))  # unfinished, so the next sweep runs them


def test_two_sweeps_into_one_folder_share_the_points(tmp_path):
    grid = _grid(tmp_path, [{"method": "head"}, {"method": "vera", "rank": 2}, {"method": "vera", "rank": 4},
                            {"method": "lora", "rank": 2}])
    out = tmp_path / "runs"
    stale = Point("vit", {**QUICK, "method": "lora", "rank": 2, "output_dir": str(out)})
    stale.run_dir.mkdir(parents=True)
    (stale.run_dir / CLAIM).write_text("otherhost pid 4242 since 01:02:03\n")  # left by a sweep killed with -9
    env = {**os.environ, "VERALAB_QUIET": "1"}
    sweeps = [subprocess.Popen(_sweep_cmd(grid, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in sweeps]
    assert all(p.returncode == 0 for p in sweeps), outputs
    ran = [int(re.search(r"(\d+) ran, 0 failed", o).group(1)) for o in outputs]
    assert sum(ran) == 4 and min(ran) >= 1, outputs  # every point ran once, and both sweeps did some
    assert len(glob.glob(str(out / "*" / "record.json"))) == 4


def test_a_notebook_that_cannot_be_written_is_named(tmp_path):
    point = Point("vit", {**QUICK, "method": "head", "output_dir": str(tmp_path)})
    point.run_dir.parent.mkdir(parents=True, exist_ok=True)
    point.run_dir.write_text("a file where the run folder should be")
    result = execute_point(point)
    assert result["status"] == "failed" and str(point.run_dir) in result["error"] and "could not write" in \
        result["error"]


def test_slurm_executor_runs_through_submitit(tmp_path, capsys):
    pytest.importorskip("submitit")
    grid = _grid(tmp_path, [{"method": "head"}, {"method": "vera", "rank": 2}])
    out = tmp_path / "runs"
    summary = run_sweep("vit", grid_file=grid, output_dir=str(out), executor="slurm", jobs=2,
                        slurm=SlurmOptions(cluster="local", cpus=1, time_min=10))
    assert summary["done"] == 2 and not summary["failed"], summary
    assert len(glob.glob(str(out / "*" / "record.json"))) == 2
    assert glob.glob(str(out / ".submitit" / "*" / "*_log.out"))  # submitit's per-job logs, as on a cluster


def _notebook(path, *sources):
    import nbformat

    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                 "display_name": "Python 3"}})
    notebook.cells = [nbformat.v4.new_code_cell("value = 0", metadata={"tags": ["parameters"]})]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)
    return path


def _stdout(path):
    cells = json.loads(Path(path).read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c["outputs"])


def test_a_sweep_worker_keeps_its_kernel_between_points_with_a_fresh_namespace(tmp_path, monkeypatch):
    """Kernel start and imports are paid once per worker; each notebook still starts from an empty namespace; a
    failing notebook takes its kernel down, and stopping the worker's kernel leaves no process or folder behind."""
    from veralab.studies.kernels import WarmKernel, run_notebook

    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_tmp))
    first = _notebook(tmp_path / "first.ipynb", "import os\nleftover = value\nprint('pid', os.getpid())")
    second = _notebook(tmp_path / "second.ipynb", "import os\nprint('pid', os.getpid(), 'leftover' in globals())")
    failing = _notebook(tmp_path / "failing.ipynb", "raise ValueError('this point fails')")
    out = tmp_path / "out"
    out.mkdir()
    try:
        run_notebook(first, out / "1.ipynb", {"value": 1}, keep_kernel=True)
        run_notebook(second, out / "2.ipynb", {"value": 2}, keep_kernel=True)
        pid = _stdout(out / "1.ipynb").split()[1]
        assert _stdout(out / "2.ipynb").split() == ["pid", pid, "False"]  # same kernel, empty namespace
        assert (out / "2.ipynb").with_suffix(".kernel.log").is_file()
        with pytest.raises(Exception, match="this point fails"):
            run_notebook(failing, out / "3.ipynb", {"value": 3}, keep_kernel=True)
        assert WarmKernel.current is None and not psutil.pid_exists(int(pid))
        run_notebook(second, out / "4.ipynb", {"value": 4}, keep_kernel=True)
        fresh = _stdout(out / "4.ipynb").split()[1]
        assert fresh != pid and len(_socket_dirs()) == 1
    finally:
        if WarmKernel.current is not None:
            WarmKernel.current.stop()
    assert not _socket_dirs() and not psutil.pid_exists(int(fresh))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=["term", "hup", "kill-9"])
def test_a_killed_sweep_leaves_no_worker_kernel_or_file_behind(tmp_path, signum):
    """SIGTERM and SIGHUP stop a sweep as Ctrl-C does (one line, exit 130); after kill -9 its workers notice their
    parent is gone and end their kernels and themselves. Either way nothing trains on, and no socket folder or
    connection file (with the kernel's HMAC key) is left in the temporary folder."""
    own_tmp = Path(tempfile.mkdtemp(prefix="vt", dir="/tmp"))  # short: a kernel's IPC socket path has ~100 bytes
    grid = _grid(tmp_path, [{"method": "vera", "rank": 4}], base=LONG)
    proc = subprocess.Popen(_sweep_cmd(grid, tmp_path / "runs", "--jobs", "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "VERALAB_QUIET": "1", "TMPDIR": str(own_tmp)})
    deadline = time.time() + 180
    while time.time() < deadline and not any("ipykernel" in " ".join(p.cmdline()) for p in _descendants(proc)):
        time.sleep(0.5)
    time.sleep(8)  # inside the training cell by now
    started = _descendants(proc)
    assert any("ipykernel" in " ".join(p.cmdline()) for p in started)
    os.kill(proc.pid, signum)
    output, _ = proc.communicate(timeout=30)
    if signum != signal.SIGKILL:
        assert proc.returncode == 130 and len(output.strip().splitlines()) == 1 and "Traceback" not in output, output
    gone, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, [p.cmdline() for p in alive]
    left = [p.name for p in own_tmp.iterdir() if p.name.startswith("veralab-") or p.suffix == ".json"]
    shutil.rmtree(own_tmp)  # also torch's own torchinductor_<user> cache folder, which is not ours to remove
    assert not left, left


def test_a_notebook_cut_short_by_a_full_disk_is_redone_not_counted_done(tmp_path):
    point = Point("vit", {**QUICK, "method": "head", "output_dir": str(tmp_path)})
    assert execute_point(point)["status"] == "ok" and point.done()
    record = (point.run_dir / "record.json").read_text()
    point.notebook_out.write_text(point.notebook_out.read_text()[:100])  # what papermill left on a full disk
    assert not point.done()
    result = execute_point(point)  # reuses the ok record, rewrites the notebook
    assert result["status"] == "ok" and point.done()
    assert (point.run_dir / "record.json").read_text() == record
    point.notebook_out.unlink()  # committed records come without their notebooks: still done
    assert point.done()


def test_a_run_refuses_to_start_without_room_for_its_results(tmp_path):
    import shutil as sh

    from veralab.core.config import ConfigError
    from veralab.core.io import check_free_space

    free = sh.disk_usage(tmp_path).free
    check_free_space(tmp_path, free // 2, "the record")
    with pytest.raises(ConfigError, match=rf"^{tmp_path} has .* MiB free, less than the .* MiB the record and "
                                          r"adapter needs; free space there or choose another output_dir"):
        check_free_space(tmp_path, free + 2**30, "the record and adapter")
