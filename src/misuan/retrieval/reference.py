"""``misuan kb search --plaintext``: the same search in the clear, on the owner's copy.

Re-chunks and re-embeds the owner's documents exactly as ``kb publish`` did (the
KB's tokenizer, chunk size and overlap, read from its public record), checks the
chunk ids match the published KB, and runs the plaintext twin of ``kb.search``
(:func:`.plain.search_plain`, fp32 cosine) — for comparing results.
"""

from __future__ import annotations

import time

from .. import errors as E
from ..client.assets import show_asset
from ..client.client import Client
from . import protocol as P
from .chunking import Warn
from .client import Passage, SearchResult, clamp_k, embed_question


def search_plaintext(
    client: Client, kb: str, source, question: str, k: int = 5, *, version: int | None = None, embedder=None, warn: Warn | None = None
) -> SearchResult:
    from .plain import search_plain
    from .publish import embed_chunks, prepare_chunks, token_digits_matrix

    t0 = time.perf_counter()
    info = show_asset(client, P.KB, kb, version)
    cfg, name = info["config"], info[P.KB]
    tok_json = client.nodes[0].model_tokenizer(name, info["version"], kind=P.KB)
    _, chunks, tok = prepare_chunks(source, tok_json, cfg["chunk_tokens"], cfg["overlap"], warn)
    if [c.id for c in chunks] != cfg["chunk_ids"]:
        raise E.InvalidInput(f"{source} does not chunk to the published {name}@{info['version']} (different documents)")
    notes: list[str] = []
    k = clamp_k(k, len(chunks), notes)
    if embedder is None:
        from .embedder import Embedder

        embedder = Embedder.load()
    q = embed_question(embedder, question, notes)
    emb = embed_chunks(embedder, tok, chunks)
    hi, lo = token_digits_matrix(chunks, cfg["chunk_tokens"], cfg["vocab_size"])
    res = search_plain(emb, hi, lo, q, k, vocab=cfg["vocab_size"])
    results = [
        Passage(chunks[int(i)].id, round(float(s), 6), tok.decode(list(chunks[int(i)].tokens))) for i, s in zip(res[P.INDEX], res[P.SCORES])
    ]
    return SearchResult(name, info["version"], k, results, notes, "plaintext", time.perf_counter() - t0, 0.0, 0)


__all__ = ["search_plaintext"]
