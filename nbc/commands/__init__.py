"""The `nbc` commands, one module per group: training (simulate, train, evaluate, promote, models), serve, demo."""
