"""The paper's findings as data: which arms each compares, on which tasks, and what the paper reports.

An arm is a selector (column -> value) over the collected records. The tasks of each finding are those its study
runs in the profile (one home: the profile's grid), so a finding never names a task its study did not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.config import DEFAULT


def vera(rank: int, **changes) -> dict:
    """The selector of a VeRA arm: the default variant at `rank`, with `changes` (d_init, train_b, ...)."""
    base = {"method": "vera", "rank": rank, "d_init": DEFAULT.d_init, "projection_init": DEFAULT.projection_init,
            "train_d": True, "train_b": True, "shared": True}
    return {**base, **changes}


@dataclass
class Comparison:
    x: dict  # column -> value selecting arm X's runs
    y: dict
    x_label: str
    y_label: str
    claim: str  # "beats" or "close"


@dataclass
class Finding:
    title: str
    paper: str  # what the paper reports
    tasks: tuple[str, ...]
    comparisons: list[Comparison]
    notes: list[str] = field(default_factory=list)
    seeds: tuple[int, ...] = ()  # the seeds its study runs: a pair missing at one of them leaves the finding open
    study: str = ""  # the study whose runs it reads (finding 1 the main table: its arms are in no other study)

    @property
    def ablation(self) -> bool:
        return self.study in ("vector_ablation", "init_ablation")


def glue_findings(rank: int, lora_rank: int, grids: dict[str, dict], low_rank: int = 1) -> list[Finding]:
    """The paper's findings as the glue profiles test them: VeRA at `rank`, LoRA at `lora_rank`, each finding on the
    tasks and seeds its study runs (`grids`: the profile's study -> grid)."""
    both = vera(rank)
    d_only = "d only (b fixed at 1, d from 0)"

    def of(study: str) -> dict:  # the tasks and seeds a finding's study runs
        grid = grids.get(study, {})
        return {"tasks": tuple(grid.get("tasks", ())), "seeds": tuple(grid.get("seeds", ())), "study": study}

    return [
        Finding("VeRA is close to LoRA with fewer adapter parameters",
                "RoBERTa-base GLUE: VeRA r=1024 (43,008 adapter parameters) within about a point of LoRA r=8 "
                "(294,912) on most tasks",
                comparisons=[Comparison(both, {"method": "lora", "rank": lora_rank}, f"VeRA r={rank}",
                                        f"LoRA r={lora_rank}", "close")], **of("main_table")),
        Finding("VeRA's score grows with its rank",
                "score rises with the rank (adapter parameters) in the paper's rank figure (RTE, MRPC)",
                comparisons=[Comparison(both, vera(low_rank), f"VeRA r={rank}", f"VeRA r={low_rank}", "beats")],
                **of("rank_sweep")),
        Finding("Training both scaling vectors beats training either alone",
                "both d and b > d only, b only",
                comparisons=[Comparison(both, vera(rank, train_b=False, d_init=0.0), "both d and b", d_only, "beats"),
                             Comparison(both, vera(rank, train_d=False), "both d and b", "b only (d fixed at 1)",
                                        "beats")], **of("vector_ablation")),
        Finding("d initialized at 1e-1 and at 1e-7 beats 1.0", "d_init 1e-1 and 1e-7 > 1.0",
                comparisons=[Comparison(both, vera(rank, d_init=1.0), "d_init=0.1", "d_init=1", "beats"),
                             Comparison(vera(rank, d_init=1e-7), vera(rank, d_init=1.0), "d_init=1e-7", "d_init=1",
                                        "beats")], **of("init_ablation")),
        Finding("Kaiming uniform A/B beats uniform", "Kaiming uniform > uniform on [0, 1]",
                comparisons=[Comparison(both, vera(rank, projection_init="uniform"), "Kaiming uniform", "uniform",
                                        "beats")], **of("init_ablation")),
        Finding("Kaiming uniform A/B beats Kaiming normal", "Kaiming uniform > Kaiming normal",
                comparisons=[Comparison(both, vera(rank, projection_init="kaiming_normal"), "Kaiming uniform",
                                        "Kaiming normal", "beats")], **of("init_ablation")),
        Finding("Shared A/B are as good as independent ones per layer",
                "one shared random pair costs little against independent pairs per layer",
                comparisons=[Comparison(both, vera(rank, shared=False), "shared A/B", "independent A/B", "close")],
                **of("vector_ablation")),
    ]


def vit_findings(rank: int, lora_rank: int, tasks: tuple[str, ...]) -> list[Finding]:
    """The image findings on the default profile's tiny-ViT study."""
    ran = ("Ran: the project's tiny ViT (0.45M parameters, pretrained on Fashion-MNIST), not ViT-B, on MNIST-5k and "
           "sklearn digits (50 training images per class, 15 epochs; test-split accuracy; `results/default`).")
    return [
        Finding("ViT: VeRA is close to LoRA with fewer adapter parameters",
                "ViT-B few-shot: VeRA (24,576) within about a point of LoRA (294,912)", tasks,
                [Comparison(vera(rank), {"method": "lora", "rank": lora_rank}, f"VeRA r={rank}", f"LoRA r={lora_rank}",
                            "close")], notes=[ran]),
        Finding("ViT: VeRA beats training the head alone", "VeRA > head only on every image task", tasks,
                [Comparison(vera(rank), {"method": "head"}, f"VeRA r={rank}", "head only", "beats")], notes=[ran]),
    ]
