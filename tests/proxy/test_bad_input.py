"""Bad input and front-door faults: each gets OpenAI's error JSON with the right status
and ``param``, never a 500 (the shared proxy over the 3-node cluster)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import openai
import pytest

from tests.proxy.conftest import HELLO, free_port, start_proxy


@pytest.fixture(scope="module")
def http(proxy):
    with httpx.Client(base_url=proxy, timeout=120) as c:
        yield c


def _error(resp: httpx.Response, status: int, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if param is not None:
        assert err["param"] == param, err
    return err


def test_malformed_json(http):
    r = http.post("/chat/completions", content=b'{"model": "x", "messages": [', headers={"content-type": "application/json"})
    assert "JSON" in _error(r, 400)["message"]


@pytest.mark.parametrize("messages", [None, []])
def test_missing_or_empty_messages(http, proxy_model, messages):
    body = {"model": proxy_model} if messages is None else {"model": proxy_model, "messages": messages}
    _error(http.post("/chat/completions", json=body), 400, "messages")


def test_bad_role(http, proxy_model):
    body = {"model": proxy_model, "messages": [{"role": "tool", "content": "hi"}]}
    assert "role" in _error(http.post("/chat/completions", json=body), 400)["param"]


def test_unknown_model(proxy):
    oai = openai.OpenAI(base_url=proxy, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="nobody/nothing", messages=HELLO, max_tokens=1)
    assert e.value.code == "model_not_found"


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}}}, "response_format"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": -3}, "max_completion_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0.5}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_unsupported_or_out_of_range_params_name_the_param(http, proxy_model, extra, param):
    r = http.post("/chat/completions", json={"model": proxy_model, "messages": HELLO, **extra})
    _error(r, 400, param)


def test_echo_on_completions(http, proxy_model):
    _error(http.post("/completions", json={"model": proxy_model, "prompt": "hi", "echo": True}), 400, "echo")


def test_unknown_fields_are_ignored(http, proxy_model):
    body = {"model": proxy_model, "messages": HELLO, "max_tokens": 1, "frobnicate": {"x": 1}, "user": "u", "metadata": {"a": "b"}}
    r = http.post("/chat/completions", json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_over_the_limit_is_400_naming_it(http, proxy_model, stream):
    long = [{"role": "user", "content": "hello " * 600}]
    r = http.post("/chat/completions", json={"model": proxy_model, "messages": long, "max_tokens": 1, "stream": stream})
    err = _error(r, 400, "messages")
    assert "128" in err["message"]  # the model's context, the limit it ran into


def test_api_key_bad_missing_and_good(client3, proxy_model):
    with start_proxy(client3, api_key="s3cret") as url:
        for key in ("wrong", None):
            headers = {"authorization": f"Bearer {key}"} if key else {}
            assert _error(httpx.get(f"{url}/models", headers=headers), 401)["code"] == "invalid_api_key"
            health = httpx.get(f"{url.removesuffix('/v1')}/health", headers=headers)  # it names the models that run
            assert _error(health, 401)["code"] == "invalid_api_key"
        good = {"authorization": "Bearer s3cret"}
        assert httpx.get(f"{url.removesuffix('/v1')}/health", headers=good).json()["ok"] is True
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        assert proxy_model in [m.id for m in openai.OpenAI(base_url=url, api_key="s3cret").models.list()]


def test_host_header_checked_and_cors_off_by_default(proxy):
    assert httpx.get(f"{proxy}/models", headers={"host": "evil.example:8080"}).status_code == 421
    pre = httpx.options(
        f"{proxy}/chat/completions",
        headers={"origin": "http://app.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type"},
    )
    assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
    r = httpx.get(f"{proxy}/models", headers={"origin": "http://app.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_preflight_with_an_origin(client3, proxy_model):
    with start_proxy(client3, cors_origins=("http://app.example",)) as url:
        asked = "authorization, content-type, x-stainless-os, x-stainless-retry-count"
        pre = httpx.options(
            f"{url}/chat/completions",
            headers={"origin": "http://app.example", "access-control-request-method": "POST", "access-control-request-headers": asked},
        )
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "http://app.example"
        assert "x-stainless-os" in pre.headers["access-control-allow-headers"]
        bad = httpx.options(
            f"{url}/models",
            headers={"origin": "http://app.example", "access-control-request-method": "GET", "access-control-request-headers": "x-evil"},
        )
        assert bad.status_code == 400
        other = httpx.options(f"{url}/models", headers={"origin": "http://other.example", "access-control-request-method": "GET"})
        assert other.status_code == 400


def test_non_loopback_host_without_key_refuses_to_start(tmp_path):
    cmd = [sys.executable, "-m", "misuan", "proxy", "--host", "0.0.0.0", "--port", str(free_port()), "--cluster", str(tmp_path / "c.toml")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    line = res.stderr.strip().splitlines()[-1]
    assert "refusing to listen on 0.0.0.0" in line and "--api-key" in line
