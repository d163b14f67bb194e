"""The Hub side of a run: model cards (and, later, push and search)."""
