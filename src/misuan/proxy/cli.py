"""``misuan proxy``: serve the OpenAI-compatible API on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..cli.common import ClusterOpt, KeyOpt, err


def proxy_cmd(
    cluster: Optional[Path] = ClusterOpt,
    key_file: Optional[Path] = KeyOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (anything but loopback needs --api-key)"),
    port: int = typer.Option(8080, "--port", "-p"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="MISUAN_PROXY_API_KEY", help="clients must send it as a bearer token"),
    cors_origin: List[str] = typer.Option([], "--cors-origin", help="allow this browser origin (repeatable); CORS is off without it"),
    max_waiting: int = typer.Option(4, "--max-waiting", help="requests that may wait behind a model's running generation (then 429)"),
):
    """OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, /v1/embeddings)
    over the cluster: prompts are tokenized and secret-shared here; only shares leave."""
    from ..cli.common import _client
    from .settings import ProxySettings

    settings = ProxySettings(host=host, port=port, api_key=api_key, cors_origins=tuple(cors_origin), max_waiting=max_waiting)
    settings.check()  # before connecting: a refused address says so at once
    from .server import serve

    client = _client(cluster, key_file)
    err.print(f"misuan proxy on http://{host}:{port}/v1 (cluster {client.cluster.name}, {client.identity.principal})")
    serve(client, settings)


def register(app: typer.Typer) -> None:
    app.command("proxy")(proxy_cmd)
