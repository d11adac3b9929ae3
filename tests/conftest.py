import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(2)

SHARED_GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


class TinyEncoder(nn.Module):
    """Two attention-like blocks with query/key/value of different widths, and a classifier head."""

    def __init__(self, width=16, hidden=24, classes=3):
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(2):
            block = nn.Module()
            block.query = nn.Linear(width, width)
            block.key = nn.Linear(width, width)
            block.value = nn.Linear(width, hidden if i == 1 else width)
            block.proj = nn.Linear(hidden if i == 1 else width, width)
            self.blocks.append(block)
        self.classifier = nn.Linear(width, classes)

    def forward(self, x):
        for b in self.blocks:
            x = x + torch.tanh(b.query(x)) * torch.sigmoid(b.key(x)) + b.proj(torch.relu(b.value(x)))
        return self.classifier(x.mean(1))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyEncoder()


@pytest.fixture(scope="session")
def minilm_path():
    from veralab.experiment.resources import minilm_dir

    return minilm_dir()


@pytest.fixture
def minilm(minilm_path):
    from veralab.experiment.models import load_text_model

    return load_text_model(str(minilm_path), num_labels=2)[0].eval()


@pytest.fixture(scope="session")
def glue_dir():
    if not SHARED_GLUE.is_dir():
        pytest.skip("real GLUE files are not beside the repo (../shared/data/glue)")
    return SHARED_GLUE


def assert_close_to_rounding(actual: torch.Tensor, expected: torch.Tensor, ulps: int = 256) -> None:
    """Equal up to floating-point round-off: |actual - expected| <= ulps · eps(dtype) · max|expected|.

    Round-off differs by CPU model (vector width, FMA, summation order), so a fixed atol tuned on one machine fails on
    another; this bound follows the dtype and the values' magnitude instead. 256 ulps leaves room for a few layers
    of accumulated error, while a real mistake (a delta applied twice, a wrong slice) is orders of magnitude larger.
    """
    eps = torch.finfo(expected.dtype).eps
    scale = expected.detach().abs().max().item() or 1.0
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=ulps * eps * scale)
