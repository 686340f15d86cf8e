"""``misuan model publish``: from the owner's file to shares on every node.

load → canonical layout (matrices pre-transposed, see :mod:`misuan.models.params`)
→ secret-share each tensor on the owner's machine → stream share i to node i
only → every node stores its share encrypted at rest → two-phase commit.

Publishing is atomic: until every node has every tensor nothing is
registered; a failure or interruption aborts the staged upload on every
node, and a failure during the commit round removes the version from the
nodes that had already committed.

The owner also gets a *receipt*: per-tensor salted SHA-256 commitments of the
plaintext weights (the nodes store the commitments; the owner keeps the salt)
so the owner can later prove which weights a hosted version holds.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import errors as E
from .._fs import atomic_write
from ..client.client import Client
from ..client.publish import Progress, next_version, publish_tensors
from ..models.config import N_PARAMS
from .protocol import MODEL


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: int
    tensors: int
    parameters: int
    share_bytes_per_node: int
    seconds: float
    load_seconds: float
    receipt: Path | None

    def to_dict(self) -> dict:
        return {**self.__dict__, "receipt": str(self.receipt) if self.receipt else None}


def hosted_tensors(cfg, params) -> list[tuple[str, np.ndarray]]:
    """The tensors a node stores: the canonical list, without the tied copy of the embedding."""
    from ..models.params import flatten_params

    named = flatten_params(params, cfg)
    if cfg.tie_embeddings:
        named = [(n, a) for n, a in named if n != "lm_head"]
    return named


def commitment(salt: bytes, name: str, x: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(salt)
    h.update(name.encode() + b"\0")
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    return h.hexdigest()


def _default_receipt(name: str, version: int) -> Path:
    return Path.home() / ".misuan" / "receipts" / f"{name}@{version}.json"  # receipts/<owner>/<name>@<v>.json


def publish_model(
    client: Client,
    path: str | Path,
    name: str,
    *,
    progress: Progress | None = None,
    receipt: Path | None | bool = True,
) -> PublishResult:
    """Publish the model at ``path`` (GGUF file or HF directory) as ``name``."""
    from ..models.loader import load_model
    from ..node.assets import check_asset_name

    name = check_asset_name(client.model_ref(name), MODEL)
    t0 = time.perf_counter()
    loaded = load_model(path)
    cfg, params, tokenizer = loaded
    tensors = hosted_tensors(cfg, params)
    load_s = time.perf_counter() - t0
    version = next_version(client, name, MODEL)
    salt = secrets.token_bytes(32)
    commits = {n: commitment(salt, n, a) for n, a in tensors}
    config = {**cfg.to_dict(), N_PARAMS: int(sum(a.size for _, a in tensors))}
    body = {
        "version": version,
        "kind": "llama",
        "config": config,
        "tokenizer": tokenizer.to_json(),
        "tensors": [{"name": n, "shape": list(a.shape), "commitment": commits[n]} for n, a in tensors],
    }
    per_node = publish_tensors(client, MODEL, name, body, tensors, progress)
    receipt_path = None
    if receipt:
        receipt_path = receipt if isinstance(receipt, Path) else _default_receipt(name, version)
        receipt_path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"model": name, "version": version, "salt": salt.hex(), "commitments": commits, "source": str(path)}
        atomic_write(receipt_path, json.dumps(doc, indent=1).encode(), 0o600)
    return PublishResult(
        name=name,
        version=version,
        tensors=len(tensors),
        parameters=config[N_PARAMS],
        share_bytes_per_node=per_node,
        seconds=time.perf_counter() - t0,
        load_seconds=load_s,
        receipt=receipt_path,
    )


def load_receipt(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise E.InvalidInput(f"cannot read receipt {path}: {exc}") from None


def check_receipt(receipt: dict, path: str | Path) -> list[str]:
    """Tensors of the model at ``path`` whose commitment differs from the receipt."""
    from ..models.loader import load_model

    cfg, params, _ = load_model(path)
    salt = bytes.fromhex(receipt["salt"])
    return [n for n, a in hosted_tensors(cfg, params) if commitment(salt, n, a) != receipt["commitments"].get(n)]


__all__ = ["publish_model", "PublishResult", "hosted_tensors", "commitment", "load_receipt", "check_receipt"]
