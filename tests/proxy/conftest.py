"""A proxy (in-process uvicorn on a free port) over the shared 3-node cluster, with the
tiny random LLaMA published as ``proxied``."""

from __future__ import annotations

import socket

import pytest
import torch  # noqa: F401  (a test dependency: missing, the run fails, no silent skip)

from misuan.proxy.provider import ClientProvider
from misuan.proxy.server import serving
from misuan.proxy.settings import ProxySettings

MODEL_NAME = "proxied"
#: the tiny model's greedy answer to this runs past 8 tokens
HELLO = [{"role": "user", "content": "hello"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def proxy_model_dir(tmp_path_factory):
    from tests.models.tinymodels import make_llama, save_hf

    return save_hf(tmp_path_factory.mktemp("proxy") / "tiny", make_llama(seed=11, tie=False))


@pytest.fixture(scope="session")
def proxy_model(client3, proxy_model_dir) -> str:
    from misuan.hosting import publish_model

    publish_model(client3, proxy_model_dir, MODEL_NAME, receipt=False)
    return client3.model_ref(MODEL_NAME)


def start_proxy(client, **settings):
    """A running proxy over ``client``: a context manager yielding its base URL."""
    return serving(ClientProvider(client), ProxySettings(port=free_port(), keepalive_s=1.0, **settings))


@pytest.fixture(scope="session")
def proxy(client3, proxy_model):
    with start_proxy(client3) as url:
        yield url


def no_request_left(client, model: str) -> None:
    """Every node: the model's runtime holds no request, and no other session is open."""
    for st in client.status():
        rt = [r for r in st["resident"] if r.get("model") == model]
        assert rt and rt[0]["requests"] == 0, (st["party"], rt)
        assert all(s["kind"].startswith("model:") for s in st["sessions"]), st["sessions"]
