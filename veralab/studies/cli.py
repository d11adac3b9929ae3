"""Command line: `veralab run` (one experiment; every RunConfig field is a flag), `sweep`, `collect`, `compare`,
`figures`, `results`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import typing
from pathlib import Path

from ..core.config import AdapterConfig, ConfigError


def _parse_optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


# argparse reads "-1e-3" as an option unless told that it is a number ("-5" and "-.5" it knows): a negative value
# must reach the config's own check and its message, not "expected one argument"
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$", re.IGNORECASE)


def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per dataclass field, typed from its annotation: --rank 256, --no-train-b, --target-modules q,v.
    A field that is itself a dataclass (RunConfig.adapter) is skipped: add its class's flags separately."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint)
        optional = type(None) in args
        default = argparse.SUPPRESS
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=f"(default: {f.default})")
        elif typing.get_origin(base) is tuple:
            parser.add_argument(flag, dest=f.name, default=default, metavar="A,B",
                                help=f"comma-separated (default: {f.default})")
        else:
            kind = base if base in (int, float, str) else str
            parser.add_argument(flag, dest=f.name, default=default, type=_parse_optional(kind) if optional else kind,
                                help=f"(default: {f.default})")


def _run(args) -> int:
    from ..experiment import RunConfig, RunFailed, run_experiment

    fields = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    config = RunConfig.from_dict(fields)
    try:
        record = run_experiment(config)
    except RunFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: run {config.name()} left unfinished (no ok record); run the same command to redo it",
              file=sys.stderr)
        raise
    if record.get("reused"):
        print(f"note: reused the stored record of {config.run_dir()} (finished {record.get('finished')}); pass "
              f"--force to run again", file=sys.stderr)
    summary = {k: record.get(k) for k in ("name", "status", "metric", "best", "final", "test", "params",
                                            "adapter_bytes")}
    summary["seconds"] = record.get("time", {}).get("wall_seconds")
    print(json.dumps(summary, indent=2))
    return 0


def _sweep(args) -> int:
    from .grids import parse_sets, sweep_points
    from .sweep import SlurmOptions, default_jobs, run_sweep

    if args.estimate and not args.dry_run:
        raise ConfigError("--estimate goes with --dry-run: it says what a sweep would cost, and runs nothing")
    if args.dry_run:
        points = sweep_points(args.study, args.profile, args.grid, args.output_dir, args.limit, args.glue_dir,
                              parse_sets(args.set))
        if args.estimate:
            from .estimate import calibration_from_bench, estimate_text

            calibration = calibration_from_bench(args.calibration) if args.calibration else None
            print(estimate_text(points, args.gpu, calibration), end="")
            return 0
        for point in points:
            print(json.dumps({"study": point.study, "run": point.run_dir.name, **point.params}))
        return 0

    slurm = SlurmOptions(partition=args.slurm_partition, time_min=args.slurm_time, gpus=args.slurm_gpus,
                         cpus=args.slurm_cpus, mem_gb=args.slurm_mem_gb, cluster=args.submitit_cluster)
    jobs = args.jobs or (default_jobs() if args.executor == "local" else 1)
    summary = run_sweep(args.study, grid_file=args.grid, profile=args.profile, jobs=jobs,
                        executor=args.executor, output_dir=args.output_dir, ray_address=args.ray_address,
                        limit=args.limit, timeout=args.timeout, slurm=slurm, glue_dir=args.glue_dir,
                        sets=parse_sets(args.set))
    return 1 if summary["failed"] else 0


def _collect(args) -> int:
    from .collect import collect_records, compact

    frame = collect_records(args.runs)
    skipped = len(frame.attrs["skipped"])
    counted = f"{len(frame)} records" + (f", {skipped} skipped (unreadable: named in the warnings above)"
                                         if skipped else "")
    if args.out:
        frame.to_csv(args.out, index=False)
        print(f"{counted} -> {args.out}")
    else:
        shown = frame if args.all_columns else compact(frame)
        print(shown.to_string(max_rows=50, index=False, na_rep=""))
        print(counted + ("" if args.all_columns else f"; {len(shown.columns)} of {len(frame.columns)} columns shown "
                         f"(--all-columns for every one, --out FILE.csv to keep them)"))
    return 0


def _compare(args) -> int:
    from .collect import compare_records

    for folder in (args.new, args.old):
        if not Path(folder).is_dir():
            raise ConfigError(f"{folder} is not a folder of run records; give two folders, e.g. runs/default "
                              f"results/default")
    table = compare_records(args.new, args.old)
    both = table[table["where"] == "both"]
    same = (both["difference"].abs() == 0).sum()
    print(f"{len(both)} runs in both folders: {same} with identical scores, {len(both) - same} different"
          + (f" (largest difference {both['difference'].abs().max():.4f})" if len(both) > same else ""))
    for _, row in both[both["difference"] != 0].iterrows():
        print(f"  {row['name']}: {row['score']:.4f} here, {row['score_old']:.4f} in {args.old}")
    for where, folder in (("new only", args.new), ("old only", args.old)):
        names = table[table["where"] == where]["name"].tolist()
        if names:
            print(f"{len(names)} runs only in {folder}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
    return 0


def _move(args) -> int:
    from .collect import move_runs

    moved = move_runs(args.source, args.target)
    print(f"moved {len(moved)} run folder(s) from {args.source} to {args.target}")
    return 0


def _figures(args) -> int:
    from .figures import make_all

    out = args.out or str(Path(args.runs) / "figures")
    written = make_all(args.runs, out, score=args.score, stat=args.stat, prefix=args.prefix)
    for path in written:
        print(path)
    return 0


def _results(args) -> int:
    import pandas as pd

    from ..core.io import write_text_atomic
    from .collect import collect_records
    from .grids import sweep_points
    from .profiles import GLUE_LORA_RANK, GLUE_RANK, PROFILES, SELECTION_HOLDOUT, SELECTION_SEEDS, reduction_text
    from .report import results_report

    glue = collect_records(args.runs)
    if glue.empty:
        raise FileNotFoundError(f"no run records under {args.runs}; run `make glue` (or veralab sweep all --profile "
                                f"{args.profile} --output-dir {args.runs}) first")
    expected = len(sweep_points("all", args.profile, output_dir=args.runs))

    def records(folders):
        found = [collect_records(f) for f in folders if f]
        return pd.concat(found, ignore_index=True) if found else None

    report = results_report(
        glue, rank=GLUE_RANK, lora_rank=GLUE_LORA_RANK,
        grids=PROFILES[args.profile],
        vit=records([args.vit_runs]), selection=records(args.selection), lower=records([args.lower]),
        lower_grids=PROFILES.get(f"{args.profile}_lower"),
        check=records([args.check]), expected_runs=expected, reduction=reduction_text(args.profile),
        selection_info=(SELECTION_HOLDOUT, SELECTION_SEEDS), figures_prefix=args.figures_prefix,
        sources={"glue": args.runs, "lower rate": args.lower, "vit": args.vit_runs,
                 "selection": ", ".join(f for f in args.selection if f), "check": args.check})
    write_text_atomic(args.out, report)
    print(f"{args.out}: verdicts from {(glue['status'] == 'ok').sum()} of {expected} GLUE runs")
    return 0


GRID_FORMAT = """\
grid file (--grid, YAML; its keys replace the profile's, optionally under a study's name):
  tasks: [sst2, stsb]                 # task names
  seeds: [0, 1, 2]                    # each sets run_seed and projection_prng_key
  base: {epochs: 3, head_lr: 1e-2,    # settings of every point (RunConfig / AdapterConfig fields) ...
         vera: {lr: 3e-2}}            # ... and per method: a point keeps its method's rate unless it sets one
  task_overrides:                     # per task, the same shape as base
    stsb: {head_lr: 1e-2, vera: {lr: 1e-2}}
  points:                             # one run per point, per task and seed
    - {method: vera, rank: 256}
    - {method: lora, rank: 8}
  axes: {d_init: [1e-7, 0.1]}         # optional: every point once per combination
A point's settings: base, the task's override, the point, its axes, then --set. Numbers such as 1e-3 are read as
numbers; a wrong name or value is refused naming the file, study, task, seed and point. --dry-run prints every
point as JSON."""


def build_parser() -> argparse.ArgumentParser:
    from ..experiment import RunConfig
    from .grids import PROFILES, STUDIES
    from .sweep import EXECUTORS

    parser = argparse.ArgumentParser(prog="veralab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate one configuration; writes <output-dir>/<name>/record.json")
    run._negative_number_matcher = NEGATIVE_NUMBER
    add_config_flags(run, AdapterConfig)
    add_config_flags(run, RunConfig)
    run.set_defaults(func=_run)

    sweep = sub.add_parser("sweep", help="execute a study's notebook once per grid point with papermill",
                           epilog=GRID_FORMAT, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("study", choices=(*STUDIES, "all"))
    sweep.add_argument("--grid", help="YAML file overriding the profile's grid (its format: below)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting at every point, e.g. --set epochs=1 --set max_train_samples=64 "
                       "(VALUE read as YAML: 1e-3 is a number); repeatable")
    sweep.add_argument("--profile", default="default", choices=tuple(PROFILES))
    sweep.add_argument("--jobs", type=_positive_int, default=None, help="parallel workers; with n GPUs worker k uses "
                       "GPU k mod n (jobs above n share GPUs). Default, local: one per GPU, or without one a "
                       "one-thread worker per CPU core (as many as memory holds at 2 GiB each); ray, slurm: 1")
    sweep.add_argument("--executor", default="local", choices=EXECUTORS,
                       help="local: a process pool here; ray: a Ray cluster; slurm: one Slurm job per point (submitit)")
    sweep.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
    sweep.add_argument("--output-dir", default="runs")
    sweep.add_argument("--glue-dir", default=None, help="a local GLUE folder (SST-2/, MRPC/, RTE/, STS-B/ with "
                       "train.tsv and dev.tsv) for every GLUE task; without it GLUE comes from the Hugging Face hub")
    sweep.add_argument("--limit", type=_positive_int, default=None, help="run only the first N grid points")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print each grid point's full run config (one JSON object a line) and run nothing")
    sweep.add_argument("--estimate", action="store_true",
                       help="with --dry-run: per point and per study, the steps, tokens, training FLOPs, GPU hours "
                            "and peak memory on --gpu (estimates calibrated on a measured H100 step)")
    sweep.add_argument("--gpu", default="h100", choices=["h100", "h200"], help="the GPU --estimate is for")
    sweep.add_argument("--calibration", default=None, help="--estimate from the GPU kit's measured step "
                       "(bench_vera.py's results_cuda_full_bf16.csv) instead of the built-in H100 step")
    sweep.add_argument("--timeout", type=_positive_int, default=None,
                       help="seconds per notebook cell before the point fails (default: no limit)")
    slurm = sweep.add_argument_group("slurm executor (submitit)")
    slurm.add_argument("--slurm-partition", default=None)
    slurm.add_argument("--slurm-time", type=int, default=60, help="minutes per job")
    slurm.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job")
    slurm.add_argument("--slurm-cpus", type=int, default=4, help="CPU cores per job")
    slurm.add_argument("--slurm-mem-gb", type=int, default=16)
    slurm.add_argument("--submitit-cluster", default="slurm", choices=("slurm", "local"),
                       help="local runs the same submitit jobs on this machine (to try a sweep before a cluster)")
    sweep.set_defaults(func=_sweep)

    collect = sub.add_parser("collect", help="all run records -> one table")
    collect.add_argument("--runs", default="runs")
    collect.add_argument("--out", default=None, help="CSV path with every column (default: print)")
    collect.add_argument("--all-columns", action="store_true", help="print every column, not the summary's")
    collect.set_defaults(func=_collect)

    move = sub.add_parser("move", help="move finished run folders to another folder, their records saying so")
    move.add_argument("source")
    move.add_argument("target")
    move.set_defaults(func=_move)

    compare = sub.add_parser("compare", help="scores of the same runs in two folders, side by side")
    compare.add_argument("new", help="records of a re-run (e.g. runs/default)")
    compare.add_argument("old", help="the records it should reproduce (e.g. results/default)")
    compare.set_defaults(func=_compare)

    figures = sub.add_parser("figures", help="regenerate tables and figures from the run records")
    figures.add_argument("--runs", default="runs")
    figures.add_argument("--out", default=None, help="folder for the figures and tables (default: <runs>/figures, "
                         "never the committed figures/ unless given)")
    figures.add_argument("--score", default="final", choices=("final", "best"),
                         help="final: the last epoch on the test split (dev for GLUE); best: the best epoch on "
                              "validation")
    figures.add_argument("--stat", default="median", choices=("median", "mean"),
                         help="median with min-max over seeds (the paper's statistic), or mean with sd")
    figures.add_argument("--prefix", default="", help="start every file name with this (e.g. glue_)")
    figures.set_defaults(func=_figures)

    results = sub.add_parser("results", help="RESULTS.md: a verdict per paper finding from the GLUE (and tiny-ViT) "
                             "records, with medians, paired differences and their intervals")
    results.add_argument("--runs", default="results/glue/glue_cpu", help="the GLUE campaign's records")
    results.add_argument("--profile", default="glue_cpu", choices=("glue", "glue_cpu"),
                         help="the profile they were run with (for the count of expected runs)")
    results.add_argument("--vit-runs", default="results/default", help="records of the tiny-ViT study ('' to skip)")
    results.add_argument("--selection", nargs="*", default=["results/glue/glue_cpu_select_head",
                                                             "results/glue/glue_cpu_select"],
                         help="the learning-rate selection's records (head rate, then the other methods' rates)")
    results.add_argument("--lower", default="results/glue/glue_cpu_lower",
                         help="the ablations at VeRA's next rate down (sensitivity rows; '' to skip)")
    results.add_argument("--check", default="results/glue/glue_cpu_check",
                         help="MRPC and RTE on their whole training sets ('' to skip)")
    results.add_argument("--figures-prefix", default="figures/glue_")
    results.add_argument("--out", default="RESULTS.md")
    results.set_defaults(func=_results)
    return parser


def main(argv=None) -> int:
    # Ctrl-C stops a run or sweep even when the shell started us with SIGINT ignored (a background `&` job, nohup)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what was interrupted has said so in one line; no traceback
        return 130
    except BrokenPipeError:  # the reader of our output went away (| head): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
