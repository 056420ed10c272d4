"""Pure domain: schemas, catalogue, settings, the fold, features, rules and the decision (no I/O)."""
