"""What the service answers, as pydantic models (they also document the API in OpenAPI)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from braintumor.serving.predictor import needs_review, top_class


class Prediction(BaseModel):
    """One image's answer. `needs_review` is true when the top probability is below
    `review_threshold`: the model is not sure and a person should look."""

    label: str = Field(description="the most probable class")
    confidence: float = Field(description="calibrated probability of `label`")
    probabilities: dict[str, float] = Field(description="calibrated probability of every class")
    needs_review: bool
    review_threshold: float
    model_version: str = Field(description="ZenML model version that produced the answer")
    model_tag: str = Field(description="BentoML model-store tag")


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
) -> Prediction:
    """Turn one row of calibrated probabilities into the service's answer."""
    label, confidence = top_class(probs, class_names)
    return Prediction(
        label=label,
        confidence=round(confidence, 6),
        probabilities={
            name: round(float(p), 6) for name, p in zip(class_names, probs, strict=True)
        },
        needs_review=needs_review(probs, threshold),
        review_threshold=threshold,
        model_version=model_version,
        model_tag=model_tag,
    )
