"""Hyperparameter sweeps with Optuna, judged on the task's metric and, optionally, on grams CO2eq.

The recipe model imports `sweep.config`, so this package imports nothing itself: Optuna loads only
when a sweep runs.
"""
