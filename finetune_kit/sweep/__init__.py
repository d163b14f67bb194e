"""Hyperparameter sweeps with Optuna, judged on the task's metric and, optionally, on grams CO2eq.

The `sweep:` section's schema lives with every other in `finetune_kit.config.sweep`; this package
imports nothing itself, so Optuna loads only when a sweep runs.
"""
