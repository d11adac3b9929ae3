"""GLUE from a local folder in the original TSV layout (--glue-dir) or from the Hugging Face hub.

Real-file quirks handled: MRPC's header starts with a BOM; an RTE row starts with a quote, so files are read with
quoting off; CoLA's TSVs have no header and 4 columns (source, label, original label, sentence).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.config import OneLineError
from ..core.io import files_sha256

GLUE_DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "rte": "RTE", "stsb": "STS-B"}
GLUE_DEV_SIZES = {"sst2": 872, "mrpc": 408, "cola": 1_043, "qnli": 5_463, "rte": 277, "stsb": 1_500}  # dev.tsv rows


@dataclass(frozen=True)
class GlueTask:
    text_a: str
    text_b: str | None
    label: str
    labels: tuple | None  # class names in label order; None for regression (STS-B)
    metrics: tuple[str, ...]  # the first is the paper's headline metric


GLUE_TASKS = {
    "sst2": GlueTask("sentence", None, "label", ("0", "1"), ("accuracy",)),
    "mrpc": GlueTask("#1 String", "#2 String", "Quality", ("0", "1"), ("accuracy", "f1")),
    "cola": GlueTask("sentence", None, "label", ("0", "1"), ("matthews", "accuracy")),
    "qnli": GlueTask("question", "sentence", "label", ("entailment", "not_entailment"), ("accuracy",)),
    "rte": GlueTask("sentence1", "sentence2", "label", ("entailment", "not_entailment"), ("accuracy",)),
    "stsb": GlueTask("sentence1", "sentence2", "score", None, ("pearson", "spearman")),
}
COLA_COLUMNS = ("source", "label", "original_label", "sentence")
HUB_COLUMNS = {"sst2": ("sentence", None), "mrpc": ("sentence1", "sentence2"), "cola": ("sentence", None),
               "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2")}


class GlueDataError(OneLineError, ValueError):
    """A GLUE folder or file that does not hold what the task needs."""


def _read_tsv(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every line but blank ones, which hold no example."""
    rows, reader = [], None
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows = [(reader.line_num, row) for row in reader if row]
    except UnicodeDecodeError as err:
        line = Path(path).read_bytes()[:err.start].count(b"\n") + 1
        raise GlueDataError(f"{path} line {line} is not UTF-8 text ({err.reason} at byte {err.start}); use the GLUE "
                            f"download's TSVs") from err
    except csv.Error as err:
        line = reader.line_num if reader else 1
        raise GlueDataError(f"{path} line {line} cannot be read as tab-separated text ({err}): a damaged line; "
                            f"fix it or restore the file from the GLUE download") from err
    return rows


def _read_table(path: Path, task: str, header: tuple[str, ...] | None) -> list[tuple[int, dict]]:
    """(line number, {column: field}) per row, every row holding one field per column of the header (or of CoLA's
    fixed layout). Empty fields after the last column (a stray tab at a line's end) are allowed; any other extra field
    means a text held a tab, which shifts the columns after it, so it is an error like a missing field."""
    spec, rows = GLUE_TASKS[task], _read_tsv(path)
    if not rows:
        raise GlueDataError(f"{path} is empty: expected {'a header line, then ' if header is None else ''}"
                            "one tab-separated row per example")
    layout = "CoLA's headerless layout" if header else "the header"
    if header is None:
        first, fields = rows.pop(0)
        header = tuple(fields)
        missing = [c for c in (spec.text_a, spec.text_b, spec.label) if c and c not in header]
        if missing:
            raise GlueDataError(f"{path}: the header (line {first}) lacks column(s) {missing} that task {task!r} "
                                f"needs; it has {list(header)}")
        if not rows:
            raise GlueDataError(f"{path} has a header but no rows: expected one tab-separated row per example")
    for line, row in rows:
        if len(row) < len(header) or any(row[len(header):]):
            raise GlueDataError(
                f"{path} line {line} has {len(row)} tab-separated fields where {layout} has {len(header)} "
                f"({', '.join(header)}); every row needs exactly one field per column (a tab or line break inside a "
                "text splits it): fix that line or restore the file from the GLUE download")
    return [(line, dict(zip(header, row))) for line, row in rows]


def _score(path: Path, line: int, value: str) -> float:
    try:
        score = float(value)
    except ValueError:
        score = None
    if score is None or not 0 <= score <= 5:
        raise GlueDataError(f"{path} line {line}: STS-B score {value!r} is not a number in [0, 5]")
    return score


def read_glue_split(glue_dir, task: str, split: str) -> tuple[list[tuple[str, str | None]], list]:
    """(texts, labels) of `split` ("train" or "dev"); labels are class indices, or floats for STS-B."""
    spec = GLUE_TASKS[task]
    path = glue_file(glue_dir, task, split)
    rows = _read_table(path, task, COLA_COLUMNS if task == "cola" else None)
    texts = [(r[spec.text_a], r[spec.text_b] if spec.text_b else None) for _, r in rows]
    if spec.labels is None:
        return texts, [_score(path, line, r[spec.label]) for line, r in rows]
    index = {name: i for i, name in enumerate(spec.labels)}
    bad = [(line, r[spec.label]) for line, r in rows if r[spec.label] not in index]
    if bad:
        raise GlueDataError(f"{path} has labels {sorted({v for _, v in bad})[:5]} that task {task!r} does not know "
                            f"(first on line {bad[0][0]}); allowed: {spec.labels}")
    return texts, [index[r[spec.label]] for _, r in rows]


def glue_file(glue_dir, task: str, split: str) -> Path:
    """The task's `split` TSV ("train" or "dev") in a local GLUE folder; one clear error when it is missing."""
    path = Path(glue_dir) / GLUE_DIRS[task] / f"{split}.tsv"
    if not Path(glue_dir).is_dir():
        raise GlueDataError(f"GLUE dir {glue_dir} does not exist; give the folder that holds SST-2/, MRPC/, RTE/, "
                            f"STS-B/ (each with train.tsv and dev.tsv), or drop --glue-dir to use the hub")
    if not path.is_file():
        have = sorted(p.name for p in Path(glue_dir).iterdir()) if Path(glue_dir).is_dir() else []
        raise GlueDataError(f"GLUE dir {glue_dir} has no {GLUE_DIRS[task]}/{split}.tsv for task {task!r} (it holds: "
                            f"{have or 'nothing'}); download GLUE or drop --glue-dir to use the hub")
    return path


def glue_fingerprint(glue_dir, task: str) -> str:
    """sha256 of the task's train and dev files: what a run's identity holds instead of the folder's path, so the
    same data in another place (another machine, the GPU kit) is the same run, and edited data is another run."""
    return files_sha256(glue_file(glue_dir, task, split) for split in ("train", "dev"))


def check_glue_source(task: str, glue_dir) -> None:
    """Before any download: a GLUE task without a local folder needs the Hugging Face hub, which HF_HUB_OFFLINE=1
    (or HF_DATASETS_OFFLINE=1) turns off; say what to set instead of failing deep inside `datasets`."""
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v) == "1"]
    if task in GLUE_TASKS and not glue_dir and offline:
        raise GlueDataError(f"GLUE task {task!r} reads its data from glue_dir (a local GLUE folder holding "
                            f"{GLUE_DIRS[task]}/train.tsv and dev.tsv, as the GLUE download has them) or downloads "
                            f"it from the Hugging Face hub (nyu-mll/glue), which {' and '.join(offline)}=1 turns off "
                            f"here: set glue_dir (--glue-dir), or unset {offline[0]}")


def load_glue_hub(task: str, split: str):
    """The hub's GLUE split with the columns every text task has: text_a, text_b (None for one sentence), label."""
    import datasets

    ds = datasets.load_dataset("nyu-mll/glue", task, split="validation" if split == "dev" else split)
    a, b = HUB_COLUMNS[task]
    ds = ds.rename_column(a, "text_a")
    ds = ds.rename_column(b, "text_b") if b else ds.add_column("text_b", [None] * len(ds))
    return ds.select_columns(["text_a", "text_b", "label"])
