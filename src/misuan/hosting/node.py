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
    # verify reads the weights through the LLaMA resident layout (inference/layout.py, specs.py)
    code_roots=("hosting/programs.py", "hosting/protocol.py", "hosting/probes.py", "inference/layout.py", "inference/specs.py", "models"),
    asset_kinds=(AssetKind(P.MODEL, validate_model),),
    programs=(VERIFY,),
)
