"""What the service answers, as pydantic models (they also document the API in OpenAPI)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from braintumor.constants import NO_TUMOUR
from braintumor.serving.predictor import needs_review, top_class

if TYPE_CHECKING:
    from braintumor.serving.guard import Assessment


class Prediction(BaseModel):
    """One image's answer. `needs_review` is true when any of `review_reasons` holds: the
    model has no good evidence for its answer and a person should look."""

    label: str = Field(description="the most probable class")
    confidence: float = Field(description="calibrated probability of `label`")
    probabilities: dict[str, float] = Field(description="calibrated probability of every class")
    needs_review: bool
    review_reasons: list[str] = Field(
        default_factory=list,
        description="low_confidence, ambiguous, out_of_distribution, not_brain_mri",
    )
    tumour_probability: float | None = Field(
        None,
        description="the binary view of the same answer: the probability of any tumour "
        "(1 - P(notumor)); null for a model without a no-tumour class",
    )
    prediction_set: list[str] | None = Field(
        None,
        description="conformal prediction set: the classes the true one is among, at the "
        "model's configured error rate (null: the model has no conformal calibration)",
    )
    ood_score: float | None = Field(
        None, description="out-of-distribution score; above the model's threshold is flagged"
    )
    energy: float | None = Field(None, description="energy score of the logits (lower: familiar)")
    failed_checks: list[str] = Field(
        default_factory=list, description="input checks that failed (reason not_brain_mri)"
    )
    review_threshold: float
    model_version: str = Field(description="ZenML model version that produced the answer")
    model_tag: str = Field(description="BentoML model-store tag")
    request_id: str = Field(
        description="the request's id (its X-Request-ID, else a generated one): the key of "
        "this answer's line in the prediction log"
    )


class Explanation(Prediction):
    """A prediction with its Grad-CAM: where in the image the explained class's evidence is."""

    explained_class: str
    overlay_png: str = Field(description="Grad-CAM overlay on the model input, base64 PNG")
    input_png: str = Field(description="the model input as the model saw it, base64 PNG")


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable reason, e.g. not_an_image, truncated")
    detail: str = Field(description="one line a person can act on")


class BatchItem(BaseModel):
    """One image of a batch: a prediction, or the reason this image was refused."""

    ok: bool
    prediction: Prediction | None = None
    error: ErrorBody | None = None


def make_prediction(
    probs: Sequence[float] | np.ndarray,
    class_names: Sequence[str],
    threshold: float,
    model_version: str,
    model_tag: str,
    assessment: Assessment | None = None,
    *,
    request_id: str,
) -> Prediction:
    """Turn one row of calibrated probabilities (and the guard's assessment) into the
    service's answer to the request `request_id`."""
    label, confidence = top_class(probs, class_names)
    if assessment is None:
        reasons = ["low_confidence"] if needs_review(probs, threshold) else []
        extra = {}
    else:
        reasons = assessment.reasons
        extra = {
            "prediction_set": assessment.prediction_set,
            "ood_score": None if assessment.ood_score is None else round(assessment.ood_score, 6),
            "energy": round(assessment.energy, 6),
            "failed_checks": assessment.failed_checks,
        }
    if NO_TUMOUR in class_names:
        extra["tumour_probability"] = round(
            1.0 - float(probs[list(class_names).index(NO_TUMOUR)]), 6
        )
    return Prediction(
        label=label,
        confidence=round(confidence, 6),
        probabilities={
            name: round(float(p), 6) for name, p in zip(class_names, probs, strict=True)
        },
        needs_review=bool(reasons),
        review_reasons=reasons,
        **extra,
        review_threshold=threshold,
        model_version=model_version,
        model_tag=model_tag,
        request_id=request_id,
    )
