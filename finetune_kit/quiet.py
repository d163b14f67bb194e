"""The libraries' own chatter (load reports, progress bars, deprecation notices, bitsandbytes' kernel
notes) kept off the screen: the CLI calls `quiet_libraries` through `console.configure_output`, and a
script that imports the libraries itself (bench/) calls it before them, since some print on import."""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Read by each library when it is imported, so they also hold in worker processes. A variable the
# user set wins.
_LIBRARY_NOISE_OFF = {
    "TRANSFORMERS_VERBOSITY": "error",  # load reports and other warnings of transformers
    "DATASETS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # "Generating train split", "Map"
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub's bars, and transformers' (which follow them)
    "TQDM_DISABLE": "1",  # plain tqdm bars (transformers' GGUF reader), read when tqdm is first imported
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # "Creating initial MLflow database tables..." (training.report_to: mlflow)
}
# Libraries without such a variable: their loggers are set directly. bitsandbytes, imported by peft
# whenever it is installed, logs a warning at import on a CPU with AVX512-BF16 ("Failed to load CPU
# gemm_4bit_forward from kernels-community") that Python's last-resort handler prints to stderr.
_QUIET_LOGGERS = ("bitsandbytes",)
# Deprecation notices one library gives about another's API (peft calling transformers, ...): nothing
# a user of the toolkit can act on.
_LIBRARIES = r"(accelerate|datasets|peft|torch|transformers|trl)(\.|$)"


def quiet_libraries(verbose: bool = False) -> None:
    """Silence the libraries' own logs, bars and deprecation notices; with `verbose`, let them speak.
    Call it before importing them: libraries imported earlier are quietened too, but what they
    printed on import is out already."""
    for variable, value in _LIBRARY_NOISE_OFF.items():
        if not verbose:
            os.environ.setdefault(variable, value)
        elif os.environ.get(variable) == value:
            del os.environ[variable]
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
    if not verbose:
        _quieten_loaded_libraries()
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=_LIBRARIES)


def _quieten_loaded_libraries() -> None:
    """Libraries imported before (the test suite, a notebook) no longer read those variables."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()  # huggingface_hub's bars too
    if "datasets" in sys.modules:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
        disable_progress_bars()
