"""Names the benchmark scripts and the benchmark node programs share (standard library only)."""

from __future__ import annotations

STORE_HF = "bench.store_hf"
PUMA = "bench.puma"
#: the one request input a client uploads to the baseline: the secret one-hot prompt
X = "x"
CLIENT_INPUTS: tuple[str, ...] = (X,)
TOKEN_ID = "id"
