"""`finetune-kit studio`: a local web UI over run folders and recipes. It launches the same `train` the CLI
runs, as its own process, and reads what every run writes (log, metrics, emissions, card); it holds no state a
run folder does not."""

from finetune_kit.studio.app import create_app
from finetune_kit.studio.settings import StudioSettings

__all__ = ["StudioSettings", "create_app"]
