"""A run trained with your own transformers Trainer lands in veralab's tables through RecordCallback."""

import numpy as np
import pytest

import veralab as vl
from veralab.experiment.models import load_text_model
from veralab.experiment.tasks import rotten_tomatoes
from veralab.experiment.trainer_record import RecordCallback
from veralab.studies.collect import collect_records


@pytest.mark.parametrize("adapt", ["veralab", "peft"])
def test_a_trainer_run_writes_a_record_the_tables_read(tmp_path, minilm_path, adapt):
    import peft
    from transformers import Trainer, TrainingArguments

    model, tokenizer = load_text_model(str(minilm_path), num_labels=2)
    config = peft.VeraConfig(r=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    model = vl.add_adapters(model, config) if adapt == "veralab" else peft.get_peft_model(model, config)
    splits = rotten_tomatoes().splits

    def encode(split, n):
        return splits[split].select(range(n)).map(
            lambda b: tokenizer(b["text_a"], truncation=True, max_length=32, padding="max_length"), batched=True,
            remove_columns=["text_a", "text_b"]).rename_column("label", "labels")

    def accuracy(prediction):
        return {"accuracy": float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))}

    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), num_train_epochs=2, per_device_train_batch_size=8,
                             learning_rate=1e-2, eval_strategy="epoch", logging_strategy="epoch", report_to=[],
                             save_strategy="no", use_cpu=True, seed=3)
    callback = RecordCallback(task="rotten_tomatoes", output_dir=str(tmp_path / "runs"))
    Trainer(model=model, args=args, train_dataset=encode("train", 32), eval_dataset=encode("validation", 16),
            compute_metrics=accuracy, callbacks=[callback]).train()
    frame = collect_records(tmp_path / "runs")
    assert len(frame) == 1 and frame["status"].iloc[0] == "ok"
    row = frame.iloc[0]
    assert (row["variant"], row["run_seed"], row["epochs"], row["lr"], row["metric"]) == \
        ("VeRA r=8", 3, 2, 1e-2, "accuracy")
    assert row["score"] == callback.evaluations[-1]["accuracy"] and row["eval_size"] == 16 and row["train_size"] == 32
    assert row["adapter_params"] == 6 * 2 * (384 + 8) and row["head_params"] == 384 * 2 + 2
