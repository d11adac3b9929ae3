"""Small helpers that keep the study notebooks thin."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..core.config import ConfigError
from ..experiment import RunConfig
from ..experiment.record import RECORD
from .collect import collect_records

COMMITTED_RESULTS = Path("results") / "default"  # the default profile's records, committed with the repository


def project_root() -> Path:
    """The folder a notebook's relative paths mean: VERALAB_PROJECT if set, else the veralab checkout holding the
    working directory (JupyterLab runs a notebook in notebooks/, papermill wherever it is started), else the working
    directory itself: never the installed package's own folder (site-packages, or another checkout)."""
    if os.environ.get("VERALAB_PROJECT"):
        return Path(os.environ["VERALAB_PROJECT"]).expanduser().resolve()
    here = Path.cwd().resolve()
    return next((p for p in (here, *here.parents) if (p / "notebooks").is_dir() and (p / "pyproject.toml").is_file()),
                here)
PARAMETER_TYPES = (bool, int, float, str, type(None), list, tuple, dict)
IPYTHON_NAMES = {"In", "Out"}


def in_repo(path) -> Path:
    """A notebook's relative path, resolved against project_root(): the same folder whether the notebook runs in
    JupyterLab (cwd notebooks/) or under papermill from the checkout's root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def config_from(namespace: dict) -> RunConfig:
    """The RunConfig whose fields are the notebook's parameter variables (its parameters cell, or papermill's).

    Call it right after the parameters cell: every plain value defined by then (numbers, strings, None, lists)
    must be a RunConfig field, so a typo such as `rnak = 16` is an error instead of silently running the default.
    A relative output_dir is resolved against the repository root.
    """
    params = {k: v for k, v in namespace.items()
              if not k.startswith("_") and k not in IPYTHON_NAMES and isinstance(v, PARAMETER_TYPES)}
    if "output_dir" in params:
        params["output_dir"] = str(in_repo(params["output_dir"]))
    try:
        return RunConfig.from_dict(params)
    except ConfigError as err:
        raise ParameterError(f"a notebook parameter (its parameters cell, or papermill -p): {err}") from None


class ParameterError(ConfigError):
    """A bad notebook parameter (shown in the notebook as its one line, as every ConfigError)."""


def run_point(namespace: dict) -> dict | None:
    """Train the notebook's point (its parameters: config_from) and print its summary. Where its data cannot be had
    here (a GLUE task offline without glue_dir) it says what to set and returns None instead of failing, so the
    cells after it still draw the committed study."""
    from ..experiment import run_experiment
    from ..experiment.glue import GlueDataError, check_glue_source

    config = config_from(namespace)
    try:
        check_glue_source(config.task, config.glue_dir)
    except GlueDataError as err:
        print(f"not run: {err}")
        return None
    record = run_experiment(config)
    summarize(record)
    return record


def load_records(runs, committed=COMMITTED_RESULTS, overlay: bool = True) -> pd.DataFrame:
    """The `committed` study's records (the default profile's, or e.g. "results/glue/glue_cpu") with the user's own
    from `runs` marked `yours` (both resolved against the repository): the figures draw the user's runs on top of
    the study, never pooled with its seeds. overlay=False: the records in `runs` alone (a whole sweep's), or the
    committed ones while `runs` holds none. Says which folders it read."""
    mine, study = in_repo(runs), in_repo(committed)
    has = {folder: any(folder.glob(f"**/{RECORD}")) for folder in (mine, study)}
    if not has[mine] and not has[study]:
        raise FileNotFoundError(f"no run records ({RECORD}) under {mine} nor {study}")
    if not has[study] or study == mine or (has[mine] and not overlay):
        frame = collect_records(mine)
        print(f"{len(frame)} records from {mine} ({(frame['status'] == 'ok').sum()} ok)")
        return frame
    if not overlay:  # nothing in `runs` yet
        print(f"no records in {mine} yet: showing the committed results in {study}")
    frame = collect_records(study)
    print(f"the study: {len(frame)} records from {study}")
    if not has[mine] or not overlay:
        if overlay:
            print(f"no records of yours in {mine} yet")
        return frame
    yours = collect_records(mine)
    print(f"yours, drawn on it as black crosses: {len(yours)} records from {mine} ({(yours['status'] == 'ok').sum()} "
          f"ok)")
    return pd.concat([frame.assign(yours=False), yours.assign(yours=True)], ignore_index=True)


def summarize(record: dict) -> None:
    """Print what ran and how it scored, so an executed notebook documents itself."""
    metric = record["metric"]
    test = (record.get("test") or {}).get(metric)
    print(f"{record['name']}: {record['status']}")
    if record.get("reused"):
        print(f"  reused the stored record (run finished {record.get('finished')}); set force = True to run again")
    print(f"  model {record['model']} on {record['data']['source']}, {record['data']['train_used']} training examples")
    if record["status"] == "ok":
        print(f"  {metric}: final {record['final'][metric]:.4f} on {record['evaluated_on']}, best "
              f"{record['best'][metric]:.4f} (epoch {record['best']['epoch']})"
              + (f", test {test:.4f}" if test is not None else ""))
        params = record["params"]
        print(f"  {params['adapter']:,} adapter + {params['head']:,} head parameters trained, of {params['total']:,}; "
              f"adapter file {record['adapter_bytes'] / 1024:.1f} KiB; {record['time']['wall_seconds']:.0f} s on "
              f"{record['device']['type']} in {record.get('precision', 'fp32')}")
    else:
        print(f"  error: {record.get('error')}")
