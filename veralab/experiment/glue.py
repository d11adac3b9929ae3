"""GLUE from a local folder in the original TSV layout (--glue-dir) or from the Hugging Face hub.

Real-file quirks handled: MRPC's header starts with a BOM; an RTE row starts with a quote, so files are read with
quoting off; CoLA's TSVs have no header and 4 columns (source, label, original label, sentence).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

GLUE_DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "rte": "RTE", "stsb": "STS-B"}


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


class GlueDataError(ValueError):
    """A GLUE folder or file that does not hold what the task needs."""


def _read_tsv(path: Path, header: tuple[str, ...] | None = None) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(reader)
    if header is None:
        header, rows = tuple(rows[0]), rows[1:]
    return [dict(zip(header, row)) for row in rows if len(row) >= len(header)]


def read_glue_split(glue_dir, task: str, split: str) -> tuple[list[tuple[str, str | None]], list]:
    """(texts, labels) of `split` ("train" or "dev"); labels are class indices, or floats for STS-B."""
    spec = GLUE_TASKS[task]
    folder = Path(glue_dir) / GLUE_DIRS[task]
    path = folder / f"{split}.tsv"
    if not path.is_file():
        have = sorted(p.name for p in Path(glue_dir).iterdir()) if Path(glue_dir).is_dir() else []
        raise GlueDataError(f"GLUE dir {glue_dir} has no {GLUE_DIRS[task]}/{split}.tsv for task {task!r} "
                            f"(it holds: {have or 'nothing'}); download GLUE or drop --glue-dir to use the hub")
    rows = _read_tsv(path, COLA_COLUMNS if task == "cola" else None)
    missing = {spec.text_a, spec.label} - set(rows[0] if rows else ())
    if missing:
        raise GlueDataError(f"{path} lacks column(s) {sorted(missing)} that task {task!r} needs")
    texts = [(r[spec.text_a], r[spec.text_b] if spec.text_b else None) for r in rows]
    if spec.labels is None:
        labels = [float(r[spec.label]) for r in rows]
    else:
        index = {name: i for i, name in enumerate(spec.labels)}
        bad = sorted({r[spec.label] for r in rows} - set(index))
        if bad:
            raise GlueDataError(f"{path} has labels {bad[:5]} that task {task!r} does not know; allowed: {spec.labels}")
        labels = [index[r[spec.label]] for r in rows]
    return texts, labels


def load_glue_hub(task: str, split: str):
    import datasets

    ds = datasets.load_dataset("nyu-mll/glue", task, split="validation" if split == "dev" else split)
    a, b = HUB_COLUMNS[task]
    texts = [(row[a], row[b] if b else None) for row in ds]
    return texts, [row["label"] for row in ds]
