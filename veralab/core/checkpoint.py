"""Saving and loading adapters in veralab's own small format, and what an adapted model costs.

The format (a directory): ``adapter.safetensors`` holds the trained tensors (VeRA: d and b per layer, plus the
head when trained; A/B only with ``save_projection``) and ``adapter_config.json`` the AdapterConfig, the base model's
name, a fingerprint of the adapted shapes, checksums of the frozen A/B the vectors were trained against and of the
saved tensors, and a fingerprint of the base model's frozen weights: all checked on load (the last two can be
overridden with ``strict=False``, which warns instead).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save, save_file
from torch import nn

from .config import AdapterConfig, ConfigError, OneLineError
from .inject import adapted_layers, add_adapters
from .io import atomic_path, write_text_atomic
from .layers import Projection, VeraDelta

WEIGHTS, CONFIG = "adapter.safetensors", "adapter_config.json"


class AdapterMismatchError(OneLineError, ValueError):
    """An adapter does not fit the model it is loaded onto."""


class AdapterFileError(OneLineError, ValueError):
    """An adapter file that is damaged or incomplete, named with what is wrong."""


def read_tensors(file: Path, remedy: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except SafetensorError as err:
        raise AdapterFileError(f"{file} is damaged or truncated ({err}); {remedy}") from err


def read_json_object(file: Path, keys: tuple[str, ...], remedy: str) -> dict:
    """The JSON object in `file`, holding `keys`."""
    try:
        data = json.loads(file.read_text())
    except ValueError as err:  # invalid JSON or not UTF-8
        raise AdapterFileError(f"{file} is not valid JSON ({err}); {remedy}") from err
    if not isinstance(data, dict):
        raise AdapterFileError(f"{file} holds a JSON {type(data).__name__}, not an object; {remedy}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise AdapterFileError(f"{file} lacks {', '.join(map(repr, missing))} (it has {sorted(data)}); {remedy}")
    return data


def _trained_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    config: AdapterConfig = model.veralab_config
    if config.method == "vera" and config.save_projection:
        for i, projection in enumerate(projections(model)):
            tensors[f"veralab.projection.{i}.A"] = projection.A.cpu().contiguous()
            tensors[f"veralab.projection.{i}.B"] = projection.B.cpu().contiguous()
    return tensors


def projections(model: nn.Module) -> list[Projection]:
    seen: dict[int, Projection] = {}
    for layer in adapted_layers(model).values():
        for delta in layer.deltas.values():
            if isinstance(delta, VeraDelta):
                seen.setdefault(id(delta.projection), delta.projection)
    return list(seen.values())


def fingerprint(model: nn.Module) -> dict:
    """Adapted slices with their (in, out) shapes, and a hash of them: what an adapter needs of its base model."""
    shapes = [[f"{name}.{part}", layer.in_features, stop - start]
              for name, layer in adapted_layers(model).items() for part, (start, stop) in layer.slices.items()]
    digest = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]
    return {"adapted": shapes, "sha256": digest}


def projection_digest(model: nn.Module) -> str | None:
    """A hash of the frozen A/B (as float32), so that a load that regenerates other ones is caught; None without."""
    found = projections(model)
    if not found:
        return None
    digest = hashlib.sha256()
    for projection in found:
        for matrix in (projection.A, projection.B):
            digest.update(matrix.detach().to("cpu", torch.float32).contiguous().numpy())
    return digest.hexdigest()[:16]


def _digest(tensors) -> str:
    """sha256 of (name, float32 values) pairs, in name order: the same numbers give the same digest whatever the
    device or file they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def base_fingerprint(model: nn.Module) -> dict[str, list[float]]:
    """Per frozen parameter (the base weights, W0 of the adapted layers included): its norm and its projection on a
    fixed random sign vector. An adapter trained on other base weights of the same shapes would load silently and
    give other logits; a checksum of the bytes would also flag the round-off of a merge and unmerge, which these
    numbers, compared with a tolerance (base_differs), let pass."""
    found = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            continue
        x = parameter.detach().to("cpu", torch.float64).flatten()
        generator = torch.Generator().manual_seed(int(hashlib.sha256(name.encode()).hexdigest()[:12], 16))
        signs = torch.randint(0, 2, x.shape, generator=generator, dtype=torch.float64) * 2 - 1
        found[name] = [float(x.norm()), float(x @ signs) / max(len(x), 1) ** 0.5]
    return found


def base_differs(saved: dict, here: dict, rtol: float = 1e-5) -> list[str]:
    """The frozen parameters whose fingerprints differ beyond round-off (or that only one side has)."""
    names = sorted(set(saved) | set(here))
    return [n for n in names if n not in saved or n not in here or any(
        abs(a - b) > rtol * (abs(saved[n][0]) + 1e-12) for a, b in zip(saved[n], here[n]))]


def base_name(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    name = getattr(cfg, "_name_or_path", None) or getattr(model, "veralab_base_name", None)
    return str(name) if name else None


def veralab_version() -> str:
    try:
        return importlib.metadata.version("veralab")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _manifest(model: nn.Module, tensors: dict[str, torch.Tensor] | None = None) -> dict:
    config: AdapterConfig = model.veralab_config
    tensors = _trained_tensors(model) if tensors is None else tensors
    return {"format": "veralab-adapter", "veralab": veralab_version(), "config": config.to_dict(),
            "base_model": base_name(model), "model_class": type(model).__name__, "fingerprint": fingerprint(model),
            "projection_sha256": projection_digest(model), "base_weights": base_fingerprint(model),
            "tensors_sha256": _digest(tensors.items())}


def count_parameters(model: nn.Module) -> dict:
    """Trainable parameters split as the paper counts them, total parameters, and the saved adapter's bytes.

    "adapter" is what the method trains apart from the task head (VeRA's d and b, LoRA's A and B, every weight in
    full fine-tuning): the paper's "trainable parameters" (RoBERTa-base, VeRA r=1024 on q/v: 43,008). "head" is the
    task head trained beside it. A/B are frozen buffers, so no count includes them.
    """
    config = getattr(model, "veralab_config", None)
    head_ids = {id(p) for h in (config.head_modules if config else ()) for p in model.get_submodule(h).parameters()}
    trained = [p for p in model.parameters() if p.requires_grad]
    head = sum(p.numel() for p in trained if id(p) in head_ids)
    trainable = sum(p.numel() for p in trained)
    return {"trainable": trainable, "adapter": trainable - head, "head": head,
            "total": sum(p.numel() for p in model.parameters()), "adapter_bytes": adapter_bytes(model)}


def adapter_bytes(model: nn.Module) -> int:
    """Exactly what save_adapter would write, computed in memory."""
    if getattr(model, "veralab_config", None) is None:
        return 0
    tensors = _trained_tensors(model)
    return len(save(tensors)) + len(json.dumps(_manifest(model, tensors), indent=2).encode())


def save_adapter(model: nn.Module, path) -> Path:
    if getattr(model, "veralab_config", None) is None:
        raise ConfigError("this model has no veralab adapter: call add_adapters(model, config) first")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = _trained_tensors(model)
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    write_text_atomic(path / CONFIG, json.dumps(_manifest(model, tensors), indent=2))
    return path


def read_manifest(path) -> dict:
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"{path} is not a veralab adapter: expected {CONFIG} and {WEIGHTS} in it")
    remedy = "save the adapter again (save_adapter writes it whole)"
    manifest = read_json_object(path / CONFIG, ("config", "fingerprint"), remedy)
    fp = manifest["fingerprint"]
    if not isinstance(manifest["config"], dict) or not isinstance(fp, dict) or not {"adapted", "sha256"} <= set(fp):
        raise AdapterFileError(f"{path / CONFIG} has a malformed \"config\" or \"fingerprint\" (expected objects, "
                               f"the fingerprint with \"adapted\" and \"sha256\"); {remedy}")
    return manifest


def load_adapter(model: nn.Module, path, strict: bool = True) -> nn.Module:
    """Add the saved adapter to a fresh base model (or fill a model already adapted with the same config).

    Refused: a base model with other adapted shapes or other frozen A/B, other base weights, or saved tensors whose
    checksum no longer matches (a damaged file); `strict=False` turns the last two into a warning (loading onto a
    base model known to differ, on purpose)."""
    path = Path(path)
    manifest = read_manifest(path)
    made_for = manifest.get("base_model") or manifest.get("model_class")
    try:
        config = AdapterConfig.from_dict(manifest["config"])
    except (ConfigError, TypeError) as err:
        raise AdapterFileError(f"{path / CONFIG} holds no valid AdapterConfig under \"config\": {err}") from err
    if getattr(model, "veralab_config", None) is None:
        try:
            add_adapters(model, config)
        except ConfigError as err:
            raise AdapterMismatchError(
                f"adapter at {path} (made for {made_for}) does not fit this {type(model).__name__}: {err}") from err
    expected, actual = manifest["fingerprint"], fingerprint(model)
    if expected["sha256"] != actual["sha256"]:
        diff = [f"{e} vs {a}" for e, a in zip(expected["adapted"], actual["adapted"]) if e != a][:3]
        raise AdapterMismatchError(
            f"adapter at {path} was made for a base model with {len(expected['adapted'])} adapted layers "
            f"({made_for}); this {type(model).__name__} has {len(actual['adapted'])}. First differences (saved vs "
            f"this model): {diff or 'layer count'}")
    tensors = read_tensors(path / WEIGHTS, "save the adapter again")
    saved = manifest.get("tensors_sha256")
    _check(bool(saved) and saved != _digest(tensors.items()), strict, AdapterFileError,
           f"adapter at {path}: {WEIGHTS} does not hold the tensors that were saved (their checksum differs from "
           f"tensors_sha256 in {CONFIG}): the file was damaged or replaced; save the adapter again")
    for i, projection in enumerate(projections(model)):
        if f"veralab.projection.{i}.A" in tensors:
            projection.assign(tensors.pop(f"veralab.projection.{i}.A"), tensors.pop(f"veralab.projection.{i}.B"))
    saved, here = manifest.get("projection_sha256"), projection_digest(model)  # None: LoRA/head, or an older save
    if saved and saved != here:
        raise AdapterMismatchError(
            f"adapter at {path}: the frozen A/B it loads (regenerated from its config, or stored with save_projection) "
            f"differ from the ones its vectors were trained with (projection_sha256 {saved} in {CONFIG}, {here} "
            "here), so it would give other logits. Its A/B settings (projection_prng_key, projection_init, rank, "
            f"shared) were edited, or this torch draws other random numbers: restore the saved {CONFIG}, or save the "
            "adapter again with save_projection=True")
    differ = base_differs(manifest["base_weights"], base_fingerprint(model)) if manifest.get("base_weights") else []
    _check(bool(differ), strict, AdapterMismatchError,
           f"adapter at {path} was trained on other base weights than this {type(model).__name__}'s (made for "
           f"{made_for}; {len(differ)} frozen tensor(s) differ, first {differ[:2]}): same shapes, other numbers, "
           f"so it would give other logits. Load the base model it was trained on, or pass strict=False to load it "
           f"anyway")
    copy_into(model, tensors, path)
    return model


def _check(differs: bool, strict: bool, error: type, message: str) -> None:
    """Refuse (or with strict=False warn) where a check saved with the adapter differs from this model's."""
    if differs:
        if strict:
            raise error(message)
        warnings.warn(f"{message} (loaded anyway: strict=False)", stacklevel=3)


def copy_into(model: nn.Module, tensors: dict[str, torch.Tensor], source) -> None:
    params = dict(model.named_parameters())
    bad = [n for n, t in tensors.items() if n not in params or params[n].shape != t.shape]
    if bad:
        raise AdapterMismatchError(f"adapter at {source} has tensors this model lacks or shapes differently: "
                                   f"{bad[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
