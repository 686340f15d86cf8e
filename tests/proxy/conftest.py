"""A proxy (in-process uvicorn on a free port) over the shared 3-node cluster, with the
tiny random LLaMA published as ``proxied``."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

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


class ProgramShelf:
    """The programs this session's local clusters compiled, lent to a fresh cluster.

    A node's program cache key is the program, its parameters, the model's public
    config and the code (not the cluster or the model's name), so a fresh cluster
    serving the same tiny model skips compiling what another cluster already did;
    the nodes still agree on each program's hash before running it."""

    def __init__(self) -> None:
        self.clusters: list[Path] = []

    def add(self, cluster_dir: Path) -> None:
        self.clusters.append(Path(cluster_dir))

    def stock(self, cluster_dir: Path) -> None:
        """Copy every known cluster's compiled programs into ``cluster_dir``'s nodes, then know it too."""
        for src in self.clusters:
            for programs in src.glob("node*/programs"):
                target = Path(cluster_dir) / programs.parent.name / "programs"
                target.mkdir(parents=True, exist_ok=True)
                for f in programs.iterdir():
                    if not (target / f.name).exists():
                        shutil.copy2(f, target / f.name)
        self.add(cluster_dir)


@pytest.fixture(scope="session")
def compiled() -> ProgramShelf:
    return ProgramShelf()


@pytest.fixture(scope="session")
def proxy_model(cluster3, client3, proxy_model_dir, compiled) -> str:
    from misuan.hosting import publish_model

    compiled.add(cluster3.dir)
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
