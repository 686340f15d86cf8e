from pathlib import Path

from misuan.mpc.link import LinkSpec, LinkTLS, SendRetry, make_desc


def test_desc_carries_timeouts_and_tls():
    spec = LinkSpec("s1", 1, ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), 1234, 2.0, LinkTLS(Path("/c"), Path("/k"), Path("/ca")))
    d = make_desc(spec)
    assert d.recv_timeout_ms == 1234 and d.enable_ssl
    assert [p.host for p in d.parties] == list(spec.addresses)
    assert d.client_ssl_opts.verify.ca_file_path == "/ca"
    assert d.server_ssl_opts.cert.certificate_path == "/c"
    assert d.connect_retry_times * d.connect_retry_interval_ms >= 2000
    assert not d.disable_msg_seq_id  # synchronous sends (CHEETAH's OT) need yacl's acks


def test_async_only_links_skip_acknowledgements():
    spec = LinkSpec("s2", 0, ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), 1000, 1.0, async_only=True)
    assert make_desc(spec).disable_msg_seq_id


def test_connect_interval_and_send_retries():
    retry = SendRetry(interval_ms=100, interval_incr_ms=400, max_interval_ms=2_000, max_retry=5)
    spec = LinkSpec("s3", 0, ("127.0.0.1:1", "127.0.0.1:2"), 1000, 1.0, connect_interval_ms=200, send_retry=retry)
    d = make_desc(spec)
    assert (d.connect_retry_times, d.connect_retry_interval_ms) == (5, 200)
    o = d.retry_opts
    assert (o.retry_interval_ms, o.retry_interval_incr_ms, o.max_retry_interval_ms, o.max_retry) == (100, 400, 2_000, 5)
