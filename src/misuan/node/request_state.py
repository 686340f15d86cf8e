"""What a node keeps per generation request, and the public inputs it makes itself.

A client uploads only a program's ``client`` inputs (the prompt digits). Everything
else a run reads is either *carried* (written by an earlier run of the same request:
decode's token, cache and mask) or made here, on each node, from public values:

* ``gumbel``: ``temperature * g`` with ``g`` the Gumbel noise of ``(seed, step)``
  (:func:`misuan.models.sampling.scaled_gumbel`; zeros when greedy). The seed and the
  temperature come with the prefill run (``SAMPLING_KEYS``), bounded here; ``step``
  is counted here (0 for the prefill, then one per decode run);
* ``cos``/``sin``: decode's RoPE row at the public position ``T + step - 1``.

The noise is public to the nodes; it reveals nothing to them, who never see the
logits or a token. The requester knows it too (it follows from its seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInput
from ..models.sampling import check_seed, check_temperature, scaled_gumbel

#: run-time parameters of ``llama.prefill`` that are not part of the compiled program
SAMPLING_KEYS: tuple[str, ...] = ("seed", "temperature")
PREFILL, DECODE = "llama.prefill", "llama.decode"


@dataclass
class RequestState:
    #: short variable name -> "client" (uploaded) or "node" (a run's output)
    origin: dict[str, str] = field(default_factory=dict)
    #: uploaded variable -> (dtype code, shape, visibility, storage) read from its share frame
    uploads: dict[str, tuple[int, tuple[int, ...], int, str]] = field(default_factory=dict)
    #: set by a prefill whose check passed
    T: int | None = None
    S: int | None = None
    seed: int = 0
    temperature: float = 0.0
    step: int = 0


def split_params(program: str, params: dict) -> tuple[dict, dict]:
    """``params`` -> (the program's compile parameters, its run-time settings)."""
    from ..hosting.protocol import MAX_SEED, VERIFY, VERIFY_SETTINGS

    if program == VERIFY:
        settings = {}
        if "seed" in params:
            seed = params["seed"]
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                raise InvalidInput(f"{VERIFY}'s seed is an integer in [0, 2^63 - 1] (the nodes draw the probes from it)")
            settings["seed"] = seed
        return {k: v for k, v in params.items() if k not in VERIFY_SETTINGS}, settings
    if program != PREFILL:
        bad = [k for k in SAMPLING_KEYS if k in params]
        if bad:
            raise InvalidInput(f"{', '.join(bad)} may only be given to {PREFILL}")
        return dict(params), {}
    compile_params = {k: v for k, v in params.items() if k not in SAMPLING_KEYS}
    sampling = {
        "seed": check_seed(params.get("seed", 0)),
        "temperature": check_temperature(params.get("temperature", 0.0)),
    }
    return compile_params, sampling


def upload_meta(frame: bytes) -> tuple[int, tuple[int, ...], int, str]:
    """(dtype code, shape, visibility, storage) of an uploaded share frame (misuan's
    ``MSH1``/``MSC1`` framing: magic, u32 meta length, ValueMetaProto, data)."""
    from ..mpc import _aby3, _pb

    if len(frame) < 8 or frame[:4] not in (b"MSH1", _aby3.COMPRESSED):
        raise InvalidInput("upload is not a misuan share frame")
    mlen = int.from_bytes(frame[4:8], "little")
    if mlen > 4000 or len(frame) < 8 + mlen:
        raise InvalidInput("share frame header too large or truncated")
    meta = bytes(frame[8 : 8 + mlen])
    try:
        shape, visibility, storage = _pb.value_meta(meta)
        return _pb.value_dtype(meta), shape, visibility, storage
    except InvalidInput:
        raise InvalidInput("share frame carries no valid meta") from None


def check_sources(prog, state: RequestState, storage: str) -> None:
    """Every client input was uploaded by the requester as a secret share of the
    declared dtype and shape (anything else would fail the run inside SPU, which fails
    the runtime for every user); every carried one was written by an earlier run of
    this request (not overwritten by an upload since)."""
    from ..mpc._pb import DTYPE_CODES

    for name in prog.client_inputs:
        if state.origin.get(name) != "client":
            raise InvalidInput(f"request input {name!r} is missing")
    for name, shape, dtype in prog.client_specs:
        got = state.uploads.get(name)
        want = (DTYPE_CODES.get(dtype, -1), tuple(shape), 1, storage)  # 1: VIS_SECRET
        if got != want:
            raise InvalidInput(f"request input {name!r} must be a secret {dtype} share of shape {tuple(shape)}")
    for name in prog.carried_inputs:
        if state.origin.get(name) != "node":
            raise InvalidInput(f"request input {name!r} must come from an earlier step of this request (run {PREFILL} first)")


def node_values(program: str, prog, state: RequestState, params: dict, sampling: dict, cfg) -> tuple[dict[str, np.ndarray], int]:
    """The public inputs of this run (``prog.node_inputs``) and the step they are for."""
    if not prog.node_inputs:
        return {}, 0
    from ..hosting.protocol import VERIFY, parse_probe_name, probe

    if program == VERIFY:  # ±1 probes from the owner's seed: never the owner's choice
        if "seed" not in sampling:
            raise InvalidInput(f"{VERIFY} needs a seed (the nodes draw the probes from it)")
        return {name: probe(sampling["seed"], *parse_probe_name(name), shape[0]) for name, shape in prog.node_inputs}, 0
    if program == PREFILL:
        step, seed, temperature, T = 0, sampling["seed"], sampling["temperature"], params["T"]
    elif program == DECODE:
        if state.T is None:
            raise InvalidInput(f"run {PREFILL} for this request first")
        if params.get("S") != state.S:
            raise InvalidInput(f"S must be the prefill's cache bucket ({state.S})")
        step, seed, temperature, T = state.step + 1, state.seed, state.temperature, state.T
    else:  # pragma: no cover - only the LLaMA programs declare node inputs
        raise InvalidInput(f"program {program!r} has no node inputs")
    values: dict[str, np.ndarray] = {}
    for name, shape in prog.node_inputs:
        if name == "gumbel":
            values[name] = scaled_gumbel(seed, step, shape[0], temperature)
        elif name in ("cos", "sin"):
            from ..models.llama import rope_tables

            cos, sin = rope_tables(cfg, np.array([T + step - 1]))  # (1, hd) at a public position
            values[name] = np.asarray(cos if name == "cos" else sin, np.float32).reshape(shape)
        else:  # pragma: no cover - a new node input needs its definition here
            raise InvalidInput(f"no definition for node input {name!r}")
    return values, step


def after_run(program: str, state: RequestState, params: dict, sampling: dict, step: int) -> None:
    """Record a successful (and, for the prefill, checked) run."""
    if program == PREFILL:
        state.T, state.S = params["T"], params["S"]
        state.seed, state.temperature = sampling["seed"], sampling["temperature"]
        state.step = 0
    elif program == DECODE:
        state.step = step
