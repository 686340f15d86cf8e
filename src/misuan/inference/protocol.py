"""What the edge and the nodes agree on for encrypted inference (standard library only).

Program names, the names of request inputs and outputs, shape buckets and the
run-time sampling settings of the LLaMA-family programs. Written once here,
imported by the client engine (:mod:`.engine`) and by the node programs
(:mod:`.programs`).
"""

from __future__ import annotations

#: programs a grantee runs in a model's resident runtime
PREFILL = "llama.prefill"
DECODE = "llama.decode"
#: prefill with a context window the nodes fill from a knowledge base (RAG)
CONTEXT_PREFILL = "llama.prefill_context"
#: load-time programs (weights in, weights out; never run by a client)
HEAD = "llama.head"
STACK = "llama.stack"

#: the only request inputs a client uploads: the prompt's two digit one-hots per slot
PROMPT_HI, PROMPT_LO = "hi", "lo"
CLIENT_INPUTS: tuple[str, ...] = (PROMPT_HI, PROMPT_LO)
#: public inputs each node makes itself: the sampling noise, decode's RoPE row
GUMBEL, COS, SIN = "gumbel", "cos", "sin"
#: carried between runs of one request (outputs of the previous step)
TOKEN, KEYS, VALUES, MASK = "tok", "k", "v", "mask"
#: carried into a context prefill: K chunks of C token digits, imported from a
#: knowledge base's search in another runtime on the same node (never uploaded)
CTX_HI, CTX_LO = "ctx_hi", "ctx_lo"
#: the sampled token id: the only output a requester may read
TOKEN_ID = "id"
#: prefill's check: every prompt row is one token (revealed among the nodes only)
PROMPT_OK = "ok"

#: compile-time parameters: prompt bucket T, cache bucket S; a context window of K
#: chunks of C tokens starting at slot A
PARAM_T, PARAM_S = "T", "S"
PARAM_K, PARAM_C, PARAM_A = "K", "C", "A"
MAX_CONTEXT_CHUNKS = 16
#: run-time settings of the prefill (not part of the compiled program)
SEED, TEMPERATURE = "seed", "temperature"
SAMPLING_KEYS: tuple[str, ...] = (SEED, TEMPERATURE)

#: prompt buckets (T) and cache buckets (S); programs exist per bucket.
PROMPT_BUCKETS: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
CACHE_BUCKETS: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)


def bucket(value: int, buckets: tuple[int, ...], what: str) -> int:
    """The smallest bucket that holds ``value``."""
    for b in buckets:
        if value <= b:
            return b
    from ..errors import InvalidInput

    raise InvalidInput(f"{what} of {value} exceeds the largest bucket ({buckets[-1]})")
