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
