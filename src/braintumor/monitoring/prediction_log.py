"""The prediction log: what the service saw and answered, one JSON object per line.

A record (schema version 2; the audit trail of one answer)::

    {"v": 2, "timestamp": "2026-11-20T08:15:02.123456+00:00", "model_version": "3",
     "predicted_label": "glioma", "confidence": 0.91,
     "probabilities": {"glioma": 0.91, "meningioma": 0.05, "notumor": 0.01, "pituitary": 0.03},
     "features": {"width": 512.0, "height": 512.0, ...},  # features.image_features
     "request_id": "9f0c...",            # the answer's X-Request-ID
     "input_sha256": "3a7b...",           # sha256 of the upload's bytes as received
     "needs_review": false, "review_reasons": [],
     "latency_ms": 12.4}                  # from the upload in hand to the answer

The audit keys are optional (the service always writes them); version 1 records, which have
none of them but `request_id`, are read the same way.

Appending is one `write` system call of one whole line to a file opened in append mode (no
userspace buffer), under a process-wide lock: once `append_prediction_log` returns the line is
in the operating system's hands, so stopping the service loses no line (a power cut can still
lose what the OS had not yet flushed). It is cheap enough for the predict path (tens of
microseconds; the features themselves take about 1 ms for a 512x512 slice) and safe across
threads; across worker processes, O_APPEND keeps each line whole on local file systems. Use one
file per day (`daily_log_path`) so logs rotate by themselves and a drift check can read a
window of days; `PredictionLogger` deletes daily files older than its retention
(`expired_logs`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
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

SCHEMA_VERSION = 2  # 2 added the audit keys (input_sha256, needs_review, ...); 1 still reads
LOG_SUFFIX = ".jsonl"
REQUIRED_KEYS: tuple[str, ...] = ("timestamp", "model_version", "predicted_label", "probabilities")
BASE_COLUMNS: tuple[str, ...] = ("timestamp", "model_version", PREDICTED_LABEL, CONFIDENCE)
PROBABILITY_PREFIX = "prob_"

# The service logs predictions to daily files in this folder when it is set, and deletes the
# daily files older than the retention (in days; 0 keeps them forever).
LOG_DIR_ENV = "BRAINTUMOR_PREDICTION_LOG_DIR"
RETENTION_ENV = "BRAINTUMOR_PREDICTION_LOG_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 90
DAILY_NAME = re.compile(r"predictions-(\d{4}-\d{2}-\d{2})" + re.escape(LOG_SUFFIX))
_SHA256 = re.compile(r"[0-9a-f]{64}")

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
    input_sha256: str | None = None,
    needs_review: bool | None = None,
    review_reasons: Sequence[str] | None = None,
    latency_ms: float | None = None,
) -> dict[str, Any]:
    """Build one log record from a prediction (and the image's `image_features`); the audit
    keys (see the module doc) are written when given."""
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
    if input_sha256 is not None:
        if not _SHA256.fullmatch(input_sha256):
            raise PredictionLogError(f"input_sha256 is not a sha256 hex digest: {input_sha256!r}")
        record["input_sha256"] = input_sha256
    if needs_review is not None:
        record["needs_review"] = bool(needs_review)
    if review_reasons is not None:
        record["review_reasons"] = [str(reason) for reason in review_reasons]
    if latency_ms is not None:
        if not math.isfinite(latency_ms) or latency_ms < 0:
            raise PredictionLogError(
                f"latency_ms must be a finite, non-negative number: {latency_ms}"
            )
        record["latency_ms"] = round(float(latency_ms), 3)
    return record


def daily_log_path(directory: str | Path, day: date | None = None) -> Path:
    """`<directory>/predictions-YYYY-MM-DD.jsonl` for `day` (default: today, UTC)."""
    day = day or datetime.now(UTC).date()
    return Path(directory) / f"predictions-{day.isoformat()}{LOG_SUFFIX}"


def expired_logs(directory: str | Path, today: date, days: int) -> list[Path]:
    """The daily files (`daily_log_path` names) in `directory` older than a retention of
    `days` days: those of `today - days` and before, so `days` daily files are kept, today's
    included. `days=0` keeps everything; other files are never listed."""
    if days < 0:
        raise ValueError(f"the retention must be 0 (keep forever) or more days, not {days}")
    folder = Path(directory)
    if days == 0 or not folder.is_dir():
        return []
    oldest_kept = today - timedelta(days=days - 1)
    expired = []
    for path in sorted(folder.iterdir()):
        match = DAILY_NAME.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:  # predictions-2026-13-45.jsonl: not one of ours
            continue
        if day < oldest_kept:
            expired.append(path)
    return expired


def append_prediction_log(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record (see `prediction_record`) as one line to the log at `path`: one
    unbuffered `write` in append mode, so the whole line is in the file when this returns."""
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise PredictionLogError(f"the record lacks {missing}; it needs {list(REQUIRED_KEYS)}")
    try:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise PredictionLogError(f"the record is not plain JSON ({exc})") from None
    data = line.encode("utf-8")
    target = Path(path)
    with _append_lock:
        try:
            handle = target.open("ab", buffering=0)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = target.open("ab", buffering=0)
        with handle:
            written = handle.write(data)
            while written < len(data):  # a short write (rare on regular files): finish it
                written += handle.write(data[written:])


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
    When a day's file is first written to (by this process), the daily files older than
    `retention_days` are deleted (`expired_logs`; 0 keeps them all).
    """

    def __init__(
        self,
        directory: str | Path | None,
        *,
        model_version: str | int,
        class_names: Sequence[str] = CLASS_NAMES,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if retention_days < 0:
            raise ValueError(
                f"{RETENTION_ENV} must be 0 (keep forever) or more days, not {retention_days}"
            )
        self.directory = Path(directory) if directory else None
        self.model_version = str(model_version)
        self.class_names = tuple(class_names)
        self.retention_days = int(retention_days)
        self.failures = 0
        self._day: date | None = None  # the day whose file was last written to

    @classmethod
    def from_env(
        cls,
        *,
        model_version: str | int,
        class_names: Sequence[str] = CLASS_NAMES,
        environ: Mapping[str, str] | None = None,
    ) -> PredictionLogger:
        """Log to `$BRAINTUMOR_PREDICTION_LOG_DIR` when it is set, else not at all; keep
        `$BRAINTUMOR_PREDICTION_LOG_RETENTION_DAYS` days of files (default 90, 0: forever)."""
        environ = os.environ if environ is None else environ
        raw = environ.get(RETENTION_ENV, "").strip()
        try:
            retention = int(raw) if raw else DEFAULT_RETENTION_DAYS
        except ValueError:
            raise ValueError(
                f"{RETENTION_ENV} must be a whole number of days, not {raw!r}"
            ) from None
        return cls(
            environ.get(LOG_DIR_ENV) or None,
            model_version=model_version,
            class_names=class_names,
            retention_days=retention,
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
        *,
        input_sha256: str | None = None,
        needs_review: bool | None = None,
        review_reasons: Sequence[str] | None = None,
        latency_ms: float | None = None,
    ) -> None:
        """Record one prediction (the probabilities the service answers, in `class_names`
        order or by name) for the decoded slice `gray` (about 1 ms for 512x512), with its
        audit keys (see the module doc). `answer_columns` (the guard's `ood_score`,
        `out_of_distribution`, ...) are stored with the image features, so drift checks can
        monitor them too. The line is in the file when this returns."""
        if self.directory is None:
            return
        try:
            now = datetime.now(UTC)
            record = prediction_record(
                probabilities,
                model_version=self.model_version,
                features={**image_features(gray), **(answer_columns or {})},
                class_names=self.class_names,
                timestamp=now,
                request_id=request_id,
                input_sha256=input_sha256,
                needs_review=needs_review,
                review_reasons=review_reasons,
                latency_ms=latency_ms,
            )
            if now.date() != self._day:  # a new day's file: drop the expired ones first
                self._day = now.date()
                self._delete_expired(now.date())
            append_prediction_log(daily_log_path(self.directory, now.date()), record)
        except (OSError, ValueError) as exc:
            self.failures += 1
            if self.failures == 1:
                logger.warning("prediction log disabled for this request (%s): %s", exc, self)

    def _delete_expired(self, today: date) -> None:
        assert self.directory is not None
        for path in expired_logs(self.directory, today, self.retention_days):
            try:
                path.unlink(missing_ok=True)  # another worker may have deleted it first
            except OSError as exc:
                logger.warning("cannot delete the expired prediction log %s: %s", path, exc)
            else:
                logger.info(
                    "deleted the prediction log %s (older than %d days)", path, self.retention_days
                )

    def __repr__(self) -> str:
        return f"PredictionLogger({self.directory}, model_version={self.model_version!r})"
