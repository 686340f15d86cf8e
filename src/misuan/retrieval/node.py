"""Encrypted retrieval on a node: the ``kb`` asset kind and ``kb.search``."""

from __future__ import annotations

from ..errors import InvalidInput
from ..node.capability import AssetKind, NodeCapability
from . import protocol as P
from .programs import PROGRAMS, load_plan

#: bounds of a KB's public config
MAX_CHUNKS, MAX_DIM, MAX_CHUNK_TOKENS, MAX_VOCAB = 2_000_000, 4096, 1024, 1 << 20


def _int(config: dict, key: str, lo: int, hi: int) -> int:
    v = config.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InvalidInput(f"kb config {key!r} must be an integer in {lo}..{hi}")
    return v


def validate_kb(architecture: str, config: dict) -> None:
    """A KB's public config: sizes, its tokenizer family, the owner's reveal policy."""
    if architecture != P.KB:
        raise InvalidInput(f"unsupported kb kind {architecture!r}")
    n = _int(config, "n_chunks", 1, MAX_CHUNKS)
    _int(config, "dim", 1, MAX_DIM)
    _int(config, "chunk_tokens", 1, MAX_CHUNK_TOKENS)
    _int(config, "vocab_size", 2, MAX_VOCAB)
    if config.get("reveal") not in P.REVEAL_CHOICES:
        raise InvalidInput(f"kb config 'reveal' must be one of {', '.join(P.REVEAL_CHOICES)}")
    ids = config.get("chunk_ids")
    if not isinstance(ids, list) or len(ids) != n or not all(isinstance(i, str) and 0 < len(i) <= 300 for i in ids):
        raise InvalidInput("kb config 'chunk_ids' must list one id (1-300 chars) per chunk")
    if not isinstance(config.get("tokenizer_sha256"), str):
        raise InvalidInput("kb config 'tokenizer_sha256' is missing")


CAPABILITY = NodeCapability(
    name="retrieval",
    code_roots=("retrieval/programs.py", "retrieval/specs.py", "retrieval/protocol.py", "secure"),
    asset_kinds=(AssetKind(P.KB, validate_kb, scopes=(P.SCOPE_SEARCH, P.SCOPE_RAG)),),
    programs=PROGRAMS,
    load_plans={P.KB: load_plan},
)
