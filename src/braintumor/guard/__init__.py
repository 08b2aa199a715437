"""Knowing when the model has no evidence: checks before the model, an out-of-distribution
detector on its embedding, conformal prediction sets, and the pure rule that turns them into
`needs_review` with its reasons.

Serving imports `input_checks`, `ood`, `conformal` and `review` and needs NumPy and OpenCV
only; fitting (scikit-learn, crepes) happens in the training pipeline (`fit.py`).
"""
