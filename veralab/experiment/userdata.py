"""Your own text data as a task (task="custom", data=PATH): classification or regression from a CSV, TSV or JSON
Lines file, or a folder written by `datasets`' save_to_disk.

Splits: a DatasetDict's own (train, and validation and/or test), or a file's `split` column (train / validation /
test), else 80/10/10 carved with a fixed seed. Labels: numbers with a fractional part are a regression target
(Pearson, Spearman), anything else class names (accuracy; F1 for two classes), indexed in sorted order. Every
problem is named with the file, the column and the first offending line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.config import OneLineError
from ..core.io import files_sha256

CUSTOM_TASK = "custom"
FILE_FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}
SPLIT_NAMES = ("train", "validation", "test")
SPLIT_SEED = 0  # carved splits (the embedded task's, yours) never change with the run seed


class UserDataError(OneLineError, ValueError):
    """Data that does not make a text task, named with where and what would."""


def data_fingerprint(path) -> str:
    """sha256 of the data file (or of a save_to_disk folder's files): a run's identity holds the content, so edited
    data is another run, and the same data elsewhere the same run."""
    path = Path(path).expanduser()
    return files_sha256(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])


def check_data_path(path) -> None:
    path = Path(path).expanduser()
    if not path.exists():
        raise UserDataError(f"data {path} does not exist; give a CSV, TSV or JSON Lines file, or a folder saved with "
                            f"datasets' save_to_disk")
    if path.is_file() and path.suffix.lower() not in FILE_FORMATS:
        raise UserDataError(f"data {path}: unknown format {path.suffix!r}; allowed: {', '.join(FILE_FORMATS)} files, "
                            f"or a save_to_disk folder")


def _read(path: Path) -> dict:
    """{split or "all": pandas DataFrame} of the data at `path`."""
    import pandas as pd

    if path.is_dir():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as err:
            raise UserDataError(f"data {path} is a folder but not one datasets' save_to_disk wrote ({err})") from err
        if isinstance(loaded, datasets.DatasetDict):
            unknown = sorted(set(loaded) - set(SPLIT_NAMES))
            if unknown or "train" not in loaded:
                raise UserDataError(f"data {path} holds splits {sorted(loaded)}; allowed: train (required), "
                                    f"validation, test")
            return {name: split.to_pandas() for name, split in loaded.items()}
        return {"all": loaded.to_pandas()}
    separator = FILE_FORMATS[path.suffix.lower()]
    try:
        if separator is None:
            frame = pd.read_json(path, lines=path.suffix.lower() == ".jsonl", dtype=False)
        else:
            frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, quoting=3 if separator == "\t"
                                else 0)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserDataError(f"data {path} cannot be read as {path.suffix[1:].upper()}: {str(err).splitlines()[0]}") \
            from err
    if frame.empty:
        raise UserDataError(f"data {path} has no rows")
    if "split" not in frame.columns:
        return {"all": frame}
    bad = sorted(set(frame["split"]) - set(SPLIT_NAMES))
    if bad:
        raise UserDataError(f"data {path}: column 'split' holds {bad[:3]}; allowed: {', '.join(SPLIT_NAMES)}")
    return {name: part.reset_index(drop=True) for name, part in frame.groupby("split")}


def _where(index: int, path: Path, split: str) -> str:
    """Where row `index` is: a whole file's line (a CSV/TSV header is line 1), else the row of its split."""
    if split != "all" or path.is_dir():
        return f"row {index} of split {split}" if split != "all" else f"row {index}"
    return f"line {index + (2 if path.suffix.lower() in ('.csv', '.tsv') else 1)}"


def carve(full, held: tuple[str, ...]) -> dict:
    """{name: split} of `full`: a tenth (at least one example) for each `held` name, in order, from a permutation
    seeded with SPLIT_SEED (the same whatever the run seed), and the rest as "train"."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(full))
    n = max(1, len(full) // 10)
    splits = {name: full.select(order[i * n:(i + 1) * n]) for i, name in enumerate(held)}
    return {**splits, "train": full.select(order[len(held) * n:])}


def load_user_text(path, text_column: str, text_pair_column: str | None, label_column: str) -> tuple:
    """(splits, num_labels, metrics, source, notes) of your file or folder: TextData's fields (tasks.py); see the
    module's docstring for splits and labels."""
    from datasets import Dataset

    path = Path(path).expanduser()
    check_data_path(path)
    parts = _read(path)
    needed = [c for c in (text_column, text_pair_column, label_column) if c]
    for name, frame in parts.items():
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise UserDataError(f"data {path}{'' if name == 'all' else f' (split {name})'} has no column(s) "
                                f"{missing}; it has {list(frame.columns)}: set text_column, text_pair_column and "
                                f"label_column to its columns")
        for column in needed:
            empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
            if empty.any():
                raise UserDataError(f"data {path}: column {column!r} is empty at "
                                    f"{_where(int(empty.idxmax()), path, name)}; every row needs a value")
    labels = np.concatenate([frame[label_column].astype(str).to_numpy() for frame in parts.values()])
    regression = _is_regression(labels)
    classes = None if regression else sorted(set(labels), key=_natural)
    if classes is not None and len(classes) < 2:
        raise UserDataError(f"data {path}: label column {label_column!r} holds one class ({classes[0]!r}); a "
                            f"classifier needs at least two (or give numbers with a fraction for regression)")

    def dataset(frame) -> Dataset:
        index = {c: i for i, c in enumerate(classes or ())}
        gold = frame[label_column].astype(str)
        return Dataset.from_dict({
            "text_a": frame[text_column].astype(str).tolist(),
            "text_b": frame[text_pair_column].astype(str).tolist() if text_pair_column else [None] * len(frame),
            "label": gold.astype(float).tolist() if regression else [index[v] for v in gold]})

    if "all" in parts:
        full = dataset(parts["all"])
        if len(full) - 2 * max(1, len(full) // 10) < 2:
            raise UserDataError(f"data {path} has {len(full)} rows: too few to carve train, validation and test "
                                f"(80/10/10) from; give more rows or a split column")
        splits = carve(full, ("validation", "test"))
        split_note = f"carved 80/10/10 (seed {SPLIT_SEED})"
    else:
        splits = {name: dataset(frame) for name, frame in parts.items()}
        split_note = "as given"
        if "validation" not in splits:  # the split scored every epoch (choosing the best) is never the test split
            splits.update(carve(splits["train"], ("validation",)))
            split_note += f", validation carved as 10% of train (seed {SPLIT_SEED})"
    metrics = ("pearson", "spearman") if regression else ("accuracy", "f1") if len(classes) == 2 else ("accuracy",)
    notes = {"split": split_note, "sizes": {k: len(v) for k, v in splits.items()},
             "files_sha256": data_fingerprint(path),
             "columns": {"text": text_column, "text_pair": text_pair_column, "label": label_column},
             **({"classes": classes} if classes else {"target": "regression"})}
    return splits, 1 if regression else len(classes), metrics, f"your data {path}", notes


def _is_regression(labels: np.ndarray) -> bool:
    try:
        values = labels.astype(float)
    except ValueError:
        return False
    return bool(np.any(values != np.round(values)))


def _natural(value: str):
    """Class order: numbers by value ("2" before "10"), then names alphabetically."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
