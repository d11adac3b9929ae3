"""Pretrain the embedded image backbone: a tiny timm ViT on Fashion-MNIST (Debian package dataset-fashion-mnist).

No pretrained ViT weights exist offline, so the VeRA image study adapts this one. It writes the checkpoint
(safetensors) and a card (JSON) saying how it was made and how accurate it is:

    python -m veralab.experiment.pretrain --epochs 6 --out data/tiny_vit_fashion_mnist.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.io import atomic_path, write_text_atomic
from .images import fashion_mnist, to_model_input
from .models import TINY_VIT_ARCH, tiny_vit
from .resources import REPO_DATA
from .train import progress


def evaluate(model, x, y, batch_size=1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            correct += (model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum().item()
    return correct / len(y)


def pretrain(epochs: int, batch_size: int, lr: float, seed: int, limit: int | None, out: Path) -> dict:
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = {"size": TINY_VIT_ARCH["img_size"], "channels": 1, "mean": 0.5, "std": 0.5}
    train, test = fashion_mnist("train"), fashion_mnist("test")
    if limit:
        train, test = type(train)(train.images[:limit], train.labels[:limit]), type(test)(test.images[:limit],
                                                                                          test.labels[:limit])
    x, y = to_model_input(train.images, spec).to(device), train.labels.to(device)
    xt, yt = to_model_input(test.images, spec).to(device), test.labels.to(device)
    model = tiny_vit(num_classes=10).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * math.ceil(len(y) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    start = time.time()
    bar = progress(total=steps, desc="pretrain tiny ViT")
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), device=device)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            batch = x[idx]
            shift = torch.randint(-2, 3, (2,)).tolist()  # light augmentation: a random shift of up to 2 pixels
            batch = torch.roll(batch, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(batch), y[idx], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    accuracy = evaluate(model, xt, yt)
    from safetensors.torch import save_file

    with atomic_path(out) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    card = {
        "model": "timm VisionTransformer", "arch": TINY_VIT_ARCH,
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": "Fashion-MNIST (Debian package dataset-fashion-mnist), 60k train / 10k test, 28x28 grayscale",
        "train_samples": len(y), "test_samples": len(yt), "test_accuracy": round(accuracy, 4),
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "AdamW (wd 0.05), one-cycle",
        "augmentation": "random shift up to 2 px", "label_smoothing": 0.1, "seed": seed, "device": device,
        "seconds": round(time.time() - start, 1), "torch": torch.__version__, "python": platform.python_version(),
        "command": f"python -m veralab.experiment.pretrain --epochs {epochs} --batch-size {batch_size} --lr {lr} "
                   f"--seed {seed}",
    }
    write_text_atomic(out.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    return card


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N train/test images (quick checks)")
    parser.add_argument("--out", type=Path, default=REPO_DATA / "tiny_vit_fashion_mnist.safetensors")
    args = parser.parse_args(argv)
    card = pretrain(args.epochs, args.batch_size, args.lr, args.seed, args.limit, args.out)
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
