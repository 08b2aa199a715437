"""Upload checks: every bad input becomes a 4xx reason, limits hold, request parsing."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from braintumor import imaging
from braintumor.serving.uploads import (
    BodySizeLimitMiddleware,
    UploadLimits,
    UploadRejected,
    read_request_images,
    read_upload_with_digest,
)

LIMITS = UploadLimits(max_bytes=200_000, max_pixels=1_000_000, max_request_bytes=400_000)


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def good_jpeg(sample_dir) -> bytes:
    return (sample_dir / "Testing" / "pituitary_tumor" / "image(10).jpg").read_bytes()


@pytest.mark.parametrize(
    "planted, reason, status",
    [
        ("glioma_tumor/planted_zero_bytes.jpg", "empty_file", 400),
        ("meningioma_tumor/planted_truncated.jpg", "truncated", 422),
        ("no_tumor/planted_not_an_image.jpg", "not_an_image", 415),
    ],
)
def test_planted_bad_files_are_refused_with_status_and_reason(sample_dir, planted, reason, status):
    path = sample_dir / "Training" / planted
    for source in (path, path.read_bytes()):
        with pytest.raises(UploadRejected) as caught:
            read_upload_with_digest(source, LIMITS)
        assert (caught.value.reason, caught.value.status) == (reason, status)
        assert caught.value.detail and "\n" not in caught.value.detail


def test_planted_undecodable_file_is_refused(sample_dir):
    with pytest.raises(UploadRejected) as caught:
        read_upload_with_digest(
            sample_dir / "Training" / "pituitary_tumor" / "planted_undecodable.jpg", LIMITS
        )
    assert caught.value.status in (415, 422)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = png_bytes(2000, 1000)  # a few KB on disk, 2 million pixels decoded
    assert len(bomb) < 20_000
    with pytest.raises(UploadRejected) as caught:
        read_upload_with_digest(bomb, LIMITS)
    assert (caught.value.reason, caught.value.status) == ("too_many_pixels", 413)
    assert "2,000,000" in caught.value.detail


def test_oversized_upload_is_refused(tmp_path):
    big = b"\xff\xd8" + bytes(LIMITS.max_bytes)
    path = tmp_path / "big.jpg"
    path.write_bytes(big)
    for source in (big, path):
        with pytest.raises(UploadRejected) as caught:
            read_upload_with_digest(source, LIMITS)
        assert (caught.value.reason, caught.value.status) == ("upload_too_large", 413)


def test_missing_upload_and_passed_through_refusal():
    with pytest.raises(UploadRejected) as caught:
        read_upload_with_digest(None, LIMITS)
    assert caught.value.status == 400
    earlier = UploadRejected("not_a_file", "text")
    with pytest.raises(UploadRejected) as caught:
        read_upload_with_digest(earlier, LIMITS)
    assert caught.value is earlier


def test_good_upload_decodes(good_jpeg):
    decoded, _ = read_upload_with_digest(good_jpeg, LIMITS)
    assert decoded.pixels.ndim == 2 and decoded.pixels.dtype == np.uint8


def test_limits_refuse_nonsense():
    with pytest.raises(ValueError, match="positive"):
        UploadLimits(max_bytes=0)
    with pytest.raises(ValueError, match="at least max_bytes"):
        UploadLimits(max_bytes=10, max_request_bytes=5)


# --- request parsing and the body-size middleware, on a small Starlette app -----------------


def parsing_app(max_files: int = 2, max_request_bytes: int = LIMITS.max_request_bytes):
    calls: list[int] = []

    async def endpoint(request: Request) -> JSONResponse:
        calls.append(1)
        try:
            items = await read_request_images(request, "image", LIMITS, max_files=max_files)
        except UploadRejected as exc:
            return JSONResponse(exc.to_body(), status_code=exc.status)
        return JSONResponse(
            [
                item.to_body() if isinstance(item, UploadRejected) else {"bytes": len(item)}
                for item in items
            ]
        )

    app = Starlette(routes=[Route("/up", endpoint, methods=["POST"])])
    return BodySizeLimitMiddleware(app, max_bytes=max_request_bytes), calls


def post(app, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/up", **kwargs)

    return asyncio.run(go())


def test_multipart_files_and_raw_bodies_are_read(good_jpeg):
    app, _ = parsing_app()
    response = post(app, files=[("image", ("a.jpg", good_jpeg)), ("image", ("b.jpg", b"xyz"))])
    assert response.json() == [{"bytes": len(good_jpeg)}, {"bytes": 3}]
    for content_type in ("image/jpeg", "application/dicom", "application/octet-stream"):
        response = post(app, content=good_jpeg, headers={"content-type": content_type})
        assert response.json() == [{"bytes": len(good_jpeg)}]


@pytest.mark.parametrize(
    "kwargs, reason, status",
    [
        ({"json": {"image": "http://example.org/x.jpg"}}, "unsupported_content_type", 415),
        ({"data": {"image": "x"}}, "unsupported_content_type", 415),
        ({"files": {"scan": ("a.jpg", b"123")}}, "missing_image", 400),
        ({"content": b""}, "missing_image", 400),
        (
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
            "bad_request",
            400,
        ),
        (
            {"files": [("image", ("a", b"1")), ("image", ("b", b"2")), ("image", ("c", b"3"))]},
            "too_many_images",
            413,
        ),
    ],
)
def test_unusable_requests_get_a_reason(kwargs, reason, status):
    app, _ = parsing_app()
    response = post(app, **kwargs)
    assert response.status_code == status
    assert response.json()["error"] == reason


def test_text_in_place_of_a_file_is_refused_not_fetched():
    app, _ = parsing_app()
    response = post(app, data={"image": "http://169.254.169.254/latest"}, files={"x": ("x", b"")})
    assert response.json() == [
        {
            "error": "not_a_file",
            "detail": "field 'image' holds text, not a file: upload the image itself",
        }
    ]


def test_middleware_refuses_declared_oversize_without_calling_the_app():
    app, calls = parsing_app(max_request_bytes=1000)
    response = post(app, content=bytes(1001), headers={"content-type": "image/png"})
    assert response.status_code == 413
    assert response.json()["error"] == "upload_too_large"
    assert "1,001 bytes" in response.json()["detail"]
    assert calls == []


def test_middleware_counts_streamed_bodies_without_content_length():
    app, _ = parsing_app(max_request_bytes=1000)

    async def chunks():
        for _ in range(5):
            yield bytes(300)

    response = post(app, content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413
    assert response.json()["error"] == "upload_too_large"

    async def small():
        yield bytes(300)

    response = post(app, content=small(), headers={"content-type": "image/png"})
    assert response.status_code == 200 and response.json() == [{"bytes": 300}]


def test_rejection_detail_is_one_bounded_line():
    rejected = UploadRejected(imaging.TRUNCATED, "first line\n  second line" + "x" * 1000)
    body = json.loads(json.dumps(rejected.to_body()))
    assert body["error"] == "truncated" and rejected.status == 422
    assert body["detail"].startswith("first line second line") and len(body["detail"]) <= 500
