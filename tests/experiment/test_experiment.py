"""One experiment end to end on the real embedded model and data, its record, and its bad input."""

import json
import subprocess
import sys

import pytest
import torch

from veralab.experiment import RunConfig, RunFailed, run_experiment
from veralab.experiment.glue import GlueDataError
from veralab.experiment.models import ModelLoadError, load_text_model

TINY = dict(task="rotten_tomatoes", epochs=1, max_train_samples=48, max_eval_samples=48, max_length=32, batch_size=16,
            rank=16)


def run_config(**flat) -> RunConfig:
    return RunConfig.from_dict(flat)


RECORD_KEYS = {"status", "name", "config", "kind", "model", "data", "metric", "resolved", "device", "precision", "versions",
               "git_commit", "started", "finished", "epochs", "best", "final", "test", "params", "adapter_bytes",
               "time", "memory", "evaluated_on"}


@pytest.fixture(scope="module")
def tiny_record(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run_experiment(run_config(output_dir=str(out), **TINY)), out


@pytest.mark.slow
def test_record_holds_every_field(tiny_record):
    record, out = tiny_record
    assert RECORD_KEYS <= set(record) and record["status"] == "ok"
    head = 384 * 384 + 384 + 384 * 2 + 2  # BERT's pooler and the classifier: the paper's head
    assert record["params"] == {"adapter": 12 * (384 + 16), "head": head, "trainable": 12 * (384 + 16) + head,
                                "total": record["params"]["total"]}
    assert set(record["versions"]) >= {"python", "torch", "transformers", "timm", "veralab"}
    assert record["time"]["steps"] == 3 and record["time"]["samples_per_second"] > 0
    assert record["memory"]["peak_rss_mib"] > 100 and record["device"]["type"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert record["data"]["split_seed"] == 0 and record["data"]["sizes"]["test"] == 1280
    assert 0 <= record["test"]["accuracy"] <= 1 and len(record["epochs"]) == 1
    run_dir = out / record["name"]
    on_disk = json.loads((run_dir / "record.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert (run_dir / "adapter" / "adapter.safetensors").is_file()
    assert record["adapter_bytes"] == sum(f.stat().st_size for f in (run_dir / "adapter").iterdir())
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))


@pytest.mark.slow
def test_existing_record_is_not_redone_unless_forced(tiny_record):
    record, out = tiny_record
    path = out / record["name"] / "record.json"
    before = path.stat().st_mtime_ns
    assert run_experiment(run_config(output_dir=str(out), **TINY))["started"] == record["started"]
    assert path.stat().st_mtime_ns == before
    again = run_experiment(run_config(output_dir=str(out), force=True, **TINY))
    assert path.stat().st_mtime_ns != before and again["status"] == "ok"


@pytest.mark.slow
def test_diverging_loss_stops_and_the_record_says_why(tmp_path):
    config = run_config(output_dir=str(tmp_path), lr=1e25, head_lr=1e25, max_grad_norm=0.0, **{**TINY, "epochs": 2})
    with pytest.raises(RunFailed, match=r"loss became (nan|inf).*try a lower learning rate"):
        run_experiment(config)
    record = json.loads((tmp_path / config.name() / "record.json").read_text())
    assert record["status"] == "failed" and "loss became" in record["error"]
    assert not (tmp_path / config.name() / "adapter").exists()


def test_local_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match=r"is a local path but not a Hugging Face model folder"):
        load_text_model(str(tmp_path), num_labels=2)


def test_unknown_hub_model_offline_says_so():
    with pytest.raises(ModelLoadError, match=r"could not load text model 'no-such-org/no-such-model'.*offline"):
        load_text_model("no-such-org/no-such-model", num_labels=2)


def test_glue_dir_missing_the_task(tmp_path):
    with pytest.raises(GlueDataError, match=r"has no MRPC/train.tsv for task 'mrpc'"):
        run_experiment(run_config(task="mrpc", glue_dir=str(tmp_path), output_dir=str(tmp_path)))
    assert not list(tmp_path.glob("*/record.json"))


@pytest.mark.parametrize("kwargs,message", [
    ({"task": "imdb"}, r"unknown task 'imdb'"),
    ({"epochs": 0}, r"epochs must be a positive integer, got 0"),
    ({"task": "mnist_5k", "model": "minilm"}, r"model 'minilm' cannot run the image task 'mnist_5k'"),
    ({"device": "tpu"}, r"unknown device 'tpu'; allowed: auto, cpu, cuda, cuda:N"),
])
def test_bad_run_config(kwargs, message):
    from veralab.core.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match=message):
        run_config(**kwargs)


@pytest.mark.slow
def test_glue_run_on_real_rte_tsvs(glue_dir, tmp_path):
    record = run_experiment(run_config(task="rte", glue_dir=str(glue_dir), output_dir=str(tmp_path), epochs=1,
                                      max_train_samples=32, max_eval_samples=32, max_length=64, batch_size=16, rank=8))
    assert record["evaluated_on"] == "validation" and record["test"] is None
    assert record["data"]["sizes"] == {"train": 2490, "validation": 277}
    assert set(record["data"]["majority_class"]["accuracy"]) == {"validation"}  # the no-skill level, for figures


@pytest.mark.slow
def test_stsb_is_a_regression_with_pearson(glue_dir, tmp_path):
    record = run_experiment(run_config(task="stsb", glue_dir=str(glue_dir), output_dir=str(tmp_path), epochs=1,
                                      max_train_samples=32, max_eval_samples=64, max_length=64, batch_size=16, rank=8))
    assert record["metric"] == "pearson" and set(record["final"]) == {"pearson", "spearman"}
    assert record["params"]["trainable"] == 12 * (384 + 8) + 384 * 384 + 384 + 384 + 1  # pooler, one regression output
    assert "majority_class" not in record["data"]  # no classes


@pytest.mark.slow
def test_cli_run_writes_a_record_and_rejects_bad_values(tmp_path):
    args = [sys.executable, "-m", "veralab", "run", "--task", "rotten_tomatoes", "--method", "lora", "--rank", "2",
            "--epochs", "1", "--max-train-samples", "16", "--max-eval-samples", "16", "--max-length", "24",
            "--output-dir", str(tmp_path), "--no-save-adapter", "--target-modules", "query,value"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["status"] == "ok" and summary["params"]["trainable"] == 12 * 2 * (384 + 384) + 148_610
    bad = subprocess.run(args[:4] + ["--method", "dora"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown method 'dora'; allowed: vera, lora, head, full" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_labels_that_do_not_fit_the_head_are_refused():
    import torch

    from veralab.experiment.run import check_labels_fit
    from veralab.experiment.tasks import TaskError

    head = torch.nn.Linear(4, 3)
    batches = [(torch.randn(2, 4), torch.tensor([0, 5]))]
    with pytest.raises(TaskError, match=r"labels range over \[0, 5\] but the head has 3 classes"):
        check_labels_fit(head, lambda m, x: m(x), batches, 3)
    with pytest.raises(TaskError, match=r"the model's head has 3 outputs but the task has 2 labels"):
        check_labels_fit(head, lambda m, x: m(x), batches, 2)


def test_timm_vit_from_a_local_checkpoint_drops_only_the_head(tmp_path):
    import torch

    from veralab.experiment.models import load_vision_model

    source, _ = load_vision_model("vit_tiny_patch16_224", num_classes=1000, pretrained=False)
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    model, spec = load_vision_model("vit_tiny_patch16_224", num_classes=7, checkpoint=str(tmp_path / "vit.pth"))
    assert spec["size"] == 224 and spec["channels"] == 3 and model.head.out_features == 7
    assert torch.equal(model.blocks[3].attn.qkv.weight, source.blocks[3].attn.qkv.weight)
    with pytest.raises(ModelLoadError, match=r"could not load timm model 'vit_nonexistent_1'"):
        load_vision_model("vit_nonexistent_1", num_classes=2, pretrained=False)


def test_hf_vit_from_a_local_folder_returns_logits_and_adapts(tmp_path):
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    import veralab as vl
    from veralab.experiment.models import load_vision_model

    ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, image_size=32, patch_size=8, num_labels=10)
                              ).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    model, spec = load_vision_model(f"hf:{tmp_path}", num_classes=4)
    assert spec["size"] == 32 and spec["channels"] == 3
    vl.add_adapters(model, vl.AdapterConfig(rank=4))
    assert model.veralab_config.head_modules == ("model.classifier",)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
