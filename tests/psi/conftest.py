"""Fixtures for the PSI tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from misuan.psi.local import PartyRun, run_local_pair
from misuan.psi.spec import PsiSpec


@pytest.fixture
def run_pair(tmp_path: Path):
    """Run both parties as real processes on loopback; returns (run0, run1)."""

    def run(
        specs: PsiSpec | Sequence[PsiSpec],
        inputs: Sequence[Path],
        outputs: Sequence[Path | None] | None = None,
        **kwargs,
    ) -> tuple[PartyRun, ...]:
        outs = outputs if outputs is not None else (tmp_path / "out0.csv", tmp_path / "out1.csv")
        kwargs.setdefault("timeout_s", 120)
        return run_local_pair(specs, inputs, outs, tmp_path / "work", **kwargs)

    return run
