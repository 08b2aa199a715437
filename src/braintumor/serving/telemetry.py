"""Prometheus counters of the service, next to BentoML's own request metrics at /metrics.

Created once per process (re-importing `service.py`, as tests do, must not register them
twice).
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def predictions_counter() -> Any:
    import bentoml

    return bentoml.metrics.Counter(
        name="braintumor_predictions",
        documentation="Images classified, by predicted label and review flag",
        labelnames=["label", "needs_review"],
    )


@cache
def rejections_counter() -> Any:
    import bentoml

    return bentoml.metrics.Counter(
        name="braintumor_rejected_uploads",
        documentation="Uploads refused before prediction, by reason",
        labelnames=["reason"],
    )


def count_prediction(label: str, needs_review: bool) -> None:
    predictions_counter().labels(label=label, needs_review=str(needs_review).lower()).inc()


def count_rejection(reason: str) -> None:
    rejections_counter().labels(reason=reason).inc()


@cache
def review_reasons_counter() -> Any:
    import bentoml

    return bentoml.metrics.Counter(
        name="braintumor_review_reasons",
        documentation="Answers flagged for review, by reason (an answer can have several)",
        labelnames=["reason"],
    )


def count_review_reasons(reasons: list[str]) -> None:
    for reason in reasons:
        review_reasons_counter().labels(reason=reason).inc()
