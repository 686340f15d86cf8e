"""What the owner's machine and the nodes agree on for hosting (standard library only).

The asset kind models are stored as, and the ``verify`` program: its name, its
run-time settings, its rate limit and the names of its probe inputs. The probes
themselves are drawn by :mod:`.probes` on both sides.
"""

from __future__ import annotations

import re

#: the asset kind of a hosted model (routes under ``/v1/models``)
MODEL = "model"
VERIFY = "verify"
#: run-time settings of ``verify`` (not part of the compiled program)
SEED = "seed"
VERIFY_SETTINGS: tuple[str, ...] = (SEED,)
#: at most this many ``verify`` runs per model, owner and node per hour
VERIFY_RUNS_PER_HOUR = 30
MAX_SEED = (1 << 63) - 1
#: verify's output: one number per tensor, revealed to the owner only
Y = "y"
_PROBE = re.compile(r"p(\d{1,6})_([01])")


def probe_name(tensor: int, axis: int) -> str:
    return f"p{tensor}_{axis}"


def parse_probe_name(name: str) -> tuple[int, int]:
    m = _PROBE.fullmatch(name)
    if m is None:
        raise ValueError(f"not a probe name: {name!r}")
    return int(m[1]), int(m[2])
