"""THE list of capabilities: read by the node entry point and by the CLI.

Adding a capability is one line here (and its folder). No discovery, no entry
points: what a node runs and what the CLI offers is exactly what is listed.
Benchmark programs are a capability of their own, registered on a node only
when its ``node.toml`` says ``bench = true``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .hosting import cli as hosting_cli
from .inference import cli as inference_cli
from .psi import cli as psi_cli
from .retrieval import cli as retrieval_cli

if TYPE_CHECKING:  # pragma: no cover
    import typer

    from .node.capability import NodeCapability


def node_capabilities(bench: bool = False) -> tuple["NodeCapability", ...]:
    """The capabilities a node runs (imported here, on the node, not by the CLI)."""
    from .hosting.node import CAPABILITY as hosting
    from .inference.node import CAPABILITY as inference
    from .psi.node import CAPABILITY as psi
    from .retrieval.node import CAPABILITY as retrieval

    caps = (hosting, inference, psi, retrieval)
    if bench:
        from .benchmarks.node import CAPABILITY as benchmarks

        caps += (benchmarks,)
    return caps


CLI: tuple[Callable[["typer.Typer"], None], ...] = (
    hosting_cli.register,
    inference_cli.register,
    psi_cli.register,
    retrieval_cli.register,
)
"""Each capability's ``register(app)``: adds its commands to the root CLI (imports only typer and rich)."""
