"""CO2 and energy of a run, measured offline with codecarbon."""

from finetune_kit.emissions.tracker import EmissionsRecord, RunTracker, sum_records

__all__ = ["EmissionsRecord", "RunTracker", "sum_records"]
