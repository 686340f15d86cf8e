"""What the edge and the nodes agree on for encrypted retrieval (standard library only).

A knowledge base (asset kind ``kb``) is ``N`` chunks of one tokenizer family:

* ``emb`` ``(N, D)``: the chunks' L2-normalised embeddings (the edge embedder's),
  secret fixed point;
* ``hi``/``lo`` ``(N, C)``: each chunk's token ids as two secret integer digits
  (``id = hi * B + lo``, ``B`` = :func:`misuan.secure.onehot.digit_base` of the
  vocabulary); a padding slot has ``hi = lo = PAD_DIGIT`` (no token).

The search program takes the question's embedding from the client, computes every
similarity, a secret top-k and fetches the chosen chunks with a secret one-hot
product: no node learns which chunks were chosen. What a requester may read back
is the KB owner's policy (``REVEAL_*``), fixed at publish.
"""

from __future__ import annotations

from ..inference.protocol import CTX_HI as CTX_HI  # the names RAG hands over to a model runtime
from ..inference.protocol import CTX_LO as CTX_LO
from ..inference.protocol import MAX_CONTEXT_CHUNKS

#: the asset kind of a knowledge base
KB = "kb"

#: programs a grantee runs in a KB's resident runtime: a search (reveals what the
#: owner's policy allows) and a retrieval for RAG (reveals nothing; its chunks go to
#: a model runtime on the same nodes)
SEARCH = "kb.search"
RETRIEVE = "kb.retrieve"

#: stored tensors of a KB
EMB, HI, LO = "emb", "hi", "lo"
TENSORS: tuple[str, ...] = (EMB, HI, LO)
#: the digit stored in padding slots (no token: its one-hot is a zero row)
PAD_DIGIT = -1

#: the only request input a client uploads to a search: the question's embedding (1, D)
QUERY = "q"
CLIENT_INPUTS: tuple[str, ...] = (QUERY,)
#: search outputs: scores (k,), fetched token ids (k, C); secret digits for RAG
SCORES, INDEX, TOKENS = "scores", "index", "tokens"
#: the chosen chunks' secret digits (``CTX_HI``, ``CTX_LO``: inference's names) are
#: exported to the model runtime's context prefill, never revealed

#: compile-time parameter: how many chunks
PARAM_K = "k"
MAX_K = MAX_CONTEXT_CHUNKS

#: the owner's policy of what a querying user may read back
REVEAL_PASSAGES, REVEAL_IDS, REVEAL_NONE = "passages", "ids", "none"
REVEAL_CHOICES: tuple[str, ...] = (REVEAL_PASSAGES, REVEAL_IDS, REVEAL_NONE)

#: grant scopes of a KB
SCOPE_SEARCH, SCOPE_RAG = "search", "rag"

#: the edge embedder
EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384
EMBED_MAX_TOKENS = 256

#: chunking defaults
CHUNK_TOKENS, OVERLAP = 128, 16
