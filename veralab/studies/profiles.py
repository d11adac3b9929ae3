"""The studies' grids. `default`: the embedded model and data, sized to run all four studies on a 2-core CPU well
inside an hour. `paper`: the paper's setups (RoBERTa on GLUE, ViT-B few-shot), which need a GPU and the hub.

A grid per study: `tasks` × `seeds` × `points` (each point a dict of RunConfig fields over `base`; an optional
`axes` dict of lists multiplies the points). The seed sets both run_seed and the projection seed.
"""

from __future__ import annotations

VERA_RANKS_DEFAULT = (4, 16, 64, 256)
LORA_RANKS_DEFAULT = (1, 4, 16)
# The embedded runs are short (a few hundred steps), so their learning rates sit above the paper's (which trains
# 30-160 epochs): VeRA vectors 3e-2, LoRA 2e-3, task head 1e-2. They were chosen once on the validation split of
# the embedded task, never on a test split.
TEXT_LR = {"vera": 3e-2, "lora": 2e-3, "head": None, "full": 2e-5}
IMAGE_LR = {"vera": 2e-2, "lora": 5e-3, "head": None, "full": 5e-4}
DEFAULT_TEXT = {"epochs": 3, "max_train_samples": 1536, "max_eval_samples": 512, "max_length": 64, "batch_size": 32,
                "head_lr": 1e-2}
DEFAULT_IMAGE = {"epochs": 20, "shots_per_class": 50, "batch_size": 32, "head_lr": 1e-2}
ABLATION_RANK = 256


def _with_lr(points, lrs):
    return [{**p, "lr": lrs[p["method"]]} if lrs else p for p in points]


def _vector_points(rank, lrs=None):
    return _with_lr([{"method": "vera", "rank": rank},
                     {"method": "vera", "rank": rank, "train_b": False, "d_init": 0.0},
                     {"method": "vera", "rank": rank, "train_d": False},
                     {"method": "vera", "rank": rank, "shared": False}], lrs)


def _init_points(rank, d_inits, lrs=None):
    return _with_lr([{"method": "vera", "rank": rank, "d_init": d} for d in d_inits]
                    + [{"method": "vera", "rank": rank, "projection_init": init}
                       for init in ("kaiming_normal", "uniform")], lrs)


def _vit_points(rank, lora_rank, lrs=None):
    return _with_lr([{"method": "head"}, {"method": "full"}, {"method": "lora", "rank": lora_rank},
                     {"method": "vera", "rank": rank}], lrs)


def _rank_points(vera_ranks, lora_ranks, lrs=None):
    return _with_lr([{"method": "head"}] + [{"method": "vera", "rank": r} for r in vera_ranks]
                    + [{"method": "lora", "rank": r} for r in lora_ranks], lrs)


PROFILES = {
    "default": {
        "rank_sweep": {"tasks": ["rotten_tomatoes"], "seeds": [0], "base": DEFAULT_TEXT,
                       "points": _rank_points(VERA_RANKS_DEFAULT, LORA_RANKS_DEFAULT, TEXT_LR)},
        "init_ablation": {"tasks": ["rotten_tomatoes"], "seeds": [0], "base": DEFAULT_TEXT,
                          "points": _init_points(ABLATION_RANK, (1e-7, 1e-1, 1.0), TEXT_LR)},
        "vector_ablation": {"tasks": ["rotten_tomatoes"], "seeds": [0], "base": DEFAULT_TEXT,
                            "points": _vector_points(ABLATION_RANK, TEXT_LR)},
        "vit": {"tasks": ["mnist_5k", "digits"], "seeds": [0, 1, 2], "base": DEFAULT_IMAGE,
                "points": _vit_points(64, 4, IMAGE_LR)},
    },
    "paper": {
        # RoBERTa-base, r=1024 on query/value, batch 64, max length 512, per-task epochs and lrs of the public
        # replication (see PAPER.md); 5 seeds.
        "rank_sweep": {"tasks": ["rte", "mrpc", "cola", "stsb"], "seeds": [0, 1, 2, 3, 4],
                       "base": {"model": "roberta-base", "batch_size": 64, "max_length": 512, "epochs": 30},
                       "points": _rank_points((1, 4, 16, 64, 256, 1024), (1, 2, 4, 8, 16, 32, 64),
                                              {"vera": 1e-2, "lora": 4e-4, "head": None})},
        "init_ablation": {"tasks": ["rte", "mrpc", "cola", "stsb"], "seeds": [0, 1, 2, 3, 4],
                          "base": {"model": "roberta-base", "batch_size": 64, "max_length": 512, "epochs": 30,
                                   "lr": 1e-2},
                          "points": _init_points(1024, (1e-7, 1e-1, 1.0))},
        "vector_ablation": {"tasks": ["rte", "mrpc", "cola", "stsb"], "seeds": [0, 1, 2, 3, 4],
                            "base": {"model": "roberta-base", "batch_size": 64, "max_length": 512, "epochs": 30,
                                     "lr": 1e-2},
                            "points": _vector_points(1024)},
        "vit": {"tasks": ["cifar100", "food101", "flowers102", "resisc45"], "seeds": [0, 1, 2, 3, 4],
                "base": {"model": "vit_base_patch16_224.augreg_in21k", "shots_per_class": 10, "epochs": 10,
                         "batch_size": 32},
                "points": _vit_points(256, 8)},  # VeRA 24.6K, LoRA 294.9K trainable (paper)
    },
}
