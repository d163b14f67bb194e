"""The commands a person runs, composed from the layers below: `train` estimates a budgeted run, has the training
core train it, writes its model card and pushes it. The console's side of a run (its bars, the estimate's table)
lives here too."""
