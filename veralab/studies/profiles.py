"""The studies' grids, one per profile.

`default`: the embedded model and data, sized to run all four studies on a 2-core CPU (`make all`). `paper`: the
paper's setups (RoBERTa-base on GLUE, ViT-B few-shot), which need a GPU and the hub; every setting says where it
comes from: the VeRA paper (Kopiczko et al., ICLR 2024), the public replication of its RoBERTa-base runs, the LoRA
paper (Hu et al., ICLR 2022), or "our choice" where neither says. See docs/paper.md. `glue`: the paper's findings
on real GLUE with the embedded pretrained MiniLM (`--glue-dir`), 5 seeds on the full training sets (a GPU's
work); `glue_cpu`: the same studies reduced to fit a 2-core CPU (`make glue`), with `glue_cpu_lower` (the
ablations at VeRA's next rate down). RESULTS.md holds their verdicts; `glue_cpu_select_head` and `glue_cpu_select`
(the learning-rate selection, on a slice held out of the training data) and `glue_cpu_check` are the evidence
behind its settings. The paper's hyper-parameters, each with its source, are in paper_settings.py.

A grid per study: `tasks` × `seeds` × `points`. A point's settings are `base`, then the task's `task_overrides`
entry (and its entry under the point's method), then the point itself (then an optional `axes` combination). The
seed sets both run_seed and the projection PRNG key.
"""

from __future__ import annotations

from ..experiment.glue import GLUE_DIRS
from .paper_settings import (
    PAPER_FULL,
    PAPER_FULL_LARGE,
    PAPER_GLUE_OVERRIDES,
    PAPER_GLUE_TASKS,
    PAPER_LARGE_OVERRIDES,
    PAPER_LARGE_RANK,
    PAPER_LARGE_TEXT,
    PAPER_LORA_BASE,
    PAPER_LORA_LARGE,
    PAPER_MAIN_TASKS,
    PAPER_RANK,
    PAPER_SEEDS,
    PAPER_TEXT,
)


def method_rates(lrs: dict) -> dict:
    """A grid's per-method learning rates, for its `base` (or a task's override): a point keeps its study's rate for
    its method unless it sets its own (None: the method's default)."""
    return {method: {"lr": lr} for method, lr in lrs.items() if lr is not None}


ABLATION_RANK = 256  # default profile: VeRA rank of the ablation studies (our choice)

# ---- default: embedded stand-ins (MiniLM on Rotten Tomatoes snippets; tiny ViT on MNIST-5k / digits) ----------
# The embedded runs are short (a few hundred steps), so their learning rates sit above the paper's (which trains
# 30-160 epochs). They were chosen once on the validation split of the embedded task, never on a test split.
TEXT_LR = {"vera": 3e-2, "lora": 2e-3, "head": None, "full": 2e-5}
IMAGE_LR = {"vera": 2e-2, "lora": 5e-3, "head": None, "full": 5e-4}
# 768 training snippets in batches grouped by length, 3 epochs, 3 seeds (text: 45 runs of 60-80 s on one CPU core);
# 50 images per class, 15 epochs (images: 24 runs of 30-50 s): `make all` stays within 45 minutes on 2 cores.
# Text scores: the held-out test split, subsampled to 512 snippets (standard error ~2 points per run at 75%
# accuracy); the best epoch is picked on 256 validation snippets.
# Float32: `make all` checks its runs against the committed records, which any x86 CPU reproduces in float32, while
# bf16 results depend on the CPU's bf16 path (AMX, AVX512-BF16 or none) beyond the last bits.
DEFAULT_PRECISION = "fp32"
DEFAULT_TEXT = {"epochs": 3, "max_train_samples": 768, "max_eval_samples": 512, "max_validation_samples": 256,
                "max_length": 64, "batch_size": 32, "group_by_length": True, "head_lr": 1e-2,
                "precision": DEFAULT_PRECISION, **method_rates(TEXT_LR)}
DEFAULT_IMAGE = {"epochs": 15, "shots_per_class": 50, "batch_size": 32, "head_lr": 1e-2, "precision": DEFAULT_PRECISION,
                 **method_rates(IMAGE_LR)}
DEFAULT_SEEDS = [0, 1, 2]


def _rank_points(vera_ranks, lora_ranks):
    return ([{"method": "head"}] + [{"method": "vera", "rank": r} for r in vera_ranks]
            + [{"method": "lora", "rank": r} for r in lora_ranks])


def _init_points(rank, d_inits):
    return ([{"method": "vera", "rank": rank, "d_init": d} for d in d_inits]
            + [{"method": "vera", "rank": rank, "projection_init": init} for init in ("kaiming_normal", "uniform")])


def _vector_points(rank):
    return [{"method": "vera", "rank": rank},
            {"method": "vera", "rank": rank, "train_b": False, "d_init": 0.0},
            {"method": "vera", "rank": rank, "train_d": False},
            {"method": "vera", "rank": rank, "shared": False}]


def _vit_points(rank, lora_rank):
    return [{"method": "head"}, {"method": "full"}, {"method": "lora", "rank": lora_rank},
            {"method": "vera", "rank": rank}]


# ---- paper: RoBERTa-base and -large on GLUE, at the settings of paper_settings.py ------------------------------
def _paper_glue(points, tasks=PAPER_GLUE_TASKS):
    """RoBERTa-base on GLUE: VeRA (and the head) at the replication's per-task settings, LoRA at its paper's."""
    return {"tasks": list(tasks), "seeds": PAPER_SEEDS, "base": PAPER_TEXT,
            "task_overrides": {t: {**PAPER_GLUE_OVERRIDES[t], **PAPER_LORA_BASE[t], "full": PAPER_FULL} for t in tasks},
            "points": points}


def _paper_main_table():
    """Table 2: head only, full fine-tuning, LoRA r=8 and VeRA on the six GLUE tasks, one grid per RoBERTa size."""
    base = _paper_glue(_main_points(PAPER_RANK), PAPER_MAIN_TASKS)
    large = {"tasks": PAPER_MAIN_TASKS, "seeds": PAPER_SEEDS, "base": PAPER_LARGE_TEXT,
             "task_overrides": {t: {**PAPER_LARGE_OVERRIDES[t], **PAPER_LORA_LARGE[t], "full": PAPER_FULL_LARGE}
                                for t in PAPER_MAIN_TASKS},
             "points": _main_points(PAPER_LARGE_RANK)}
    return [base, large]


# ---- glue: all-MiniLM-L6-v2 on real GLUE, train -> dev ---------------------------------------------------------
# The paper's studies where they can be run here: RoBERTa-base cannot be had offline, all-MiniLM-L6-v2 can (6 layers,
# width 384). Ranks, the ablation variants and the tasks of each study follow the paper (our choice of tasks within
# its four ablation tasks: CoLA is not in our GLUE folder). VeRA r=1024 and LoRA r=8 are the paper's RoBERTa-base
# pair. Max length 128 (the paper 512; 12% of RTE's pairs are cut), batch 32, warm-up 6% (LoRA paper).
GLUE_RANK, GLUE_LORA_RANK = 1024, 8  # paper, Table 2
GLUE_SEEDS = [0, 1, 2, 3, 4]  # paper: median of 5 runs
GLUE_TEXT = {"max_length": 128, "batch_size": 32, "group_by_length": True, "warmup_ratio": 0.06}
GLUE_EPOCHS = 3  # our choice: what the CPU budget allows (96 steps on glue_cpu's 1,024 examples)

# Learning rates, per task and method (the paper's are per task too): chosen on a validation slice held out of the
# training split (`validation_holdout`: never the dev split that is scored), by the median over 2 seeds, on a grid
# that brackets the optimum (a rate chosen at a grid's edge would extend the grid; RESULTS.md flags one). First the
# head's rate, with the head trained alone (glue_cpu_select_head); then every adapter's rate with that head rate
# (glue_cpu_select). `veralab results` checks these constants against the selection's records.
SELECTION_HOLDOUT = 1000  # our choice: one run's standard error about 1.3 points at 80% accuracy
SELECTION_SEEDS = [0, 1]
# "head": the head rate (head_lr) of head-only runs; others: lr. Extended where a first grid's edge won: head down
# to 1e-3 (3e-3 won on SST-2), VeRA up to 3e-1 and LoRA up to 3e-2 (1e-1 and 1e-2 won on SST-2 at seed 0), full
# fine-tuning up to 1e-3 (3e-4 won on SST-2).
SELECTION_GRID = {"head": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1), "vera": (3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
                  "lora": (1e-3, 3e-3, 1e-2, 3e-2), "full": (3e-5, 1e-4, 3e-4, 1e-3)}
GLUE_CPU_HEAD_LR = {"sst2": 3e-3, "stsb": 1e-2}  # chosen by glue_cpu_select_head
# MRPC: no head-only candidate shows skill (all at the majority class: glue_cpu_select_head), so its ranking is noise
# and chooses nothing; MRPC's heads train at STS-B's head rate, the one at which its check's LoRA and VeRA learned.
NO_SKILL_HEAD_LR = {"mrpc": "stsb"}
GLUE_CPU_HEAD_LR.update({task: GLUE_CPU_HEAD_LR[like] for task, like in NO_SKILL_HEAD_LR.items()})
GLUE_CPU_LR = {"sst2": {"vera": 1e-1, "lora": 1e-2, "full": 3e-4},  # chosen by glue_cpu_select
               "stsb": {"vera": 3e-2, "lora": 3e-3, "full": 1e-4},
               "mrpc": {"vera": 3e-2, "lora": 3e-3, "full": 1e-4}}

# glue_cpu, the reduction that fits a 2-core CPU: bf16 autocast (half the float32 time, within a point of it:
# BENCHMARKS.md) and, per task, the training examples MiniLM learns from in 3 epochs (`max_train_samples`, the same
# seeded examples for every method at a seed; None: the whole training set). SST-2 and STS-B: 1,024. MRPC: its whole
# training set; on 1,024 examples its arms stayed at the majority class (v1), on the whole set LoRA and VeRA leave it
# (glue_cpu_check). RTE stays in the `glue` profile (glue_cpu_check; reduction_text says why).
GLUE_CPU = {"max_train_samples": 1024, "precision": "bf16"}
GLUE_CPU_TRAIN = {"sst2": 1024, "stsb": 1024, "mrpc": None}
GLUE_CPU_TASKS = list(GLUE_CPU_TRAIN)
GLUE_CPU_SEEDS = [0, 1, 2, 3, 4]  # the paper's 5
# "X is close to Y" needs its 95% interval inside ±2 points: the v1 records' paired differences on STS-B (sd up to
# 1.5 points for VeRA against LoRA and against independent A/B) need 9 seeds for 80% power (verdicts.seeds_needed)
GLUE_CPU_CLOSE_SEEDS = list(range(9))


def reduction_text(profile: str) -> str:
    """How a GLUE profile's data and seeds differ from the paper's (for RESULTS.md)."""
    if profile == "glue_cpu":
        sizes = "; ".join(f"{GLUE_DIRS.get(t, t)}: " + (f"a seeded {n:,}-example subsample of its training set"
                                                       if n else "its whole training set")
                          for t, n in GLUE_CPU_TRAIN.items() if t in rates_chosen())
        return (f"the CPU reduction (`glue_cpu`), the examples each task learns from in {GLUE_EPOCHS} epochs "
                f"({sizes}), the same examples for every method at a seed; {len(GLUE_CPU_SEEDS)} seeds (the paper's), "
                f"{len(GLUE_CPU_CLOSE_SEEDS)} for the comparisons judged against a margin.")
    return f"the whole training sets and {len(GLUE_SEEDS)} seeds (`glue`)."


def head_chosen() -> list[str]:
    """The glue_cpu tasks whose head rate is set: they enter the adapters' selection. A task joins in stages: its
    head rate (glue_cpu_select_head; NO_SKILL_HEAD_LR where no head-only candidate shows skill), then its adapters'
    rates with that head rate (glue_cpu_select), then its studies (glue_cpu, glue_cpu_lower); each choice is written
    into the constants above, which a test and `veralab results` check against the selection's records."""
    return [t for t in GLUE_CPU_TASKS if t in GLUE_CPU_HEAD_LR]


def rates_chosen() -> list[str]:
    """The glue_cpu tasks whose every rate is chosen: the ones the studies run on."""
    return [t for t in GLUE_CPU_TASKS if t in GLUE_CPU_LR]


def train_size(task: str) -> dict:
    """A task's `task_overrides` entry for its training examples, where they differ from GLUE_CPU's."""
    size = GLUE_CPU_TRAIN[task]
    return {} if size == GLUE_CPU["max_train_samples"] else {"max_train_samples": size}


def task_rates(task: str, lower_vera: bool = False) -> dict:
    """A task's `task_overrides` entry: its head rate and each method's rate (VeRA's next grid rate down with
    `lower_vera`, the ablations' sensitivity row). A task without chosen rates (RTE; MRPC until its selection ends)
    takes STS-B's (a sentence-pair task too)."""
    chosen = task if task in GLUE_CPU_LR else "stsb"
    rates = {m: {"lr": lr} for m, lr in GLUE_CPU_LR[chosen].items()}
    if lower_vera:
        rates["vera"] = {"lr": next_rate_down("vera", GLUE_CPU_LR[chosen]["vera"])}
    return {"head_lr": GLUE_CPU_HEAD_LR[chosen], **rates}


def next_rate_down(method: str, rate: float) -> float:
    grid = SELECTION_GRID[method]
    if rate not in grid or grid.index(rate) == 0:
        raise ValueError(f"{method} rate {rate:g} has no rate below it in the selection grid {grid}")
    return grid[grid.index(rate) - 1]


def _glue(tasks, points, seeds=GLUE_SEEDS, reduction=None, lower_vera=False):
    base = {**GLUE_TEXT, "epochs": GLUE_EPOCHS, **(reduction or {})}
    sizes = {t: train_size(t) for t in tasks} if reduction else {}
    return {"tasks": list(tasks), "seeds": seeds, "base": base, "points": points,
            "task_overrides": {t: {**sizes.get(t, {}), **task_rates(t, lower_vera)} for t in tasks}}


def _glue_profile() -> dict:
    return {  # main table first: with the rank sweep's r=1024 and r=8 it covers every task's main comparison
        "main_table": _glue(["sst2", "mrpc", "rte", "stsb"], _main_points()),
        "vector_ablation": _glue(["rte", "mrpc", "stsb"], _vector_points(GLUE_RANK)),
        "init_ablation": _glue(["mrpc", "stsb"], _init_points(GLUE_RANK, (1e-7, 1e-1, 1.0))),
        "rank_sweep": _glue(["rte", "mrpc"], _rank_points((1, 4, 16, 64, 256, GLUE_RANK), (1, 2, 4, 8, 16))),
    }


def _main_points(rank=None):
    return [{"method": "head"}, {"method": "full"}, {"method": "lora", "rank": GLUE_LORA_RANK},
            {"method": "vera", "rank": rank or GLUE_RANK}]


def _glue_cpu_profile() -> dict:
    """The studies on the tasks whose rates are chosen; main table and vector ablation (the "close" comparisons) at
    9 seeds."""
    tasks, close, seeds = rates_chosen(), GLUE_CPU_CLOSE_SEEDS, GLUE_CPU_SEEDS
    return {"main_table": _glue(tasks, _main_points(), close, GLUE_CPU),
            "vector_ablation": _glue(tasks, _vector_points(GLUE_RANK), close, GLUE_CPU),
            "init_ablation": _glue(tasks, _init_points(GLUE_RANK, (1e-7, 1e-1, 1.0)), seeds, GLUE_CPU),
            "rank_sweep": _glue(tasks, _rank_points((1, 4, 16, 64, 256), (1, 4, 16)), seeds, GLUE_CPU)}


def _glue_cpu_lower() -> dict:
    """The ablations again with VeRA at its next grid rate down (sensitivity rows: is a verdict the doing of the
    chosen rate?), every variant and the default."""
    tasks, seeds = rates_chosen(), GLUE_CPU_SEEDS
    return {"vector_ablation": _glue(tasks, _vector_points(GLUE_RANK), seeds, GLUE_CPU, lower_vera=True),
            "init_ablation": _glue(tasks, _init_points(GLUE_RANK, (1e-7, 1e-1, 1.0)), seeds, GLUE_CPU,
                                   lower_vera=True)}


SELECTION_BASE = {**GLUE_TEXT, "epochs": GLUE_EPOCHS, **GLUE_CPU, "validation_holdout": SELECTION_HOLDOUT}


def _selection_head() -> dict:
    points = [{"method": "head", "head_lr": lr} for lr in SELECTION_GRID["head"]]
    return {"main_table": {"tasks": GLUE_CPU_TASKS, "seeds": SELECTION_SEEDS, "base": SELECTION_BASE,
                           "task_overrides": {t: train_size(t) for t in GLUE_CPU_TASKS if train_size(t)},
                           "points": points}}


def _selection() -> dict:
    ranks = {"vera": {"rank": GLUE_RANK}, "lora": {"rank": GLUE_LORA_RANK}, "full": {}}
    points = [{"method": m, **ranks[m], "lr": lr} for m in ranks for lr in SELECTION_GRID[m]]
    tasks = head_chosen()
    return {"main_table": {"tasks": tasks, "seeds": SELECTION_SEEDS, "base": SELECTION_BASE,
                           "task_overrides": {t: {"head_lr": GLUE_CPU_HEAD_LR[t], **train_size(t)} for t in tasks},
                           "points": points}}


def _pair_check() -> dict:
    """Whether MRPC's and RTE's main arms leave the majority class on their whole training sets (all but the
    held-out slice, which is scored) at STS-B's chosen rates: the measured reason to run the CPU studies there or
    not."""
    tasks = ["mrpc", "rte"]
    base = {**SELECTION_BASE, "max_train_samples": None}
    return {"main_table": {"tasks": tasks, "seeds": SELECTION_SEEDS, "base": base,
                           "task_overrides": {t: task_rates("stsb") for t in tasks},
                           "points": [p for p in _main_points() if p["method"] != "full"]}}


PROFILES = {
    "default": {
        "rank_sweep": {"tasks": ["rotten_tomatoes"], "seeds": DEFAULT_SEEDS, "base": DEFAULT_TEXT,
                       "points": _rank_points((4, 16, 64, 256), (1, 4, 16))},
        "init_ablation": {"tasks": ["rotten_tomatoes"], "seeds": DEFAULT_SEEDS, "base": DEFAULT_TEXT,
                          "points": _init_points(ABLATION_RANK, (1e-7, 1e-1, 1.0))},
        "vector_ablation": {"tasks": ["rotten_tomatoes"], "seeds": DEFAULT_SEEDS, "base": DEFAULT_TEXT,
                            "points": _vector_points(ABLATION_RANK)},
        "vit": {"tasks": ["mnist_5k", "digits"], "seeds": DEFAULT_SEEDS, "base": DEFAULT_IMAGE,
                "points": _vit_points(64, 4)},
    },
    "paper": {
        # VeRA ranks 1..1024 (paper's rank figure; our choice of grid points), LoRA ranks 1..64 (our choice)
        "rank_sweep": _paper_glue(_rank_points((1, 4, 16, 64, 256, PAPER_RANK), (1, 2, 4, 8, 16, 32, 64))),
        # d_init {1e-7, 1e-1, 1.0} and A/B init {Kaiming uniform, Kaiming normal, uniform} at r=1024 (paper)
        "init_ablation": _paper_glue(_init_points(PAPER_RANK, (1e-7, 1e-1, 1.0))),
        # both vectors, d only, b only, independent A/B per layer, at r=1024 (paper)
        "vector_ablation": _paper_glue(_vector_points(PAPER_RANK)),
        # ViT-B (ImageNet-21k), 10 shots per class, VeRA r=256 vs LoRA r=8 on q/v (paper: 24.6K vs 294.9K adapter
        # parameters); epochs, batch size and learning rates are our choice (the paper's are unverified here)
        "vit": {"tasks": ["cifar100", "food101", "flowers102", "resisc45"], "seeds": PAPER_SEEDS,
                "base": {"model": "vit_base_patch16_224.augreg_in21k", "shots_per_class": 10, "epochs": 10,
                         "batch_size": 32},
                # ViT-B and ViT-L (paper: 24.6K / 294.9K and 61.4K / 786.4K adapter parameters, r=256 and r=8)
                "points": _vit_points(256, 8) + [{**p, "model": "vit_large_patch16_224.augreg_in21k"}
                                                 for p in _vit_points(256, 8)]},
        # Table 2: RoBERTa-base and RoBERTa-large on SST-2, MRPC, CoLA, QNLI, RTE and STS-B
        "main_table": _paper_main_table(),
    },
    "glue": _glue_profile(),
    "glue_cpu": _glue_cpu_profile(),
    "glue_cpu_lower": _glue_cpu_lower(),
    "glue_cpu_select_head": _selection_head(),
    "glue_cpu_select": _selection(),
    "glue_cpu_check": _pair_check(),
}
