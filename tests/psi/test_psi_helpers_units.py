"""Small engine helpers: progress tracking, timeouts, error summaries, path safety."""

from __future__ import annotations

from pathlib import Path

import pytest

from misuan.errors import ConfigError, InvalidInput
from misuan.psi._libpsi import check_shell_safe
from misuan.psi._link import auto_recv_timeout_ms, build_desc, summarize_error
from misuan.psi._progress import StageTracker
from misuan.psi.result import STAGES, PsiPartyResult, overall_fraction
from misuan.psi.spec import LinkTls, PsiLink


def test_stage_tracker_is_monotonic_and_survives_a_broken_callback():
    events = []

    def sink(event):
        events.append(event)
        if len(events) == 2:
            raise RuntimeError("progress sink down")

    tracker = StageTracker(sink)
    for stage, _ in STAGES:
        tracker.enter(stage)
        tracker.set_fraction(0.5)
        tracker.set_fraction(0.25)  # never goes back
        tracker.emit()
        tracker.leave()
    tracker.emit("done", 1.0)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [name for name, _ in tracker.seconds] == [name for name, _ in STAGES]
    assert overall_fraction("psi", 0.0) == pytest.approx(sum(w for n, w in STAGES[:4]))


def test_auto_recv_timeout():
    assert auto_recv_timeout_ms(0) == 60_000
    assert auto_recv_timeout_ms(100 << 20) == 160_000
    assert auto_recv_timeout_ms(100 << 30) == 900_000


def test_summarize_error_keeps_one_informative_line():
    text = "what: \n\t[external/yacl/link/channel.cc:104] Get data timeout, key=x\nstacktrace: \n#0 foo\n"
    assert summarize_error(RuntimeError(text)) == "Get data timeout, key=x"
    assert summarize_error(RuntimeError("")) == "RuntimeError"


def test_shell_safe_paths():
    check_shell_safe(Path("/var/lib/misuan/node-0/jobs/psi-job_1.2/tmp"))
    for bad in ("relative/path", "/tmp/with space", "/tmp/x;rm -rf", "/tmp/$(id)", "/tmp/é"):
        with pytest.raises(ConfigError):
            check_shell_safe(Path(bad))


def test_result_roundtrip():
    result = PsiPartyResult(
        job_id="j",
        rank=0,
        protocol="rr22",
        join="inner",
        received=True,
        input_rows=3,
        empty_key_rows=0,
        duplicate_rows=0,
        dropped_rows=0,
        unique_keys=3,
        peer_unique_keys=4,
        intersection_keys=2,
        output_rows=2,
        output_path="/o.csv",
        input_sha256="00",
        seconds=1.0,
        stage_seconds=(("link", 0.1), ("psi", 0.5)),
        bytes_sent=10,
        bytes_received=20,
    )
    assert PsiPartyResult.from_dict(result.to_dict()) == result


def test_psi_link_desc_comes_from_the_mpc_builder(tmp_path):
    files = [tmp_path / n for n in ("c.pem", "k.pem", "ca.pem")]
    for f in files:
        f.write_text("x")
    link = PsiLink("job-1", 1, ("127.0.0.1:1", "127.0.0.1:2"), tls=LinkTls(*files))
    d = build_desc(link, 4321, listen="127.0.0.1:9")
    assert d.id == "psi-job-1" and d.recv_timeout_ms == 4321
    assert [p.host for p in d.parties] == ["127.0.0.1:1", "127.0.0.1:9"]  # this party binds where it is told
    assert (d.connect_retry_times, d.connect_retry_interval_ms, d.retry_opts.max_retry) == (5, 200, 5)
    assert d.enable_ssl and d.server_ssl_opts.verify.ca_file_path == str(files[2])
    files[2].unlink()
    with pytest.raises(InvalidInput, match="ca.pem"):
        build_desc(link, 4321)
