"""Uploads to pixels, safely: size and pixel limits, decoding errors turned into HTTP answers.

Every way an upload can be unusable ends in `UploadRejected` (an HTTP status, a machine
reason and a one-line message) before any model work; the service answers it as a 4xx and
the worker carries on. `BodySizeLimitMiddleware` refuses oversized requests before their
body is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from braintumor import imaging
from braintumor.imaging import DecodedImage, ImageDecodeError, decode_image

TOO_BIG = "upload_too_large"
MISSING = "missing_image"
NOT_A_FILE = "not_a_file"
BAD_REQUEST = "bad_request"
UNSUPPORTED_TYPE = "unsupported_content_type"
TOO_MANY = "too_many_images"
NOT_BRAIN_MRI = "not_a_brain_mri"  # the input checks failed and hard reject is on

# Content types whose body is the image itself (curl --data-binary @scan.dcm).
RAW_IMAGE_TYPES = ("image/", "application/dicom", "application/octet-stream")

# Decode failures to HTTP statuses: 400 malformed request, 413 too large, 415 not a format we
# read, 422 a format we read but broken content.
STATUS_BY_REASON: dict[str, int] = {
    imaging.EMPTY: 400,
    MISSING: 400,
    NOT_A_FILE: 400,
    BAD_REQUEST: 400,
    TOO_MANY: 413,
    UNSUPPORTED_TYPE: 415,
    imaging.NOT_AN_IMAGE: 415,
    imaging.TRUNCATED: 422,
    imaging.UNDECODABLE: 422,
    imaging.TOO_LARGE: 413,
    TOO_BIG: 413,
    NOT_BRAIN_MRI: 422,
}


class UploadRejected(Exception):
    """An upload the service will not process: `status`, `reason` and a one-line `detail`."""

    def __init__(self, reason: str, detail: str, status: int | None = None) -> None:
        self.reason = reason
        self.detail = " ".join(str(detail).split())[:500]  # one line, bounded
        self.status = status if status is not None else STATUS_BY_REASON.get(reason, 400)
        super().__init__(f"{self.reason}: {self.detail}")

    def to_body(self) -> dict[str, str]:
        return {"error": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class UploadLimits:
    """Per-image limits. `max_bytes` bounds each file; `max_pixels` stops decompression bombs
    (a small file that would decode into a huge image) before decoding; `max_request_bytes`
    bounds a whole request (several images for /predict_batch plus multipart overhead)."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_request_bytes: int = 100 * 1024 * 1024

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_pixels, self.max_request_bytes) <= 0:
            raise ValueError("upload limits must be positive")
        if self.max_request_bytes < self.max_bytes:
            raise ValueError("max_request_bytes must be at least max_bytes")

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> UploadLimits:
        """BRAINTUMOR_MAX_UPLOAD_BYTES, BRAINTUMOR_MAX_PIXELS, BRAINTUMOR_MAX_REQUEST_BYTES."""
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            max_bytes=_env_int(env, "BRAINTUMOR_MAX_UPLOAD_BYTES", default.max_bytes),
            max_pixels=_env_int(env, "BRAINTUMOR_MAX_PIXELS", default.max_pixels),
            max_request_bytes=_env_int(
                env, "BRAINTUMOR_MAX_REQUEST_BYTES", default.max_request_bytes
            ),
        )


def _env_int(env: MutableMapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of bytes/pixels, not {raw!r}") from None


@dataclass(frozen=True)
class Upload:
    """One image of a request as the service received it: its bytes, the request's id (see
    `braintumor.serving.audit`) and when its body had been read (`time.perf_counter()`).
    Carrying the id with the image keeps it right when adaptive batching merges requests."""

    data: bytes
    request_id: str | None = None
    received_at: float = field(default_factory=time.perf_counter)


UploadSource = bytes | str | Path | Upload | UploadRejected | None


def read_upload_with_digest(source: UploadSource, limits: UploadLimits) -> tuple[DecodedImage, str]:
    """Check and decode one upload: its bytes (or an `Upload`), a file path, or the refusal
    that reading the request already produced (re-raised); with the sha256 (hex) of the
    upload's bytes as received.

    Raises:
        UploadRejected: missing, empty, too large, not an image, truncated, too many pixels.
    """
    if isinstance(source, UploadRejected):
        raise source
    if isinstance(source, Upload):
        source = source.data
    if source is None:
        raise UploadRejected(MISSING, "no image in the request: send it as a file field")
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise UploadRejected(MISSING, f"the uploaded file cannot be read ({exc})") from None
        _check_size(size, limits)
        data = path.read_bytes()
    else:
        data = bytes(source)
    _check_size(len(data), limits)
    try:
        decoded = decode_image(data, max_pixels=limits.max_pixels, measure_colour=True)
    except ImageDecodeError as exc:
        raise UploadRejected(exc.reason, exc.detail) from None
    return decoded, hashlib.sha256(data).hexdigest()


async def read_request_images(
    request: Any, field: str, limits: UploadLimits, max_files: int = 1
) -> list[bytes | UploadRejected]:
    """The images of an HTTP request (a Starlette `Request`), each as bytes or the reason it
    is refused; request-level problems raise `UploadRejected`.

    Accepted: `multipart/form-data` with file field(s) named `field` (the web page, curl -F,
    httpx `files=`), or the raw image as the body with an image/*, application/dicom or
    application/octet-stream Content-Type (or none). Text where a file belongs is refused (no URL
    fetching: the server never downloads what a client points it to).
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media_type or media_type.startswith(RAW_IMAGE_TYPES):
        body = await request.body()
        if not body:
            raise UploadRejected(
                MISSING, f"the request body is empty: send the image as file field '{field}'"
            )
        _check_size(len(body), limits)
        return [body]
    if media_type != "multipart/form-data":
        raise UploadRejected(
            UNSUPPORTED_TYPE,
            f"Content-Type {media_type or '(none)'} is not accepted: send multipart/form-data "
            f"with a file field '{field}', or the raw image with Content-Type image/* or "
            "application/dicom",
        )
    try:
        form = await request.form(max_files=max_files, max_fields=max_files + 16)
    except Exception as exc:  # malformed multipart, or more files than allowed
        message = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        if "too many files" in str(message).lower():
            raise UploadRejected(TOO_MANY, f"more than {max_files} files in one request") from None
        raise UploadRejected(BAD_REQUEST, f"cannot parse the multipart body ({message})") from None
    values = form.getlist(field)
    if not values:
        present = ", ".join(sorted(form.keys())) or "none"
        raise UploadRejected(
            MISSING, f"no file field named '{field}' in the request (fields received: {present})"
        )
    images: list[bytes | UploadRejected] = []
    for value in values:
        if isinstance(value, str):
            images.append(
                UploadRejected(
                    NOT_A_FILE, f"field '{field}' holds text, not a file: upload the image itself"
                )
            )
            continue
        if value.size is not None and value.size > limits.max_bytes:
            images.append(_too_big(value.size, limits))
            continue
        images.append(await value.read())
    return images


def _too_big(size: int, limits: UploadLimits) -> UploadRejected:
    return UploadRejected(
        TOO_BIG, f"the file has {size:,} bytes; the limit is {limits.max_bytes:,} bytes"
    )


def _check_size(size: int, limits: UploadLimits) -> None:
    if size > limits.max_bytes:
        raise _too_big(size, limits)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodySizeLimitMiddleware:
    """Pure ASGI middleware: answer 413 to request bodies above `max_bytes`.

    A declared Content-Length above the limit is refused before reading anything. A body
    streamed without one is counted as it arrives; past the limit the app is told the client
    left, its answer is dropped and the 413 goes out instead.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"the request body has {declared:,} bytes")
            return

        received = 0
        overflow = False
        replied = False

        async def counted_receive() -> Message:
            nonlocal received, overflow
            if overflow:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflow = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replied
            if overflow:
                if not replied:
                    replied = True
                    await self._refuse(send, "the request body is too long")
                return
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not overflow:  # the app's own failure, not the disconnect we simulated
                raise
        if overflow and not replied:
            await self._refuse(send, "the request body is too long")

    async def _refuse(self, send: Send, what: str) -> None:
        rejected = UploadRejected(TOO_BIG, f"{what}; the limit is {self.max_bytes:,} bytes")
        body = json.dumps(rejected.to_body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
