"""Files veralab writes are atomic and get the user's umask, like any other tool's output."""

import os
import stat

import pytest
import torch

import veralab as vl
from veralab.core.io import atomic_path, write_json_atomic


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tiny, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "record.json", {"a": 1})
        vl.add_adapters(tiny, vl.AdapterConfig(rank=4))
        vl.save_adapter(tiny, tmp_path / "adapter")
    finally:
        os.umask(old)
    for path in (tmp_path / "record.json", tmp_path / "adapter" / "adapter.safetensors",
                 tmp_path / "adapter" / "adapter_config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    (tmp_path / "x.pt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(tmp_path / "x.pt") as tmp:
        torch.save({"a": 1}, tmp)
        raise RuntimeError("boom")
    assert (tmp_path / "x.pt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]
