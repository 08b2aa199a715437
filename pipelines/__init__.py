"""ZenML pipelines: wiring only. `training.py` is the main one."""
