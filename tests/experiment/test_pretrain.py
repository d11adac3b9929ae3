"""The embedded tiny ViT: the committed checkpoint and card, and the script that made them."""

import json
import subprocess
import sys

import pytest
import torch

from veralab.experiment.models import load_vision_model
from veralab.experiment.resources import MissingResourceError, fashion_mnist_dir, tiny_vit_checkpoint


def test_committed_checkpoint_has_a_card_and_loads():
    path = tiny_vit_checkpoint()
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["test_accuracy"] >= 0.8 and card["data"].startswith("Fashion-MNIST")
    assert path.stat().st_size < 5 * 2**20 and "python -m veralab.experiment.pretrain" in card["command"]
    model, spec = load_vision_model("tiny_vit", num_classes=10)
    assert model(torch.zeros(2, spec["channels"], spec["size"], spec["size"])).shape == (2, 10)
    # the pretrained blocks really are loaded (only the head is new)
    from safetensors.torch import load_file

    saved = load_file(str(path))
    assert torch.equal(model.blocks[0].attn.qkv.weight, saved["blocks.0.attn.qkv.weight"])


@pytest.mark.slow
def test_pretrain_script_writes_a_loadable_checkpoint(tmp_path):
    try:
        fashion_mnist_dir()
    except MissingResourceError:
        pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed")
    out = tmp_path / "vit.safetensors"
    subprocess.run([sys.executable, "-m", "veralab.experiment.pretrain", "--epochs", "1", "--limit", "512", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["train_samples"] == 512 and 0 <= card["test_accuracy"] <= 1
    model, _ = load_vision_model("tiny_vit", num_classes=3, checkpoint=str(out))
    assert model.head.out_features == 3
