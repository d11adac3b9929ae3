"""Every run record under a folder -> one pandas DataFrame, a row per run."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pandas as pd

from ..core.config import ABLATION_FIELDS, DEFAULT
from ..core.io import exclusive, write_json_atomic
from ..experiment.record import RECORD, read_record, record_config

CONFIG_COLUMNS = ("task", "model", "method", "rank", "projection_prng_key", "run_seed", "d_init", "b_init",
                  "projection_init", "train_d", "train_b", "shared", "epochs", "max_train_samples", "shots_per_class",
                  "batch_size", "lr", "head_lr", "head_scope", "validation_holdout", "precision")
VERA_ONLY = ("projection_prng_key", "d_init", "b_init", "projection_init", "train_d", "train_b", "shared")
SEEDS = ("run_seed", "projection_prng_key")  # what repeats a setting; everything else in the config defines it
NOT_SETTINGS = (*SEEDS, "output_dir", "run_name", "force", "save_adapter")


def variant(config: dict) -> str:
    """A short readable name for a configuration's adapter variant (used in legends and tables)."""
    method = config["method"]
    if method != "vera":
        return {"head": "head only", "full": "full fine-tune", "lora": f"LoRA r={config['rank']}"}[method]
    setting = {name: config.get(name, getattr(DEFAULT, name)) for name in ABLATION_FIELDS}
    parts = [f"VeRA r={config['rank']}"]
    if not setting["train_b"]:
        parts.append("d only")  # d starts at 0 there by necessity, so its d_init is not a variant of its own
    if not setting["train_d"]:
        parts.append("b only")
    if not setting["shared"]:
        parts.append("independent A/B")
    if setting["projection_init"] != DEFAULT.projection_init:
        parts.append(setting["projection_init"])
    if setting["train_b"] and setting["d_init"] != DEFAULT.d_init:
        parts.append(f"d_init={setting['d_init']:g}")
    return ", ".join(parts)


def setting_of(config: dict) -> str:
    """The whole configuration but its seeds and output paths, as one string: runs that share it are repeats of one
    setting, and only those are aggregated together (a 10-epoch and a 4-epoch run never are)."""
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in NOT_SETTINGS})


def flatten(record: dict, path: Path | None = None) -> dict:
    """One row per run. Scores, both kept so a table can say which it uses:

    score       the final epoch's headline metric on the held-out test split where the task has one (Rotten
                Tomatoes, images), else on the dev split (GLUE: the paper evaluates on dev)
    score_best  the best epoch's headline metric on the split evaluated every epoch (validation / dev)
    """
    config = record_config(record)
    headline = record.get("metric")
    row = {"name": record.get("name"), "status": record.get("status"), "kind": record.get("kind")}
    row.update({k: config.get(k) for k in CONFIG_COLUMNS})
    # a field the method has no use for is empty in its row (a head-only run has no rank, LoRA no d_init); the
    # config keeps it, and the setting with it
    for name in (("rank",) if config["method"] in ("head", "full") else ()) + (
            VERA_ONLY if config["method"] != "vera" else ()):
        row[name] = None
    row["model"] = record.get("model", config.get("model"))
    row["variant"] = variant(config)
    row["default_variant"] = config["method"] != "vera" or all(
        config.get(name, getattr(DEFAULT, name)) == getattr(DEFAULT, name) for name in ABLATION_FIELDS)
    # edited data is another setting, never pooled with runs on the old files as if they were seeds; device and
    # precision as the run resolved them ("auto" in a notebook's run is the sweep's "cpu" where it ran on the CPU)
    row["setting"] = setting_of({**config, "data": (record.get("data") or {}).get("files_sha256"),
                                 "device": (record.get("device") or {}).get("type") or config.get("device"),
                                 "precision": record.get("precision") or config.get("precision")})
    row["metric"] = headline
    if record.get("status") == "ok":
        test = record.get("test") or {}
        row["score"] = test.get(headline, record["final"][headline])
        row["score_split"] = "test" if headline in test else record["evaluated_on"]
        row["score_best"] = record["best"][headline]
        row["best_epoch"] = record["best"]["epoch"]
        row["adapter_params"] = record["params"]["adapter"]
        row["head_params"] = record["params"]["head"]
        row["trainable"] = record["params"]["trainable"]
        row["total"] = record["params"]["total"]
        row["adapter_bytes"] = record.get("adapter_bytes")
        row["train_loss"] = record["epochs"][-1].get("train_loss")
        row["wall_seconds"] = record["time"]["wall_seconds"]
        row["samples_per_second"] = record["time"]["samples_per_second"]
    row["error"] = record.get("error")
    device = record.get("device") or {}
    row["device"] = device.get("type")
    row["threads"] = device.get("threads")
    row["bf16_products"] = _bf16_products(device, record.get("precision"))
    data = record.get("data") or {}
    row["constant_loss"] = data.get("constant_loss")
    row["train_size"] = data.get("train_used")
    row["eval_size"] = (data.get("eval_used") or {}).get(row.get("score_split"))
    row["majority_score"] = ((data.get("majority_class") or {}).get("accuracy") or {}).get(row.get("score_split"))
    row["path"] = str(path) if path else None
    return row


def _bf16_products(device: dict, precision) -> str | None:
    """How a bf16 CPU run's products ran: "native (amx)", "native (avx512_bf16)", "float32 kernels"; records
    written before float32 kernels existed ran bf16 only on native units."""
    if precision != "bf16" or device.get("type") != "cpu":
        return None
    if device.get("bf16_products", "native") == "native":
        return f"native ({device.get('cpu_bf16')})"
    return device["bf16_products"]


COMPACT_COLUMNS = ("name", "status", "task", "variant", "run_seed", "epochs", "train_size", "lr", "head_lr", "metric",
                   "score", "score_split", "adapter_params", "wall_seconds", "error")


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader scans first (the variant names the method, rank and ablation), the score in %."""
    shown = frame[[c for c in COMPACT_COLUMNS if c in frame]].copy()
    shown["score"] = (100 * shown["score"].astype(float)).round(1)
    if "error" in shown:
        shown["error"] = shown["error"].fillna("")
        shown = shown if shown["error"].any() else shown.drop(columns="error")
    return shown.rename(columns={"score": "score (%)"})


def read_checked(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except ValueError as err:  # invalid JSON (a run killed mid-write by an older veralab, an edit) or not UTF-8
        raise ValueError(f"invalid JSON ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but a {type(record).__name__}")
    if not isinstance(record.get("config"), dict):
        raise ValueError('missing "config" (an object)')
    return record


def read_row(path: Path) -> tuple[dict | None, str]:
    """(the record's table row, "") or (None, why it cannot be one): what every table and figure reads of it."""
    try:
        return flatten(read_checked(path), path), ""
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return None, f"missing key {err}" if isinstance(err, KeyError) else str(err)


def collect_records(runs="runs") -> pd.DataFrame:
    """A row per record under `runs`. An unreadable record is skipped with a warning naming it and why (one bad file
    must not hide every run from a table); their paths are in ``frame.attrs["skipped"]``."""
    rows, skipped = [], []
    for path in sorted(Path(runs).glob(f"**/{RECORD}")):
        row, why = read_row(path)
        if row is None:
            warnings.warn(f"skipped {path}: not a readable veralab run record: {why}", stacklevel=2)
            skipped.append(str(path))
        else:
            rows.append(row)
    columns = ["name", "status", "kind", *CONFIG_COLUMNS, "variant", "default_variant", "setting", "metric", "score",
               "score_split", "score_best", "best_epoch", "adapter_params", "head_params", "trainable", "total",
               "adapter_bytes", "train_loss", "constant_loss", "wall_seconds", "samples_per_second", "error", "device",
               "threads", "bf16_products", "train_size", "eval_size", "majority_score", "path"]
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["skipped"] = skipped
    return frame


def compare_records(new, old) -> pd.DataFrame:
    """Runs of the same setting and seed (the same run name) in two folders, their scores side by side: how a
    re-run (another machine, another version) compares with the records it should reproduce."""
    ours, theirs = collect_records(new), collect_records(old)
    ours, theirs = ours[ours["status"] == "ok"], theirs[theirs["status"] == "ok"]
    both = ours.merge(theirs, on="name", how="outer", suffixes=("", "_old"), indicator=True)
    both["difference"] = both["score"] - both["score_old"]
    both["where"] = both["_merge"].map({"both": "both", "left_only": "new only", "right_only": "old only"})
    return both[["name", "task", "variant", "run_seed", "score", "score_old", "difference", "where"]]


def move_runs(source, target) -> list[Path]:
    """Move every finished run folder (an ok or failed record) from `source` into `target`, each record's output_dir
    rewritten to `target` (and the folder it ran in kept as moved_from): a record says where it lies. A folder whose
    run is still training (its lock held), or whose name `target` already holds, stays where it is."""
    from ..experiment.run import RUN_LOCK

    moved, target = [], Path(target)
    for folder in sorted(p.parent for p in Path(source).glob(f"*/{RECORD}")):
        record = read_record(folder)
        if not record or record.get("status") not in ("ok", "failed") or (target / folder.name).exists():
            continue
        with exclusive(folder / RUN_LOCK) as mine:
            if not mine:
                continue
        config = record["config"]
        record = {**record, "config": {**config, "output_dir": str(target)},
                  "moved_from": record.get("moved_from", config.get("output_dir"))}
        target.mkdir(parents=True, exist_ok=True)
        (folder / RUN_LOCK).unlink(missing_ok=True)
        shutil.move(str(folder), str(target / folder.name))
        write_json_atomic(target / folder.name / RECORD, record)
        moved.append(target / folder.name)
    return moved
