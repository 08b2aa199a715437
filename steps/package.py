"""Step: package the promoted model for serving (BentoML model store + a built Bento)."""

from __future__ import annotations

from typing import Annotated

import keras
import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.logger import get_logger

from braintumor.constants import ARTIFACT_PACKAGED, VAL
from braintumor.guard.ood import OodDetector
from braintumor.guard.review import GuardCard
from braintumor.run_config import PackageConfig
from braintumor.serving.store import package_model
from braintumor.training.dataset import label_indices, load_images, select_split
from braintumor_zenml.materializers import ImageFolder
from braintumor_zenml.registry import model_card

logger = get_logger(__name__)

STAGE_ORDER = ("none", "staging", "production")


@step(enable_cache=False)
def package(
    best_model: keras.Model,
    guard: dict,
    ood_detector: OodDetector,
    stage: str,
    images: ImageFolder,
    splits: pd.DataFrame,
    settings: PackageConfig,
) -> Annotated[dict, ARTIFACT_PACKAGED]:
    """Packages a model that reached at least the configured stage in this run, with its
    guard; the card's temperature is the one calibrate_winner fitted (and the guard used):
    packaging fits nothing."""
    if not settings.enabled:
        reason = "packaging is disabled in the run config"
    elif STAGE_ORDER.index(stage) < STAGE_ORDER.index(settings.stage):
        reason = f"the model is in stage {stage!r}; packaging starts at {settings.stage!r}"
    else:
        reason = ""
    if reason:
        logger.info(f"not packaged: {reason}")
        return {"packaged": False, "reason": reason}
    model_version = get_step_context().model_version
    card = model_card(model_version, stage=stage)
    # Validation images (never test ones) check the ONNX and int8 runtimes against Keras.
    rows = select_split(splits, VAL)
    parity = load_images(rows["path"].tolist(), images.path, card.spec).astype("float32")
    labels = label_indices(rows["label"].tolist(), card.class_names)
    model_tag, bento_tag = package_model(
        best_model,
        card,
        parity_inputs=parity,
        parity_labels=labels,
        build=settings.build_bento,
        guard=(GuardCard.model_validate(guard), ood_detector),
    )
    log_metadata(
        metadata={"bentoml_model": model_tag, "bento": bento_tag or "not built"}, infer_model=True
    )
    return {"packaged": True, "model_tag": model_tag, "bento_tag": bento_tag}
