"""The benchmark capability: the PUMA baseline's programs (only with ``bench = true``)."""

from __future__ import annotations

from ..node.capability import NodeCapability
from .programs import PROGRAMS

CAPABILITY = NodeCapability(
    name="benchmarks",
    code_roots=("benchmarks/programs.py", "benchmarks/puma.py", "benchmarks/protocol.py", "inference/layout.py", "inference/specs.py"),
    programs=PROGRAMS,
)
