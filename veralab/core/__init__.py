"""The adapter core: configuration, layers, the merged-ΔW kernel, injection and merging, checkpoints and PEFT
interop. It depends on nothing else in veralab, so it can be read, tested and reused on its own."""

from .checkpoint import AdapterFileError, AdapterMismatchError, count_parameters, load_adapter, save_adapter
from .config import AdapterConfig, ConfigError
from .inject import add_adapters, merge_adapters, unmerge_adapters
from .peft_format import export_peft, import_peft, to_peft_config

__all__ = [
    "AdapterConfig", "AdapterFileError", "AdapterMismatchError", "ConfigError", "add_adapters", "count_parameters",
    "export_peft", "import_peft", "load_adapter", "merge_adapters", "save_adapter", "to_peft_config",
    "unmerge_adapters",
]
