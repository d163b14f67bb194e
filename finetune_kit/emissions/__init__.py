"""CO2 and energy of a run, measured offline with codecarbon."""

from finetune_kit.emissions.tracker import EmissionsBudget, EmissionsRecord, RunTracker, sum_processes, sum_records

__all__ = ["EmissionsBudget", "EmissionsRecord", "RunTracker", "sum_processes", "sum_records"]
