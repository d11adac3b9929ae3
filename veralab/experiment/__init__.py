"""The experiment layer: one run of one configuration (models, tasks and data, training loop, metrics, run record).
It builds on veralab.core and knows nothing of sweeps, notebooks or figures."""

from .config import DEFAULT_HEAD_LR, DEFAULT_LR, RunConfig
from .run import RunFailed, TaskSetup, run_experiment

__all__ = ["DEFAULT_HEAD_LR", "DEFAULT_LR", "RunConfig", "RunFailed", "TaskSetup", "run_experiment"]
