"""Image classification data: the paper's few-shot protocol, on hub datasets or the embedded MNIST-5k and digits.

Protocol (paper, image classification): a fixed number of training images per class, drawn with a seed; evaluation
on the test split. Images are resized to the backbone's input size and channel count, then normalized.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .resources import fashion_mnist_dir, mnist_5k_file

HUB_IMAGE_DATASETS = {  # task name -> (hub id, image column, label column, test split)
    "cifar100": ("uoft-cs/cifar100", "img", "fine_label", "test"),
    "food101": ("ethz/food101", "image", "label", "validation"),
    "flowers102": ("nelorth/oxford-flowers", "image", "label", "test"),
    "resisc45": ("timm/resisc45", "image", "label", "test"),
}
TEST_SPLITS = {  # what each task's test split is, for records and figures: "official" only where it is
    "cifar100": "official test split (10,000 images)",
    "food101": "official test split (25,250 images; 'validation' on the hub)",
    "flowers102": "re-split: nelorth/oxford-flowers' test split, not the official 1,020 / 1,020 / 6,149 split",
    "resisc45": "timm/resisc45's test split (RESISC45 itself defines no split)",
    "mnist_5k": "fixed 20% held out (seed 0); MNIST-5k has no test split",
    "digits": "fixed 20% held out (seed 0); sklearn digits has no test split",
    "fashion_mnist": "official test split (10,000 images)",
}
EMBEDDED_IMAGE_DATASETS = ("mnist_5k", "digits", "fashion_mnist")
EMBEDDED_TEST_FRACTION = 0.2  # MNIST-5k and digits ship no test split: a fixed, seeded 20% is held out


@dataclass
class ImageSplit:
    images: torch.Tensor  # uint8, N × C × H × W
    labels: torch.Tensor  # int64, N


def read_idx(path) -> np.ndarray:
    """An MNIST-format (idx) file, gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(split: str) -> ImageSplit:
    prefix = "train" if split == "train" else "t10k"
    root = fashion_mnist_dir()
    images = read_idx(next(root.glob(f"{prefix}-images-idx3-ubyte*")))
    labels = read_idx(next(root.glob(f"{prefix}-labels-idx1-ubyte*")))
    return ImageSplit(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def _embedded_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "mnist_5k":
        table = np.loadtxt(mnist_5k_file(), delimiter=",", dtype=np.float32)
        return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images * (255 / 16)).round().astype(np.uint8), digits.target.astype(np.int64)


def embedded_split(name: str, split: str) -> ImageSplit:
    """MNIST-5k or digits with a fixed held-out test split (seed 0), the same for every run."""
    if name == "fashion_mnist":
        return fashion_mnist("train" if split == "train" else "test")
    images, labels = _embedded_arrays(name)
    order = np.random.default_rng(0).permutation(len(labels))
    n_test = int(len(labels) * EMBEDDED_TEST_FRACTION)
    chosen = order[:n_test] if split == "test" else order[n_test:]
    return ImageSplit(torch.from_numpy(images[chosen]).unsqueeze(1), torch.from_numpy(labels[chosen]))


def hub_split(name: str, split: str) -> ImageSplit:
    import datasets

    hub_id, image_col, label_col, test_split = HUB_IMAGE_DATASETS[name]
    ds = datasets.load_dataset(hub_id, split="train" if split == "train" else test_split)
    images = [torch.from_numpy(np.asarray(im.convert("RGB").resize((224, 224)))).permute(2, 0, 1)
              for im in ds[image_col]]
    return ImageSplit(torch.stack(images), torch.tensor(ds[label_col], dtype=torch.int64))


def load_image_split(name: str, split: str) -> ImageSplit:
    if name in EMBEDDED_IMAGE_DATASETS:
        return embedded_split(name, split)
    if name in HUB_IMAGE_DATASETS:
        return hub_split(name, split)
    allowed = ", ".join(EMBEDDED_IMAGE_DATASETS + tuple(HUB_IMAGE_DATASETS))
    raise ValueError(f"unknown image task {name!r}; allowed: {allowed}")


def few_shot_indices(labels: torch.Tensor, shots: int, seed: int) -> torch.Tensor:
    """`shots` indices per class, drawn with `seed` (the paper uses 10 per class)."""
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        if len(members) < shots:
            raise ValueError(f"class {c} has {len(members)} training images, fewer than shots_per_class={shots}")
        picked.append(members[torch.randperm(len(members), generator=g)[:shots]])
    return torch.cat(picked).sort().values


def to_model_input(images: torch.Tensor, spec: dict) -> torch.Tensor:
    """uint8 N×C×H×W → float N×C'×S×S normalized as the backbone was trained."""
    x = images.float() / 255.0
    channels = spec["channels"]
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True).expand(-1, channels, -1, -1) if channels in (1, 3) else x
    if x.shape[-1] != spec["size"] or x.shape[-2] != spec["size"]:
        x = F.interpolate(x, size=(spec["size"], spec["size"]), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.as_tensor(spec["mean"], dtype=x.dtype).reshape(-1, 1, 1)  # a scalar or one value per channel
    std = torch.as_tensor(spec["std"], dtype=x.dtype).reshape(-1, 1, 1)
    return ((x - mean) / std).contiguous()
