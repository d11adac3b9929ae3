"""Saving, loading, the PEFT format, and loading onto the wrong base."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import veralab as vl
from tests.conftest import assert_close_to_rounding
from veralab.core.checkpoint import AdapterFileError
from veralab.experiment.models import load_text_model

from .test_adapters import _randomize_vectors


@pytest.mark.parametrize("config", [
    vl.AdapterConfig(rank=6),
    vl.AdapterConfig(rank=6, projection_init="uniform", save_projection=True),
    vl.AdapterConfig(rank=6, shared=False),
    vl.AdapterConfig(rank=6, train_b=False, d_init=0.0),
    vl.AdapterConfig(method="lora", rank=3),
    vl.AdapterConfig(method="head"),
], ids=["vera", "vera-stored-projection", "vera-independent", "d-only", "lora", "head"])
def test_save_load_round_trips_exactly(tiny, tmp_path, config):
    fresh = type(tiny)()
    fresh.load_state_dict(tiny.state_dict())
    vl.add_adapters(tiny, config)
    _randomize_vectors(tiny)
    vl.save_adapter(tiny, tmp_path / "a")
    vl.load_adapter(fresh, tmp_path / "a")
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        assert torch.equal(tiny(x), fresh(x))
    trained = {n: p for n, p in tiny.named_parameters() if p.requires_grad}
    loaded = dict(fresh.named_parameters())
    assert trained and all(torch.equal(p, loaded[n]) for n, p in trained.items())
    assert vl.count_parameters(tiny)["adapter_bytes"] == sum(f.stat().st_size for f in (tmp_path / "a").iterdir())


def test_stored_projection_is_used_instead_of_the_seed(tiny, tmp_path):
    fresh = type(tiny)()
    fresh.load_state_dict(tiny.state_dict())
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4, save_projection=True))
    projection = tiny.blocks[0].query.deltas["out"].projection
    projection.assign(torch.randn_like(projection.A), torch.randn_like(projection.B))
    _randomize_vectors(tiny)
    vl.save_adapter(tiny, tmp_path / "a")
    vl.load_adapter(fresh, tmp_path / "a")
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        assert torch.equal(tiny(x), fresh(x))


def test_loading_onto_the_wrong_base_fails_clearly(tiny, tmp_path):
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4))
    vl.save_adapter(tiny, tmp_path / "a")
    wider = type(tiny)(width=32)
    with pytest.raises(vl.AdapterMismatchError, match=r"made for a base model with 4 adapted layers.*"
                                                     r"blocks.0.query.out', 16, 16\] vs \['blocks.0.query.out', 32, 32"):
        vl.load_adapter(wider, tmp_path / "a")
    other = torch.nn.Sequential(torch.nn.Linear(4, 4))
    other.classifier = torch.nn.Linear(4, 2)
    with pytest.raises(vl.AdapterMismatchError, match=r"does not fit this Sequential: target module 'query' matched no nn.Linear"):
        vl.load_adapter(other, tmp_path / "a")


def test_not_an_adapter_folder(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a veralab adapter"):
        vl.load_adapter(tiny, tmp_path)


@pytest.mark.parametrize("method", ["vera", "lora"])
def test_peft_export_and_import_give_veralab_logits_on_minilm(minilm_path, tmp_path, method):
    peft = pytest.importorskip("peft")
    model, tok = load_text_model(str(minilm_path), num_labels=2)
    base, _ = load_text_model(str(minilm_path), num_labels=2)
    base.load_state_dict(model.state_dict())
    vl.add_adapters(model.eval(), vl.AdapterConfig(method=method, rank=32, projection_init="kaiming_normal"))
    _randomize_vectors(model)
    vl.export_peft(model, tmp_path / "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == method.upper() and config["r"] == 32
    batch = tok(["a gripping, funny film", "dull and far too long"], return_tensors="pt", padding=True)
    peft_model = peft.PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    with torch.no_grad():
        ours, theirs = model(**batch).logits, peft_model(**batch).logits
    assert_close_to_rounding(theirs, ours)
    assert not torch.allclose(ours, ours.mean())  # the adapter really changes the model

    fresh, _ = load_text_model(str(minilm_path), num_labels=2)
    vl.import_peft(fresh.eval(), tmp_path / "peft")
    with torch.no_grad():
        assert_close_to_rounding(fresh(**batch).logits, ours)


def test_export_refuses_what_peft_cannot_express(tiny, tmp_path):
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4, shared=False))
    with pytest.raises(vl.ConfigError, match="shared=False.*cannot be exported"):
        vl.export_peft(tiny, tmp_path)


def _saved(tiny, tmp_path, config=None):
    vl.add_adapters(tiny, config or vl.AdapterConfig(rank=4))
    _randomize_vectors(tiny)
    return vl.save_adapter(tiny, tmp_path / "a")


@pytest.mark.parametrize("keep", [0, 7, 0.5], ids=["empty", "header-cut", "half"])
def test_damaged_weights_file_is_named(tiny, tmp_path, keep):
    weights = _saved(tiny, tmp_path) / "adapter.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(AdapterFileError, match=rf"^{weights} is damaged or truncated \(.*\); save the adapter again"):
        vl.load_adapter(type(tiny)(), tmp_path / "a")


@pytest.mark.parametrize("config", [vl.AdapterConfig(rank=4), vl.AdapterConfig(rank=4, shared=False)],
                         ids=["shared", "independent"])
@pytest.mark.parametrize("edit", [{"projection_prng_key": 1}, {"projection_init": "uniform"}], ids=["key", "init"])
def test_edited_projection_settings_are_refused(tiny, tmp_path, config, edit):
    path = _saved(tiny, tmp_path, config)
    manifest = json.loads((path / "adapter_config.json").read_text())
    manifest["config"].update(edit)
    (path / "adapter_config.json").write_text(json.dumps(manifest))
    with pytest.raises(vl.AdapterMismatchError, match=rf"^adapter at {path}: the frozen A/B it loads .* differ from "
                                                      r"the ones its vectors were trained with .*projection_prng_key"):
        vl.load_adapter(type(tiny)(), path)


def test_stored_projection_is_checked_too_and_makes_the_key_irrelevant(tiny, tmp_path):
    fresh = type(tiny)()
    fresh.load_state_dict(tiny.state_dict())
    path = _saved(tiny, tmp_path, vl.AdapterConfig(rank=4, save_projection=True))
    manifest = json.loads((path / "adapter_config.json").read_text())
    manifest["config"]["projection_prng_key"] = 1
    (path / "adapter_config.json").write_text(json.dumps(manifest))
    vl.load_adapter(fresh, path)  # the stored A/B are used, so the key does not matter
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        assert torch.equal(tiny(x), fresh(x))
    tensors = load_file(str(path / "adapter.safetensors"))
    tensors["veralab.projection.0.A"][0, 0] += 1.0
    save_file(tensors, str(path / "adapter.safetensors"))
    with pytest.raises(AdapterFileError, match="does not hold the tensors that were saved"):
        vl.load_adapter(type(tiny)(), path)
    del manifest["tensors_sha256"]  # an adapter saved before that checksum: the A/B checksum still catches it
    (path / "adapter_config.json").write_text(json.dumps(manifest))
    with pytest.raises(vl.AdapterMismatchError, match="the frozen A/B it loads"):
        vl.load_adapter(type(tiny)(), path)


@pytest.mark.parametrize("config", [vl.AdapterConfig(method="lora", rank=3), vl.AdapterConfig(method="head")],
                         ids=["lora", "head"])
def test_adapters_without_projection_record_no_checksum(tiny, tmp_path, config):
    fresh = type(tiny)()
    fresh.load_state_dict(tiny.state_dict())
    path = _saved(tiny, tmp_path, config)
    assert json.loads((path / "adapter_config.json").read_text())["projection_sha256"] is None
    vl.load_adapter(fresh, path)


@pytest.mark.parametrize("edit,expected", [
    (lambda m: "{\"config\": ", r"is not valid JSON \(Expecting value: line 1 column 12"),
    (lambda m: "[]", r"holds a JSON list, not an object"),
    (lambda m: {k: v for k, v in m.items() if k != "fingerprint"}, r"lacks 'fingerprint' \(it has \['base_model', "),
    (lambda m: {k: v for k, v in m.items() if k != "config"}, r"lacks 'config'"),
    (lambda m: {**m, "fingerprint": "abc"}, r"has a malformed \"config\" or \"fingerprint\""),
], ids=["invalid-json", "list", "no-fingerprint", "no-config", "bad-fingerprint"])
def test_damaged_manifest_is_named(tiny, tmp_path, edit, expected):
    config_file = _saved(tiny, tmp_path) / "adapter_config.json"
    changed = edit(json.loads(config_file.read_text()))
    config_file.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(AdapterFileError, match=rf"^{config_file} {expected}.*save the adapter again"):
        vl.load_adapter(type(tiny)(), tmp_path / "a")


def test_manifest_with_an_unknown_config_field_is_named(tiny, tmp_path):
    config_file = _saved(tiny, tmp_path) / "adapter_config.json"
    manifest = json.loads(config_file.read_text())
    manifest["config"]["rnak"] = 4
    config_file.write_text(json.dumps(manifest))
    with pytest.raises(AdapterFileError, match=rf"^{config_file} holds no valid AdapterConfig under \"config\": "
                                               r"unknown AdapterConfig field\(s\) \['rnak'\]"):
        vl.load_adapter(type(tiny)(), tmp_path / "a")


def test_import_peft_names_missing_and_damaged_files(tiny, tmp_path):
    vl.add_adapters(tiny, vl.AdapterConfig(rank=4))
    folder = vl.export_peft(tiny, tmp_path / "peft")
    weights, config_file = folder / "adapter_model.safetensors", folder / "adapter_config.json"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(AdapterFileError, match=rf"^{weights} is damaged or truncated .*export the PEFT adapter again"):
        vl.import_peft(type(tiny)(), folder)
    config_file.write_text(json.dumps({"peft_type": "VERA", "r": 4}))
    with pytest.raises(AdapterFileError, match=rf"^{config_file} lacks 'target_modules' \(it has \['peft_type', 'r'\]"):
        vl.import_peft(type(tiny)(), folder)
    config_file.unlink()
    with pytest.raises(FileNotFoundError, match=rf"^{folder} is not a PEFT adapter: expected adapter_config.json and "
                                                r"adapter_model.safetensors in it"):
        vl.import_peft(type(tiny)(), folder)


def test_an_adapter_is_refused_on_other_base_weights_of_the_same_shapes_unless_strict_is_off(tiny, tmp_path):
    base = {k: v.clone() for k, v in tiny.state_dict().items()}
    path = _saved(tiny, tmp_path)
    other = type(tiny)()
    other.load_state_dict({**base, "blocks.0.value.weight": base["blocks.0.value.weight"] + 1e-3})  # one W0 nudged
    with pytest.raises(vl.AdapterMismatchError, match=r"was trained on other base weights than this TinyEncoder's .*"
                                                     r"pass strict=False to load it anyway"):
        vl.load_adapter(other, path)
    with pytest.warns(UserWarning, match="other base weights.*loaded anyway: strict=False"):
        vl.load_adapter(type(tiny)(), path, strict=False)
    same = type(tiny)()
    same.load_state_dict(base)
    vl.load_adapter(same, path)  # the base it was trained on: no complaint
    vl.merge_adapters(tiny)
    vl.unmerge_adapters(tiny)  # W0 back up to round-off, which is no other base
    vl.save_adapter(tiny, tmp_path / "b")
    again = type(tiny)()
    again.load_state_dict(base)
    vl.load_adapter(again, tmp_path / "b")


def test_a_flipped_byte_in_the_saved_tensors_is_caught(tiny, tmp_path):
    base = {k: v.clone() for k, v in tiny.state_dict().items()}
    path = _saved(tiny, tmp_path, vl.AdapterConfig(rank=4))
    weights = path / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor's values: the file still parses
    weights.write_bytes(bytes(data))
    fresh = type(tiny)()
    fresh.load_state_dict(base)
    with pytest.raises(AdapterFileError, match=r"does not hold the tensors that were saved .*save the adapter again"):
        vl.load_adapter(fresh, path)


def test_peft_configs_convert_both_ways_and_add_adapters_takes_them(minilm_path):
    import peft

    vera = peft.VeraConfig(r=16, target_modules=["query", "value"], projection_prng_key=3, d_initial=0.5,
                           vera_dropout=0.1, modules_to_save=["classifier"])
    ours = vl.AdapterConfig.from_peft(vera)
    assert (ours.method, ours.rank, ours.projection_prng_key, ours.d_init, ours.dropout, ours.head_modules) == \
        ("vera", 16, 3, 0.5, 0.1, ("classifier",))
    back = vl.to_peft_config(ours)
    assert {k: getattr(back, k) for k in ("r", "projection_prng_key", "d_initial", "vera_dropout", "modules_to_save")} \
        == {k: getattr(vera, k) for k in ("r", "projection_prng_key", "d_initial", "vera_dropout", "modules_to_save")}
    assert set(back.target_modules) == {"query", "value"}
    lora = vl.AdapterConfig.from_peft(peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                                      task_type="SEQ_CLS"))
    assert (lora.method, lora.rank, lora.alpha, lora.head_modules, lora.train_head) == ("lora", 8, 16.0, None, True)
    model, _ = load_text_model(str(minilm_path), num_labels=2)
    vl.add_adapters(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], task_type="SEQ_CLS"))
    # as PEFT's SEQ_CLS default: the classifier alone trains beside the adapter
    assert model.veralab_config.head_modules == ("classifier",)
    assert vl.count_parameters(model)["adapter"] == 6 * 2 * 8 * (384 + 384)
    with pytest.raises(vl.ConfigError, match=r"sets \{'use_dora': True\}"):
        vl.AdapterConfig.from_peft(peft.LoraConfig(r=8, use_dora=True))
    with pytest.raises(vl.ConfigError, match=r"no counterpart of \{'shared': False\}"):
        vl.to_peft_config(vl.AdapterConfig(rank=8, shared=False))


def test_a_peft_vera_config_gives_peft_s_own_frozen_pair_and_trainable_set(minilm_path):
    import peft

    from veralab.core.checkpoint import projections

    config = peft.VeraConfig(r=16, target_modules=["query", "value"], projection_prng_key=3, task_type="SEQ_CLS")
    ours, _ = load_text_model(str(minilm_path), num_labels=2)
    vl.add_adapters(ours, config)
    theirs = peft.get_peft_model(load_text_model(str(minilm_path), num_labels=2)[0], config)
    (pair,) = projections(ours)
    assert torch.equal(pair.A, theirs.base_model.vera_A["default"])
    assert torch.equal(pair.B, theirs.base_model.vera_B["default"])
    assert vl.count_parameters(ours)["trainable"] == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
