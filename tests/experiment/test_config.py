"""RunConfig's flat view and identity: what makes two runs the same run."""

import pytest
import torch

from veralab.core.config import AdapterConfig, ConfigError
from veralab.experiment import RunConfig


def test_flat_view_round_trips_and_holds_the_adapter_config():
    config = RunConfig.from_dict({"task": "digits", "rank": 16, "projection_prng_key": 3, "run_seed": 1})
    assert isinstance(config.adapter, AdapterConfig) and config.adapter.rank == 16
    assert RunConfig.from_dict(config.to_dict()) == config
    assert set(config.to_dict()) == set(RunConfig.field_names())


def test_the_resolved_device_is_part_of_a_runs_identity():
    here = "cuda" if torch.cuda.is_available() else "cpu"
    auto, explicit = RunConfig(), RunConfig(device=here)
    assert auto.identity()["device"] == here and auto.name() == explicit.name()
    elsewhere = RunConfig(device="cpu" if here == "cuda" else "cuda")
    assert elsewhere.name() != auto.name()  # CPU records never count as done for a sweep on a GPU


def test_output_and_force_do_not_change_the_run():
    a = RunConfig(output_dir="x", force=True, save_adapter=False)
    assert a.name() == RunConfig().name()
    with pytest.raises(ConfigError, match="unknown setting"):
        RunConfig.from_dict({"outputdir": "x"})


def _glue_copy(root, mrpc_train: bytes, mrpc_dev: bytes):
    (root / "MRPC").mkdir(parents=True)
    (root / "MRPC" / "train.tsv").write_bytes(mrpc_train)
    (root / "MRPC" / "dev.tsv").write_bytes(mrpc_dev)
    return root


MRPC_TRAIN = ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA man runs .\tA man is running .\n"
              "0\t3\t4\tThe cat sat .\tStocks fell .\n").encode()
MRPC_DEV = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t5\t6\tIt rains .\tIt is raining .\n".encode()


def test_a_glue_folder_counts_by_its_files_content_not_its_path(tmp_path):
    """The same TSVs in two places (a laptop, the GPU kit) are the same run; an edited file is another run."""
    here = _glue_copy(tmp_path / "here", MRPC_TRAIN, MRPC_DEV)
    there = _glue_copy(tmp_path / "there", MRPC_TRAIN, MRPC_DEV)
    edited = _glue_copy(tmp_path / "edited", MRPC_TRAIN.replace(b"Stocks fell", b"Stocks rose"), MRPC_DEV)
    names = {path.name: RunConfig(task="mrpc", glue_dir=str(path)).name() for path in (here, there, edited)}
    assert names["here"] == names["there"] != names["edited"]
    assert RunConfig(task="mrpc", glue_dir=str(here)).identity()["glue_dir"].startswith("sha256:")
    assert RunConfig(task="mrpc").identity()["glue_dir"] is None  # the hub


def test_a_missing_glue_file_is_named_when_the_run_is_named(tmp_path):
    (tmp_path / "MRPC").mkdir()
    (tmp_path / "MRPC" / "train.tsv").write_bytes(MRPC_TRAIN)
    with pytest.raises(ValueError, match=r"has no MRPC/dev.tsv for task 'mrpc'"):
        RunConfig(task="mrpc", glue_dir=str(tmp_path)).name()
