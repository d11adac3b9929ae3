"""The embedded tasks and the image protocol."""

import numpy as np
import pytest
import torch
from datasets import Dataset

from veralab.experiment.images import embedded_split, few_shot_indices, to_model_input
from veralab.experiment.tasks import TaskError, load_image_task, rotten_tomatoes, subsample, task_kind, tokenize


def test_rotten_tomatoes_split_is_fixed_and_disjoint():
    a, b = rotten_tomatoes(), rotten_tomatoes()
    assert all(isinstance(split, Dataset) for split in a.splits.values())  # inspectable in a notebook
    sizes = {k: len(v) for k, v in a.splits.items()}
    assert sizes == {"validation": 1280, "test": 1280, "train": 10248}  # 12,808 fresh/rotten snippets, 80/10/10
    assert a.splits["test"][:] == b.splits["test"][:]
    texts = {name: set(split[:]["text_a"]) for name, split in a.splits.items()}
    assert not texts["test"] & texts["validation"] and len(texts["train"] & texts["test"]) < 20  # a few repeats
    labels = a.splits["train"][:]["label"]
    assert set(labels) == {0, 1} and 0.5 < sum(labels) / sizes["train"] < 0.65


def test_tokenize_caches_with_datasets_map_and_matches_the_tokenizer(tmp_path, monkeypatch, minilm_path):
    from transformers import AutoTokenizer

    from veralab.experiment import tasks

    monkeypatch.setattr(tasks, "CACHE_DIR", tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    split = subsample(rotten_tomatoes().splits["validation"], 40, 0)
    first = tokenize(split, tokenizer, 32)
    assert first[:]["input_ids"] == tokenizer(split[:]["text_a"], truncation=True, max_length=32)["input_ids"]
    (cache,) = (tmp_path / "tokens").glob("*.arrow")
    assert tokenize(split, tokenizer, 32).cache_files[0]["filename"] == str(cache)  # the second call reads it
    assert len(list((tmp_path / "tokens").glob("*.arrow"))) == 1


def test_few_shot_sampling_is_exact_seeded_and_varies_with_seed():
    labels = torch.arange(10).repeat_interleave(30)
    idx = few_shot_indices(labels, 10, seed=3)
    assert torch.equal(torch.bincount(labels[idx]), torch.full((10,), 10))
    assert torch.equal(idx, few_shot_indices(labels, 10, seed=3))
    assert not torch.equal(idx, few_shot_indices(labels, 10, seed=4))
    with pytest.raises(ValueError, match="class 0 has 30 training images, fewer than shots_per_class=31"):
        few_shot_indices(labels, 31, seed=0)


@pytest.mark.parametrize("name,total", [("mnist_5k", 5000), ("digits", 1797)])
def test_embedded_image_splits_are_fixed_and_disjoint(name, total):
    train, test = embedded_split(name, "train"), embedded_split(name, "test")
    assert len(train.labels) + len(test.labels) == total and len(test.labels) == int(total * 0.2)
    assert train.images.dtype == torch.uint8 and train.images.shape[1] == 1
    assert set(train.labels.unique().tolist()) == set(range(10))
    assert torch.equal(test.images, embedded_split(name, "test").images)


def test_image_task_uses_shots_per_class_from_the_train_split():
    data = load_image_task("digits", shots_per_class=5, seed=0)
    assert data.num_labels == 10 and len(data.train) == 50 and data.notes["shots_per_class"] == 5


def test_images_are_resized_to_the_backbone_input():
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    x = to_model_input(images, {"size": 28, "channels": 1, "mean": 0.5, "std": 0.5})
    assert x.shape == (4, 1, 28, 28) and x.min() >= -1.01 and x.max() <= 1.01
    rgb = to_model_input(images, {"size": 32, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    assert rgb.shape == (4, 3, 32, 32)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(TaskError, match=r"unknown task 'imdb'; allowed: text rotten_tomatoes, sst2.*images mnist_5k"):
        task_kind("imdb")


def test_official_is_said_only_of_official_splits():
    from veralab.experiment.images import HUB_IMAGE_DATASETS, TEST_SPLITS

    assert set(HUB_IMAGE_DATASETS) <= set(TEST_SPLITS)
    assert "official" not in TEST_SPLITS["flowers102"].split(",")[0] and "re-split" in TEST_SPLITS["flowers102"]
    assert load_image_task("digits", 2, 0).notes["test_split"].startswith("fixed 20% held out")


def test_grouping_by_length_keeps_every_example_and_cuts_padding():
    from veralab.experiment.run import grouped_by_length

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 128, size=1000)
    order = rng.permutation(1000)
    grouped = grouped_by_length(order, lengths, 32, np.random.default_rng(1))
    assert sorted(grouped) == list(range(1000))  # the same examples, each once

    def padded(o):  # tokens computed with each batch padded to its longest example
        return sum(lengths[o[i:i + 32]].max() * len(o[i:i + 32]) for i in range(0, len(o), 32))

    assert padded(grouped) < 0.7 * padded(order)
    batches = [grouped[i:i + 32] for i in range(0, 1000, 32)]
    assert len(batches) == -(-1000 // 32) and len(batches[-1]) == 1000 % 32  # only the last batch is partial
    longest_first = [lengths[b].max() for b in batches[:-1]]
    assert longest_first != sorted(longest_first, reverse=True)  # the batches come in a shuffled order
    again = grouped_by_length(order, lengths, 32, np.random.default_rng(1))
    assert (again == grouped).all()  # seeded
