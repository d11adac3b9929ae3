"""The protocol's building blocks: the paper's head, a validation slice held out of training, the constant answer's
loss, and how old records read."""

import numpy as np
import pytest
import torch

import veralab as vl
from veralab.core.checkpoint import count_parameters
from veralab.core.config import ConfigError
from veralab.experiment import RunConfig, run_experiment
from veralab.experiment.metrics import constant_loss
from veralab.experiment.models import tiny_vit
from veralab.experiment.record import record_config
from veralab.experiment.tasks import TaskError, hold_out, load_text_task


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["head", "vera", "lora"])
def test_a_berts_head_is_its_pooler_and_classifier_counted_as_head(method):
    from veralab.experiment.models import load_text_model

    counts = {}
    for scope in ("paper", "classifier"):
        model, _ = load_text_model("minilm", 2)
        vl.add_adapters(model, vl.AdapterConfig(method=method, rank=8, head_scope=scope))
        counts[scope] = count_parameters(model)
        head = {n for n in _trainable(model) if not (".vera_" in n or ".lora_" in n or "delta" in n)}
        expected = {"classifier.weight", "classifier.bias"} | (
            {"bert.pooler.dense.weight", "bert.pooler.dense.bias"} if scope == "paper" else set())
        assert head == expected
    # MiniLM is 384 wide: the pooler's dense layer 384·384 + 384, the classifier 384·2 + 2
    assert counts["paper"]["head"] == 384 * 384 + 384 + 384 * 2 + 2
    assert counts["classifier"]["head"] == 384 * 2 + 2
    assert counts["paper"]["adapter"] == counts["classifier"]["adapter"]  # the pooler is never counted as adapter


def test_roberta_and_distilbert_heads_hold_their_dense_layers_and_vits_their_classifier():
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    roberta = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=3))
    vl.add_adapters(roberta, vl.AdapterConfig(rank=4))
    assert roberta.veralab_config.head_modules == ("classifier",)  # RobertaClassificationHead: dense + out_proj
    assert {n for n in _trainable(roberta) if n.startswith("classifier")} == {
        "classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"}

    distil = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=2))
    vl.add_adapters(distil, vl.AdapterConfig(method="head"))
    assert set(distil.veralab_config.head_modules) == {"classifier", "pre_classifier"}

    vit = tiny_vit(num_classes=10)
    vl.add_adapters(vit, vl.AdapterConfig(rank=4))
    assert vit.veralab_config.head_modules == ("head",)
    assert count_parameters(vit)["head"] == 96 * 10 + 10


def test_an_unknown_head_scope_is_refused_with_the_allowed_ones():
    with pytest.raises(ConfigError, match="head_scope 'pooler'.*paper, classifier"):
        vl.AdapterConfig(head_scope="pooler")


def test_the_held_out_slice_is_disjoint_from_training_seeded_and_replaces_the_scored_split():
    data = load_text_task("rotten_tomatoes")
    held = hold_out(data, 300, seed=1)
    assert set(held.splits) == {"train", "validation"}  # the validation and test splits are not scored
    train, validation = held.splits["train"][:], held.splits["validation"][:]
    assert len(validation["text_a"]) == 300 and len(train["text_a"]) == len(data.splits["train"]) - 300
    original = data.splits["train"][:]
    pairs = set(zip(original["text_a"], original["label"]))
    assert set(zip(validation["text_a"], validation["label"])) <= pairs  # carved out of the training split
    again = hold_out(data, 300, seed=1).splits["validation"][:]
    other = hold_out(data, 300, seed=2).splits["validation"][:]
    assert again["text_a"] == validation["text_a"] and other["text_a"] != validation["text_a"]
    assert "not scored" in held.notes["evaluated_on"]
    with pytest.raises(TaskError, match="leaves nothing to train on"):
        hold_out(data, len(data.splits["train"]), seed=0)


def test_a_run_with_a_held_out_slice_scores_it_and_records_so(tmp_path):
    record = run_experiment(RunConfig(task="rotten_tomatoes", adapter=vl.AdapterConfig(method="head"),
                                         max_train_samples=64, validation_holdout=128, epochs=1, max_length=32,
                                         precision="fp32", output_dir=str(tmp_path), save_adapter=False))
    assert record["data"]["eval_used"] == {"validation": 128} and record["test"] is None
    assert "held out" in record["data"]["evaluated_on"]
    assert 0.0 < record["data"]["constant_loss"] <= np.log(2)
    with pytest.raises(ConfigError, match="image task"):
        RunConfig(task="digits", validation_holdout=10)


def test_the_constant_answers_loss_is_the_label_entropy_or_variance():
    assert constant_loss([0, 0, 1, 1], 2) == pytest.approx(np.log(2))
    assert constant_loss([1, 1, 1, 1], 2) == 0.0
    assert constant_loss([0.0, 2.0, 4.0], 1) == pytest.approx(np.var([0.0, 2.0, 4.0]))
    # the cross-entropy of always answering the label frequencies is that entropy
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    logits = torch.log(torch.bincount(labels).float() / len(labels)).expand(len(labels), 3)
    assert constant_loss(labels.tolist(), 3) == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(),
                                                                abs=1e-6)


def test_records_written_before_head_scope_read_as_classifier_only_runs():
    old = {"config": {**RunConfig().to_dict()}}
    del old["config"]["head_scope"]
    assert record_config(old)["head_scope"] == "classifier"
    assert RunConfig.from_dict(record_config(old)).identity() != RunConfig().identity()
