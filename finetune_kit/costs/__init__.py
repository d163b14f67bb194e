"""What a run costs, as plain maths the training core needs: `plan` counts a run's work, `prediction` turns
measured unit costs into an estimate, `finish` tells a running budget check what the end of the run will still
cost, `calibrated` is what a budgeted run keeps from its calibration. Measuring (the calibration) and the budget
policy compose the core and live above it, in `finetune_kit.estimate`.
"""
