"""The one place that calls ``spu.psi.psi_execute`` (libpsi 0.6 inside spu 0.9.5).

Quirks handled here:
- libpsi needs absolute paths and runs ``tail | sort`` through the shell with
  the paths unquoted, so every path it sees must be absolute and shell-safe.
- It keeps its work files (and ``sort``'s) under ``$TMPDIR``; we point TMPDIR at
  the job's private work directory for the duration of the call.
- ECDH needs an explicit curve (``Curve type is not specified`` otherwise).
- The progress hook of ``psi_execute`` only fires for legacy protocols, so the
  caller reports time-based progress instead.
- It writes ``<input>.meta`` beside its input; that input is our own file in the
  work directory, never the user's.
- It writes a perfetto trace to ``/tmp/psi_<random>.trace`` (timings only, no
  data); the 0.9.5 API cannot redirect it.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from misuan.errors import ComputeError, ConfigError
from misuan.psi._link import summarize_error
from misuan.psi._prepare import LIBPSI_KEY_COLUMN
from misuan.psi.spec import PsiSpec

_SHELL_SAFE = re.compile(r"^/[A-Za-z0-9_./+-]*$")
_TICK_S = 1.0


@dataclass(frozen=True)
class LibpsiReport:
    """libpsi's own counts (they include the dummy key)."""

    original_count: int
    intersection_count: int


def check_shell_safe(path: Path) -> None:
    """libpsi interpolates paths into a shell command: allow only ``[A-Za-z0-9_./+-]``."""
    if not _SHELL_SAFE.match(str(path)):
        raise ConfigError("the PSI job directory must be an absolute path of [A-Za-z0-9_./+-] characters (libpsi passes it to a shell)")


@contextmanager
def _tmpdir(path: Path) -> Iterator[None]:
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old


def build_config(spec: PsiSpec, libpsi_input: Path, libpsi_output: Path) -> Any:
    """The ``PsiExecuteConfig`` for ``spec`` (plain inner join on distinct keys)."""
    from spu import psi

    protocols = {
        "rr22": psi.PsiProtocol.PROTOCOL_RR22,
        "kkrt": psi.PsiProtocol.PROTOCOL_KKRT,
        "ecdh": psi.PsiProtocol.PROTOCOL_ECDH,
    }
    curves = {
        "25519": psi.EllipticCurveType.CURVE_25519,
        "fourq": psi.EllipticCurveType.CURVE_FOURQ,
        "sm2": psi.EllipticCurveType.CURVE_SM2,
        "secp256k1": psi.EllipticCurveType.CURVE_SECP256K1,
    }
    return psi.PsiExecuteConfig(
        protocol_conf=psi.PsiProtocolConfig(
            protocol=protocols[spec.protocol],
            receiver_rank=0 if spec.receiver == "both" else int(spec.receiver),
            broadcast_result=spec.receiver == "both",
            ecdh_params=psi.EcdhParams(curve=curves[spec.ecdh_curve]),
            rr22_params=psi.Rr22Rarams(low_comm_mode=False),
        ),
        input_params=psi.InputParams(
            type=psi.SourceType.SOURCE_TYPE_FILE_CSV,
            path=str(libpsi_input),
            selected_keys=[LIBPSI_KEY_COLUMN],
            keys_unique=True,
        ),
        output_params=psi.OutputParams(
            type=psi.SourceType.SOURCE_TYPE_FILE_CSV,
            path=str(libpsi_output),
            disable_alignment=True,
        ),
    )


def execute(
    ctx: Any,
    spec: PsiSpec,
    libpsi_input: Path,
    libpsi_output: Path,
    tmp_dir: Path,
    on_tick: Callable[[], None] | None = None,
) -> LibpsiReport:
    """Run libpsi on the prepared input; ``on_tick`` runs every second meanwhile.

    Raises:
        ComputeError: libpsi or the link failed (message is one line).
    """
    from spu import psi

    for path in (libpsi_input, libpsi_output, tmp_dir):
        check_shell_safe(path)
    config = build_config(spec, libpsi_input, libpsi_output)
    pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="misuan-psi-libpsi")
    try:
        with _tmpdir(tmp_dir):
            future = pool.submit(psi.psi_execute, config, ctx)
            while True:
                try:
                    report = future.result(timeout=_TICK_S)
                    break
                except cf.TimeoutError:
                    if on_tick is not None:
                        on_tick()
    except RuntimeError as exc:
        raise ComputeError(f"PSI protocol failed: {summarize_error(exc)}") from None
    finally:
        pool.shutdown(wait=True)
    return LibpsiReport(int(report.original_count), int(report.intersection_count))
