"""Sweeps: one papermill execution of a study notebook per grid point, resumable, in parallel, locally or on Ray.

Each point's executed notebook is saved beside its run record (<output_dir>/<run name>/<notebook>.ipynb). A point
whose record says "ok" is skipped, so an interrupted sweep resumes where it stopped; a failing point is reported
at the end with its executed notebook and does not stop the others.
"""

from __future__ import annotations

import copy
import itertools
import logging
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.config import ConfigError
from ..experiment.config import RunConfig
from ..experiment.record import read_record
from ..experiment.train import progress
from .profiles import PROFILES

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
STUDIES = {"rank_sweep": "01_rank_sweep.ipynb", "init_ablation": "02_init_ablation.ipynb",
           "vector_ablation": "03_vector_ablation.ipynb", "vit": "04_vit_image_classification.ipynb"}


@dataclass
class Point:
    """One notebook execution. Its parameters are every RunConfig field (completed from RunConfig's defaults), so the
    notebook's own parameter-cell values never decide a run that the grid describes."""

    study: str
    params: dict

    def __post_init__(self) -> None:
        self.params = RunConfig.from_dict(self.params).to_dict()

    @property
    def run_dir(self) -> Path:
        return RunConfig.from_dict(self.params).run_dir()

    @property
    def notebook_out(self) -> Path:
        return self.run_dir / STUDIES[self.study]

    def done(self) -> bool:
        record = read_record(self.run_dir)
        return bool(record and record.get("status") == "ok")


def load_grid(study: str, profile: str = "default", grid_file: str | None = None) -> dict:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    grid = copy.deepcopy(PROFILES[profile][study])
    if grid_file:
        text = yaml.safe_load(Path(grid_file).read_text()) or {}
        override = text.get(study, text) if isinstance(text, dict) else None
        if not isinstance(override, dict):
            raise ConfigError(f"{grid_file} must be a mapping (keys: tasks, seeds, base, points, axes), optionally "
                              f"under a study name ({', '.join(STUDIES)})")
        unknown = set(override) - {"tasks", "seeds", "base", "points", "axes"} - set(STUDIES)
        if unknown:
            raise ConfigError(f"{grid_file}: unknown grid key(s) {sorted(unknown)}; allowed: tasks, seeds, base, "
                              f"points, axes")
        grid.update({k: v for k, v in override.items() if k not in STUDIES})
        if "base" in override:
            grid["base"] = {**PROFILES[profile][study].get("base", {}), **override["base"]}
    return grid


def expand(study: str, grid: dict, output_dir: str) -> list[Point]:
    """tasks × seeds × points (× axes), deduplicated by run directory, in a stable order."""
    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r}; allowed: {', '.join(STUDIES)}")
    axes = grid.get("axes") or {}
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else [{}]
    for point in grid.get("points") or []:
        clash = sorted({"task", "run_seed", "projection_prng_key", "output_dir"} & set(point))
        if clash:
            raise ConfigError(f"grid point {point} sets {clash}: give tasks and seeds in the grid's `tasks` and "
                              f"`seeds` lists, and the output folder with --output-dir")
    points, seen = [], set()
    for task, seed, point, combo in itertools.product(grid["tasks"], grid["seeds"], grid.get("points") or [{}],
                                                      combos):
        params = {**grid.get("base", {}), **point, **combo, "task": task, "run_seed": seed,
                  "projection_prng_key": seed,
                  "output_dir": str(Path(output_dir).resolve())}
        p = Point(study, params)  # validated here, before anything runs
        if p.run_dir not in seen:
            seen.add(p.run_dir)
            points.append(p)
    return points


def _kernel_manager_class():
    from jupyter_client import KernelManager

    class IsolatedKernelManager(KernelManager):
        """Kernel sockets on IPC paths unique to this kernel, so parallel workers never race for TCP ports."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(Path(tempfile.mkdtemp(prefix="veralab-kernel-")) / "kernel")

    return IsolatedKernelManager


def run_notebook(source, output, parameters: dict, timeout: int | None = None, env: dict | None = None,
                 cwd=None) -> None:
    """papermill with what every veralab execution needs: quiet progress, inline plots, race-free kernel sockets.

    `env` (and VERALAB_QUIET=1) reach the kernel through this process's environment, restored afterwards.
    """
    import papermill

    saved = dict(os.environ)
    os.environ.update({**(env or {}), "VERALAB_QUIET": "1"})
    os.environ.pop("MPLBACKEND", None)  # let the kernel use its inline backend, so plots land in the notebook
    logging.getLogger("papermill").setLevel(logging.ERROR)  # it warns for each field the parameters cell lacks
    try:
        papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name="python3",
                                   progress_bar=False, log_output=False, cwd=str(cwd or Path.cwd()),
                                   execution_timeout=timeout, kernel_manager_class=_kernel_manager_class())
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execute_point(point: Point, timeout: int | None = None, env: dict | None = None) -> dict:
    """Run one point's notebook; returns {ok, name, notebook, error, seconds}."""
    out = point.notebook_out
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    try:
        run_notebook(NOTEBOOKS / STUDIES[point.study], out, point.params, timeout, env)
        error = None if point.done() else "the notebook finished but wrote no ok record"
    except Exception as err:  # papermill raises PapermillExecutionError with the failing cell's traceback
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
    return {"ok": error is None, "name": point.run_dir.name, "notebook": str(out), "error": error,
            "seconds": round(time.time() - start, 1)}


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def worker_env(slot: int, jobs: int) -> dict:
    """Pin worker `slot` to one GPU (round-robin: several small runs share a GPU when jobs > GPUs) and share the
    CPU cores out so workers do not oversubscribe them."""
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}
    gpus = _gpu_count()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    return env


def _run_local(points, jobs, timeout, bar):
    results = []
    if jobs == 1:
        for p in points:
            results.append(execute_point(p, timeout, worker_env(0, 1)))
            bar.update(1)
        return results
    # spawn, not fork: forking a process whose torch/OpenMP threads are running can deadlock the child
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending, free_slots, queue = {}, list(range(jobs)), list(points)
        while queue or pending:
            while queue and free_slots:
                slot = free_slots.pop(0)
                pending[pool.submit(execute_point, queue.pop(0), timeout, worker_env(slot, jobs))] = slot
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                free_slots.append(pending.pop(future))
                results.append(future.result())
                bar.update(1)
    return results


def _run_ray(points, jobs, timeout, address, bar):
    import ray

    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             runtime_env={"env_vars": {"VERALAB_QUIET": "1"}})
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        remote = ray.remote(num_gpus=min(1.0, gpus / jobs) if gpus else 0)(execute_point)  # several runs per GPU
        futures = [remote.remote(p, timeout, {}) for p in points]
        results = []
        while futures:
            done, futures = ray.wait(futures, num_returns=1)
            results += ray.get(done)
            bar.update(len(done))
        return results
    finally:
        ray.shutdown()


def run_sweep(study: str, *, grid_file=None, profile="default", jobs=1, executor="local", output_dir="runs",
              ray_address=None, limit=None, timeout=None) -> dict:
    """Run `study` (or "all") and return {"done", "skipped", "failed": [results]}; prints a summary."""
    studies = list(STUDIES) if study == "all" else [study]
    points = [p for s in studies for p in expand(s, load_grid(s, profile, grid_file), output_dir)]
    unique = {p.run_dir: p for p in points}
    points = list(unique.values())[:limit]
    todo = [p for p in points if not p.done()]
    skipped = len(points) - len(todo)
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    bar = progress(total=len(points), initial=skipped, desc=f"sweep {study} ({profile})", unit="run")
    try:
        if executor == "ray":
            results = _run_ray(todo, jobs, timeout, ray_address, bar)
        elif executor == "local":
            results = _run_local(todo, jobs, timeout, bar)
        else:
            raise ConfigError(f"unknown executor {executor!r}; allowed: local, ray")
    finally:
        bar.close()
    failed = [r for r in results if not r["ok"]]
    print(f"sweep {study} ({profile}): {len(points)} points, {skipped} already done, "
          f"{len(results) - len(failed)} ran, {len(failed)} failed")
    for r in failed:
        print(f"  FAILED {r['name']}: {r['error']}\n         executed notebook: {r['notebook']}")
    return {"points": len(points), "skipped": skipped, "done": len(results) - len(failed), "failed": failed}
