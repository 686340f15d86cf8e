"""The web console in a real browser (Debian's chromium driven by Playwright).

A dedicated 3-node cluster with a tiny hosted model and a one-document KB (this test
kills one node), the proxy app on a free loopback port: the page shows 3 healthy
nodes and the KB with its grant's scope, streams a chat whose tokens equal what the
``openai`` client gets with the same seed, shows a killed node down within 10 s, logs
no console error and requests nothing but 127.0.0.1. Screenshots go to the test's tmp dir (and, with
``MISUAN_UPDATE_DOCS=1``, to docs/console.png for the README).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch  # noqa: F401  (a test dependency: missing, the run fails, no silent skip)
from playwright.sync_api import expect, sync_playwright

from tests.conftest import FAST
from tests.proxy.conftest import start_proxy

pytestmark = pytest.mark.cluster

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
PROMPT, SEED, MAX_TOKENS, TEMPERATURE = "hello", 7, 4, 0.8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, compiled):
    """Its own cluster (the test kills one of its nodes), with the programs other clusters compiled."""
    from misuan.client.assets import grant_asset
    from misuan.cluster.local import local_cluster
    from misuan.hosting import publish_model
    from misuan.retrieval.publish import publish_kb
    from tests.models.tinymodels import make_llama, save_hf

    tiny = save_hf(tmp_path_factory.mktemp("console-model") / "tiny", make_llama(seed=11, tie=False))
    docs = tmp_path_factory.mktemp("console-docs")
    (docs / "a.txt").write_text("Paris is the capital of France.", encoding="utf-8")
    with local_cluster(3, dir=tmp_path_factory.mktemp("console-cluster"), timeouts=FAST) as lc:
        compiled.stock(lc.dir)
        lc.principal("reader")
        with lc.client() as c:
            publish_model(c, tiny, "chatty", receipt=False)
            publish_kb(c, docs, "handbook", "chatty", chunk_tokens=16, overlap=2)
            grant_asset(c, "kb", "handbook", "reader", scope="search")
        yield lc


@pytest.fixture(scope="module")
def proxy_url(cluster):
    """The proxy app (the console included) on a free loopback port."""
    with start_proxy(cluster.client()) as base:
        yield base.removesuffix("/v1")


@pytest.fixture
def browser(tmp_path):
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000}
        )
        try:
            yield ctx
        finally:
            ctx.close()


def _openai_stream(base: str) -> list[str]:
    """The text deltas the official client streams for the playground's request."""
    from openai import OpenAI

    with OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0) as oa:
        stream = oa.chat.completions.create(
            model="admin/chatty",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=TEMPERATURE,
            seed=SEED,
            stream=True,
        )
        return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]


def _watch(page) -> tuple[list[str], list[str]]:
    """Console errors and page errors; every host the page asked for."""
    errors: list[str] = []
    hosts: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: hosts.append(urlsplit(r.url).hostname or r.url))
    return errors, hosts


def test_console_api_answers_its_own_page_only(proxy_url):
    import httpx

    api = f"{proxy_url}/console/api/cluster"
    assert httpx.get(api).status_code == 200
    assert httpx.get(api, headers={"Origin": "http://evil.example"}).status_code == 403
    assert httpx.get(api, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert httpx.get(api, headers={"Host": "evil.example"}).status_code == 421  # the proxy's DNS-rebinding check


def test_console_api_needs_the_proxys_key_when_set(cluster):
    import httpx

    with start_proxy(cluster.client(), api_key="sekrit") as base:
        root = base.removesuffix("/v1")
        assert httpx.get(f"{root}/console/").status_code == 200  # the page itself holds no data
        assert httpx.get(f"{root}/console/api/cluster").status_code == 401
        assert httpx.get(f"{root}/console/api/cluster", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(f"{root}/console/api/cluster", headers={"Authorization": "Bearer sekrit"})
        assert ok.status_code == 200 and ok.json()["up"] == 3


def test_console_in_a_real_browser(cluster, proxy_url, browser, tmp_path):
    # last in this module: it kills a node of the module's cluster
    page = browser.new_page()
    errors, hosts = _watch(page)
    resp = page.goto(f"{proxy_url}/console")
    assert resp is not None and resp.ok
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp

    rows = page.locator("#nodes tbody tr")
    expect(rows).to_have_count(3, timeout=15_000)
    expect(page.locator('#nodes tbody tr[data-state="up"]')).to_have_count(3, timeout=15_000)
    expect(page.locator("#assets tbody")).to_contain_text("admin/chatty", timeout=15_000)
    kb = page.locator("#assets tbody tr", has_text="admin/handbook")  # a KB: its versions, owner and grants with scopes
    expect(kb).to_contain_text("reader (search)")
    expect(kb.locator("td").first).to_have_text("kb")
    expect(page.locator("#audit-state")).to_have_text("verified", timeout=15_000)

    # the playground streams a chat; the tokens are the openai client's with the same seed
    expect(page.locator("#model option")).to_contain_text(["admin/chatty", "admin/chatty+kb:admin/handbook"], timeout=15_000)
    page.select_option("#model", "admin/chatty")
    page.fill("#prompt", PROMPT)
    page.fill("#max-tokens", str(MAX_TOKENS))
    page.fill("#temperature", str(TEMPERATURE))
    page.fill("#seed", str(SEED))
    page.click("#send")
    expect(page.locator("#playground")).to_have_attribute("data-done", "1", timeout=90_000)
    expect(page.locator("#chat-state")).to_have_text("done")
    streamed = page.locator("#output .tok").all_text_contents()
    assert streamed == _openai_stream(proxy_url) and streamed
    assert page.locator("#stat-tokens").text_content() == str(MAX_TOKENS)
    for stat in ("#stat-tps", "#stat-bpt", "#stat-ttft"):
        assert page.locator(stat).text_content() != "–", stat
    expect(page.locator("#stat-protocol")).to_have_text("ABY3")
    inference = page.locator("#job-totals tbody tr").first.locator("td")  # the page's chat and the client's
    expect(inference.nth(1)).to_have_text("2", timeout=15_000)
    expect(inference.nth(3)).to_have_text(str(2 * MAX_TOKENS))  # prefill + decodes

    shot = tmp_path / "console.png"
    page.screenshot(path=str(shot), full_page=True)

    pid = int((cluster.dir / "node2" / "node.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    expect(page.locator('#nodes tbody tr[data-node="node2"]')).to_have_attribute("data-state", "down", timeout=10_000)
    assert time.monotonic() - t0 < 10
    expect(page.locator('#nodes tbody tr[data-state="up"]')).to_have_count(2)
    page.screenshot(path=str(tmp_path / "console-node-down.png"), full_page=True)

    assert errors == []
    assert set(hosts) == {"127.0.0.1"}, hosts
    if os.environ.get("MISUAN_UPDATE_DOCS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS / "console.png")
