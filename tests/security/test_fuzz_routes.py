"""A bounded fuzz of every route of a real node: no 5xx, no hang, nodes healthy after.

Deterministic (seeded), 1500 signed requests against node 0 of the session
cluster, as the admin and as a fresh principal. Path parameters are junk (never
the name of something another test uses), queries and bodies mix valid shapes
with wrong types, huge and negative numbers, NUL bytes and over-long strings.
"""

from __future__ import annotations

import json
import random
import string

import httpx
import pytest

import misuan
from tests.conftest import client_as

_JUNK_STR = ["", "a", "x" * 5000, "..", "../etc/passwd", "a\x00b", "名字", "%00", "abcdefgh12", "-1", " "]
_JUNK_NUM = [0, -1, 1, 1 << 31, 1 << 63, -(1 << 63), 1 << 70, (1 << 64) + 1, 3.5, float("1e308")]


def _junk(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 2 else 4)
    if kind == 0:
        return rng.choice(_JUNK_STR)
    if kind == 1:
        return rng.choice(_JUNK_NUM)
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 40)))
    if kind == 4:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["version", "name", "params", "S", "T", "x"]): _junk(rng, depth + 1) for _ in range(rng.randrange(4))}


def _routes():
    import tempfile

    from tests.conftest import app_routes

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        routes = app_routes(tmp)
    for r in routes:
        if not hasattr(r, "methods") or not r.path.startswith("/v1/"):
            continue
        fields = []
        body = getattr(r, "body_field", None)
        if body is not None and hasattr(body.field_info.annotation, "model_fields"):
            fields = list(body.field_info.annotation.model_fields)
        for m in sorted(r.methods - {"HEAD"}):
            out.append((m, r.path, fields))
    return out


#: real names half of the time, so junk queries and bodies reach the handlers' own checks
_REAL = {"{owner}": "fuzzer", "{name}": "fz"}
N_REQUESTS = 1500


def _path(rng: random.Random, template: str) -> str:
    parts = []
    for seg in template.split("/"):
        if seg.startswith("{"):
            junk = ["fuzz" + "".join(rng.choice("abcdef0123456789") for _ in range(10)), "x" * 300, "..", "%2e%2e", "a%00b", "-"]
            seg = _REAL[seg] if seg in _REAL and rng.random() < 0.5 else rng.choice(junk)
        parts.append(seg)
    return "/".join(parts)


def _body(rng: random.Random, fields: list[str]):
    choice = rng.randrange(5)
    if choice == 0:
        return None
    if choice == 1:
        return b"\x00\xff" * rng.randrange(1, 64)
    if choice == 2:
        return json.dumps(_junk(rng)).encode()
    return json.dumps({f: _junk(rng) for f in fields if rng.random() < 0.8}).encode()


@pytest.mark.cluster
def test_fuzz_every_route(cluster3, tmp_path):
    from misuan.hosting import publish_model
    from tests.models.tinymodels import make_llama, save_hf

    rng = random.Random(18)
    fuzzer = client_as(cluster3, "fuzzer")
    publish_model(fuzzer, save_hf(tmp_path / "fz", make_llama(seed=31, tie=False)), "fz", receipt=False)  # fuzzer/fz
    admin = cluster3.client()
    routes = _routes()
    assert len(routes) > 30
    seen_5xx, statuses = [], {}
    for i in range(N_REQUESTS):
        method, template, fields = routes[i % len(routes)]
        path = _path(rng, template)
        query = {
            rng.choice(["version", "version", "n", "owner", "receive"]): str(rng.choice(_JUNK_NUM + _JUNK_STR))
            for _ in range(rng.randrange(1, 3))
        }
        body = _body(rng, fields)
        node = (admin if i % 3 == 0 else fuzzer).nodes[0]
        try:
            resp = node._http.request(
                method, path, params=query, content=body, headers={"Content-Type": "application/json"} if body else {}, timeout=30
            )
        except httpx.TimeoutException:
            pytest.fail(f"{method} {path} hung")
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        if resp.status_code >= 500:
            seen_5xx.append((method, template, resp.status_code, resp.text[:200]))
    assert not seen_5xx, seen_5xx[:5]
    assert len([s for s in statuses if 400 <= s < 500]) >= 3 and any(s < 300 for s in statuses), statuses  # it reached handlers
    # nodes healthy afterwards, and nothing the fuzzer opened is left behind
    for s in fuzzer.nodes[0].status()["sessions"]:
        fuzzer.nodes[0].close_session(s["id"])
    from misuan.hosting import remove_model

    try:
        remove_model(fuzzer, "fz")  # also drops any runtime the fuzz reserved for it
    except misuan.NotFound:
        pass  # the fuzz removed it itself
    assert all(h["ok"] for h in admin.fanout(lambda r: admin.nodes[r].health()))
    assert admin.run(lambda x: x + 1.0, __import__("numpy").zeros(2, "float32")).tolist() == [1.0, 1.0]
    with pytest.raises(misuan.AuthError):  # and the fuzzer's junk never authenticated as anyone else
        fuzzer.nodes[0]._request("GET", "/v1/status", auth=None)
