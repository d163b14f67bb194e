"""How long a run will take and what it will emit, measured before it trains (`finetune-kit estimate`), and the
budget checks that use it: `calibration` times a few real steps of the run with the training core, `budget`
estimates a run and says whether its estimate is over budget. The plain maths (counting work, predicting,
the end of a run's cost) is in `finetune_kit.costs`, below the core; the estimate's table is printed by
`finetune_kit.commands.estimate_report`.
"""
