"""Worker entry point: run one PSI party from a JSON request, in its own process.

Usage::

    python -m misuan.psi._party REQUEST.json     # or a JSON string, or "-" for stdin

Request::

    {"spec": {...PsiSpec.to_dict()}, "link": {...PsiLink.to_dict()},
     "input": "/abs/in.csv", "expected_sha256": "<hex>" | null, "job_dir": "/abs/job", "output": "/abs/out.csv" | null,
     "result": "/abs/result.json", "progress": "/abs/progress.jsonl" | null}

The outcome is written atomically to ``result``::

    {"ok": true, "result": {...PsiPartyResult.to_dict()}, "peak_rss_kb": 123}
    {"ok": false, "error": {"type": "InvalidInput", "message": "...", "http_status": 422},
     "peak_rss_kb": 123}

Exit status: 0 success, 2 a misuan error, 3 anything else. libpsi logs to
stdout/stderr (paths and counts, never keys); callers may redirect them.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from misuan._fs import atomic_open
from misuan.errors import MisuanError
from misuan.psi.result import PsiProgress
from misuan.psi.runner import run_psi_party
from misuan.psi.spec import PsiLink, PsiSpec


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_open(path, "w", 0o666, suffix=".part", strict_dir_sync=False, encoding="utf-8") as fh:
        json.dump(payload, fh)


def _load_request(arg: str) -> dict[str, Any]:
    if arg == "-":
        return json.load(sys.stdin)
    if arg.lstrip().startswith("{"):
        return json.loads(arg)
    return json.loads(Path(arg).read_text(encoding="utf-8"))


def _peak_rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _outcome(ok: bool, **fields: Any) -> dict[str, Any]:
    return {"ok": ok, **fields, "peak_rss_kb": _peak_rss_kb()}


def run(request: dict[str, Any]) -> int:
    """Run the request; write the outcome file; return the exit status."""
    result_path = Path(request["result"])
    with contextlib.ExitStack() as stack:
        progress_path = request.get("progress")
        sink = stack.enter_context(open(progress_path, "a", encoding="utf-8")) if progress_path else None

        def on_progress(event: PsiProgress) -> None:
            if sink is not None:
                sink.write(json.dumps(asdict(event)) + "\n")
                sink.flush()

        try:
            result = run_psi_party(
                PsiSpec.from_dict(request["spec"]),
                PsiLink.from_dict(request["link"]),
                Path(request["input"]),
                Path(request["job_dir"]),
                Path(request["output"]) if request.get("output") else None,
                on_progress,
                request.get("expected_sha256"),
            )
        except MisuanError as exc:
            error = {"type": type(exc).__name__, "message": str(exc), "http_status": exc.http_status}
            _write_json(result_path, _outcome(False, error=error))
            return 2
        except Exception as exc:  # report type and frames only: messages could quote data
            error = {"type": type(exc).__name__, "message": "unexpected error in the PSI worker"}
            _write_json(result_path, _outcome(False, error={**error, "http_status": 500}))
            frames = traceback.extract_tb(exc.__traceback__)
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
            print(f"misuan.psi worker: unexpected {type(exc).__name__} at {where}", file=sys.stderr)
            return 3
    _write_json(result_path, _outcome(True, result=result.to_dict()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m misuan.psi._party REQUEST.json|JSON|-", file=sys.stderr)
        return 64
    try:
        return run(_load_request(args[0]))
    except MisuanError:
        return 2
    except Exception:
        return 3


if __name__ == "__main__":
    sys.exit(main())
