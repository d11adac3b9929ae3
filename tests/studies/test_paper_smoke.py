"""The `paper` profile on the CPU, before anyone spends a GPU allocation on it: RoBERTa-base and -large and ViT-B and
-L built from their published configurations with random weights (none are downloaded), each study's first point and
every method of the main table and the image study adapted as its settings say, the adapter counted as the paper
counts it, and one training step taken on a tiny batch. A shape, count, target or setting error surfaces here."""

import copy
import functools

import pytest
import torch

from veralab.core import add_adapters, count_parameters
from veralab.experiment import RunConfig
from veralab.experiment.train import loss_fn, parameter_groups
from veralab.studies.grids import expand, load_grid
from veralab.studies.profiles import PROFILES

pytestmark = pytest.mark.slow

# RoBERTa's published configurations (roberta-base / roberta-large config.json): width, layers, heads, FFN width
ROBERTA = {"roberta-base": (768, 12, 12, 3072), "roberta-large": (1024, 24, 16, 4096)}
# The paper's adapter counts (Table 2; the image table), query and value of every layer adapted
PAPER_COUNTS = {("roberta-base", "vera", 1024): 43_008, ("roberta-base", "lora", 8): 294_912,
                ("roberta-large", "vera", 256): 61_440, ("roberta-large", "lora", 8): 786_432,
                ("vit_base_patch16_224.augreg_in21k", "vera", 256): 24_576,
                ("vit_base_patch16_224.augreg_in21k", "lora", 8): 294_912,
                ("vit_large_patch16_224.augreg_in21k", "vera", 256): 61_440,
                ("vit_large_patch16_224.augreg_in21k", "lora", 8): 786_432}


@functools.lru_cache(maxsize=2)
def _random_model(name: str, num_labels: int):
    torch.manual_seed(0)
    if name in ROBERTA:
        from transformers import AutoModelForSequenceClassification, RobertaConfig

        width, layers, heads, ffn = ROBERTA[name]
        config = RobertaConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=ffn, max_position_embeddings=514, type_vocab_size=1,
                               vocab_size=50265, num_labels=num_labels,
                               problem_type="regression" if num_labels == 1 else None)
        return AutoModelForSequenceClassification.from_config(config)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_labels)


def _points():
    """Each study's first point, and every method of the main table (both RoBERTa sizes) and of the image study."""
    chosen = {}
    for study in PROFILES["paper"]:
        points = expand(study, load_grid(study, "paper"), "/tmp/unused-paper-smoke")
        keep = points[:1] if study not in ("main_table", "vit") else \
            list({(p.params["model"], p.params["method"]): p for p in points if p.params["run_seed"] == 0}.values())
        for point in keep:
            chosen.setdefault((study, point.params["model"], point.params["method"], point.params["task"]), point)
    return list(chosen.values())


@pytest.mark.parametrize("point", _points(), ids=lambda p: f"{p.study}-{p.params['model']}-{p.params['method']}")
def test_one_step_of_the_paper_profile_on_random_weights(point):
    config = RunConfig.from_dict(point.params)
    num_labels = {"stsb": 1, "cifar100": 100, "food101": 101, "flowers102": 102, "resisc45": 45}.get(config.task, 2)
    model = copy.deepcopy(_random_model(config.model_name, num_labels))
    add_adapters(model, config.adapter)
    counts = count_parameters(model)
    key = (config.model_name, config.adapter.method, config.adapter.rank)
    if key in PAPER_COUNTS:
        assert counts["adapter"] == PAPER_COUNTS[key], (key, counts)
    if config.adapter.method == "head":
        assert counts["adapter"] == 0 and counts["head"] > 0
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW(parameter_groups(model, model.veralab_config.head_modules, config.adapter_lr,
                                                   config.task_head_lr, config.weight_decay))
    if config.kind == "text":
        ids = torch.randint(3, 50_000, (2, 16))
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    else:
        logits = model(torch.randn(2, 3, 224, 224))
    labels = torch.tensor([0.5, 2.5]) if num_labels == 1 else torch.tensor([0, 1])
    loss = loss_fn(logits, labels)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)
    moved = {n for n, p in model.named_parameters() if not p.requires_grad and not torch.equal(p, frozen[n])}
    assert not moved, f"frozen weights changed: {sorted(moved)[:3]}"
