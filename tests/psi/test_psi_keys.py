"""Key normalisation and canonical digests (the policy both parties apply)."""

from __future__ import annotations

import numpy as np

from misuan.psi._keys import (
    DIGEST_DTYPE,
    decode_tokens,
    encode_tokens,
    make_batch_digester,
    normalize_cell,
)
from misuan.psi.spec import KeyNormalization

DEFAULT = KeyNormalization()
CASELESS = KeyNormalization(casefold=True)


def test_nfc_and_whitespace():
    assert normalize_cell("E\u0301", DEFAULT) == "\u00c9"  # decomposed == composed
    assert normalize_cell("  id-7\t", DEFAULT) == "id-7"
    assert normalize_cell("\u3000北京\u00a0", DEFAULT) == "北京"  # ideographic space, NBSP
    assert normalize_cell("a  b", DEFAULT) == "a  b"  # inner whitespace is kept
    assert normalize_cell(" x ", KeyNormalization(strip=False)) == " x "


def test_case_sensitive_by_default_with_casefold_option():
    assert normalize_cell("Alice", DEFAULT) != normalize_cell("alice", DEFAULT)
    assert normalize_cell("Alice", CASELESS) == normalize_cell("ALICE", CASELESS)
    assert normalize_cell("Straße", CASELESS) == normalize_cell("STRASSE", CASELESS)


def _digests(policy, cells):
    packed, positions = make_batch_digester(policy, 1 if isinstance(cells[0], str) else len(cells[0]))(cells)
    return [packed[i : i + 15] for i in range(0, len(packed), 15)], positions


def test_equal_keys_give_equal_digests():
    digests, positions = _digests(DEFAULT, ["É", "E\u0301", " É "])
    assert positions is None
    assert digests[0] == digests[1] == digests[2]


def test_empty_keys_are_skipped():
    digests, positions = _digests(DEFAULT, ["a", "  ", "", "b"])
    assert positions == [0, 3] and len(digests) == 2
    digests, positions = _digests(DEFAULT, [("a", "x"), ("b", " "), ("c", "z")])
    assert positions == [0, 2] and len(digests) == 2


def test_multi_column_keys_are_unambiguous():
    digests, _ = _digests(DEFAULT, [("a,b", "c"), ("a", "b,c"), ("a,b", "c")])
    assert digests[0] != digests[1] and digests[0] == digests[2]
    single, _ = _digests(DEFAULT, ["a,bc"])
    assert single[0] not in digests  # key count is part of the hash domain


def test_tokens_roundtrip():
    raw = np.frombuffer(bytes(range(45)), dtype=DIGEST_DTYPE)
    lines = encode_tokens(raw).split(b"\n")[:-1]
    assert all(len(line) == 20 and b"," not in line and b'"' not in line for line in lines)
    assert np.array_equal(decode_tokens(lines), raw)
