"""How long a run will take and what it will emit, measured before it trains (`finetune-kit estimate`), and the
budget checks that use it: `plan` counts the run's work, `calibration` times a few real steps of it, `prediction`
extrapolates, `report` prints, `budget` refuses a run its estimate puts over budget, `finish` tells a running
budget check what the end of the run will still cost.

Modules are imported directly (not re-exported here): `calibration` builds runs with the training runner, which
itself uses `finish`.
"""
