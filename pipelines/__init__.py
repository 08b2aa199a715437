"""ZenML pipelines: wiring only (steps do the work, the library holds the logic)."""
