"""BentoML service for the brain-tumour MRI classifier.

Endpoints: POST /predict, /predict_batch (adaptive batching), /explain (Grad-CAM); GET /
(web page), /metadata, /healthz, /readyz, /metrics (Prometheus). All logic lives in
`braintumor.serving` and `braintumor.guard`; this file wires it into BentoML. It runs the
model's ONNX serving graph and imports neither TensorFlow nor Keras. Every answer carries a
request id (`X-Request-ID`, `request_id`) and is one line of the prediction log; API keys are
optional. Configuration: environment variables documented in `braintumor/serving/config.py`
(BRAINTUMOR_MODEL_TAG picks the model).
"""

import logging
import sys
import time
from pathlib import Path
from typing import Any

# In the repository and inside a built Bento the library sits in ./src next to this file;
# only the modules the service needs are packaged (see bentofile.yaml).
_SRC = Path(__file__).resolve().parent / "src"
if (_SRC / "braintumor").is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import bentoml  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from pydantic_core import PydanticCustomError  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from braintumor.constants import BENTO_SERVICE_NAME  # noqa: E402
from braintumor.guard.input_checks import failed_checks  # noqa: E402
from braintumor.monitoring.features import answer_columns  # noqa: E402
from braintumor.monitoring.prediction_log import PredictionLogger  # noqa: E402
from braintumor.preprocessing import preprocess  # noqa: E402
from braintumor.serving.audit import (  # noqa: E402
    AuditTrail,
    RequestIdMiddleware,
    new_request_id,
    request_id_of,
)
from braintumor.serving.auth import ApiKeyMiddleware  # noqa: E402
from braintumor.serving.config import ServingConfig  # noqa: E402
from braintumor.serving.explain import b64, encode_png, overlay  # noqa: E402
from braintumor.serving.guard import Guard  # noqa: E402
from braintumor.serving.metadata import ModelCard  # noqa: E402
from braintumor.serving.predictor import ModelLoadError, Predictor  # noqa: E402
from braintumor.serving.schemas import (  # noqa: E402
    BatchItem,
    ErrorBody,
    Explanation,
    Prediction,
    make_prediction,
)
from braintumor.serving.telemetry import (  # noqa: E402
    count_prediction,
    count_rejection,
    count_review_reasons,
)
from braintumor.serving.uploads import (  # noqa: E402
    NOT_BRAIN_MRI,
    BodySizeLimitMiddleware,
    Upload,
    UploadRejected,
    read_request_images,
    read_upload_with_digest,
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


def _uploads(images: list[bytes | UploadRejected], request: Any) -> list[Upload | UploadRejected]:
    """Each received image with its request's id (from RequestIdMiddleware), so the id
    travels with it through adaptive batching."""
    request_id = request_id_of(request.scope)
    return [Upload(image, request_id) if isinstance(image, bytes) else image for image in images]


# Upload parsing is ours, not BentoML's generic multipart handling: it enforces the size
# limits, accepts raw image bodies and never fetches a URL sent in place of a file. The schemas
# still declare file fields, so OpenAPI and BentoML's clients see the usual multipart API.
class ImageInput(bentoml.IODescriptor):
    image: Path

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> "ImageInput":
        try:
            images = _uploads(
                await read_request_images(request, "image", CONFIG.limits, max_files=1), request
            )
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
        return cls.model_construct(images=_uploads(images, request))


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
    """Classifies MRI slices into the classes of the model it serves (its card's task:
    glioma, meningioma, no tumour or pituitary tumour; or tumour vs no tumour)."""

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
        self.guard = Guard.load(stored.path, self.card.guard)
        # Drift monitoring reads these daily logs (on when BRAINTUMOR_PREDICTION_LOG_DIR is set).
        self.prediction_log = PredictionLogger.from_env(
            model_version=self.card.model_version, class_names=self.card.class_names
        )

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
                "reject_not_mri": CONFIG.reject_not_mri,
            },
        }

    def _read(self, image: Any) -> tuple[np.ndarray, np.ndarray, list[str], AuditTrail]:
        """(decoded gray slice, model input, failed input checks, audit trail) of one upload;
        raises UploadRejected (also for a failed check when hard reject is on). An upload
        passed in directly, not through HTTP, gets a new request id."""
        received = image.received_at if isinstance(image, Upload) else time.perf_counter()
        request_id = (image.request_id if isinstance(image, Upload) else None) or new_request_id()
        decoded, sha256 = read_upload_with_digest(image, CONFIG.limits)
        failed = failed_checks(decoded.pixels, decoded.colourfulness)
        if failed and CONFIG.reject_not_mri:
            raise UploadRejected(
                NOT_BRAIN_MRI,
                f"this does not look like a brain MRI slice (failed checks: {', '.join(failed)})",
            )
        trail = AuditTrail(request_id, sha256, received)
        return decoded.pixels, preprocess(decoded.pixels, self.spec), failed, trail

    def _answers(
        self,
        grays: list[np.ndarray],
        tensors: list[np.ndarray],
        failed: list[list[str]],
        trails: list[AuditTrail],
    ) -> list[Prediction]:
        """Run the model and the guard on a batch of read uploads, count and log them."""
        outputs = self.predictor.infer(np.stack(tensors))
        assessments = self.guard.assess(outputs, failed, self.card.class_names, self.threshold)
        answers = []
        for gray, probs, assessment, trail in zip(
            grays, outputs.probabilities, assessments, trails, strict=True
        ):
            prediction = make_prediction(
                probs,
                self.card.class_names,
                self.threshold,
                self.card.model_version,
                self.model_tag,
                assessment,
                request_id=trail.request_id,
            )
            count_prediction(prediction.label, prediction.needs_review)
            count_review_reasons(prediction.review_reasons)
            self.prediction_log.log(
                gray,
                probs,
                request_id=trail.request_id,
                answer_columns=answer_columns(prediction),
                input_sha256=trail.input_sha256,
                needs_review=prediction.needs_review,
                review_reasons=prediction.review_reasons,
                latency_ms=trail.latency_ms(),
            )
            answers.append(prediction)
        return answers

    @bentoml.api(route="/predict", input_spec=ImageInput)
    def predict(self, image: Any = None) -> Prediction:
        """One image (JPEG, PNG, TIFF, BMP or DICOM) -> label, probabilities, prediction
        set, review flag and its reasons."""
        try:
            gray, tensor, failed, trail = self._read(image)
        except UploadRejected as exc:
            return _rejection(exc)
        return self._answers([gray], [tensor], [failed], [trail])[0]

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
        grays, tensors, failures, trails, positions = [], [], [], [], []
        for position, image in enumerate(images):
            try:
                gray, tensor, failed, trail = self._read(image)
            except UploadRejected as exc:
                count_rejection(exc.reason)
                items[position] = BatchItem(ok=False, error=ErrorBody(**exc.to_body()))
                continue
            grays.append(gray)
            tensors.append(tensor)
            failures.append(failed)
            trails.append(trail)
            positions.append(position)
        if tensors:
            answers = self._answers(grays, tensors, failures, trails)
            for position, answer in zip(positions, answers, strict=True):
                items[position] = BatchItem(ok=True, prediction=answer)
        return items

    @bentoml.api(route="/explain", input_spec=ImageInput)
    def explain(self, image: Any = None) -> Explanation:
        """One image -> the prediction plus a Grad-CAM overlay of the predicted class (PNG),
        computed from the ONNX serving graph."""
        try:
            gray, tensor, failed, trail = self._read(image)
        except UploadRejected as exc:
            return _rejection(exc)
        prediction = self._answers([gray], [tensor], [failed], [trail])[0]
        index = self.card.class_names.index(prediction.label)
        try:
            heatmap = self.predictor.explain(tensor, class_index=index)
        except ModelLoadError as exc:  # the model, not the upload, is at fault
            logger.error("Grad-CAM unavailable: %s", exc)
            body = {"error": "explanation_unavailable", "detail": " ".join(str(exc).split())}
            return JSONResponse(body, status_code=503)
        return Explanation(
            **prediction.model_dump(),
            explained_class=prediction.label,
            overlay_png=b64(encode_png(overlay(tensor, heatmap))),
            input_png=b64(encode_png(tensor[..., 0])),
        )


# Outermost first: every answer, a 401 or 413 included, carries its X-Request-ID; keys are
# checked before a body is read.
BrainTumorClassifier.add_asgi_middleware(RequestIdMiddleware)
if CONFIG.api_keys:
    BrainTumorClassifier.add_asgi_middleware(ApiKeyMiddleware, keys=CONFIG.api_keys)
BrainTumorClassifier.add_asgi_middleware(
    BodySizeLimitMiddleware, max_bytes=CONFIG.limits.max_request_bytes
)
