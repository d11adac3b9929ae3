"""Your own text data (task="custom"): files and folders made here, their splits and labels, their errors, a run."""

import json

import pytest

from veralab.core.config import ConfigError
from veralab.experiment import RunConfig, run_experiment
from veralab.experiment.tasks import load_text_task
from veralab.experiment.userdata import UserDataError

GOOD = ["a fine and moving film", "sharp, funny and warm", "a delight from start to end", "clever and kind"]
BAD = ["dull and far too long", "a tired mess", "nothing works here", "flat, loud and empty"]


def _csv(path, rows, header="review,verdict"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _reviews(n=40):
    return [f"\"{(GOOD if i % 2 else BAD)[i % 4]} {i}\",{'fresh' if i % 2 else 'rotten'}" for i in range(n)]


def test_a_csv_of_named_classes_is_carved_into_splits_with_sorted_class_indices(tmp_path):
    data = load_text_task("custom", data=str(_csv(tmp_path / "r.csv", _reviews())), columns=("review", None, "verdict"))
    assert data.num_labels == 2 and data.notes["classes"] == ["fresh", "rotten"]
    assert {k: len(v) for k, v in data.splits.items()} == {"validation": 4, "test": 4, "train": 32}
    assert data.metrics == ("accuracy", "f1") and data.notes["files_sha256"].startswith("sha256:")
    train = data.splits["train"][:]
    assert all((label == 0) == any(text.startswith(g) for g in GOOD) for text, label in zip(train["text_a"],
                                                                                           train["label"]))
    assert set(train["label"]) == {0, 1} and train["text_b"][0] is None


def test_pairs_regression_and_given_splits_from_jsonl_tsv_and_a_saved_dataset(tmp_path):
    rows = [{"s1": f"a man plays {i}", "s2": f"someone plays {i}", "score": i / 10 + 0.05, "split": split}
            for i, split in enumerate(["train"] * 12 + ["validation"] * 3 + ["test"] * 3)]
    jsonl = tmp_path / "sts.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_text_task("custom", data=str(jsonl), columns=("s1", "s2", "score"))
    assert data.num_labels == 1 and data.metrics == ("pearson", "spearman")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 12, "validation": 3, "test": 3}
    assert data.splits["train"][0]["text_b"] == "someone plays 0"
    tsv = tmp_path / "t.tsv"
    tsv.write_text("text\tlabel\n" + "\n".join(f"say \"{i}\"\t{i % 3}" for i in range(30)))
    assert load_text_task("custom", data=str(tsv)).notes["classes"] == ["0", "1", "2"]  # quotes kept, as text

    import datasets

    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(20)],
                                                               "label": [i % 2 for i in range(20)]}),
                          "test": datasets.Dataset.from_dict({"text": ["x", "y"], "label": [0, 1]})}
                         ).save_to_disk(str(folder))
    data = load_text_task("custom", data=str(folder))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 18, "test": 2, "validation": 2}
    assert "validation carved" in data.notes["split"]  # never the test split chooses the best epoch


@pytest.mark.parametrize("rows, header, columns, message", [
    (["good film,fresh"] * 30, "review,verdict", ("text", None, "label"),
     r"has no column\(s\) \['text', 'label'\]; it has \['review', 'verdict'\]"),
    (["good film,fresh", ",rotten"] * 15, "review,verdict", ("review", None, "verdict"),
     r"column 'review' is empty at line 3; every row needs a value"),
    (["good film,fresh"] * 30, "review,verdict", ("review", None, "verdict"), r"holds one class \('fresh'\)"),
    (["good film,fresh", "bad,rotten"], "review,verdict", ("review", None, "verdict"), r"has 2 rows: too few"),
])
def test_data_that_makes_no_task_is_named_with_file_column_and_line(tmp_path, rows, header, columns, message):
    path = _csv(tmp_path / "d.csv", rows, header)
    with pytest.raises(UserDataError, match=message):
        load_text_task("custom", data=str(path), columns=columns)


def test_custom_needs_data_and_data_needs_custom_and_a_known_format(tmp_path):
    with pytest.raises(ConfigError, match="give task='custom' and data="):
        RunConfig(task="custom")
    with pytest.raises(ConfigError, match="give task='custom' and data="):
        RunConfig(task="sst2", data=str(_csv(tmp_path / "d.csv", _reviews())))
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(UserDataError, match=r"unknown format '.xlsx'; allowed: .csv, .tsv, .jsonl, .json"):
        RunConfig(task="custom", data=str(tmp_path / "d.xlsx"))
    with pytest.raises(UserDataError, match="does not exist"):
        RunConfig(task="custom", data=str(tmp_path / "nope.csv"))


def test_a_run_on_your_file_is_recorded_and_edited_data_is_another_run(tmp_path):
    path = _csv(tmp_path / "r.csv", _reviews())
    config = RunConfig(task="custom", data=str(path), text_column="review", label_column="verdict",
                       adapter=__import__("veralab").AdapterConfig(rank=8), epochs=1, max_length=16,
                       precision="fp32", output_dir=str(tmp_path / "runs"), save_adapter=False)
    record = run_experiment(config)
    assert record["status"] == "ok" and record["data"]["classes"] == ["fresh", "rotten"]
    assert record["data"]["source"] == f"your data {path}" and 0 <= record["test"]["accuracy"] <= 1
    before = config.name()
    _csv(path, _reviews(42))
    assert RunConfig.from_dict(config.to_dict()).name() != before


def test_your_data_settings_are_no_part_of_a_built_in_tasks_run():
    assert RunConfig(text_column="review", label_column="verdict").name() == RunConfig().name()
