"""Package a trained model: write it into the BentoML model store with its card, and build
the Bento (service + web page + model) from `bentofile.yaml`.

Used by the pipeline's package step and by `braintumor package`. BentoML is imported inside
the functions (it is slow to import and not needed by the rest of the library).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from braintumor.constants import MODEL_NAME
from braintumor.serving.config import MODEL_TAG_ARGUMENT
from braintumor.serving.metadata import ModelCard
from braintumor.serving.optimize import RuntimeCheck, accept_runtime, check_runtime, quantize_int8
from braintumor.serving.predictor import (
    CARD_FILE,
    INT8_FILE,
    MODEL_FILE,
    ONNX_FILE,
    OOD_FILE,
    PROBABILITIES,
)

if TYPE_CHECKING:
    from braintumor.guard.ood import OodDetector

BENTOFILE = "bentofile.yaml"
MODEL_TAG_ENV = "BRAINTUMOR_MODEL_TAG"

logger = logging.getLogger(__name__)


class PackagingError(RuntimeError):
    """Packaging failed: a missing file, a model-store problem or a failed `bentoml build`."""


def save_to_bentoml(
    model: Any,
    card: ModelCard,
    onnx_path: str | Path | None = None,
    name: str = MODEL_NAME,
    labels: dict[str, str] | None = None,
    int8_path: str | Path | None = None,
    detector: OodDetector | None = None,
) -> str:
    """Save a model and its card as a new version in the BentoML model store.

    Args:
        model: A `.keras` file path, or a Keras model (saved with `model.save`).
        card: The model card, stored as the model's metadata and as `card.json`.
        onnx_path: The serving graph (`models.export.to_serving_onnx`) of the same model,
            what the service runs.
        name: Model-store name.
        labels: Extra labels; `stage`, `backbone`, `model_version` and `runtime` are set.
        int8_path: A quantized serving graph that passed `optimize.accept_runtime`; when
            given, the service uses it first.
        detector: The fitted OOD detector that `card.guard` describes (`ood.npz`).

    Returns:
        The new model tag, `name:version`.
    """
    import bentoml

    keras_path = Path(model) if isinstance(model, (str, Path)) else None
    if keras_path is not None and (not keras_path.is_file() or keras_path.suffix != ".keras"):
        raise PackagingError(f"{keras_path} is not a .keras file")
    for kind, path in (("ONNX", onnx_path), ("int8 ONNX", int8_path)):
        if path is not None and not Path(path).is_file():
            raise PackagingError(f"{kind} file {path} does not exist")
    if (card.guard is None) != (detector is None):
        raise PackagingError("card.guard and the OOD detector come together (fit_guard)")
    runtime = "onnx-int8" if int8_path else "onnx" if onnx_path else "keras"
    all_labels = {
        "stage": card.stage,
        "backbone": card.backbone,
        "model_version": str(card.model_version),
        "runtime": runtime,
        **(labels or {}),
    }
    with bentoml.models.create(name, labels=all_labels, metadata=card.to_metadata()) as stored:
        target = Path(stored.path_of(MODEL_FILE))
        if keras_path is not None:
            shutil.copyfile(keras_path, target)
        else:
            model.save(target)
        for source, file in ((onnx_path, ONNX_FILE), (int8_path, INT8_FILE)):
            if source is not None:
                shutil.copyfile(source, stored.path_of(file))
        if detector is not None:
            detector.to_npz(stored.path_of(OOD_FILE))
        Path(stored.path_of(CARD_FILE)).write_text(json.dumps(card.to_metadata(), indent=2))
    return str(stored.tag)


def find_project_dir(start: str | Path | None = None) -> Path:
    """The folder holding `bentofile.yaml`: `start` (default: the working directory) or one
    of its parents, else the repository this library was installed from."""
    candidates = [Path(start or Path.cwd()).resolve()]
    candidates += list(candidates[0].parents)
    candidates.append(Path(__file__).resolve().parents[3])
    for folder in candidates:
        if (folder / BENTOFILE).is_file():
            return folder
    raise PackagingError(
        f"no {BENTOFILE} found from {candidates[0]} upwards: run from the project folder "
        "or pass project_dir"
    )


def build_bento(
    model_tag: str,
    project_dir: str | Path | None = None,
    version: str | None = None,
    labels: dict[str, str] | None = None,
    timeout_s: float = 600,
) -> str:
    """Build the Bento of `bentofile.yaml` for one model with `bentoml build`, labelled with
    the model's version, stage and backbone (plus `labels`).

    The model tag is resolved to its exact version and passed as the Bento argument
    `model_tag`: the service's class-level `BentoModel` packages that version, and the Bento
    serves it whatever "latest" is later. The build runs in a fresh process (a clean import of
    the service) against the model store of `BENTOML_HOME`.

    Returns:
        The Bento tag, `brain_tumor_classifier:version`.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    folder = find_project_dir(project_dir)
    try:
        stored = bentoml.models.get(model_tag)
    except NotFound:
        raise PackagingError(f"model {model_tag} is not in the BentoML model store") from None
    card = ModelCard.from_metadata(stored.info.metadata)
    all_labels = {
        "model_version": str(card.model_version),
        "stage": card.stage,
        "backbone": card.backbone,
        **(labels or {}),
    }
    command = [sys.executable, "-m", "bentoml", "build", str(folder), "--output", "tag"]
    command += ["--arg", f"{MODEL_TAG_ARGUMENT}={stored.tag}"]
    if version:
        command += ["--version", version]
    for key, value in all_labels.items():
        command += ["--label", f"{key}={value}"]
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    env.pop(MODEL_TAG_ENV, None)  # the argument decides
    try:
        result = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise PackagingError(f"bentoml build did not finish within {timeout_s:.0f} s") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise PackagingError(f"bentoml build failed (exit {result.returncode}):\n{tail}")
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("__tag__:"):
            return line.removeprefix("__tag__:").strip()
    raise PackagingError(f"bentoml build printed no tag:\n{result.stdout[-2000:]}")


def export_verified_onnx(
    model: Any,
    card: ModelCard,
    folder: str | Path,
    parity_inputs: np.ndarray | None = None,
    atol: float = 1e-4,
) -> Path | None:
    """Export `model` (a Keras model or `.keras` path) as the ONNX serving graph, with the
    card's temperature, and check its probabilities against Keras.

    Parity is checked on `parity_inputs` (real preprocessed images are best) plus seeded
    random images of the card's input shape. Serving runs this graph only, so a failed
    export or check is a `PackagingError`.
    """
    from braintumor.models.export import ExportError, check_onnx_parity, to_serving_onnx

    keras_model = _keras(model)
    rng = np.random.default_rng(0)
    inputs = rng.uniform(0, 255, size=(8, *card.input_shape)).astype(np.float32)
    if parity_inputs is not None:
        inputs = np.concatenate([np.asarray(parity_inputs, np.float32), inputs])
    path = Path(folder) / ONNX_FILE
    try:
        to_serving_onnx(keras_model, path, temperature=card.temperature)
        worst = check_onnx_parity(
            keras_model, path, inputs, atol=atol, temperature=card.temperature
        )
    except (ExportError, ImportError) as exc:
        raise PackagingError(f"cannot export the ONNX serving graph: {exc}") from exc
    logger.info("ONNX export matches Keras within %.1e on %d images", worst, len(inputs))
    return path


def quantize_verified(
    onnx_path: Path,
    folder: str | Path,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> tuple[Path | None, RuntimeCheck | None]:
    """Quantize the ONNX export to int8 (calibrated on every other image of `images`) and
    keep it only if `accept_runtime` passes on all of `images` (F1 when `labels` are given).
    `reference` is the float serving graph's output on `images` when already computed.
    """
    path = Path(folder) / INT8_FILE
    try:
        quantize_int8(onnx_path, images[::2], path)
        if reference is None:
            reference = _onnx_probs(onnx_path, images)
        candidate = _onnx_probs(path, images)
    except Exception as exc:  # quantization is an optimisation: never fail packaging for it
        logger.warning("no int8 model (fp32 ONNX is served): quantization failed: %s", exc)
        return None, None
    check = check_runtime("onnx-int8", reference, candidate, labels)
    if not accept_runtime(check):
        logger.warning("int8 model rejected (fp32 ONNX is served): %s", check.to_dict())
        return None, check
    logger.info("int8 model accepted: %s", check.to_dict())
    return path, check


def package_model(
    model: Any,
    card: ModelCard,
    quantize: bool = True,
    parity_inputs: np.ndarray | None = None,
    parity_labels: np.ndarray | None = None,
    build: bool = True,
    project_dir: str | Path | None = None,
    guard: tuple[Any, OodDetector] | None = None,
) -> tuple[str, str | None]:
    """Save to the model store and (by default) build the Bento: `(model_tag, bento_tag)`.

    This is what the pipeline's package step and `braintumor package` call. The serving
    graph (ONNX, the card's temperature inside) is always exported and checked.

    Args:
        model: A `.keras` file or a Keras model.
        card: Its model card, with the temperature the pipeline's evaluate_winner step
            fitted (packaging never fits one); `runtime_checks` and `guard` are set here.
        quantize: Also try an int8 serving graph; it needs `parity_inputs` (real images, used
            to calibrate and to check it) and ships only if it answers like Keras: weighted
            F1 within 0.005 (with `parity_labels`) and the same class on >= 99.5% of images.
        parity_inputs: Preprocessed validation images (N, H, W, C); 100+ recommended.
        parity_labels: Their class indices, for the F1 check.
        build: Also build the Bento.
        project_dir: Folder of bentofile.yaml (default: found from the working directory).
        guard: `(GuardCard, OodDetector)` from `guard.fit.fit_guard` for this model and its
            temperature; stored in the card and as `ood.npz`.
    """
    from braintumor.evaluation.calibration import calibrate as tempered

    checks: dict[str, dict[str, Any]] = {}
    int8_path = None
    keras_model = _keras(model)  # loaded once; the original file is what gets saved
    x = reference = None
    if parity_inputs is not None and len(parity_inputs):
        x = np.asarray(parity_inputs, np.float32)
        reference = tempered(np.asarray(keras_model(x, training=False)), card.temperature)
    if guard is not None:
        card = card.model_copy(update={"guard": guard[0]})
    with tempfile.TemporaryDirectory(prefix="braintumor-onnx-") as scratch:
        onnx_path = export_verified_onnx(keras_model, card, scratch, parity_inputs)
        if x is not None:
            checks["onnx"] = check_runtime(
                "onnx", reference, _onnx_probs(onnx_path, x), parity_labels
            ).to_dict()
            if quantize:
                int8_path, int8_check = quantize_verified(
                    onnx_path, scratch, x, parity_labels, reference
                )
                if int8_check is not None:
                    checks["onnx-int8"] = {
                        **int8_check.to_dict(),
                        "accepted": int8_path is not None,
                    }
        elif quantize:
            logger.info("no int8 model: quantization needs parity_inputs (real images)")
        card = card.model_copy(update={"runtime_checks": checks})
        model_tag = save_to_bentoml(
            model,
            card,
            onnx_path=onnx_path,
            int8_path=int8_path,
            detector=None if guard is None else guard[1],
        )
    if not build:
        return model_tag, None
    return model_tag, build_bento(model_tag, project_dir=project_dir)


def _keras(model: Any) -> Any:
    from braintumor.models.saving import load_keras_model

    return load_keras_model(model) if isinstance(model, (str, Path)) else model


def _onnx_probs(path: Path, x: np.ndarray) -> np.ndarray:
    from braintumor.serving.predictor import onnx_session

    session = onnx_session(path)
    feed = {session.get_inputs()[0].name: np.asarray(x, np.float32)}
    return session.run([PROBABILITIES], feed)[0]
