"""Encrypted model hosting on a node: the ``model`` asset kind and ``verify``."""

from __future__ import annotations

from ..errors import InvalidInput
from ..node.capability import AssetKind, NodeCapability
from . import protocol as P
from .programs import VERIFY

#: model architectures the nodes can host (their public config is checked at publish)
ARCHITECTURES = ("llama",)


def validate_model(architecture: str, config: dict) -> None:
    if architecture not in ARCHITECTURES:
        raise InvalidInput(f"unsupported model kind {architecture!r}")


CAPABILITY = NodeCapability(
    name="hosting",
    code_roots=("hosting/programs.py", "hosting/protocol.py", "hosting/probes.py", "inference/layout.py"),
    asset_kinds=(AssetKind(P.MODEL, validate_model),),
    programs=(VERIFY,),
)
