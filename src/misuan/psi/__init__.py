"""PSI (隐私求交): two institutions intersect their tables, each keeping its file on its node.

Built on ``spu.psi`` (libpsi: RR22, KKRT, ECDH); misuan adds the parts a
production job needs around it: a public spec checked by both sides, key
normalisation, duplicate policy, snapshotting of inputs, heartbeats, clear
errors on both sides, atomic outputs, progress and a summary.

Entry points:
- :func:`misuan.psi.runner.run_psi_party` runs one party (inside a worker process).
- ``python -m misuan.psi._party REQUEST.json`` is that worker as a command.
- :func:`misuan.psi.local.run_local_pair` runs both parties as local processes.

The capability around it: :mod:`.node` (what a node runs: :mod:`.routes`, the
job manager :mod:`.jobs` and its inputs :mod:`.datasets`), :mod:`.client` (the
edge: ``run_psi`` and the calls to one node's PSI routes) and :mod:`.cli`
(``misuan psi`` and ``misuan data``).

Importing this package does not load spu/libpsi.
"""

from misuan.psi.result import PsiPartyResult, PsiProgress
from misuan.psi.runner import run_psi_party
from misuan.psi.spec import KeyNormalization, LinkTls, PsiLink, PsiSpec

__all__ = [
    "KeyNormalization",
    "LinkTls",
    "PsiLink",
    "PsiPartyResult",
    "PsiProgress",
    "PsiSpec",
    "run_psi_party",
]
