"""veralab: study VeRA (Kopiczko, Blankevoort & Asano, ICLR 2024) and reproduce its ablations."""

__version__ = "0.1.0"

from .adapters import add_adapters, count_parameters, merge_adapters, unmerge_adapters  # noqa: E402
from .checkpoint import AdapterMismatchError, export_peft, import_peft, load_adapter, save_adapter  # noqa: E402
from .config import AdapterConfig, ConfigError  # noqa: E402

__all__ = [
    "AdapterConfig", "AdapterMismatchError", "ConfigError", "add_adapters", "count_parameters", "export_peft",
    "import_peft", "load_adapter", "merge_adapters", "save_adapter", "unmerge_adapters",
]
