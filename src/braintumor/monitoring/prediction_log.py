"""The prediction log: what the service saw and answered, one JSON object per line.

A record (schema version 1)::

    {"v": 1, "timestamp": "2026-11-20T08:15:02.123456+00:00", "model_version": "3",
     "predicted_label": "glioma", "confidence": 0.91,
     "probabilities": {"glioma": 0.91, "meningioma": 0.05, "notumor": 0.01, "pituitary": 0.03},
     "features": {"width": 512.0, "height": 512.0, ...},  # features.image_features
     "request_id": "..."}                                     # optional

Appending is one `write` of one line to a file opened in append mode, under a process-wide
lock: cheap enough for the predict path (tens of microseconds; the features themselves take
about 1 ms for a 512x512 slice), and safe across threads. Across worker processes, O_APPEND
keeps each small line whole on local file systems. Use one file per day (`daily_log_path`) so
logs rotate by themselves and a drift check can read a window of days.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from braintumor.constants import CLASS_NAMES
from braintumor.monitoring.features import (
    CONFIDENCE,
    PREDICTED_LABEL,
    image_features,
    prediction_features,
)

if TYPE_CHECKING:  # imported where tables are built: the service's path needs no pandas
    import pandas as pd

SCHEMA_VERSION = 1
LOG_SUFFIX = ".jsonl"
REQUIRED_KEYS: tuple[str, ...] = ("timestamp", "model_version", "predicted_label", "probabilities")
BASE_COLUMNS: tuple[str, ...] = ("timestamp", "model_version", PREDICTED_LABEL, CONFIDENCE)
PROBABILITY_PREFIX = "prob_"

# The service logs predictions to daily files in this folder when it is set.
LOG_DIR_ENV = "BRAINTUMOR_PREDICTION_LOG_DIR"

logger = logging.getLogger(__name__)
_append_lock = threading.Lock()


class PredictionLogError(ValueError):
    """A prediction log (or a record for it) that is not in the expected format."""


def prediction_record(
    probabilities: Sequence[float] | np.ndarray | Mapping[str, float],
    *,
    model_version: str | int,
    features: Mapping[str, float] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    timestamp: datetime | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Build one log record from a prediction (and the image's `image_features`)."""
    if isinstance(probabilities, Mapping):
        probs = {str(k): float(v) for k, v in probabilities.items()}
    else:
        values = np.asarray(probabilities, dtype=np.float64).ravel()
        if values.size != len(class_names):
            raise PredictionLogError(
                f"{values.size} probabilities for {len(class_names)} classes {list(class_names)}"
            )
        probs = {str(name): float(p) for name, p in zip(class_names, values, strict=True)}
    predicted = prediction_features(probs)
    when = timestamp or datetime.now(UTC)
    if when.tzinfo is None:
        raise PredictionLogError("timestamp must be timezone-aware (e.g. datetime.now(UTC))")
    record: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "timestamp": when.isoformat(),
        "model_version": str(model_version),
        PREDICTED_LABEL: predicted[PREDICTED_LABEL],
        CONFIDENCE: predicted[CONFIDENCE],
        "probabilities": probs,
        "features": {str(k): float(v) for k, v in (features or {}).items()},
    }
    if request_id is not None:
        record["request_id"] = str(request_id)
    return record


def daily_log_path(directory: str | Path, day: date | None = None) -> Path:
    """`<directory>/predictions-YYYY-MM-DD.jsonl` for `day` (default: today, UTC)."""
    day = day or datetime.now(UTC).date()
    return Path(directory) / f"predictions-{day.isoformat()}{LOG_SUFFIX}"


def append_prediction_log(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record (see `prediction_record`) as one line to the log at `path`."""
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise PredictionLogError(f"the record lacks {missing}; it needs {list(REQUIRED_KEYS)}")
    try:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise PredictionLogError(f"the record is not plain JSON ({exc})") from None
    target = Path(path)
    with _append_lock:
        try:
            handle = target.open("a", encoding="utf-8")
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = target.open("a", encoding="utf-8")
        with handle:
            handle.write(line)


def log_files(path: str | Path) -> list[Path]:
    """The log file itself, or every `*.jsonl` in a folder (sorted: daily files in order)."""
    source = Path(path)
    if source.is_file():
        return [source]
    if source.is_dir():
        return sorted(p for p in source.glob(f"*{LOG_SUFFIX}") if p.is_file())
    raise FileNotFoundError(f"no prediction log at {source}")


def read_prediction_log(
    path: str | Path,
    *,
    since: datetime | None = None,
    skip_malformed: bool = False,
) -> pd.DataFrame:
    """Read a log file, or a folder of them, into one row per prediction.

    Columns: `timestamp` (UTC), `model_version`, `predicted_label`, `confidence`,
    `prob_<class>` per class, then one column per image feature (NaN where a record has none).

    Args:
        path: a `.jsonl` file or a folder holding them.
        since: keep predictions at or after this (timezone-aware) time.
        skip_malformed: leave out lines that are not valid records instead of raising; how
            many were left out is in `frame.attrs["skipped_lines"]`. A half-written last line
            (a crash while appending) is always left out.

    Raises:
        PredictionLogError: a malformed line (with its file and line number).
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    skipped = 0
    for file in log_files(path):
        lines = file.read_text(encoding="utf-8").split("\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(_row(json.loads(line)))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                unterminated = number == len(lines)  # no newline after it: append cut short
                if skip_malformed or unterminated:
                    skipped += 1
                    continue
                raise PredictionLogError(
                    f"{file}:{number}: not a prediction record ({exc}); fix or remove the line, "
                    "or read with skip_malformed=True"
                ) from None
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(BASE_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    if since is not None:
        if since.tzinfo is None:
            raise PredictionLogError("`since` must be timezone-aware (e.g. ...tzinfo=UTC)")
        frame = frame[frame["timestamp"] >= pd.Timestamp(since)]
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    frame.attrs["skipped_lines"] = skipped
    return frame


def _row(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError("a record must be a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise KeyError(f"missing {missing}")
    probabilities = {str(k): float(v) for k, v in record["probabilities"].items()}
    confidence = float(record.get(CONFIDENCE, max(probabilities.values(), default=math.nan)))
    row: dict[str, Any] = {
        "timestamp": str(record["timestamp"]),
        "model_version": str(record["model_version"]),
        PREDICTED_LABEL: str(record[PREDICTED_LABEL]),
        CONFIDENCE: confidence,
    }
    row.update({f"{PROBABILITY_PREFIX}{k}": v for k, v in probabilities.items()})
    row.update({str(k): float(v) for k, v in (record.get("features") or {}).items()})
    return row


class PredictionLogger:
    """What the service calls after each prediction: features + record -> today's log file.

    Disabled (a no-op) when `directory` is None. Logging never fails a prediction: an
    unwritable folder or a bad value is counted in `failures` and reported once as a warning.
    """

    def __init__(
        self,
        directory: str | Path | None,
        *,
        model_version: str | int,
        class_names: Sequence[str] = CLASS_NAMES,
    ) -> None:
        self.directory = Path(directory) if directory else None
        self.model_version = str(model_version)
        self.class_names = tuple(class_names)
        self.failures = 0

    @classmethod
    def from_env(
        cls,
        *,
        model_version: str | int,
        class_names: Sequence[str] = CLASS_NAMES,
        environ: Mapping[str, str] | None = None,
    ) -> PredictionLogger:
        """Log to `$BRAINTUMOR_PREDICTION_LOG_DIR` when it is set, else not at all."""
        environ = os.environ if environ is None else environ
        return cls(
            environ.get(LOG_DIR_ENV) or None,
            model_version=model_version,
            class_names=class_names,
        )

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def log(
        self,
        gray: np.ndarray,
        probabilities: Sequence[float] | np.ndarray | Mapping[str, float],
        request_id: str | None = None,
        answer_columns: Mapping[str, float] | None = None,
    ) -> None:
        """Record one prediction (the probabilities the service answers, in `class_names`
        order or by name) for the decoded slice `gray` (about 1 ms for 512x512).
        `answer_columns` (the guard's `ood_score`, `out_of_distribution`, ...) are stored
        with the image features, so drift checks can monitor them too."""
        if self.directory is None:
            return
        try:
            record = prediction_record(
                probabilities,
                model_version=self.model_version,
                features={**image_features(gray), **(answer_columns or {})},
                class_names=self.class_names,
                request_id=request_id,
            )
            append_prediction_log(daily_log_path(self.directory), record)
        except (OSError, ValueError) as exc:
            self.failures += 1
            if self.failures == 1:
                logger.warning("prediction log disabled for this request (%s): %s", exc, self)

    def __repr__(self) -> str:
        return f"PredictionLogger({self.directory}, model_version={self.model_version!r})"
