"""Atomic file writing and exclusive locks, the I/O helpers every layer shares: readers never see half a file, a
failed write leaves nothing behind, files get the user's umask like any other tool's output, and a lock dies with
the process that held it."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A fresh temporary path beside `path` to write to; once written it is fsynced and renamed onto `path`, and on
    any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a shared results folder must stay readable
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@contextmanager
def exclusive(path) -> Iterator[bool]:
    """Try to hold an exclusive lock on the file `path` (created if missing) for the block: yields True when this
    process holds it (the file then says who: host, pid, since when), False when another process does. The OS drops
    the lock when its process dies, so a killed process leaves no stale lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode())
        yield True
    finally:
        os.close(fd)


def check_writable(folder, what: str, setting: str) -> None:
    """Fail before any work, not after it, when `folder` cannot be written: one ConfigError naming `what` it is
    and the `setting` that chooses it."""
    from .config import ConfigError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write {what} {folder}: {err.strerror or err}; give {setting} that is a writable "
                          f"folder") from err


def check_free_space(folder, need: int, what: str) -> None:
    """Fail before the work whose results `folder` must keep when it has less than `need` bytes free (a full disk
    would otherwise be found only after training, losing it)."""
    from .config import ConfigError

    free = shutil.disk_usage(folder).free
    if free < need:
        raise ConfigError(f"{folder} has {free / 2**20:.1f} MiB free, less than the {need / 2**20:.1f} MiB {what} "
                          f"needs; free space there or choose another output_dir")


def files_sha256(paths) -> str:
    """'sha256:...' of the files' contents in the given order: what a run's identity holds for its data, so the same
    files elsewhere are the same run and edited ones another. Cached by path, size and mtime: a sweep hashes each
    file once."""
    paths = [Path(p) for p in paths]
    return _files_sha256(tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths))


@functools.lru_cache(maxsize=64)
def _files_sha256(files: tuple) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).read_bytes())
    return "sha256:" + digest.hexdigest()[:16]
