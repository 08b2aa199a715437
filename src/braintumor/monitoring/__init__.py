"""Drift monitoring: per-image feature tables, Evidently drift reports with a pure decision,
and the prediction log the service appends to. No ZenML here (see `steps/` and `pipelines/`).
"""
