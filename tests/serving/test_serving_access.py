"""Request ids and API keys, on a tiny Starlette app (the service's own wiring is checked in
test_serving_service.py), and where the keys come from."""

from __future__ import annotations

import hashlib

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from braintumor.serving.audit import (
    MAX_REQUEST_ID_LENGTH,
    RequestIdMiddleware,
    accepted_request_id,
    request_id_of,
)
from braintumor.serving.auth import ApiKeyMiddleware, presented_key
from braintumor.serving.config import ServingConfig, read_api_keys
from braintumor.serving.uploads import Upload, UploadLimits, read_upload_with_digest


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "request_id": request_id_of(request.scope)})


def tiny_app() -> Starlette:
    paths = ["/", "/healthz", "/readyz", "/livez", "/metrics", "/predict", "/metadata"]
    return Starlette(routes=[Route(p, echo, methods=["GET", "POST"]) for p in paths])


def is_generated(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


@pytest.mark.parametrize(
    "value, accepted",
    [
        ("abc-123", "abc-123"),
        ("  trace 42  ", "trace 42"),
        (b"from-bytes", "from-bytes"),
        ("x" * MAX_REQUEST_ID_LENGTH, "x" * MAX_REQUEST_ID_LENGTH),
        ("x" * (MAX_REQUEST_ID_LENGTH + 1), None),
        ("", None),
        ("   ", None),
        ("tab\there", None),
        ("caf\u00e9", None),
        (None, None),
    ],
)
def test_which_request_ids_are_accepted(value, accepted):
    assert accepted_request_id(value) == accepted


def test_the_request_id_is_echoed_or_generated_and_seen_by_the_app():
    client = TestClient(RequestIdMiddleware(tiny_app()))
    given = client.get("/predict", headers={"X-Request-ID": "client-7"})
    assert given.headers["x-request-id"] == "client-7"
    assert given.json()["request_id"] == "client-7"
    generated = client.get("/predict")
    assert is_generated(generated.headers["x-request-id"])
    assert generated.json()["request_id"] == generated.headers["x-request-id"]
    assert client.get("/predict").headers["x-request-id"] != generated.headers["x-request-id"]
    refused = client.get("/predict", headers={"X-Request-ID": "y" * 129})
    assert is_generated(refused.headers["x-request-id"])
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


def test_the_request_id_comes_back_on_a_refusal_by_an_inner_middleware():
    app = RequestIdMiddleware(ApiKeyMiddleware(tiny_app(), keys=["k"]))
    response = TestClient(app).post("/predict", headers={"X-Request-ID": "denied-1"})
    assert response.status_code == 401 and response.headers["x-request-id"] == "denied-1"
    assert len(response.headers.get_list("x-request-id")) == 1


KEYS = ["first-key", "second-key"]


@pytest.fixture(scope="module")
def guarded() -> TestClient:
    return TestClient(ApiKeyMiddleware(tiny_app(), keys=KEYS))


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "needs an API key"),
        ({"X-API-Key": "wrong"}, "not valid"),
        ({"X-API-Key": "first-key "}, None),  # surrounding spaces are not part of a key
        ({"X-API-Key": "first-keyX"}, "not valid"),
        ({"X-API-Key": ""}, "needs an API key"),
        ({"Authorization": "Bearer wrong"}, "not valid"),
        ({"Authorization": "Basic Zmlyc3Qta2V5"}, "needs an API key"),
        ({"Authorization": "Bearer"}, "needs an API key"),
        ({"X-API-Key": "first-key"}, None),
        ({"X-API-Key": "second-key"}, None),
        ({"Authorization": "Bearer second-key"}, None),
        ({"Authorization": "bearer first-key"}, None),
    ],
)
def test_requests_need_a_valid_key(guarded, headers, reason):
    for method in ("GET", "POST"):
        response = guarded.request(method, "/predict", headers=headers, content=b"body")
        if reason is None:
            assert response.status_code == 200, response.text
            continue
        assert response.status_code == 401
        body = response.json()
        assert body["error"] == "unauthorized" and reason in body["detail"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "first-key" not in response.text and "second-key" not in response.text


def test_probes_metrics_and_the_page_stay_open(guarded):
    for path in ("/", "/healthz", "/readyz", "/livez", "/metrics"):
        assert guarded.get(path).status_code == 200, path
    assert guarded.get("/metadata").status_code == 401  # the page's calls need the key
    assert guarded.get("/healthz/../predict").status_code in (401, 404)


def test_the_key_header_wins_and_keys_are_required():
    headers = [(b"authorization", b"Bearer b"), (b"x-api-key", b"a")]
    assert presented_key(headers) == "a"
    assert presented_key([(b"authorization", b"Bearer  b ")]) == "b"
    assert presented_key([]) is None
    middleware = ApiKeyMiddleware(tiny_app(), keys=KEYS)
    assert middleware.is_valid("second-key") and not middleware.is_valid("second")
    with pytest.raises(ValueError, match="at least one key"):
        ApiKeyMiddleware(tiny_app(), keys=[])


def test_api_keys_come_from_the_variable_and_the_file(tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# the ops team\nfile-key-1\n\n  file-key-2  # rotated 2026-11\nk1\n")
    env = {"BRAINTUMOR_API_KEYS": " k1, k2 ,,", "BRAINTUMOR_API_KEYS_FILE": str(keys_file)}
    assert read_api_keys(env) == ("k1", "k2", "file-key-1", "file-key-2")
    assert read_api_keys({"BRAINTUMOR_API_KEYS": "only"}) == ("only",)
    assert read_api_keys({}) == () and read_api_keys({"BRAINTUMOR_API_KEYS": "  "}) == ()
    config = ServingConfig.from_env(environ=env)
    assert config.api_keys == ("k1", "k2", "file-key-1", "file-key-2")
    assert "k1" not in repr(config) and "file-key" not in repr(config)
    assert ServingConfig.from_env(environ={}).api_keys == ()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BRAINTUMOR_API_KEYS": ",,"}, "holds no key"),
        ({"BRAINTUMOR_API_KEYS_FILE": "/no/such/keys.txt"}, "cannot read"),
        ({"BRAINTUMOR_API_KEYS": "two words"}, "printable ASCII"),
    ],
)
def test_unusable_key_settings_stop_the_service_instead_of_opening_it(env, message):
    with pytest.raises(ValueError, match=message):
        read_api_keys(env)


def test_a_key_file_without_keys_is_refused(tmp_path):
    empty = tmp_path / "keys.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="holds no key"):
        read_api_keys({"BRAINTUMOR_API_KEYS_FILE": str(empty)})


def test_the_digest_is_of_the_bytes_as_received(sample_dir):
    data = (sample_dir / "Testing" / "glioma_tumor" / "image(27).jpg").read_bytes()
    decoded, digest = read_upload_with_digest(data, UploadLimits())
    assert digest == hashlib.sha256(data).hexdigest()
    wrapped, same = read_upload_with_digest(Upload(data, "r1"), UploadLimits())
    assert same == digest and (wrapped.pixels == decoded.pixels).all()
    assert (read_upload_with_digest(Upload(data), UploadLimits())[0].pixels == decoded.pixels).all()


def test_a_nested_request_id_middleware_keeps_the_outer_id():
    client = TestClient(RequestIdMiddleware(RequestIdMiddleware(tiny_app())))
    response = client.get("/predict")
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert len(response.headers.get_list("x-request-id")) == 1
