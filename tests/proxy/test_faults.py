"""Faults while generating: a client that goes away, a node killed mid-stream, 20
requests at once (real node processes; the node-kill test on its own cluster)."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from misuan.cluster.local import local_cluster
from tests.conftest import FAST
from tests.proxy.conftest import HELLO, MODEL_NAME, no_request_left, start_proxy


def _eventually_no_request_left(client, model: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            return no_request_left(client, model)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_disconnect_mid_stream_frees_the_request_on_every_node(proxy, client3, proxy_model):
    body = {"model": proxy_model, "messages": HELLO, "max_tokens": 60, "stream": True}
    with httpx.Client(timeout=120) as http, http.stream("POST", f"{proxy}/chat/completions", json=body) as r:
        assert r.status_code == 200
        data = 0
        for line in r.iter_lines():
            data += line.startswith("data: ") and '"content":"' in line and '"content":""' not in line
            if data == 2:
                break
        live = [[x for x in st["resident"] if x.get("model") == proxy_model][0]["requests"] for st in client3.status()]
        assert live == [1, 1, 1]  # the premise: the request is live on every node
    t0 = time.monotonic()
    _eventually_no_request_left(client3, proxy_model)
    assert time.monotonic() - t0 < 20


def test_twenty_concurrent_requests_complete_or_get_a_clean_429(client3, proxy_model):
    with start_proxy(client3, max_waiting=1) as proxy:  # one running, one waiting: the rest must be turned away
        _twenty_at_once(proxy, client3, proxy_model)


def _twenty_at_once(proxy: str, client3, proxy_model: str) -> None:
    oai = openai.OpenAI(base_url=proxy, api_key="x", max_retries=0, timeout=180)

    def one(i: int):
        try:
            r = oai.chat.completions.with_raw_response.create(model=proxy_model, messages=HELLO, max_tokens=1, seed=i)
            return 200, r.parse().choices[0].finish_reason
        except openai.APIStatusError as e:
            return e.status_code, e.response.headers.get("retry-after")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    ok = [r for r in results if r[0] == 200]
    busy = [r for r in results if r[0] in (429, 503)]
    assert len(ok) + len(busy) == 20, results
    assert ok and all(reason == "length" for _, reason in ok) and busy
    assert all(retry and int(retry) > 0 for _, retry in busy)
    assert httpx.get(f"{proxy.removesuffix('/v1')}/health").json() == {"ok": True, "running": {}}  # up, nothing left in line
    no_request_left(client3, proxy_model)


@pytest.fixture(scope="module")
def kill_cluster(tmp_path_factory, proxy_model_dir, compiled):
    from misuan.hosting import publish_model

    with local_cluster(3, dir=tmp_path_factory.mktemp("proxykill"), timeouts=FAST) as lc:
        compiled.stock(lc.dir)
        client = lc.client()
        publish_model(client, proxy_model_dir, MODEL_NAME, receipt=False)
        yield lc, client


def test_node_killed_mid_stream_gives_an_error_frame_one_request_no_hang(kill_cluster):
    lc, client = kill_cluster
    requests = []
    model = client.model_ref(MODEL_NAME)
    with start_proxy(client) as url:
        http = httpx.Client(timeout=120, event_hooks={"request": [requests.append]})
        oai = openai.OpenAI(base_url=url, api_key="x", http_client=http)  # default retries: none may happen
        oai.chat.completions.create(model=model, messages=HELLO, max_tokens=2)  # warm: runtime built, programs compiled
        requests.clear()
        pid = int((lc.dir / "node2" / "node.pid").read_text())
        got, t0 = [], time.monotonic()
        with pytest.raises(openai.APIError) as e:
            for chunk in oai.chat.completions.create(model=model, messages=HELLO, max_tokens=60, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
                    if len(got) == 2:
                        threading.Timer(0.1, os.kill, (pid, signal.SIGKILL)).start()
        assert time.monotonic() - t0 < 120  # an error, not a hang
        assert len(got) >= 2 and "MPC job failed" in str(e.value.message)
        assert len(requests) == 1, requests  # the openai client did not re-run the failed job
        http.close()
