"""The prediction log round-trips, survives concurrent appends and tells where it is broken;
version 2 records the audit trail, version 1 lines still read, old daily files expire."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from braintumor.monitoring.features import IMAGE_FEATURES, image_features
from braintumor.monitoring.prediction_log import (
    SCHEMA_VERSION,
    PredictionLogError,
    PredictionLogger,
    append_prediction_log,
    daily_log_path,
    expired_logs,
    prediction_record,
    read_prediction_log,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def record(i: int = 0, **kwargs):
    rng = np.random.default_rng(i)
    probs = rng.dirichlet(np.ones(4))
    gray = rng.integers(0, 255, (64, 48), dtype=np.uint8)
    defaults = dict(
        model_version=3,
        features=image_features(gray),
        timestamp=T0 + timedelta(minutes=i),
        request_id=f"req-{i}",
    )
    return prediction_record(probs, **{**defaults, **kwargs}), probs


def test_round_trip(tmp_path: Path):
    log = tmp_path / "logs" / "predictions.jsonl"
    written = []
    for i in range(5):
        rec, probs = record(i)
        append_prediction_log(log, rec)
        written.append((rec, probs))
    frame = read_prediction_log(log)
    assert len(frame) == 5
    for (rec, probs), (_, row) in zip(written, frame.iterrows(), strict=True):
        assert row["timestamp"] == datetime.fromisoformat(rec["timestamp"])
        assert row["model_version"] == "3"
        assert (
            row["predicted_label"]
            == ("glioma", "meningioma", "notumor", "pituitary")[int(np.argmax(probs))]
        )
        assert row["confidence"] == pytest.approx(probs.max())
        assert row["prob_pituitary"] == pytest.approx(probs[3])
        for name in IMAGE_FEATURES:
            assert row[name] == pytest.approx(rec["features"][name])
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert frame.attrs["skipped_lines"] == 0


def test_each_record_is_one_json_line(tmp_path: Path):
    log = tmp_path / "p.jsonl"
    rec, _ = record()
    append_prediction_log(log, rec)
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == rec
    assert rec["v"] == SCHEMA_VERSION == 2 and rec["request_id"] == "req-0"


def test_concurrent_appends_keep_every_line_whole(tmp_path: Path):
    log = tmp_path / "p.jsonl"
    rec, _ = record()

    def writer() -> None:
        for _ in range(200):
            append_prediction_log(log, rec)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_prediction_log(log)) == 1600


def test_a_folder_of_daily_logs_is_read_in_time_order_and_filtered(tmp_path: Path):
    day1, day2 = date(2026, 11, 20), date(2026, 11, 21)
    assert daily_log_path(tmp_path, day1).name == "predictions-2026-11-20.jsonl"
    for i in (3, 2):  # written out of order
        append_prediction_log(daily_log_path(tmp_path, day2), record(i + 1440)[0])
    append_prediction_log(daily_log_path(tmp_path, day1), record(0)[0])
    frame = read_prediction_log(tmp_path)
    assert len(frame) == 3 and frame["timestamp"].is_monotonic_increasing
    recent = read_prediction_log(tmp_path, since=T0 + timedelta(days=1))
    assert len(recent) == 2
    with pytest.raises(PredictionLogError, match="timezone-aware"):
        read_prediction_log(tmp_path, since=datetime(2026, 11, 21))


def test_malformed_lines_are_located_or_skipped(tmp_path: Path):
    log = tmp_path / "p.jsonl"
    append_prediction_log(log, record(0)[0])
    with log.open("a") as handle:
        handle.write('{"not": "a record"}\n')
    append_prediction_log(log, record(1)[0])
    with pytest.raises(PredictionLogError, match=r"p\.jsonl:2: .*missing"):
        read_prediction_log(log)
    frame = read_prediction_log(log, skip_malformed=True)
    assert len(frame) == 2 and frame.attrs["skipped_lines"] == 1


def test_a_half_written_last_line_is_left_out(tmp_path: Path):
    log = tmp_path / "p.jsonl"
    append_prediction_log(log, record(0)[0])
    line = json.dumps(record(1)[0])
    with log.open("a") as handle:
        handle.write(line[: len(line) // 2])  # the process died mid-write
    frame = read_prediction_log(log)
    assert len(frame) == 1 and frame.attrs["skipped_lines"] == 1


def test_bad_records_are_refused(tmp_path: Path):
    log = tmp_path / "p.jsonl"
    with pytest.raises(PredictionLogError, match="lacks"):
        append_prediction_log(log, {"timestamp": "x"})
    rec, _ = record()
    with pytest.raises(PredictionLogError, match="not plain JSON"):
        append_prediction_log(log, {**rec, "features": {"width": float("nan")}})
    with pytest.raises(PredictionLogError, match="3 probabilities for 4 classes"):
        prediction_record([0.5, 0.25, 0.25], model_version=1)
    with pytest.raises(PredictionLogError, match="timezone-aware"):
        prediction_record([0.25] * 4, model_version=1, timestamp=datetime(2026, 1, 1))
    assert not log.exists()
    with pytest.raises(FileNotFoundError, match="no prediction log"):
        read_prediction_log(tmp_path / "missing.jsonl")


def test_an_empty_log_folder_gives_an_empty_table(tmp_path: Path):
    frame = read_prediction_log(tmp_path)
    assert frame.empty and "confidence" in frame.columns


def test_prediction_logger_writes_todays_file_with_features(tmp_path: Path):
    logger = PredictionLogger.from_env(
        model_version=7, environ={"BRAINTUMOR_PREDICTION_LOG_DIR": str(tmp_path / "logs")}
    )
    gray = np.random.default_rng(0).integers(0, 255, (120, 100), dtype=np.uint8)
    logger.log(gray, [0.1, 0.2, 0.6, 0.1], request_id="r1")
    logger.log(gray, np.array([0.7, 0.1, 0.1, 0.1]))
    frame = read_prediction_log(daily_log_path(tmp_path / "logs"))
    assert list(frame["predicted_label"]) == ["notumor", "glioma"]
    assert set(frame["model_version"]) == {"7"}
    assert (frame["width"] == 100).all() and (frame["height"] == 120).all()
    assert logger.failures == 0


def test_prediction_logger_is_off_without_a_folder_and_never_raises(tmp_path: Path):
    off = PredictionLogger.from_env(model_version=1, environ={})
    assert not off.enabled
    off.log(np.zeros((8, 8), dtype=np.uint8), [0.25] * 4)  # no folder, no error
    blocked = tmp_path / "file"
    blocked.write_text("a file where the log folder should be")
    broken = PredictionLogger(blocked, model_version=1)
    broken.log(np.zeros((8, 8), dtype=np.uint8), [0.25] * 4)
    broken.log(np.zeros((8, 8), dtype=np.uint8), [0.5, 0.5])  # wrong class count
    assert broken.failures == 2


def test_the_service_path_does_not_import_pandas():
    code = (
        "import sys; import braintumor.monitoring.prediction_log as p; "
        "assert 'pandas' not in sys.modules, 'pandas imported'"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_an_audit_record_holds_what_the_service_answered(tmp_path: Path):
    digest = hashlib.sha256(b"the upload").hexdigest()
    rec, _ = record(
        input_sha256=digest,
        needs_review=True,
        review_reasons=("low_confidence", "ambiguous"),
        latency_ms=12.34567,
    )
    assert rec["input_sha256"] == digest and rec["latency_ms"] == 12.346
    assert rec["needs_review"] is True and rec["review_reasons"] == ["low_confidence", "ambiguous"]
    log = tmp_path / "p.jsonl"
    append_prediction_log(log, rec)
    assert json.loads(log.read_text()) == rec
    with pytest.raises(PredictionLogError, match="sha256"):
        record(input_sha256="not-a-digest")
    with pytest.raises(PredictionLogError, match="latency_ms"):
        record(latency_ms=-1.0)


def test_version_1_lines_are_still_read_next_to_version_2(tmp_path: Path):
    v1 = {  # as the service wrote it before the audit keys
        "v": 1,
        "timestamp": "2026-11-19T08:15:02.123456+00:00",
        "model_version": "3",
        "predicted_label": "glioma",
        "confidence": 0.91,
        "probabilities": {"glioma": 0.91, "meningioma": 0.05, "notumor": 0.01, "pituitary": 0.03},
        "features": {"width": 512.0, "height": 512.0},
    }
    log = tmp_path / "p.jsonl"
    log.write_text(json.dumps(v1) + "\n")
    v2, _ = record(0, input_sha256="0" * 64, needs_review=False, review_reasons=[], latency_ms=3.0)
    append_prediction_log(log, v2)
    frame = read_prediction_log(log)
    assert len(frame) == 2 and frame.attrs["skipped_lines"] == 0
    assert list(frame["model_version"]) == ["3", "3"]
    assert frame.loc[0, "predicted_label"] == "glioma" and frame.loc[0, "width"] == 512.0
    assert frame.loc[0, "confidence"] == pytest.approx(0.91)


def test_a_logged_line_is_whole_on_disk_when_log_returns(tmp_path: Path):
    logger = PredictionLogger(tmp_path, model_version=7)
    gray = np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)
    digest = hashlib.sha256(b"x").hexdigest()
    for i in range(3):
        logger.log(gray, [0.1, 0.2, 0.6, 0.1], request_id=f"r{i}", input_sha256=digest)
        # Another handle (as after the process stopped) sees the whole line at once.
        with open(daily_log_path(tmp_path), "rb") as other:
            lines = other.read().split(b"\n")
        assert lines[-1] == b"" and len(lines) == i + 2  # every line ends with its newline
        assert json.loads(lines[i])["request_id"] == f"r{i}"
    assert logger.failures == 0


def test_expired_logs_are_the_daily_files_older_than_the_retention(tmp_path: Path):
    today = date(2026, 11, 20)
    for age in (0, 1, 89, 90, 91, 400):
        daily_log_path(tmp_path, today - timedelta(days=age)).write_text("")
    (tmp_path / "predictions-2020-01-01.jsonl.bak").write_text("")  # not a daily log
    (tmp_path / "notes.jsonl").write_text("")
    (tmp_path / "predictions-2020-13-45.jsonl").write_text("")  # no such day
    expired = expired_logs(tmp_path, today, 90)
    ages = sorted((today - date.fromisoformat(p.stem[len("predictions-") :])).days for p in expired)
    assert ages == [90, 91, 400]  # 90 days kept: today and the 89 before it
    assert [p.name for p in expired_logs(tmp_path, today, 1)] == [
        daily_log_path(tmp_path, today - timedelta(days=age)).name for age in (400, 91, 90, 89, 1)
    ]
    assert expired_logs(tmp_path, today, 0) == []  # 0: keep forever
    assert expired_logs(tmp_path / "missing", today, 90) == []
    with pytest.raises(ValueError, match="0 \\(keep forever\\)"):
        expired_logs(tmp_path, today, -1)


def test_the_logger_deletes_expired_files_when_it_opens_a_new_day(tmp_path: Path):
    today = datetime.now(UTC).date()
    old = daily_log_path(tmp_path, today - timedelta(days=3))
    kept = daily_log_path(tmp_path, today - timedelta(days=2))
    other = tmp_path / "keep-me.jsonl"
    for path in (old, kept, other):
        path.write_text("")
    logger = PredictionLogger.from_env(
        model_version=7,
        environ={
            "BRAINTUMOR_PREDICTION_LOG_DIR": str(tmp_path),
            "BRAINTUMOR_PREDICTION_LOG_RETENTION_DAYS": "3",
        },
    )
    assert logger.retention_days == 3
    gray = np.zeros((16, 16), dtype=np.uint8)
    logger.log(gray, [0.25] * 4)
    assert not old.exists() and kept.exists() and other.exists()
    assert daily_log_path(tmp_path, today).exists()
    old.write_text("")  # the same day again: no second sweep
    logger.log(gray, [0.25] * 4)
    assert old.exists() and logger.failures == 0
    forever = PredictionLogger.from_env(
        model_version=7,
        environ={
            "BRAINTUMOR_PREDICTION_LOG_DIR": str(tmp_path),
            "BRAINTUMOR_PREDICTION_LOG_RETENTION_DAYS": "0",
        },
    )
    forever.log(gray, [0.25] * 4)
    assert old.exists()
    assert PredictionLogger.from_env(model_version=7, environ={}).retention_days == 90
    with pytest.raises(ValueError, match="whole number of days"):
        PredictionLogger.from_env(
            model_version=7, environ={"BRAINTUMOR_PREDICTION_LOG_RETENTION_DAYS": "ninety"}
        )
