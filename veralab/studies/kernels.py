"""Executing one sweep point: its study notebook through papermill, in a kernel of its own or in the worker's warm
one, with the point claimed (an OS lock) while it runs; kernels never outlive the process that started them."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from ..core.io import exclusive
from ..experiment.record import RECORD
from .grids import NOTEBOOKS, STUDIES, Point

CLAIM = ".claim"  # a lock file in each run folder; see claim()
SWEEP_SKIP = "sweep-skip"  # a notebook cell with this tag runs in JupyterLab and by hand, not in a sweep


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


def unreadable_record(run_dir: Path) -> str:
    """Why `veralab collect` (every table and figure) could not read the run's record, or '': a record the tables
    would drop is a failed point, not a silent loss."""
    from .collect import read_row

    return read_row(run_dir / RECORD)[1]


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
            elif problem := unreadable_record(point.run_dir):
                result.update(status="failed", error=f"its record cannot be collected into tables: {problem}")
    except TimeoutError as err:  # nbclient's CellTimeoutError; checked first, as TimeoutError is an OSError
        result.update(status="failed", error=f"{type(err).__name__}: a cell ran longer than the timeout of {timeout} s")
    except OSError as err:
        result.update(status="failed", error=f"could not write {err.filename or out}: {err.strerror or err}; free "
                      f"space there and run the sweep again (the point is redone)")
    except Exception as err:  # papermill raises PapermillExecutionError with the failing cell's traceback
        message = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        result.update(status="failed", error=f"{type(err).__name__}: {message}")
    return {**result, "seconds": round(time.time() - start, 1)}
