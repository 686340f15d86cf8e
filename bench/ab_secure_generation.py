"""Side by side: ``bench/secure_generation.py`` of two source trees, interleaved, on one machine.

Used to check that a change (e.g. a restructure) costs no speed: runs the benchmark of
tree A, then of tree B, ``--rounds`` times (A B A B ...), each in its own fresh local
cluster, and reports per tree the medians of prefill and decode s/token over the rounds,
every pair (A_i, B_i) and the greedy-token agreement with plaintext. Not a test.

    .venv/bin/python bench/ab_secure_generation.py --a /path/to/old --b . [--rounds 2] \\
        [--prompts 8] [--out bench/results/ab_secure_generation.json]

"Within noise" (the targets): B's median within 5 % of A's, or inside the spread of
A's own runs, whichever is wider.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_tree(tree: Path, prompts: int, work: Path, tag: str) -> dict:
    out = work / f"{tag}.json"
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [
        sys.executable,
        str(tree / "bench" / "secure_generation.py"),
        "--dir",
        str(work / f"cluster-{tag}"),
        "--prompts",
        str(prompts),
        "--repeats",
        "1",
        "--skip-baseline",
        "--out",
        str(out),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{tag} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(out.read_text())
    return {
        "wall_s": round(time.perf_counter() - t0, 1),
        "prefill_s": res["ours"]["prefill_s"],
        "decode_s_per_token": res["ours"]["decode_s_per_token"],
        "bytes_per_token": res["ours"]["bytes_per_token"],
        "tokens_match_plaintext": res["ours"]["tokens_match_plaintext"],
        "agreement": res.get("agreement", {}).get("fraction"),
        "agreement_tokens": [res.get("agreement", {}).get("identical_tokens"), res.get("agreement", {}).get("total_tokens")],
        "runtime_ready_s": res.get("runtime_ready_s"),
    }


def within_noise(a: list[float], b: list[float]) -> bool:
    ma, mb = statistics.median(a), statistics.median(b)
    spread = (max(a) - min(a)) / ma if len(a) > 1 else 0.0
    return abs(mb - ma) / ma <= max(0.05, spread)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="source tree A (the reference, e.g. the commit before a change)")
    ap.add_argument("--b", required=True, help="source tree B (the change)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ab_secure_generation.json"))
    args = ap.parse_args()
    trees = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="misuan-ab-") as tmp:
        for r in range(args.rounds):
            for tag in ("A", "B"):
                res = run_tree(trees[tag], args.prompts, Path(tmp), f"{tag}{r + 1}")
                runs[tag].append(res)
                print(f"{tag} round {r + 1}: prefill {res['prefill_s']} s, decode {res['decode_s_per_token']} s/token", flush=True)
    med = {t: {k: statistics.median(x[k] for x in runs[t]) for k in ("prefill_s", "decode_s_per_token", "bytes_per_token")} for t in runs}
    agree = {t: all(x["agreement"] == 1.0 and x["tokens_match_plaintext"] for x in runs[t]) for t in runs}
    targets = {
        "decode_within_noise": within_noise([x["decode_s_per_token"] for x in runs["A"]], [x["decode_s_per_token"] for x in runs["B"]]),
        "prefill_within_noise": within_noise([x["prefill_s"] for x in runs["A"]], [x["prefill_s"] for x in runs["B"]]),
        "agreement_100_percent": agree["B"],
    }
    pairs = [
        f"{a['decode_s_per_token']}/{b['decode_s_per_token']} s/token, {a['prefill_s']}/{b['prefill_s']} s prefill"
        for a, b in zip(runs["A"], runs["B"])
    ]
    result = {
        "summary": (
            f"A/B secure_generation ({os.cpu_count()} cores, {args.rounds} interleaved rounds): decode "
            f"{med['A']['decode_s_per_token']:.3f} vs {med['B']['decode_s_per_token']:.3f} s/token, prefill "
            f"{med['A']['prefill_s']:.1f} vs {med['B']['prefill_s']:.1f} s (medians A vs B; pairs: {'; '.join(pairs)}), "
            f"agreement A {agree['A']}, B {agree['B']}"
        ),
        "targets": targets,
        "trees": {t: str(p) for t, p in trees.items()},
        "medians": med,
        "runs": runs,
        "cores": os.cpu_count(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(result["summary"])
    print(json.dumps(targets))


if __name__ == "__main__":
    main()
