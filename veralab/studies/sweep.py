"""Sweeps: one papermill execution of a study notebook per grid point, resumable, in parallel, locally, on Ray or on
Slurm (through submitit).

Each point's executed notebook is saved beside its run record (<output_dir>/<run name>/<notebook>.ipynb). A point
whose record says "ok" is skipped, so an interrupted sweep resumes where it stopped; a point is claimed (a lock)
while it runs, so two sweeps into one folder share the work; a failing or timed-out point is reported at the end
with its executed notebook and does not stop the others.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from ..core.config import ConfigError
from ..core.io import check_writable
from ..experiment.glue import check_glue_source
from ..experiment.train import progress
from .grids import sweep_points
from .kernels import execute_point

EXECUTORS = ("local", "ray", "slurm")


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


WORKER_MEMORY = 2 * 2**30  # a glue_cpu worker (MiniLM, kernel, data) peaks near 1.7 GiB


def default_jobs() -> int:
    """Local sweeps' --jobs: a worker per GPU; without one, a one-thread worker per core, as many as the available
    memory holds. On 2 cores, two one-thread workers finish 1.23x the bf16 glue_cpu points an hour that one
    two-thread worker does (BENCHMARKS.md, "Precision")."""
    import psutil

    gpus = _gpu_count()
    if gpus:
        return gpus
    return max(1, min(os.cpu_count() or 1, psutil.virtual_memory().available // WORKER_MEMORY))


def worker_env(slot: int, jobs: int, gpus: list[str] | None = None) -> dict:
    """Pin worker `slot` to one GPU, round-robin (several small runs share a GPU when jobs > GPUs), and share the CPU
    cores out so workers do not oversubscribe them.

    `gpus`: the CUDA_VISIBLE_DEVICES entries to choose from. By default the inherited CUDA_VISIBLE_DEVICES where one
    is set (a scheduler's allocation: ids, UUIDs or MIG names; empty or -1: none), else 0..n-1 for the GPUs torch
    sees. The worker gets an entry of that list, never a physical index: a sweep given GPUs 2,3 stays on them.
    """
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}
    if gpus is None:
        inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
        if inherited is None:
            gpus = [str(i) for i in range(_gpu_count())]
        else:  # CUDA stops at the first invalid entry, so "-1" hides every GPU after it
            entries = [e.strip() for e in inherited.split(",") if e.strip()]
            gpus = list(itertools.takewhile(lambda e: not e.startswith("-"), entries))
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(gpus[slot % len(gpus)])
    return env


def _worker_init(parent: int, scratch: str) -> None:
    """A local sweep worker: Ctrl-C is the parent's to handle (it stops the whole sweep); its kernels' sockets and
    connection files go under the sweep's `scratch` folder, which the sweep removes however it ends; and when the
    parent dies without stopping it (kill -9) the worker ends its kernels, their files and itself instead of
    training on as an orphan."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tempfile.tempdir = scratch

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        _stop_children()
        shutil.rmtree(scratch, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _as_interrupt(signum, frame) -> None:
    """SIGTERM and SIGHUP stop a sweep as Ctrl-C does: kernels killed, one line, resumable."""
    raise KeyboardInterrupt


def _run_local(points, jobs, timeout, bar):
    results = []
    # Workers, even for jobs=1: Ctrl-C must reach this process alone (they ignore SIGINT), or a kernel's interrupted
    # cell can end its point as "failed" before this process sees the KeyboardInterrupt, and the sweep goes on.
    # spawn, not fork: forking a process whose torch/OpenMP threads are running can deadlock the child
    scratch = tempfile.mkdtemp(prefix="veralab-sweep-")  # every kernel's sockets and connection file
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(), scratch))
    try:
        pending, free_slots, queue = {}, list(range(jobs)), list(points)
        while queue or pending:
            while queue and free_slots:
                slot = free_slots.pop(0)
                pending[pool.submit(execute_point, queue.pop(0), timeout, worker_env(slot, jobs), True)] = slot
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                free_slots.append(pending.pop(future))
                results.append(future.result())
                bar.update(1)
    except BaseException:
        _stop_children()  # on Ctrl-C: at once, not after the running points finish
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _stop_children() -> None:
    """Kill every process this sweep started (workers and their kernels); a no-op when they have all exited."""
    from multiprocessing import resource_tracker

    import psutil

    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)  # multiprocessing's own helper: leave it
    children = [c for c in psutil.Process().children(recursive=True) if c.pid != tracker]
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=10)


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


@dataclass
class SlurmOptions:
    """What each Slurm job asks for (submitit's parameters); `cluster="local"` runs the same jobs on this machine."""

    partition: str | None = None
    time_min: int = 60
    gpus: int = 0
    cpus: int = 4
    mem_gb: int = 16
    cluster: str = "slurm"


@contextlib.contextmanager
def _stderr_into(path: Path):
    """This process's stderr (file descriptor 2) into `path` for the block: the processes started inside inherit it.
    submitit's local job controllers share the terminal's Ctrl-C and print their KeyboardInterrupt tracebacks; their
    messages go to the log instead (the jobs' own output is in their submitit logs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _run_slurm(points, jobs, timeout, options: SlurmOptions, folder: Path, bar):
    """One Slurm array job per point through submitit, at most `jobs` running at once."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.cluster)
    executor.update_parameters(timeout_min=options.time_min, cpus_per_task=options.cpus, mem_gb=options.mem_gb,
                               gpus_per_node=options.gpus, name="veralab-sweep", slurm_array_parallelism=jobs,
                               **({"slurm_partition": options.partition} if options.partition else {}))
    env = {"OMP_NUM_THREADS": str(options.cpus)}
    with _stderr_into(folder / "submitit-local.log") if options.cluster == "local" else contextlib.nullcontext():
        submitted = executor.map_array(execute_point, points, [timeout] * len(points), [env] * len(points))
    results = []
    try:
        for job in submitit.helpers.as_completed(submitted):
            try:
                results.append(job.result())
            except Exception as err:  # the job itself died (node failure, Slurm time limit): the point did not run
                point = points[submitted.index(job)]
                results.append({"status": "failed", "name": point.run_dir.name, "notebook": str(point.notebook_out),
                                "error": f"job {job.job_id} failed: {str(err).strip().splitlines()[-1]} (logs: "
                                         f"{job.paths.stderr})", "seconds": None})
            bar.update(1)
    except KeyboardInterrupt:
        for job in submitted:
            job.cancel(check=False)
        raise
    return results

def run_sweep(study: str, *, grid_file=None, profile="default", jobs=1, executor="local", output_dir="runs",
              ray_address=None, limit=None, timeout=None, slurm: SlurmOptions | None = None,
              glue_dir=None, sets: dict | None = None) -> dict:
    """Run `study` (or "all") and return {"points", "skipped", "done", "busy", "failed": [results]}; prints a
    summary. Ctrl-C stops at once: the kernels are killed, unfinished points stay unfinished (re-run to resume)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    points = sweep_points(study, profile, grid_file, output_dir, limit, glue_dir, sets)
    todo = [p for p in points if not p.done()]
    if todo:  # refused up front, not point by point
        check_writable(output_dir, "the sweep's output folder", "an --output-dir")
        for task in sorted({p.params["task"] for p in todo if not p.params.get("glue_dir")}):
            check_glue_source(task, None)
    skipped = len(points) - len(todo)
    bar = progress(total=len(points), initial=skipped, desc=f"sweep {study} ({profile})", unit="run")
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _as_interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if executor == "ray":
            results = _run_ray(todo, jobs, timeout, ray_address, bar)
        elif executor == "slurm":
            results = _run_slurm(todo, jobs, timeout, slurm or SlurmOptions(), Path(output_dir) / ".submitit", bar)
        else:
            results = _run_local(todo, jobs, timeout, bar)
    except KeyboardInterrupt:
        _stop_children()
        bar.close()
        finished = sum(p.done() for p in points)
        print(f"sweep {study} ({profile}) interrupted: {finished} of {len(points)} points done; run the same "
              f"command again to resume", file=sys.stderr)
        raise
    finally:
        bar.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    by_status = {s: [r for r in results if r["status"] == s] for s in ("ok", "failed", "busy", "done")}
    failed, busy = by_status["failed"], by_status["busy"]
    skipped += len(by_status["done"])
    print(f"sweep {study} ({profile}): {len(points)} points, {skipped} already done, {len(by_status['ok'])} ran, "
          f"{len(failed)} failed" + (f", {len(busy)} running in another sweep" if busy else ""))
    for r in failed:
        print(f"  FAILED {r['name']}: {r['error']}\n         executed notebook: {r['notebook']}")
    return {"points": len(points), "skipped": skipped, "done": len(by_status["ok"]), "busy": len(busy),
            "failed": failed}
