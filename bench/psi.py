"""PSI benchmark (not a test): misuan PSI end to end, and side by side with openmined-psi.

Measures, on this machine:

1. 1M x 1M rows, 50% overlap, RR22 / KKRT / ECDH: end-to-end wall time of the two
   party processes (process start, link setup, snapshot, key handling, PSI,
   output file), the engine's per-stage times, peak RSS per party, link bytes.
   Target: RR22 <= 20 s.
   RR22 runs alternate with bare ``spu.psi`` on the same files (two processes,
   default link settings, no misuan stages), so misuan's own overhead is
   measured side by side even when other jobs load the machine.
2. 100k x 100k, 50% overlap, side by side in the same run, alternating:
   misuan (RR22 and ECDH, two processes, brpc on loopback, CSV in/out) vs
   openmined-psi (ECDH on P-256, client and server in two processes exchanging
   serialised messages through pipes). Ratio = openmined seconds / misuan seconds.

Timings on a shared machine are noisy: every repeated number is a median, the
load average is recorded next to them, and the ratio comes from runs interleaved
in one process. Writes ``bench/results/psi.json`` and prints a one-line summary.

    PYTHONPATH=src python bench/psi.py [--rows 1000000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from misuan.psi.local import PartyRun, run_local_pair
from misuan.psi.spec import PsiSpec

RESULTS = Path(__file__).resolve().parent / "results" / "psi.json"
RR22_TARGET_S = 20.0


# --- data ------------------------------------------------------------------------------------


def make_tables(directory: Path, rows: int) -> tuple[Path, Path, int]:
    """Two CSVs of ``rows`` rows each, 50% key overlap; returns (a, b, expected)."""
    a, b = directory / f"a_{rows}.csv", directory / f"b_{rows}.csv"
    half = rows // 2
    if not a.exists():
        with open(a, "w", encoding="utf-8") as fh:
            fh.write("customer_id,balance\n")
            fh.writelines(f"客户-{i:09d},{(i * 7919) % 100000}\n" for i in range(rows))
    if not b.exists():
        with open(b, "w", encoding="utf-8") as fh:
            fh.write("segment,customer_id\n")
            fh.writelines(f"s{i % 17},客户-{i:09d}\n" for i in range(half, half + rows))
    return a, b, rows - half


def keys_of(rows: int) -> tuple[list[str], list[str]]:
    half = rows // 2
    return [f"客户-{i:09d}" for i in range(rows)], [f"客户-{i:09d}" for i in range(half, half + rows)]


# --- misuan ----------------------------------------------------------------------------------


def run_misuan(protocol: str, a: Path, b: Path, work: Path, expected: int, curve: str | None = None) -> dict[str, Any]:
    """One two-process misuan run; returns its measurements."""
    shutil.rmtree(work, ignore_errors=True)
    spec = PsiSpec(keys=("customer_id",), protocol=protocol)
    if curve is not None:
        spec = PsiSpec(keys=("customer_id",), protocol=protocol, ecdh_curve=curve)
    start = time.monotonic()
    runs: tuple[PartyRun, ...] = run_local_pair(spec, [a, b], [work / "out_a.csv", work / "out_b.csv"], work, timeout_s=900)
    wall = time.monotonic() - start
    results = []
    for run in runs:
        if run.result is None:
            raise SystemExit(f"misuan {protocol} party {run.rank}: {run.error_type}: {run.error_message}")
        if run.result.intersection_keys != expected:
            raise SystemExit(f"misuan {protocol}: wrong intersection size {run.result.intersection_keys}")
        results.append(run.result)
    r0, r1 = results
    sent = [r.bytes_sent for r in (r0, r1) if r.bytes_sent is not None]
    stages0, stages1 = dict(r0.stage_seconds), dict(r1.stage_seconds)
    out = {
        "e2e_s": round(wall, 3),
        "engine_s": round(max(r0.seconds, r1.seconds), 3),
        "stages_s": {k: round(max(stages0[k], stages1[k]), 3) for k in stages0},
        "peak_rss_mb": [round((run.peak_rss_kb or 0) / 1024, 1) for run in runs],
        "bytes_total": sum(sent) if len(sent) == 2 else None,
        "intersection": r0.intersection_keys,
    }
    shutil.rmtree(work, ignore_errors=True)
    return out


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats (peak RSS: maximum over repeats, per party)."""

    def median(values: Any) -> float:
        return round(statistics.median(values), 3)

    summary = {
        "repeats": len(samples),
        "e2e_s_median": median(s["e2e_s"] for s in samples),
        "e2e_s_all": [s["e2e_s"] for s in samples],
        "peak_rss_mb_per_party": [max(s["peak_rss_mb"][i] for s in samples) for i in (0, 1)],
        "bytes_total": samples[0]["bytes_total"],
        "intersection": samples[0]["intersection"],
    }
    if "engine_s" in samples[0]:
        summary["engine_s_median"] = median(s["engine_s"] for s in samples)
        summary["stages_s_median"] = {k: median(s["stages_s"][k] for s in samples) for k in samples[0]["stages_s"]}
    return summary


# --- bare spu.psi (the baseline misuan wraps) -------------------------------------------------


def _bare_party(rank: int, addresses: list[str], source: str, output: str, protocol: str, log: str, conn: Any) -> None:
    """spu.psi called directly on the user's CSV: default link settings, no misuan stages."""
    sink = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # libpsi logs to stdout/stderr
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    import spu.libspu.link as link
    import spu.psi as psi

    desc = link.Desc()
    desc.id = "bare"
    for i, address in enumerate(addresses):
        desc.add_party(f"p{i}", address)
    desc.recv_timeout_ms = 600_000
    ctx = link.create_brpc(desc, rank)
    protocols = {"rr22": psi.PsiProtocol.PROTOCOL_RR22, "kkrt": psi.PsiProtocol.PROTOCOL_KKRT}
    config = psi.PsiExecuteConfig(
        protocol_conf=psi.PsiProtocolConfig(protocol=protocols[protocol], receiver_rank=0, broadcast_result=True),
        input_params=psi.InputParams(path=source, selected_keys=["customer_id"], keys_unique=True),
        output_params=psi.OutputParams(path=output, disable_alignment=True),
    )
    report = psi.psi_execute(config, ctx)
    ctx.stop_link()
    conn.send((int(report.intersection_count), int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
    conn.close()


def run_bare(protocol: str, a: Path, b: Path, work: Path, expected: int) -> dict[str, Any]:
    """Both parties of bare spu.psi as two spawned processes; wall time from spawn to exit."""
    from misuan.psi.local import free_ports

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx = mp.get_context("spawn")
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    pipes, procs = [], []
    start = time.monotonic()
    for rank, source in enumerate((a, b)):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(
            target=_bare_party,
            args=(
                rank,
                addresses,
                str(source),
                str(work / f"out{rank}.csv"),
                protocol,
                str(work / f"bare{rank}.log"),
                theirs,
            ),
        )
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    try:
        outcomes = [pipe.recv() for pipe in pipes]
    except EOFError:
        raise SystemExit(f"bare spu.psi {protocol} party died; see {work}/bare*.log") from None
    for proc in procs:
        proc.join()
    wall = time.monotonic() - start
    for source in (a, b):  # libpsi caches key info in <input>.meta: drop it so every run is cold
        Path(f"{source}.meta").unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    if outcomes[0][0] != expected:
        raise SystemExit(f"bare spu.psi {protocol}: wrong intersection size {outcomes[0][0]}")
    return {
        "e2e_s": round(wall, 3),
        "peak_rss_mb": [round(kb / 1024, 1) for _, kb in outcomes],
        "bytes_total": None,
        "intersection": outcomes[0][0],
    }


# --- openmined-psi ---------------------------------------------------------------------------


def _om_server(conn: Any, items: list[str], client_size: int) -> None:
    import private_set_intersection.python as om

    server = om.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, client_size, items, om.DataStructure.GCS).SerializeToString()
    conn.send_bytes(setup)
    request = om.Request()
    request.ParseFromString(conn.recv_bytes())
    conn.send_bytes(server.ProcessRequest(request).SerializeToString())
    conn.send(int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    conn.close()


def _om_client(conn: Any, items: list[str]) -> None:
    import private_set_intersection.python as om

    client = om.client.CreateWithNewKey(True)
    request = client.CreateRequest(items).SerializeToString()
    conn.send_bytes(request)
    setup, response = om.ServerSetup(), om.Response()
    setup_bytes = conn.recv_bytes()
    response_bytes = conn.recv_bytes()
    setup.ParseFromString(setup_bytes)
    response.ParseFromString(response_bytes)
    found = len(client.GetIntersection(setup, response))
    conn.send((found, len(setup_bytes) + len(request) + len(response_bytes)))
    conn.send(int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    conn.close()


def run_openmined(server_items: list[str], client_items: list[str], expected: int) -> dict[str, Any]:
    """openmined-psi, server and client in two processes (spawned), messages over pipes."""
    ctx = mp.get_context("spawn")
    server_end, server_conn = ctx.Pipe()
    client_end, client_conn = ctx.Pipe()
    start = time.monotonic()
    server = ctx.Process(target=_om_server, args=(server_conn, server_items, len(client_items)))
    client = ctx.Process(target=_om_client, args=(client_conn, client_items))
    server.start()
    client.start()
    setup = server_end.recv_bytes()
    request = client_end.recv_bytes()
    server_end.send_bytes(request)
    response = server_end.recv_bytes()
    client_end.send_bytes(setup)
    client_end.send_bytes(response)
    found, message_bytes = client_end.recv()
    rss = [server_end.recv(), client_end.recv()]
    server.join()
    client.join()
    wall = time.monotonic() - start
    if found != expected:
        raise SystemExit(f"openmined-psi: wrong intersection size {found}")
    return {
        "e2e_s": round(wall, 3),
        "peak_rss_mb": [round(kb / 1024, 1) for kb in rss],
        "bytes_total": message_bytes,
        "intersection": found,
    }


# --- main ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in ("spu", "openmined-psi", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per party, large run")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of RR22 at --rows")
    parser.add_argument("--repeat-other", type=int, default=1, help="repeats of KKRT/ECDH at --rows")
    parser.add_argument("--small", type=int, default=100_000, help="rows per party, comparison")
    parser.add_argument("--small-repeat", type=int, default=3, help="interleaved comparison repeats")
    parser.add_argument("--curves", type=int, default=10_000, help="rows per party, ECDH curve survey")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.small, args.repeat, args.repeat_other, args.small_repeat = 20_000, 5_000, 1, 1, 1
        args.curves = 2_000

    info = machine()
    scratch = args.work or Path(tempfile.mkdtemp(prefix="misuan-psi-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        # 1. side by side at --small, interleaved
        sa, sb, s_expected = make_tables(scratch, args.small)
        om_server_items, om_client_items = keys_of(args.small)
        small: dict[str, list] = {"misuan_rr22": [], "misuan_ecdh": [], "openmined": []}
        for _ in range(args.small_repeat):
            small["misuan_rr22"].append(run_misuan("rr22", sa, sb, scratch / "run", s_expected))
            small["misuan_ecdh"].append(run_misuan("ecdh", sa, sb, scratch / "run", s_expected))
            small["openmined"].append(run_openmined(om_server_items, om_client_items, s_expected))
        compare: dict[str, Any] = {name: summarize(samples) for name, samples in small.items()}
        om_s = compare["openmined"]["e2e_s_median"]
        compare["ratio_openmined_over_misuan_rr22"] = round(om_s / compare["misuan_rr22"]["e2e_s_median"], 2)
        compare["ratio_openmined_over_misuan_ecdh"] = round(om_s / compare["misuan_ecdh"]["e2e_s_median"], 2)

        # 2. ECDH curves at --curves (why ECDH defaults to FourQ)
        ca, cb, c_expected = make_tables(scratch, args.curves)
        curves = {curve: run_misuan("ecdh", ca, cb, scratch / "run", c_expected, curve)["engine_s"] for curve in ("fourq", "25519")}

        # 3. large runs; RR22 interleaved with bare spu.psi on the same files
        la, lb, l_expected = make_tables(scratch, args.rows)
        bare_rr22, misuan_rr22 = [], []
        for _ in range(args.repeat):
            bare_rr22.append(run_bare("rr22", la, lb, scratch / "run", l_expected))
            misuan_rr22.append(run_misuan("rr22", la, lb, scratch / "run", l_expected))
        large = {"rr22": summarize(misuan_rr22)}
        for protocol in ("kkrt", "ecdh"):
            large[protocol] = summarize([run_misuan(protocol, la, lb, scratch / "run", l_expected) for _ in range(args.repeat_other)])
        bare = summarize(bare_rr22)
    finally:
        if args.work is None:
            shutil.rmtree(scratch, ignore_errors=True)

    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rr22 = large["rr22"]["e2e_s_median"]
    report = {
        "benchmark": "psi",
        "machine": info,
        "notes": (
            "e2e = wall time from starting both party processes until both exited "
            "(process start, link setup, snapshot, key canonicalisation, PSI, output CSV). "
            "misuan parties are 2 processes on the same cores, linked by brpc over loopback; "
            "openmined-psi server/client are 2 processes exchanging messages over pipes. "
            "Medians over repeats; the machine is shared, see loadavg."
        ),
        "large": {
            "rows_per_party": args.rows,
            "overlap": 0.5,
            "protocols": large,
            "rr22_target_s": RR22_TARGET_S,
            "rr22_meets_target": rr22 <= RR22_TARGET_S,
            "bare_spu_psi_rr22": bare,
            "rr22_overhead_over_bare_s": round(rr22 - bare["e2e_s_median"], 3),
            "rr22_ratio_to_bare": round(rr22 / bare["e2e_s_median"], 3),
        },
        "compare": {"rows_per_party": args.small, "overlap": 0.5, **compare},
        "ecdh_curve_default": PsiSpec(keys=("k",)).ecdh_curve,
        "ecdh_curves_engine_s": {"rows_per_party": args.curves, **curves},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    e2e = {name: large[name]["e2e_s_median"] for name in large}
    small_e2e = {name: compare[name]["e2e_s_median"] for name in small}
    rss = max(large["rr22"]["peak_rss_mb_per_party"])
    print(
        f"psi ({info['cores']} cores, load {info['loadavg_at_start'][0]}): "
        f"{args.rows:,}x{args.rows:,} RR22 {rr22:.1f}s (target {RR22_TARGET_S:.0f}s "
        f"{'met' if rr22 <= RR22_TARGET_S else 'MISSED'}; bare spu.psi {bare['e2e_s_median']:.1f}s), "
        f"KKRT {e2e['kkrt']:.1f}s, "
        f"ECDH-fourq {e2e['ecdh']:.1f}s, peak RSS {rss:.0f}MB/party; "
        f"{args.small:,}x{args.small:,}: openmined {om_s:.1f}s vs misuan RR22 "
        f"{small_e2e['misuan_rr22']:.1f}s ({compare['ratio_openmined_over_misuan_rr22']}x), "
        f"ECDH {small_e2e['misuan_ecdh']:.1f}s ({compare['ratio_openmined_over_misuan_ecdh']}x) "
        f"-> {args.out}"
    )


if __name__ == "__main__":
    main()
