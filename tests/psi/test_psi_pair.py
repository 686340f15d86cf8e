"""Two real party processes linked by brpc on loopback (the way node workers run PSI)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import random
import time
from pathlib import Path

import pytest

from misuan.psi.local import run_local_pair
from misuan.psi.spec import MATCH_COLUMN, KeyNormalization, LinkTls, PsiSpec
from tests.psi.psi_helpers import read_csv, reference_key, write_csv

pytestmark = pytest.mark.cluster

# Keys that trip naive implementations: commas, quotes, newlines, unicode (NFC vs NFD),
# surrounding whitespace of several kinds, case, CJK, emoji.
TRICKY = [
    "plain-1",
    "comma, inside",
    'quote "inside"',
    "new\nline",
    "Zoë",  # NFC on one side ...
    "  padded  ",
    "\u3000全角空格\u3000",
    "北京市",
    "emoji-🙂",
    "Case-Key",
    "ÅNGSTRÖM",
]
TRICKY_PEER = [
    "plain-1",
    "comma, inside",
    'quote "inside"',
    "new\nline",
    "Zoe\u0308",  # ... NFD on the other: the same key after NFC
    "padded",
    "全角空格",
    "北京市",
    "emoji-🙂",
    "case-key",  # differs by case: matches only with casefold
    "ångström",
]


def _tables(tmp_path: Path, seed: int = 7, n: int = 300):
    rng = random.Random(seed)
    pool = [f"k{i:05d}-{rng.choice(['é', 'ß', 'x', '中'])}" for i in range(3 * n)]
    a_keys = rng.sample(pool, n) + TRICKY
    b_keys = rng.sample(pool, n) + TRICKY_PEER
    a = write_csv(tmp_path / "a.csv", ["id", "amount"], [[k, str(i)] for i, k in enumerate(a_keys)])
    b = write_csv(tmp_path / "b.csv", ["segment", "cust id"], [[f"s{i % 5}", k] for i, k in enumerate(b_keys)])
    return a, b, a_keys, b_keys


def _expected_rows(own_rows, own_keys, other_keys, casefold=False):
    """Own rows whose key (reference policy) is among the other side's keys."""
    theirs = {reference_key([k], casefold) for k in other_keys} - {None}
    return sorted(r for r, k in zip(own_rows, own_keys) if reference_key([k], casefold) in theirs)


@pytest.mark.parametrize("protocol", ["rr22", "kkrt", "ecdh"])
def test_exact_intersection_all_protocols(tmp_path, run_pair, protocol):
    a, b, a_keys, b_keys = _tables(tmp_path)
    specs = [PsiSpec(keys=("id",), protocol=protocol), PsiSpec(keys=("cust id",), protocol=protocol)]
    run0, run1 = run_pair(specs, [a, b])
    assert run0.ok and run1.ok, (run0.error_message, run1.error_message)

    header0, rows0 = read_csv(tmp_path / "out0.csv")
    header1, rows1 = read_csv(tmp_path / "out1.csv")
    assert header0 == ["id", "amount"] and header1 == ["segment", "cust id"]
    _, all0 = read_csv(a)
    _, all1 = read_csv(b)
    expected0 = _expected_rows(all0, a_keys, b_keys)
    expected1 = _expected_rows(all1, b_keys, a_keys)
    assert sorted(rows0) == expected0 and sorted(rows1) == expected1
    assert len(expected0) == len(expected1) > len(TRICKY) - 3  # a real, non-trivial overlap
    assert {r[0] for r in rows0} >= {"Zoë", "  padded  ", "new\nline", 'quote "inside"'}

    for run, n in ((run0, len(a_keys)), (run1, len(b_keys))):
        res = run.result
        assert res.received and res.protocol == protocol
        assert res.input_rows == res.unique_keys == n
        assert res.intersection_keys == res.output_rows == len(expected0)
        assert res.peer_unique_keys == (len(b_keys) if run.rank == 0 else len(a_keys))
        assert res.bytes_sent and res.bytes_received
        assert [s for s, _ in res.stage_seconds] == ["link", "check", "prepare", "psi", "output"]

    events = [json.loads(line) for line in run0.progress_path.read_text().splitlines()]
    stages = [e["stage"] for e in events]
    assert stages[0] == "link" and stages[-1] == "done"
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_casefold_option_and_rank1_as_only_receiver(tmp_path, run_pair):
    a, b, a_keys, b_keys = _tables(tmp_path, seed=3, n=50)
    caseless = KeyNormalization(casefold=True)
    specs = [
        PsiSpec(keys=("id",), normalize=caseless, receiver=1),
        PsiSpec(keys=("cust id",), normalize=caseless, receiver=1),
    ]
    run0, run1 = run_pair(specs, [a, b])
    assert run0.ok and run1.ok, (run0.error_message, run1.error_message)
    _, rows1 = read_csv(tmp_path / "out1.csv")
    _, all1 = read_csv(b)
    assert sorted(rows1) == _expected_rows(all1, b_keys, a_keys, casefold=True)
    assert {"case-key", "ångström"} <= {r[1] for r in rows1}
    assert not run0.result.received and not (tmp_path / "out0.csv").exists()


def test_single_receiver_left_join_and_what_the_sender_gets(tmp_path, run_pair):
    a = write_csv(tmp_path / "a.csv", ["id", "v"], [["1", "x"], ["2", "y"], ["3", "z"], ["", "no key"]])
    b = write_csv(tmp_path / "b.csv", ["id"], [["3"], ["1"], ["9"]])
    spec = PsiSpec(keys=("id",), receiver=0, join="left")
    run0, run1 = run_pair(spec, [a, b])
    assert run0.ok and run1.ok, (run0.error_message, run1.error_message)
    header, rows = read_csv(tmp_path / "out0.csv")
    assert header == ["id", "v", MATCH_COLUMN]
    assert rows == [["1", "x", "1"], ["2", "y", "0"], ["3", "z", "1"], ["", "no key", "0"]]
    assert run0.result.intersection_keys == 2 and run0.result.empty_key_rows == 1
    # The sender learns sizes only: no intersection, no file.
    assert not run1.result.received
    assert run1.result.intersection_keys is None and run1.result.output_rows is None
    assert not (tmp_path / "out1.csv").exists()


def test_difference_with_duplicates_kept(tmp_path, run_pair):
    a = write_csv(tmp_path / "a.csv", ["id", "v"], [["1", "a"], ["2", "b"], ["1", "c"], ["4", "d"]])
    b = write_csv(tmp_path / "b.csv", ["id"], [["1"], ["5"]])
    spec = PsiSpec(keys=("id",), join="difference", duplicates="all")
    run0, run1 = run_pair(spec, [a, b])
    assert run0.ok and run1.ok, (run0.error_message, run1.error_message)
    assert read_csv(tmp_path / "out0.csv")[1] == [["2", "b"], ["4", "d"]]
    assert read_csv(tmp_path / "out1.csv")[1] == [["5"]]
    assert run0.result.duplicate_rows == 1 and run0.result.unique_keys == 3
    assert run1.result.peer_unique_keys == 3  # the peer sees distinct keys, not rows


def test_identical_sets_multi_column_keys(tmp_path, run_pair):
    rows = [[f"u{i}", f"2024-01-{i % 28 + 1:02d}", str(i)] for i in range(40)]
    a = write_csv(tmp_path / "a.csv", ["user", "day", "n"], rows)
    b = write_csv(tmp_path / "b.csv", ["day", "user"], [[r[1], r[0]] for r in reversed(rows)])
    specs = [PsiSpec(keys=("user", "day")), PsiSpec(keys=("user", "day"))]
    run0, run1 = run_pair(specs, [a, b])
    assert run0.ok and run1.ok, (run0.error_message, run1.error_message)
    assert run0.result.intersection_keys == run1.result.intersection_keys == 40
    assert read_csv(tmp_path / "out0.csv")[1] == rows


def test_key_column_count_mismatch_fails_on_both_sides(tmp_path, run_pair):
    a = write_csv(tmp_path / "a.csv", ["id", "day"], [["1", "d"]])
    b = write_csv(tmp_path / "b.csv", ["id"], [["1"]])
    run0, run1 = run_pair([PsiSpec(keys=("id", "day")), PsiSpec(keys=("id",))], [a, b])
    for run in (run0, run1):
        assert run.error_type == "InvalidInput"
        assert "key_count (rank 0: 2, rank 1: 1)" in run.error_message
    assert not (tmp_path / "out0.csv").exists() and not (tmp_path / "out1.csv").exists()


def test_bad_input_on_one_side_fails_both_clearly(tmp_path, run_pair):
    a = write_csv(tmp_path / "a.csv", ["id"], [[f"{i}"] for i in range(100)])
    b = tmp_path / "b.csv"
    b.write_text("id\n")  # header only
    start = time.monotonic()
    run0, run1 = run_pair(PsiSpec(keys=("id",)), [a, b])
    assert time.monotonic() - start < 30
    assert run1.error_type == "InvalidInput" and "no data rows" in run1.error_message
    assert run0.error_type == "ComputeError" and "peer rejected its own input" in run0.error_message
    assert not (tmp_path / "out0.csv").exists()


def test_peer_that_never_shows_up_times_out(tmp_path):
    a = write_csv(tmp_path / "a.csv", ["id"], [["1"]])
    (run0,) = run_local_pair(
        PsiSpec(keys=("id",)),
        [a, a],
        [tmp_path / "o.csv", None],
        tmp_path / "w",
        ranks=(0,),
        connect_timeout_s=2.0,
        timeout_s=60,
    )
    assert run0.error_type == "NodeTimeout"
    assert "did not show up within 2 s" in run0.error_message
    assert run0.wall_s < 20
    assert not (tmp_path / "o.csv").exists()
    assert list((tmp_path / "w" / "job0").iterdir()) == []  # work directory cleaned up


def _make_tls(tmp_path: Path) -> list[LinkTls]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def write_key(key, path):
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def cert(subject, issuer, public_key, signer, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert("misuan-test-ca", "misuan-test-ca", ca_key.public_key(), ca_key, True)
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    out = []
    for rank in (0, 1):
        key = ec.generate_private_key(ec.SECP256R1())
        crt = cert(f"node{rank}", "misuan-test-ca", key.public_key(), ca_key, False)
        cert_path, key_path = tmp_path / f"node{rank}.pem", tmp_path / f"node{rank}.key"
        cert_path.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
        write_key(key, key_path)
        out.append(LinkTls(cert_path, key_path, ca_path))
    return out


def test_mutual_tls_link(tmp_path, run_pair):
    a = write_csv(tmp_path / "a.csv", ["id"], [[str(i)] for i in range(0, 200, 2)])
    b = write_csv(tmp_path / "b.csv", ["id"], [[str(i)] for i in range(0, 200, 3)])
    run0, run1 = run_pair(PsiSpec(keys=("id",)), [a, b], tls=_make_tls(tmp_path))
    assert run0.ok and run1.ok, (run0.error_message, run1.error_message)
    assert run0.result.intersection_keys == len(range(0, 200, 6))
