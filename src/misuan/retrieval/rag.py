"""Retrieval-augmented generation under MPC (``misuan ask``, ``client.chat(..., kb=...)``).

On the user's machine: the question is embedded and secret-shared; the chat
template is rendered with a placeholder where the context goes, and tokenized
around it. On the nodes: ``kb.retrieve`` (a secret top-k and an oblivious fetch in
the KB's runtime, revealing nothing) leaves the chosen chunks' token digits as
shares; each node hands its shares over to the generation request in the model's
runtime (inside the node: :func:`misuan.node.runtimes.hand_over`), and
``llama.prefill_context`` builds the prompt rows there, the context window at a
public slot range, then decoding runs as for any chat.

The prompt's structure is public (the template, where the window is, ``k`` and
the chunk size ``C``: the window has ``k * C`` slots, a chunk's padding is masked),
its content secret: no node learns the question, which chunks were chosen, or any
token. What the user sees: the answer only (with ``--reveal none`` as with any
policy: ``ask`` never reveals passages, ids or scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .. import errors as E
from ..client.assets import show_asset
from ..client.client import Client
from ..client.runtime import ModelRuntime
from ..inference import protocol as IP
from . import protocol as P

SYSTEM = "Answer the question using the context. If the context does not hold the answer, say so."
USER = "Question: {question}\n\nContext:\n{context}"
#: a private-use character marking the window in the rendered template
MARK = "\ue000"


@dataclass(frozen=True)
class RagLayout:
    """The public layout of a RAG prompt: ``before`` + window (``K * C`` slots at
    ``A``) + ``after``, right-aligned in the prompt bucket ``T``."""

    before: list[int]
    after: list[int]
    K: int
    C: int
    T: int
    S: int

    @property
    def A(self) -> int:
        return self.T - len(self.after) - self.K * self.C

    @property
    def params(self) -> dict:
        return {IP.PARAM_T: self.T, IP.PARAM_S: self.S, IP.PARAM_K: self.K, IP.PARAM_C: self.C, IP.PARAM_A: self.A}

    def digits(self, vocab: int) -> tuple[np.ndarray, np.ndarray]:
        """The client's digit one-hots ``(T, n_hi)``, ``(T, B)``: zero in the window."""
        from ..secure.onehot import token_digits

        hi, lo = token_digits(self.before + [0] * (self.K * self.C) + self.after, self.T, vocab)
        hi[self.A : self.A + self.K * self.C] = 0
        lo[self.A : self.A + self.K * self.C] = 0
        return hi, lo


def rag_messages(messages: list[dict], system: str | None = None) -> tuple[list[dict], str]:
    """(messages with the last user turn as question + context placeholder, the question)."""
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        raise E.InvalidInput("the last message must be the user's question")
    question = messages[-1].get("content")
    if not isinstance(question, str) or not question.strip():
        raise E.InvalidInput("the question is empty")
    head = list(messages[:-1])
    if not any(m.get("role") == "system" for m in head):
        head.insert(0, {"role": "system", "content": system or SYSTEM})
    return [*head, {"role": "user", "content": USER.format(question=question, context=MARK)}], question


def rag_layout(tokenizer, messages: list[dict], K: int, C: int, max_tokens: int, context: int) -> RagLayout:
    """Render and tokenize around the window; pick the buckets."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    if text.count(MARK) != 1:
        raise E.InvalidInput("the question must not contain the context placeholder character U+E000")
    before, after = text.split(MARK)
    b = tokenizer.encode(before, add_special_tokens=False)
    a = tokenizer.encode(after, add_special_tokens=False)
    n = len(b) + K * C + len(a)
    if n + max_tokens > context:
        raise E.InvalidInput(
            f"prompt ({n} tokens with {K} chunks of {C}) + max_tokens ({max_tokens}) exceeds the model's context of {context}"
        )
    T = IP.bucket(n + 1, IP.PROMPT_BUCKETS, "prompt length (with the context window)")
    S = IP.bucket(T + max_tokens, IP.CACHE_BUCKETS, "prompt bucket + max_tokens")
    if S > max(context, IP.CACHE_BUCKETS[0]):
        raise E.InvalidInput(
            f"prompt bucket {T} (with {K} chunks of {C}) + max_tokens {max_tokens} does not fit the model's context of {context}"
        )
    return RagLayout(b, a, K, C, T, S)


def check_family(kb_config: dict, model_tokenizer_json: str, kb: str, model: str) -> None:
    from .publish import tokenizer_sha256

    if kb_config["tokenizer_sha256"] != tokenizer_sha256(model_tokenizer_json):
        raise E.InvalidInput(
            f"{kb} was chunked for {kb_config.get('model')}'s tokenizer; {model} has another one (publish the KB for {model})"
        )


class RagModel:
    """A hosted model answering from a knowledge base: a :class:`ChatBackend`."""

    def __init__(
        self, client: Client, model: str, kb: str, *, k: int = 2, kb_version: int | None = None, embedder=None, system: str | None = None
    ):
        from ..inference import SecureModel
        from .client import clamp_k

        self.client = client
        self.model = SecureModel(client, model)
        info = show_asset(client, P.KB, kb, kb_version)
        self.kb, self.kb_version, self.kb_config = info[P.KB], info["version"], info["config"]
        check_family(self.kb_config, self.model.tokenizer.to_json(), self.kb, self.model.name)
        self.notes: list[str] = []
        self.k = clamp_k(k, self.kb_config["n_chunks"], self.notes)
        if embedder is None:
            from .embedder import Embedder

            embedder = Embedder.load()
        self.embedder = embedder
        self.system = system
        self.tokenizer = self.model.tokenizer

    def __repr__(self) -> str:
        return f"RagModel({self.model.name} + kb:{self.kb}@{self.kb_version}, k={self.k})"

    def layout(self, messages: list[dict], max_tokens: int) -> tuple[RagLayout, str]:
        msgs, question = rag_messages(messages, self.system)
        return rag_layout(self.tokenizer, msgs, self.k, self.kb_config["chunk_tokens"], max_tokens, self.model.config.max_seq_len), question

    def generate_ids(self, messages: list[dict], params, stats=None) -> Iterator[int]:
        from ..inference import Prefill
        from .client import embed_question

        params.check(secure=True)
        layout, question = self.layout(messages, params.max_tokens)
        q = embed_question(self.embedder, question, self.notes)
        hi, lo = layout.digits(self.model.config.vocab_size)
        return self.model.generate_from(
            Prefill(IP.CONTEXT_PREFILL, layout.params, hi, lo, lambda req: self._retrieve_into(req, q)),
            len(layout.before) + len(layout.after),
            params,
            stats,
        )

    def _retrieve_into(self, gen_req, q: np.ndarray) -> None:
        """``kb.retrieve`` in the KB's runtime, then its chunks' shares into ``gen_req``."""
        c = self.client
        rt = ModelRuntime.ensure(c, self.kb, self.kb_version, kind=P.KB)
        with rt.request() as req:
            req.put(P.QUERY, q)
            req.run(P.RETRIEVE, {P.PARAM_K: self.k})
            source = {"kind": P.KB, "name": rt.name, "version": rt.version, "runtime_id": rt.runtime_id, "request": req.id}
            grt = gen_req.runtime
            target = {"kind": grt.kind, "name": grt.name, "version": grt.version, "runtime_id": grt.runtime_id, "request": gen_req.id}
            c.fanout(lambda i: c.nodes[i].runtime_handover(source, target, [P.CTX_HI, P.CTX_LO]))

    # ------------------------------------------------------------ ChatBackend

    def stream(self, messages: list[dict], params, stats=None) -> Iterator[tuple[int, str]]:
        from ..inference import stream_tokens

        return stream_tokens(self.tokenizer, self.generate_ids(messages, params, stats), params, stats)

    def chat(self, messages: list[dict], params, stats=None) -> Iterator[str]:
        """Text pieces of the answer as they are decoded (stop strings honoured)."""
        for _tok, piece in self.stream(messages, params, stats):
            if piece:
                yield piece

    def stream_chat(self, messages: list[dict], params):
        from ..inference import ChatStream, GenerationStats

        params.check(secure=True)
        stats = GenerationStats()
        return ChatStream(self.stream(messages, params, stats), stats, mpc=True)

    def model_info(self):
        from ..inference import ModelInfo

        return ModelInfo(name=f"{self.model.name}+kb:{self.kb}", max_context=self.model.config.max_seq_len, mode="mpc")


def ask_plaintext(
    model_path, kb_source, client: Client, kb: str, messages: list[dict], params, *, k: int = 2, embedder=None, system: str | None = None
) -> tuple[list[int], dict]:
    """The plaintext reference of ``ask``: the same search in the clear on the owner's
    documents, the same prompt layout, the node programs' plaintext twin on the
    owner's weights. (token ids, layout facts)."""
    from ..inference import ProgramTwin
    from ..secure.onehot import context_digits
    from .reference import search_plaintext

    twin = ProgramTwin(model_path)
    info = show_asset(client, P.KB, kb)
    cfg = info["config"]
    check_family(cfg, twin.tokenizer.to_json(), info[P.KB], str(model_path))
    msgs, question = rag_messages(messages, system)
    res = search_plaintext(client, kb, kb_source, question, k, embedder=embedder)
    layout = rag_layout(twin.tokenizer, msgs, res.k, cfg["chunk_tokens"], params.max_tokens, twin.config.max_seq_len)
    ids = _chunk_ids_plain(client, kb, kb_source, res)
    pairs = [context_digits(c, cfg["chunk_tokens"], twin.config.vocab_size, P.PAD_DIGIT) for c in ids]
    ctx_hi = np.stack([h for h, _ in pairs]).astype(np.int32)  # (K, C)
    ctx_lo = np.stack([lo for _, lo in pairs]).astype(np.int32)  # (K, C)
    hi, lo = layout.digits(twin.config.vocab_size)
    out = list(twin.generate_context(layout.params, hi, lo, ctx_hi, ctx_lo, params))
    answer = twin.tokenizer.decode([t for t in out if t not in twin.tokenizer.eos_ids])
    return out, {"answer": answer, "T": layout.T, "S": layout.S, "A": layout.A, "chunks": [p.id for p in res.results]}


def _chunk_ids_plain(client: Client, kb: str, source, res) -> list[list[int]]:
    """The token ids of the chunks a plaintext search chose (from the owner's copy)."""
    from .publish import prepare_chunks

    info = show_asset(client, P.KB, kb)
    cfg = info["config"]
    tok_json = client.nodes[0].model_tokenizer(info[P.KB], info["version"], kind=P.KB)
    _, chunks, _ = prepare_chunks(source, tok_json, cfg["chunk_tokens"], cfg["overlap"])
    by_id = {c.id: list(c.tokens) for c in chunks}
    return [by_id[p.id] for p in res.results]


__all__ = ["RagLayout", "RagModel", "ask_plaintext", "rag_layout", "rag_messages"]
