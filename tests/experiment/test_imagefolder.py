"""Your own images as a task: torchvision's ImageFolder layout (task "custom_images", data=FOLDER), splits given or
carved, every problem one line naming the folder or file."""

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from veralab.core.config import ConfigError
from veralab.experiment import RunConfig, run_experiment
from veralab.experiment.images import ImageFolderError, image_folder
from veralab.experiment.tasks import load_image_task


def _folder(root, classes=(0, 1, 2), per_class=12, split=None, sizes=None):
    """sklearn digits written as PNGs: root/[split/]<class name>/<i>.png (real images, made here)."""
    digits = load_digits()
    for c in classes:
        folder = root / (split or "") / f"digit-{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(digits.images[digits.target == c][:per_class]):
            picture = Image.fromarray((image * (255 / 16)).round().astype(np.uint8), mode="L")
            if sizes:
                picture = picture.resize(sizes[i % len(sizes)])
            picture.save(folder / f"{i}.png")
    return root


def test_a_flat_folder_is_carved_and_class_names_are_sorted(tmp_path):
    train, test, classes, notes = image_folder(_folder(tmp_path / "flat"))
    assert classes == ["digit-0", "digit-1", "digit-2"] and len(train.labels) + len(test.labels) == 36
    assert len(test.labels) == 7 and notes["test_split"] == "a fixed 20% held out (seed 0)"
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype.is_floating_point is False
    again = image_folder(tmp_path / "flat")[1]
    assert (again.labels == test.labels).all() and (again.images == test.images).all()  # the same carve every time


def test_given_splits_and_mixed_sizes_in_colour(tmp_path):
    root = tmp_path / "given"
    _folder(root, split="train", sizes=[(8, 8), (16, 12)])
    _folder(root, per_class=4, split="test")
    Image.open(root / "train" / "digit-0" / "0.png").convert("RGB").save(root / "train" / "digit-0" / "0.png")
    data = load_image_task("custom_images", 5, seed=1, data=str(root))
    assert data.notes["train_size"] == 15 and data.notes["test_size"] == 12 and data.num_labels == 3
    assert data.notes["resized_to"] == 224 and data.notes["test_split"] == "FOLDER/test/"
    assert np.asarray(data.train[0]["image"]).shape == (3, 224, 224)


@pytest.mark.parametrize("make,message", [
    (lambda r: (_folder(r), (r / "digit-3").mkdir()), r"class folder\(s\) \['digit-3'\] hold no image"),
    (lambda r: _folder(r, classes=(0,)), r"holds 1 class folder\(s\) \['digit-0'\]; an image task needs at least 2"),
    (lambda r: (_folder(r), (r / "digit-1" / "bad.png").write_text("not a png")), r"bad.png is not a readable image"),
    (lambda r: (_folder(r, split="train"), _folder(r, classes=(0, 1), split="test")),
     r"train/ has classes \['digit-0', 'digit-1', 'digit-2'\], test/ \['digit-0', 'digit-1'\]"),
])
def test_a_folder_that_makes_no_task_is_one_line_naming_it(tmp_path, make, message):
    make(tmp_path / "d")
    with pytest.raises(ImageFolderError, match=message):
        image_folder(tmp_path / "d")


def test_custom_images_needs_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="task='custom_images' and data=<an ImageFolder tree>"):
        RunConfig(task="custom_images")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="is not a folder; task 'custom_images' reads an ImageFolder tree"):
        RunConfig(task="custom_images", data=str(tmp_path / "x.png"))


@pytest.mark.slow
def test_a_run_on_your_images_is_recorded_and_edited_images_are_another_run(tmp_path):
    root = _folder(tmp_path / "mine", per_class=20)
    config = RunConfig(task="custom_images", data=str(root), shots_per_class=10, epochs=2, precision="fp32",
                       adapter=__import__("veralab").AdapterConfig(rank=16), output_dir=str(tmp_path / "runs"),
                       save_adapter=False)
    record = run_experiment(config)
    assert record["status"] == "ok" and record["kind"] == "image" and record["data"]["classes"][0] == "digit-0"
    assert record["data"]["train_used"] == 30 and record["evaluated_on"] == "test" and record["final"]["accuracy"] > 0.5
    before = config.name()
    _folder(tmp_path / "mine", classes=(0,), per_class=21)  # one more image
    assert RunConfig.from_dict(config.to_dict()).name() != before
