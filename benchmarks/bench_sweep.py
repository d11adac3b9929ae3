"""End-to-end sweep throughput: runs per hour of one study's grid through `veralab sweep` (papermill, one kernel
per point), at several --jobs values, each into a fresh results folder.

    python benchmarks/bench_sweep.py                          # vit study, digits, seeds 0 and 1, --jobs 1 and 2
    python benchmarks/bench_sweep.py --jobs 1 2 4 8           # on a GPU: several small runs sharing it
    python benchmarks/bench_sweep.py --study rank_sweep --tasks rotten_tomatoes --seeds 0
    python benchmarks/bench_sweep.py --jobs 1 2 --seeds 0 --methods head vera --set epochs=1 shots_per_class=5
    python benchmarks/bench_sweep.py --study main_table --profile glue_cpu --glue-dir GLUE --tasks sst2 --seeds 0 \
        --set precision=bf16                                # glue_cpu points: 2 jobs x 1 thread vs 1 job x 2 threads

On a machine with GPUs, the sweep pins worker k to the k-th visible GPU mod n, so --jobs above the GPU count puts
several runs on one GPU. "overhead s/run" is the sweep's wall time per run, times jobs, less the run's own wall time
from its record: kernel start, imports, model and data loading outside the timed run, and papermill's bookkeeping.
"devices" is what the runs' records report (type and name: that the workers really landed on the GPU).
Writes <out>/sweep_<device>[_<profile>].csv and .md (after each --jobs value, so an interrupted benchmark keeps its
rows) and sweep_<device>[_<profile>]_runs.csv, one row per run; --out defaults to benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import write_table  # noqa: E402

from veralab.studies.collect import collect_records  # noqa: E402
from veralab.studies.sweep import run_sweep  # noqa: E402


def run_rows(folder: Path, jobs: int) -> list[dict]:
    """One row per run record under `folder`: what ran, where its record says it ran, how long and how much memory."""
    rows = []
    for path in sorted(folder.glob("**/record.json")):
        record = json.loads(path.read_text())
        config, device = record.get("config") or {}, record.get("device") or {}
        adapter = config.get("adapter") or config
        rows.append({"jobs": jobs, "run": record.get("name"), "method": adapter.get("method"),
                     "status": record.get("status"), "device": device.get("type"), "device_name": device.get("name"),
                     "threads": device.get("threads"), "wall_s": (record.get("time") or {}).get("wall_seconds"),
                     "train_s": (record.get("time") or {}).get("train_seconds"),
                     "cuda_peak_mib": (record.get("memory") or {}).get("cuda_peak_mib")})
    return rows


def measure(study, profile, grid_file, jobs, keep: Path | None = None, glue_dir=None):
    out = tempfile.mkdtemp(prefix="bench_sweep_") if keep is None else str(keep / f"jobs_{jobs}")
    if keep is not None:
        shutil.rmtree(out, ignore_errors=True)  # a fresh folder: finished records would be reused, not re-run
    try:
        start = time.perf_counter()
        summary = run_sweep(study, profile=profile, grid_file=grid_file, jobs=jobs, output_dir=out, glue_dir=glue_dir)
        wall = time.perf_counter() - start
        runs = collect_records(out)
        per_run = run_rows(Path(out), jobs)
    finally:
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)
    done = summary["done"]
    if summary["failed"] or not done:
        raise SystemExit(f"jobs={jobs}: {len(summary['failed'])} of {summary['points']} points failed; "
                         "fix them with `veralab sweep` before measuring throughput")
    devices = Counter(f"{r['device']}" + (f" {r['device_name']}" if r["device_name"] else "") for r in per_run)
    return {"jobs": jobs, "runs": done, "wall_s": round(wall, 1), "runs_per_hour": round(done * 3600 / wall, 1),
            "run_wall_s": round(runs["wall_seconds"].mean(), 1),
            "overhead_s_per_run": round(wall * jobs / done - runs["wall_seconds"].mean(), 1),
            "devices": ", ".join(f"{name} x{n}" for name, n in sorted(devices.items()))}, per_run


def grid(args) -> dict:
    spec = {"tasks": args.tasks, "seeds": args.seeds}
    if args.set:
        spec["base"] = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.methods:
        from veralab.studies.grids import load_grid

        points = [p for p in load_grid(args.study, args.profile).get("points") or [] if p.get("method") in args.methods]
        if not points:
            raise SystemExit(f"no point of study {args.study!r} has a method in {args.methods}")
        spec["points"] = points
    return {args.study: spec}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="vit")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--glue-dir", default=None, help="a local GLUE folder, for the GLUE profiles")
    parser.add_argument("--tasks", nargs="+", default=["digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--methods", nargs="+", default=None, help="only the study's points of these methods")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="settings over the grid's base")
    parser.add_argument("--out", default=None, help="folder for the tables (default: benchmarks/)")
    parser.add_argument("--keep", type=Path, default=None, help="keep each --jobs value's run folders here")
    args = parser.parse_args()
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    stem = f"sweep_{'cuda' if torch.cuda.is_available() else 'cpu'}"
    stem += "" if args.profile == "default" else f"_{args.profile}"
    header = (f"device: {device}; study: {args.study} ({args.profile} profile), tasks {args.tasks}, seeds {args.seeds}"
              + (f", methods {args.methods}" if args.methods else "") + (f", set {args.set}" if args.set else "")
              + f"; {time.strftime('%Y-%m-%d')}")
    rows, per_run = [], []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as grid_file:
        yaml.safe_dump(grid(args), grid_file)
        grid_file.flush()
        for jobs in args.jobs:
            row, runs = measure(args.study, args.profile, grid_file.name, jobs, args.keep, args.glue_dir)
            rows.append(row)
            per_run += runs
            frame = pd.DataFrame(rows)
            frame["x_jobs_1"] = (frame["runs_per_hour"] / frame["runs_per_hour"].iloc[0]).round(2)
            write_table(frame, header, stem, out_dir=args.out)  # after every --jobs value
            pd.DataFrame(per_run).to_csv(Path(args.out or Path(__file__).resolve().parent) / f"{stem}_runs.csv",
                                         index=False)


if __name__ == "__main__":
    main()
