"""The studies' grids. `default`: the embedded model and data, sized to run all four studies on a 2-core CPU well
inside an hour. `paper`: the paper's setups (RoBERTa on GLUE, ViT-B few-shot), which need a GPU and the hub.

A grid per study: `tasks` × `seeds` × `points` (each point a dict of RunConfig fields over `base`; an optional
`axes` dict of lists multiplies the points). The seed sets both run_seed and the projection seed.
"""

from __future__ import annotations

VERA_RANKS_DEFAULT = (4, 16, 64, 256)
LORA_RANKS_DEFAULT = (1, 4, 16)
DEFAULT_TEXT = {"epochs": 2, "max_train_samples": 768, "max_eval_samples": 512, "max_length": 64, "batch_size": 32,
                "lr": None, "head_lr": None}
DEFAULT_IMAGE = {"epochs": 10, "shots_per_class": 20, "batch_size": 32, "lr": None, "head_lr": None}
ABLATION_RANK = 256


def _vector_points(rank):
    return [{"method": "vera", "rank": rank},
            {"method": "vera", "rank": rank, "train_b": False, "d_init": 0.0},
            {"method": "vera", "rank": rank, "train_d": False},
            {"method": "vera", "rank": rank, "shared": False}]


def _init_points(rank, d_inits):
    return ([{"method": "vera", "rank": rank, "d_init": d} for d in d_inits]
            + [{"method": "vera", "rank": rank, "projection_init": init} for init in ("kaiming_normal", "uniform")])


def _vit_points(rank, lora_rank):
    return [{"method": "head"}, {"method": "full"}, {"method": "lora", "rank": lora_rank},
            {"method": "vera", "rank": rank}]


PROFILES = {
    "default": {
        "rank_sweep": {"tasks": ["rotten_tomatoes"], "seeds": [0], "base": DEFAULT_TEXT,
                       "points": [{"method": "head"}]
                       + [{"method": "vera", "rank": r} for r in VERA_RANKS_DEFAULT]
                       + [{"method": "lora", "rank": r} for r in LORA_RANKS_DEFAULT]},
        "init_ablation": {"tasks": ["rotten_tomatoes"], "seeds": [0], "base": DEFAULT_TEXT,
                          "points": _init_points(ABLATION_RANK, (1e-7, 1e-1, 1.0))},
        "vector_ablation": {"tasks": ["rotten_tomatoes"], "seeds": [0], "base": DEFAULT_TEXT,
                            "points": _vector_points(ABLATION_RANK)},
        "vit": {"tasks": ["mnist_5k", "digits"], "seeds": [0, 1, 2], "base": DEFAULT_IMAGE,
                "points": _vit_points(64, 4)},
    },
    "paper": {
        # RoBERTa-base, r=1024 on query/value, batch 64, max length 512, per-task epochs and lrs of the public
        # replication (see PAPER.md); 5 seeds.
        "rank_sweep": {"tasks": ["rte", "mrpc", "cola", "stsb"], "seeds": [0, 1, 2, 3, 4],
                       "base": {"model": "roberta-base", "batch_size": 64, "max_length": 512, "epochs": 30},
                       "points": [{"method": "vera", "rank": r, "lr": 1e-2} for r in (1, 4, 16, 64, 256, 1024)]
                       + [{"method": "lora", "rank": r, "lr": 4e-4} for r in (1, 2, 4, 8, 16, 32, 64)]},
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
