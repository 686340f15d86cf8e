"""The node programs of encrypted retrieval: ``kb.search``.

The builder checks the KB's stored tensors against its public config and compiles
:func:`.specs.search_spec` for the requested ``k``; what the requester may read back
is the KB owner's policy (``config["reveal"]``), fixed in the compiled program.
"""

from __future__ import annotations

from ..errors import InvalidInput
from ..node.capability import DropTensors, LoadStep, LoadTensors, NodeProgram, ProgramDef, RunLoadProgram, TensorSpecs
from ..node.programs import compile_spec
from . import protocol as P


def kb_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The stored tensors of a KB, from its public config."""
    n, d, c = config["n_chunks"], config["dim"], config["chunk_tokens"]
    return {P.EMB: (n, d), P.HI: (n, c), P.LO: (n, c)}


def _resident(config: dict) -> dict[str, tuple[int, ...]]:
    from .specs import resident_shapes

    return resident_shapes(config["n_chunks"], config["dim"], config["chunk_tokens"], config["vocab_size"])


def check_k(params: dict, n_chunks: int) -> int:
    k = params.get(P.PARAM_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(P.MAX_K, n_chunks):
        raise InvalidInput(f"parameter {P.PARAM_K!r} must be an integer in 1..{min(P.MAX_K, n_chunks)}")
    return k


def _build(specs: TensorSpecs, config: dict, params: dict, program: str, reveal: str) -> NodeProgram:
    from .specs import RESIDENT, search_spec, weight_dtypes

    shapes = kb_shapes(config)
    if {n: tuple(s) for n, s in specs} != shapes:
        raise InvalidInput("the KB's tensors do not match its config")
    k = check_k(params, config["n_chunks"])
    n, d = shapes[P.EMB]
    spec = search_spec(n, d, config["chunk_tokens"], k, config["vocab_size"], reveal)
    return compile_spec(f"{program}.k{k}.{reveal}", spec, _resident(config), list(RESIDENT), weight_dtypes=weight_dtypes())


def build_search(specs: TensorSpecs, config: dict, params: dict) -> NodeProgram:
    """A search: reveals to the requester what the KB owner's policy allows."""
    return _build(specs, config, params, P.SEARCH, config["reveal"])


def build_retrieve(specs: TensorSpecs, config: dict, params: dict) -> NodeProgram:
    """A retrieval for RAG: the same program revealing nothing; the chosen chunks'
    digits stay secret and may only move into a model runtime's context prefill."""
    return _build(specs, config, params, P.RETRIEVE, P.REVEAL_NONE)


def layout_program(config: dict) -> NodeProgram:
    """Load-time program: the stored token digits -> the resident packed ``tok``."""
    from .specs import TOK, layout_spec, weight_dtypes

    spec = layout_spec(config["chunk_tokens"], config["vocab_size"])
    return compile_spec(f"kb.layout.{TOK}", spec, _resident(config), [P.HI, P.LO], weight_outputs=True, weight_dtypes=weight_dtypes())


def load_plan(config: dict, specs: TensorSpecs) -> list[LoadStep]:
    """Load the stored tensors, pack the digits into ``tok`` (local on shares), drop them."""
    return [LoadTensors(P.TENSORS), RunLoadProgram(lambda: layout_program(config)), DropTensors((P.HI, P.LO))]


PROGRAMS = (
    ProgramDef(P.SEARCH, frozenset({P.PARAM_K}), build_search, uploads=P.CLIENT_INPUTS, asset_kind=P.KB, scope=P.SCOPE_SEARCH),
    ProgramDef(
        P.RETRIEVE,
        frozenset({P.PARAM_K}),
        build_retrieve,
        uploads=P.CLIENT_INPUTS,
        asset_kind=P.KB,
        scope=P.SCOPE_RAG,
        exports=(P.CTX_HI, P.CTX_LO),
    ),
)
