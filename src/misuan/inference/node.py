"""Encrypted inference on a node: the LLaMA programs and the model load plan."""

from __future__ import annotations

from ..node.capability import NodeCapability
from .layout import load_plan
from .programs import PROGRAMS

CAPABILITY = NodeCapability(
    name="inference",
    code_roots=("inference/programs.py", "inference/specs.py", "inference/layout.py", "inference/protocol.py", "secure", "models"),
    programs=PROGRAMS,
    load_plans={"model": load_plan},
)
