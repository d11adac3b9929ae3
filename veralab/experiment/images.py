"""Image classification data: the paper's few-shot protocol, on hub datasets, the embedded MNIST-5k and digits, or
your own images in torchvision's ImageFolder layout (task "custom_images", data=FOLDER).

Protocol (paper, image classification): a fixed number of training images per class, drawn with a seed; evaluation
on the test split. Images are resized to the backbone's input size and channel count, then normalized.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.config import OneLineError
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
IMAGE_FOLDER_TASK = "custom_images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FOLDER_SIZE = 224  # images of your folder that differ in size are resized to this square (the paper's ViT input)
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


class ImageFolderError(OneLineError, ValueError):
    """An image folder that does not make a task, named with where and what would."""


def _class_folders(root: Path) -> dict[str, list[Path]]:
    classes = {d.name: sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
               for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise ImageFolderError(f"data {root}: class folder(s) {empty} hold no image ({', '.join(IMAGE_SUFFIXES)})")
    if len(classes) < 2:
        raise ImageFolderError(f"data {root} holds {len(classes)} class folder(s) {sorted(classes)}; an image task "
                               f"needs at least 2: FOLDER/<class>/<image> (or FOLDER/train/<class>/... and "
                               f"FOLDER/test/<class>/...), as torchvision's ImageFolder")
    return classes


def _read_images(files: list[Path]) -> list[np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    arrays = []
    for path in files:
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("L") if image.mode in ("1", "L", "I;16") else
                                         image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as err:
            raise ImageFolderError(f"data: {path} is not a readable image ({err})") from None
    return arrays


def image_folder(root) -> tuple[ImageSplit, ImageSplit, list[str], dict]:
    """(train, test, class names, notes) of an ImageFolder tree: FOLDER/train/<class>/ and FOLDER/test/<class>/ as
    given (a validation/ folder is not used: images are scored on test), else FOLDER/<class>/ with a fixed, seeded
    20% held out as test. Labels index the sorted class names; grayscale stays one channel; sizes that differ are
    resized to FOLDER_SIZE."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageFolderError(f"data {root} is not a folder; task {IMAGE_FOLDER_TASK!r} reads an ImageFolder tree: "
                               f"FOLDER/<class>/<image>, or FOLDER/train/<class>/... and FOLDER/test/<class>/...")
    given = (root / "train").is_dir() and (root / "test").is_dir()
    parts = {split: _class_folders(root / split) for split in ("train", "test")} if given else \
        {"all": _class_folders(root)}
    classes = sorted(next(iter(parts.values())))
    if given and sorted(parts["test"]) != classes:
        raise ImageFolderError(f"data {root}: train/ has classes {classes}, test/ {sorted(parts['test'])}; both need "
                               f"the same class folders")
    files = {split: [(f, classes.index(c)) for c, fs in found.items() for f in fs] for split, found in parts.items()}
    arrays = {split: _read_images([f for f, _ in pairs]) for split, pairs in files.items()}
    every = [a for split in arrays.values() for a in split]
    channels = 1 if all(a.ndim == 2 for a in every) else 3
    same_size = len({a.shape[:2] for a in every}) == 1

    def tensor(images: list[np.ndarray]) -> torch.Tensor:
        out = []
        for a in images:
            x = torch.from_numpy(a.copy()).reshape(a.shape[0], a.shape[1], -1).permute(2, 0, 1)
            x = x.expand(3, -1, -1) if channels == 3 and x.shape[0] == 1 else x
            if not same_size:
                x = F.interpolate(x[None].float(), size=(FOLDER_SIZE, FOLDER_SIZE), mode="bilinear",
                                  antialias=True, align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
            out.append(x)
        return torch.stack(out)

    splits = {split: ImageSplit(tensor(arrays[split]), torch.tensor([y for _, y in files[split]]))
              for split in files}
    if not given:
        whole = splits["all"]
        order = torch.from_numpy(np.random.default_rng(0).permutation(len(whole.labels)))
        n_test = max(1, int(len(order) * EMBEDDED_TEST_FRACTION))
        splits = {"test": ImageSplit(whole.images[order[:n_test]], whole.labels[order[:n_test]]),
                  "train": ImageSplit(whole.images[order[n_test:]], whole.labels[order[n_test:]])}
    notes = {"classes": classes, "test_split": "FOLDER/test/" if given else "a fixed 20% held out (seed 0)",
             "resized_to": None if same_size else FOLDER_SIZE}
    return splits["train"], splits["test"], classes, notes


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
