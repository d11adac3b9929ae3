"""End-to-end sweep throughput: runs per hour of one study's grid through `veralab sweep` (papermill, one kernel
per point), at several --jobs values, each into a fresh results folder.

    python benchmarks/bench_sweep.py                          # vit study, digits, seeds 0 and 1, --jobs 1 and 2
    python benchmarks/bench_sweep.py --jobs 1 2 4 8           # on a GPU: several small runs sharing it
    python benchmarks/bench_sweep.py --study rank_sweep --tasks rotten_tomatoes --seeds 0

On a machine with GPUs, the sweep pins worker k to GPU k mod n, so --jobs above the GPU count puts several runs on
one GPU. "overhead s/run" is the sweep's wall time per run, times jobs, less the run's own wall time from its
record: kernel start, imports, model and data loading outside the timed run, and papermill's bookkeeping.
Writes benchmarks/sweep_<device>.csv and .md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import write_table  # noqa: E402

from veralab.studies.collect import collect_records  # noqa: E402
from veralab.studies.sweep import run_sweep  # noqa: E402


def measure(study, grid_file, jobs):
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as out:
        start = time.perf_counter()
        summary = run_sweep(study, grid_file=grid_file, jobs=jobs, output_dir=out)
        wall = time.perf_counter() - start
        runs = collect_records(out)
    done = summary["done"]
    if summary["failed"] or not done:
        raise SystemExit(f"jobs={jobs}: {len(summary['failed'])} of {summary['points']} points failed; "
                         "fix them with `veralab sweep` before measuring throughput")
    return {"jobs": jobs, "runs": done, "wall_s": round(wall, 1), "runs_per_hour": round(done * 3600 / wall, 1),
            "run_wall_s": round(runs["wall_seconds"].mean(), 1),
            "overhead_s_per_run": round(wall * jobs / done - runs["wall_seconds"].mean(), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="vit")
    parser.add_argument("--tasks", nargs="+", default=["digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as grid:
        yaml.safe_dump({args.study: {"tasks": args.tasks, "seeds": args.seeds}}, grid)
        grid.flush()
        frame = pd.DataFrame([measure(args.study, grid.name, jobs) for jobs in args.jobs])
    frame["x_jobs_1"] = (frame["runs_per_hour"] / frame["runs_per_hour"].iloc[0]).round(2)
    header = (f"device: {device}; study: {args.study} (default profile), tasks {args.tasks}, seeds {args.seeds}; "
              f"{time.strftime('%Y-%m-%d')}")
    write_table(frame, header, f"sweep_{'cuda' if torch.cuda.is_available() else 'cpu'}")


if __name__ == "__main__":
    main()
