"""veralab: study VeRA (Kopiczko, Blankevoort & Asano, ICLR 2024) and reproduce its ablations.

Three layers, imports pointing down only:
  veralab.core        adapters: config, layers, fast kernel, injection/merge, checkpoints, PEFT interop
  veralab.experiment  one run: models, tasks and data, training loop, metrics, run record, run_experiment
  veralab.studies     many runs: profiles and grids, sweeps, notebook helpers, collect, figures, CLI
"""

from .core import (
    AdapterConfig,
    AdapterFileError,
    AdapterMismatchError,
    ConfigError,
    add_adapters,
    count_parameters,
    export_peft,
    import_peft,
    load_adapter,
    merge_adapters,
    save_adapter,
    to_peft_config,
    unmerge_adapters,
)
from .core.checkpoint import veralab_version

__version__ = veralab_version()

__all__ = [
    "AdapterConfig", "AdapterFileError", "AdapterMismatchError", "ConfigError", "add_adapters", "count_parameters",
    "export_peft", "import_peft", "load_adapter", "merge_adapters", "save_adapter", "to_peft_config",
    "unmerge_adapters",
]
