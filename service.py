"""BentoML service for the brain-tumour MRI classifier.

Endpoints: POST /predict, /predict_batch (adaptive batching), /explain (Grad-CAM); GET /
(web page), /metadata, /healthz, /readyz, /metrics (Prometheus). All logic lives in
`braintumor.serving`; this file wires it into BentoML. Configuration: environment variables
documented in `braintumor/serving/config.py` (BRAINTUMOR_MODEL_TAG picks the model).
"""

import contextlib
import logging
import sys
import threading
from pathlib import Path
from typing import Any

# In the repository and inside a built Bento the library sits in ./src next to this file;
# only the modules the service needs are packaged (see bentofile.yaml).
_SRC = Path(__file__).resolve().parent / "src"
if (_SRC / "braintumor").is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import bentoml  # noqa: E402
import numpy as np  # noqa: E402

# BentoML's adaptive batching looks up pandas' DataFrame class in sys.modules. If the Grad-CAM
# warm-up thread (importing Keras, which imports pandas when present) is half-way through
# importing pandas at that moment, a batch request fails with a 500. Finish that import first.
with contextlib.suppress(ImportError):
    import pandas  # noqa: F401
from pydantic import ValidationError  # noqa: E402
from pydantic_core import PydanticCustomError  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from braintumor.constants import BENTO_SERVICE_NAME  # noqa: E402
from braintumor.monitoring.prediction_log import PredictionLogger  # noqa: E402
from braintumor.preprocessing import preprocess  # noqa: E402
from braintumor.serving.config import ServingConfig  # noqa: E402
from braintumor.serving.metadata import ModelCard  # noqa: E402
from braintumor.serving.predictor import ModelLoadError, Predictor  # noqa: E402
from braintumor.serving.schemas import (  # noqa: E402
    BatchItem,
    ErrorBody,
    Explanation,
    Prediction,
    make_prediction,
)
from braintumor.serving.telemetry import count_prediction, count_rejection  # noqa: E402
from braintumor.serving.uploads import (  # noqa: E402
    BodySizeLimitMiddleware,
    UploadRejected,
    read_request_images,
    read_upload,
)
from braintumor.serving.web import make_web_app  # noqa: E402

# A built Bento pins its model through the `model_tag` Bento argument (see build_bento).
CONFIG = ServingConfig.from_env(arguments=vars(bentoml.use_arguments()))
logger = logging.getLogger("braintumor.service")


def _current_metadata() -> dict:
    service = bentoml.get_current_service()
    if service is None:
        raise RuntimeError("the model is still loading")
    return service.describe()


# Upload parsing is ours, not BentoML's generic multipart handling: it enforces the size
# limits, accepts raw image bodies and never fetches a URL sent in place of a file. The schemas
# still declare file fields, so OpenAPI and BentoML's clients see the usual multipart API.
class ImageInput(bentoml.IODescriptor):
    image: Path

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> "ImageInput":
        try:
            images = await read_request_images(request, "image", CONFIG.limits, max_files=1)
        except UploadRejected as exc:
            images = [exc]
        return cls.model_construct(image=images[0])


class BatchInput(bentoml.IODescriptor):
    images: list[Path]

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> "BatchInput":
        try:
            images = await read_request_images(
                request, "images", CONFIG.limits, max_files=CONFIG.max_batch_size
            )
        except UploadRejected as exc:  # the whole request is unusable: a 400 from BentoML
            error = {"type": PydanticCustomError(exc.reason, exc.detail), "loc": ("images",)}
            raise ValidationError.from_exception_data(
                "predict_batch", [{**error, "input": None}]
            ) from None
        return cls.model_construct(images=images)


def _rejection(exc: UploadRejected) -> JSONResponse:
    count_rejection(exc.reason)
    return JSONResponse(exc.to_body(), status_code=exc.status)


@bentoml.service(
    name=BENTO_SERVICE_NAME,
    workers=CONFIG.workers,
    threads=CONFIG.api_threads,
    traffic={"timeout": 60},
)
@bentoml.asgi_app(make_web_app(_current_metadata), path="/")
class BrainTumorClassifier:
    """Classifies MRI slices into glioma, meningioma, no tumour or pituitary tumour."""

    model_ref = bentoml.models.BentoModel(CONFIG.model_tag)

    def __init__(self) -> None:
        stored = self.model_ref
        self.model_tag = str(stored.tag)
        self.card = ModelCard.from_metadata(stored.info.metadata)
        self.spec = self.card.spec
        self.threshold = CONFIG.threshold_for(self.card)
        self.predictor = Predictor(
            stored.path, self.card, backend=CONFIG.backend, threads=CONFIG.onnx_threads
        )
        # Drift monitoring reads these daily logs (on when BRAINTUMOR_PREDICTION_LOG_DIR is set).
        self.prediction_log = PredictionLogger.from_env(
            model_version=self.card.model_version, class_names=self.card.class_names
        )
        if CONFIG.preload_explainer:  # /explain needs TensorFlow: load it off the request path
            threading.Thread(target=self._warm_up_explainer, daemon=True).start()

    def _warm_up_explainer(self) -> None:
        from braintumor.serving.explain import warm_up

        try:
            warm_up(self.predictor)
        except Exception:  # /explain will report the problem itself; predictions go on
            logger.exception("Grad-CAM warm-up failed")

    def __is_ready__(self) -> bool:
        return self.predictor is not None

    def describe(self) -> dict:
        """What GET /metadata returns: the model card plus how it is being served."""
        return {
            "model_tag": self.model_tag,
            **self.card.to_metadata(),
            "serving": {
                "backend": self.predictor.backend,
                "review_threshold": self.threshold,
                "input_shape": list(self.card.input_shape),
                "max_upload_bytes": CONFIG.limits.max_bytes,
                "max_pixels": CONFIG.limits.max_pixels,
                "max_batch_size": CONFIG.max_batch_size,
            },
        }

    def _read(self, image: Any) -> tuple[np.ndarray, np.ndarray]:
        """(decoded gray slice, model input) of one upload; raises UploadRejected."""
        gray = read_upload(image, CONFIG.limits).pixels
        return gray, preprocess(gray, self.spec)

    def _answer(self, gray: np.ndarray, probs: np.ndarray) -> Prediction:
        prediction = make_prediction(
            probs, self.card.class_names, self.threshold, self.card.model_version, self.model_tag
        )
        count_prediction(prediction.label, prediction.needs_review)
        self.prediction_log.log(gray, probs)
        return prediction

    @bentoml.api(route="/predict", input_spec=ImageInput)
    def predict(self, image: Any = None) -> Prediction:
        """One image (JPEG, PNG, TIFF, BMP or DICOM) -> label, probabilities, review flag."""
        try:
            gray, tensor = self._read(image)
        except UploadRejected as exc:
            return _rejection(exc)
        return self._answer(gray, self.predictor.predict(tensor[None])[0])

    @bentoml.api(
        route="/predict_batch",
        input_spec=BatchInput,
        batchable=True,
        max_batch_size=CONFIG.max_batch_size,
        max_latency_ms=CONFIG.max_latency_ms,
    )
    def predict_batch(self, images: list[Any]) -> list[BatchItem]:
        """Several images in one request (repeat the `images` field); concurrent requests are
        batched together. A refused image gets its own error and does not fail the others."""
        items: list[BatchItem | None] = [None] * len(images)
        grays, tensors, positions = [], [], []
        for position, image in enumerate(images):
            try:
                gray, tensor = self._read(image)
            except UploadRejected as exc:
                count_rejection(exc.reason)
                items[position] = BatchItem(ok=False, error=ErrorBody(**exc.to_body()))
                continue
            grays.append(gray)
            tensors.append(tensor)
            positions.append(position)
        if tensors:
            probs = self.predictor.predict(np.stack(tensors))
            for position, gray, row in zip(positions, grays, probs, strict=True):
                items[position] = BatchItem(ok=True, prediction=self._answer(gray, row))
        return items

    @bentoml.api(route="/explain", input_spec=ImageInput)
    def explain(self, image: Any = None) -> Explanation:
        """One image -> the prediction plus a Grad-CAM overlay of the predicted class (PNG)."""
        from braintumor.evaluation.gradcam import GradCamError
        from braintumor.serving.explain import b64, explain_tensor

        try:
            gray, tensor = self._read(image)
        except UploadRejected as exc:
            return _rejection(exc)
        prediction = self._answer(gray, self.predictor.predict(tensor[None])[0])
        index = self.card.class_names.index(prediction.label)
        try:
            explained = explain_tensor(self.predictor.keras_model, tensor, class_index=index)
        except (ModelLoadError, GradCamError) as exc:  # the model, not the upload, is at fault
            logger.error("Grad-CAM unavailable: %s", exc)
            body = {"error": "explanation_unavailable", "detail": " ".join(str(exc).split())}
            return JSONResponse(body, status_code=503)
        return Explanation(
            **prediction.model_dump(),
            explained_class=prediction.label,
            overlay_png=b64(explained.overlay_png),
            input_png=b64(explained.input_png),
        )


BrainTumorClassifier.add_asgi_middleware(
    BodySizeLimitMiddleware, max_bytes=CONFIG.limits.max_request_bytes
)
