"""The benchmark capability: the PUMA baseline's programs (only with ``bench = true``)."""

from __future__ import annotations

from ..node.capability import NodeCapability
from .programs import PROGRAMS

CAPABILITY = NodeCapability(
    name="benchmarks",
    code_roots=("benchmarks", "inference/layout.py", "inference/specs.py", "secure", "models"),
    programs=PROGRAMS,
)
