"""Sweeps: one papermill execution of a study notebook per grid point, resumable, in parallel, locally, on Ray or on
Slurm (through submitit).

Each point's executed notebook is saved beside its run record (<output_dir>/<run name>/<notebook>.ipynb). A point
whose record says "ok" is skipped, so an interrupted sweep resumes where it stopped; a point is claimed (a lock)
while it runs, so two sweeps into one folder share the work; a failing or timed-out point is reported at the end
with its executed notebook and does not stop the others.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
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

import yaml

from ..core.config import DEFAULT, METHODS, AdapterConfig, ConfigError
from ..core.io import check_writable, exclusive
from ..experiment.config import RunConfig
from ..experiment.glue import GLUE_TASKS
from ..experiment.precision import check_precision
from ..experiment.record import read_record
from ..experiment.train import progress
from .profiles import PROFILES

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXECUTORS = ("local", "ray", "slurm")
CLAIM = ".claim"  # a lock file in each run folder; see claim()
SWEEP_SKIP = "sweep-skip"  # a notebook cell with this tag runs in JupyterLab and by hand, not in a sweep
STUDIES = {"rank_sweep": "01_rank_sweep.ipynb", "init_ablation": "02_init_ablation.ipynb",
           "vector_ablation": "03_vector_ablation.ipynb", "vit": "04_vit_image_classification.ipynb",
           "main_table": "06_main_table.ipynb"}


@dataclass
class Point:
    """One notebook execution. Its parameters are every RunConfig field (completed from RunConfig's defaults), so the
    notebook's own parameter-cell values never decide a run that the grid describes."""

    study: str
    params: dict

    def __post_init__(self) -> None:
        config = RunConfig.from_dict(self.params)
        # "auto" is resolved here, where the sweep starts: a worker that cannot see the GPU then fails loudly
        # instead of training on the CPU under a GPU run's name, and every point of a sweep has one precision
        device = config.resolved_device()
        check_precision(config.precision, device)
        self.params = {**config.to_dict(), "device": device, "precision": config.resolved_precision()}

    @property
    def run_dir(self) -> Path:
        return RunConfig.from_dict(self.params).run_dir()

    @property
    def notebook_out(self) -> Path:
        return self.run_dir / STUDIES[self.study]

    def done(self) -> bool:
        """An ok record, and no executed notebook cut short (a full disk while papermill saved it): such a point runs
        again, which reuses the record and rewrites the notebook. Committed records come without their notebooks."""
        record = read_record(self.run_dir)
        return bool(record and record.get("status") == "ok") and (not self.notebook_out.exists()
                                                                  or readable_notebook(self.notebook_out))


def readable_notebook(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()).get("cells"), list)
    except (OSError, ValueError, AttributeError):
        return False


GRID_KEYS = ("tasks", "seeds", "base", "task_overrides", "points", "axes")
# set by the grid's lists, --output-dir and --glue-dir, never by a point; run_name would give every point one name
RESERVED = ("task", "run_seed", "projection_prng_key", "output_dir", "glue_dir", "run_name")


def load_grid(study: str, profile: str = "default", grid_file: str | None = None) -> dict:
    """The profile's grid for `study`, with a YAML file's keys (optionally under the study's name) over it."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    if study not in PROFILES[profile]:
        raise ConfigError(f"profile {profile!r} has no study {study!r}; its studies: {', '.join(PROFILES[profile])}")
    grid = copy.deepcopy(PROFILES[profile][study])
    if grid_file:
        try:
            text = yaml.safe_load(Path(grid_file).read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{grid_file}{where} is not valid YAML: {getattr(err, 'problem', None) or err}") from err
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read grid file {grid_file}: {err}") from err
        override = text.get(study, text) if isinstance(text, dict) else None
        if not isinstance(override, dict):
            raise ConfigError(f"{grid_file} must be a mapping (keys: {', '.join(GRID_KEYS)}), optionally under a "
                              f"study name ({', '.join(STUDIES)})")
        unknown = set(override) - set(GRID_KEYS) - set(STUDIES)
        if unknown:
            raise ConfigError(f"{grid_file}: unknown grid key(s) {sorted(unknown)}; allowed: {', '.join(GRID_KEYS)}")
        check_grid_shapes(override, f"{grid_file} (study {study})")
        grid.update({k: v for k, v in override.items() if k not in STUDIES})
        if "base" in override:
            grid["base"] = {**PROFILES[profile][study].get("base", {}), **override["base"]}
    return grid


GRID_SHAPES = {"tasks": "a list of task names", "seeds": "a list of whole numbers", "base": "a mapping of settings",
               "task_overrides": "a mapping from task to a mapping of settings (and of method to settings)",
               "points": "a list of mappings of settings", "axes": "a mapping from setting to a list of values"}


def yaml_numbers(params: dict) -> dict:
    """Numbers as numbers: PyYAML reads 1e-3 (no dot) as the string '1e-3'; a float setting given such a string
    gets its float, anything else is left for the config's own check to refuse."""
    import typing

    hints = {**typing.get_type_hints(AdapterConfig), **typing.get_type_hints(RunConfig)}
    out = dict(params)
    for name, value in params.items():
        if isinstance(value, str) and float in (typing.get_args(hints.get(name)) or (hints.get(name),)):
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def check_grid_shapes(grid: dict, where: str) -> None:
    """Each grid key holds what expand() reads, or one message naming the file, the key and what it should be."""
    def fits(key, value):
        if key in ("tasks", "seeds"):
            kind = str if key == "tasks" else int
            return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
        if key == "base":
            return isinstance(value, dict)
        if key == "task_overrides":
            return isinstance(value, dict) and all(isinstance(v, dict) and all(
                isinstance(s, dict) for m, s in v.items() if m in METHODS) for v in value.values())
        if key == "points":
            return isinstance(value, list) and all(isinstance(v, dict) for v in value)
        return isinstance(value, dict) and all(isinstance(v, list) for v in value.values())

    for key, value in grid.items():
        if key in GRID_SHAPES and not fits(key, value):
            raise ConfigError(f"{where}: {key} must be {GRID_SHAPES[key]}; got {value!r}")


def task_settings(override: dict, point: dict) -> dict:
    """A task's `task_overrides` entry for one point: its plain settings, then those under the point's method name
    (`{sst2: {head_lr: 3e-2, vera: {lr: 3e-2}, lora: {lr: 3e-3}}}`: rates chosen per task and method)."""
    method = point.get("method", DEFAULT.method)
    return {**{k: v for k, v in override.items() if k not in METHODS}, **override.get(method, {})}


def expand(study: str, grid: dict, output_dir: str, glue_dir: str | None = None) -> list[Point]:
    """tasks × seeds × points (× axes), in a stable order; two that are the same run are refused, never merged.

    A point's settings are, later ones winning: `base`, the task's entry in `task_overrides` (per-task epochs and
    learning rates, as the paper's GLUE runs use; see task_settings), the point, its `axes` combination. `glue_dir`
    (a local GLUE folder) goes to every GLUE task's points.
    """
    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r}; allowed: {', '.join(STUDIES)}")
    axes = grid.get("axes") or {}
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else [{}]
    overrides = grid.get("task_overrides") or {}
    stray = sorted(set(overrides) - set(grid["tasks"]))
    if stray:
        raise ConfigError(f"task_overrides names task(s) {stray} that are not in the grid's tasks {grid['tasks']}")
    for where, settings, reserved in [("grid point", p, RESERVED) for p in grid.get("points") or []] + \
                                     [(f"task_overrides[{t!r}]", {**o, **task_settings(o, {"method": m})}, RESERVED)
                                      for t, o in overrides.items() for m in METHODS] + \
                                     [("the grid's base", grid.get("base") or {}, ("run_name",))]:
        clash = sorted(set(reserved) & set(settings))
        if clash:
            raise ConfigError(f"{where} {settings} sets {clash}: give tasks and seeds in the grid's `tasks` and "
                              f"`seeds` lists, the output folder with --output-dir and a GLUE folder with --glue-dir; "
                              f"a sweep names each run by its settings (no run_name)")
    points, seen = [], {}
    for task, seed, point, combo in itertools.product(grid["tasks"], grid["seeds"], grid.get("points") or [{}],
                                                      combos):
        params = {**grid.get("base", {}), **task_settings(overrides.get(task, {}), {**grid.get("base", {}), **point}),
                  **point, **combo, "task": task,
                  "run_seed": seed, "projection_prng_key": seed, "output_dir": str(Path(output_dir).resolve())}
        if glue_dir and task in GLUE_TASKS:
            params["glue_dir"] = str(Path(glue_dir).expanduser().resolve())
        try:
            p = Point(study, yaml_numbers(params))  # validated here, before anything runs
        except ConfigError as err:
            raise ConfigError(f"study {study!r}, task {task}, seed {seed}, point {point}: {err}") from err
        where = f"task {task}, seed {seed}, point {point}" + (f", axes {combo}" if combo else "")
        if p.run_dir in seen:
            raise ConfigError(f"study {study!r}: {where} is the same run as {seen[p.run_dir]} ({p.run_dir.name}); "
                              f"a grid lists each task, seed, point and axis value once")
        seen[p.run_dir] = where
        points.append(p)
    return points


def die_with_parent() -> None:
    """Run in a kernel process before it starts: on Linux the kernel gets SIGKILL when the process that started it
    dies, however it dies (a Slurm-local job's task killed by its controller, kill -9), so no kernel trains on as
    an orphan. Elsewhere a no-op (ipykernel's own parent poller still applies)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _kernel_manager_class(socket_dir: str, log):
    from jupyter_client import AsyncKernelManager

    class IsolatedKernelManager(AsyncKernelManager):
        """Kernel sockets on IPC paths in this execution's own folder, so parallel workers never race for TCP
        ports; the kernel process's own stderr (not the cells': those land in the notebook) goes to `log`. Async,
        as papermill's default manager, so nbclient enforces the cell timeout. It remembers the clients it made,
        so a kernel kept between notebooks has each notebook's client closed after it."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(Path(socket_dir) / "kernel")
            self.connection_file = str(Path(socket_dir) / "kernel.json")  # its HMAC key goes when the folder goes
            self.made_clients = []

        async def start_kernel(self, **kwargs):
            return await super().start_kernel(**{"stdout": log, "stderr": log, "preexec_fn": die_with_parent,
                                                 **kwargs})

        def client(self, **kwargs):
            made = super().client(**kwargs)
            self.made_clients.append(made)
            return made

    return IsolatedKernelManager


def _papermill(source, output, parameters: dict, timeout: int | None, cwd: str, **kernel) -> None:
    """papermill as every veralab execution calls it; `kernel`: a kept kernel (km=) or a manager class for a new one."""
    import papermill

    papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name="python3",
                               progress_bar=False, log_output=False, cwd=cwd, execution_timeout=timeout,
                               skip_cells_with_tag=SWEEP_SKIP, **kernel)


class WarmKernel:
    """The kernel a sweep worker keeps from one point to the next. Starting a kernel and importing torch,
    transformers and veralab in it take 6-7 s, a tenth of a bf16 glue_cpu point: paid once per worker, not per
    point. Each notebook starts from an empty namespace (%reset -f; modules stay imported, and every run seeds its
    own RNGs). A notebook that fails, times out or is interrupted takes the kernel down with it; so does the
    worker's exit. The kernel's own messages still go to <run>/<notebook>.kernel.log, a notebook's share each."""

    current: WarmKernel | None = None  # this process's kept kernel

    def __init__(self, key: tuple):
        from jupyter_core.utils import run_sync

        self.key = key
        self.socket_dir = tempfile.mkdtemp(prefix="veralab-kernel-")
        self.log_path = Path(self.socket_dir) / "kernel.log"
        self.log = open(self.log_path, "ab")
        self.km = _kernel_manager_class(self.socket_dir, self.log)(kernel_name="python3")
        run_sync(self.km.start_kernel)(cwd=key[0])

    @classmethod
    def get(cls, cwd: str) -> WarmKernel:
        """The kept kernel, started anew where the environment or folder it was started with differs."""
        key = (cwd, tuple(sorted(os.environ.items())))
        if cls.current is not None and cls.current.key != key:
            cls.current.stop()
        if cls.current is None:
            cls.current = cls(key)
            multiprocessing.util.Finalize(cls.current, cls.current.stop, exitpriority=10)  # at the worker's exit
        return cls.current

    def reset(self) -> None:
        client = self.km.blocking_client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            reply = client.execute_interactive("get_ipython().run_line_magic('reset', '-f')", timeout=60,
                                               output_hook=lambda message: None)
        finally:
            client.stop_channels()
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"could not reset the kept kernel: {reply['content']}")

    def run(self, source, output, parameters: dict, timeout: int | None) -> None:

        offset = self.log_path.stat().st_size
        try:
            self.reset()
            _papermill(source, output, parameters, timeout, self.key[0], km=self.km)
        except BaseException:
            self.stop()
            raise
        finally:
            for made in self.km.made_clients:
                made.stop_channels()
            self.km.made_clients.clear()
            if self.log_path.exists():
                with open(self.log_path, "rb") as log:
                    log.seek(offset)
                    Path(output).with_suffix(".kernel.log").write_bytes(log.read())

    def stop(self) -> None:
        from jupyter_core.utils import run_sync

        if WarmKernel.current is self:
            WarmKernel.current = None
        try:
            if self.km.has_kernel:
                run_sync(self.km.shutdown_kernel)(now=True)
        finally:
            self.log.close()
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def run_notebook(source, output, parameters: dict, timeout: int | None = None, env: dict | None = None,
                 cwd=None, keep_kernel: bool = False) -> None:
    """papermill with what every veralab execution needs: quiet progress, inline plots, race-free kernel sockets,
    the kernel process's own messages in <output>.kernel.log beside the executed notebook, and cells tagged
    SWEEP_SKIP left out (the study figure, which would redraw every record so far after each point: 2 s a point).

    `env` (and VERALAB_QUIET=1) reach the kernel through this process's environment, restored afterwards.
    `keep_kernel`: run in this process's WarmKernel (sweep workers) instead of a kernel of the notebook's own.
    """

    saved = dict(os.environ)
    os.environ.update({**(env or {}), "VERALAB_QUIET": "1"})
    os.environ.pop("MPLBACKEND", None)  # let the kernel use its inline backend, so plots land in the notebook
    logging.getLogger("papermill").setLevel(logging.CRITICAL)  # failures are reported once, by the sweep
    try:
        if keep_kernel:
            WarmKernel.get(str(cwd or Path.cwd())).run(source, output, parameters, timeout)
            return
        socket_dir = tempfile.mkdtemp(prefix="veralab-kernel-")
        try:
            with open(Path(output).with_suffix(".kernel.log"), "w") as log:
                _papermill(source, output, parameters, timeout, str(cwd or Path.cwd()),
                           kernel_manager_class=_kernel_manager_class(socket_dir, log))
        finally:
            shutil.rmtree(socket_dir, ignore_errors=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def claim(run_dir: Path):
    """Hold an exclusive lock on run_dir/.claim while this process runs the point, so concurrent sweeps into one
    folder share the work; a killed sweep leaves no stale claim (core.io.exclusive)."""
    return exclusive(run_dir / CLAIM)


def execute_point(point: Point, timeout: int | None = None, env: dict | None = None, keep_kernel: bool = False) -> dict:
    """Run one point's notebook unless another sweep holds or has finished it (`keep_kernel`: in this worker's
    WarmKernel).

    Returns {status: ok | failed | busy | done, name, notebook, error, seconds}.
    """
    out = point.notebook_out
    start = time.time()
    result = {"status": "ok", "name": point.run_dir.name, "notebook": str(out), "error": None}
    try:
        with claim(point.run_dir) as mine:
            if not mine:
                return {**result, "status": "busy", "seconds": 0.0}
            if point.done():
                return {**result, "status": "done", "seconds": 0.0}
            run_notebook(NOTEBOOKS / STUDIES[point.study], out, point.params, timeout, env, keep_kernel=keep_kernel)
            if not point.done():
                result.update(status="failed", error="the notebook finished but wrote no ok record")
    except TimeoutError as err:  # nbclient's CellTimeoutError; checked first, as TimeoutError is an OSError
        result.update(status="failed", error=f"{type(err).__name__}: a cell ran longer than the timeout of {timeout} s")
    except OSError as err:
        result.update(status="failed", error=f"could not write {err.filename or out}: {err.strerror or err}; free "
                      f"space there and run the sweep again (the point is redone)")
    except Exception as err:  # papermill raises PapermillExecutionError with the failing cell's traceback
        message = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        result.update(status="failed", error=f"{type(err).__name__}: {message}")
    return {**result, "seconds": round(time.time() - start, 1)}


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


def sweep_points(study: str, profile="default", grid_file=None, output_dir="runs", limit=None,
                 glue_dir=None) -> list[Point]:
    """Every point of `study` (or "all": every study of the profile), each once, in a stable order."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    studies = list(PROFILES[profile]) if study == "all" else [study]
    points = [p for s in studies for p in expand(s, load_grid(s, profile, grid_file), output_dir, glue_dir)]
    return list({p.run_dir: p for p in points}.values())[:limit]


def run_sweep(study: str, *, grid_file=None, profile="default", jobs=1, executor="local", output_dir="runs",
              ray_address=None, limit=None, timeout=None, slurm: SlurmOptions | None = None,
              glue_dir=None) -> dict:
    """Run `study` (or "all") and return {"points", "skipped", "done", "busy", "failed": [results]}; prints a
    summary. Ctrl-C stops at once: the kernels are killed, unfinished points stay unfinished (re-run to resume)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    points = sweep_points(study, profile, grid_file, output_dir, limit, glue_dir)
    todo = [p for p in points if not p.done()]
    if todo:  # refused up front, not point by point
        check_writable(output_dir, "the sweep's output folder", "an --output-dir")
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
