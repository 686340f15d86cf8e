"""Entry point of ``misuan node serve``: checks, then uvicorn."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Callable

from ..config import NODE_KEEP_ALIVE_S, NodeConfig, load_node
from ..errors import ConfigError
from .capability import NodeCapability


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise ConfigError(f"control port {host}:{port} is already in use") from None


def preflight(cfg: NodeConfig) -> None:
    """Everything that must hold before a node accepts requests."""
    if cfg.cluster.tls:
        from ..pki import check_node_cert

        check_node_cert(cfg.tls_cert, cfg.tls_key, cfg.cluster.ca_cert, cfg.party)
    _check_port_free(cfg.listen_host, cfg.listen_port)


def serve(config_path: str | Path, capabilities: Callable[[NodeConfig], tuple[NodeCapability, ...]] | None = None) -> None:
    """Run one node; ``capabilities(cfg)`` names what it runs (the CLI passes the registry's list)."""
    import uvicorn

    from .app import create_app
    from .service import NodeService

    cfg = load_node(config_path)
    preflight(cfg)
    service = NodeService(cfg, capabilities(cfg) if capabilities else ())  # opens the store: a wrong key refuses here
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ssl = {}
    if cfg.cluster.tls:
        ssl = {"ssl_certfile": str(cfg.tls_cert), "ssl_keyfile": str(cfg.tls_key)}
    uvicorn.run(
        create_app(service),
        host=cfg.listen_host,
        port=cfg.listen_port,
        log_level=cfg.log_level,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=NODE_KEEP_ALIVE_S,
        **ssl,
    )
