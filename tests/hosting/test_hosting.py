"""Encrypted model hosting on a real 3-node ABY3 cluster, with a tiny random LLaMA."""

import json
import sqlite3

import numpy as np
import pytest

import misuan
from misuan.hosting import grant_model, list_models, publish_model, remove_model, revoke_model, show_model, verify_model
from misuan.hosting.publish import check_receipt, hosted_tensors, load_receipt
from misuan.models.loader import load_model
from tests.conftest import client_as


def _weights(path):
    cfg, params, _ = load_model(path)
    return dict(hosted_tensors(cfg, params))


def test_publish_list_show(client3, hosted, tiny_dir):
    assert hosted.name == "admin/tiny" and hosted.tensors == len(_weights(tiny_dir))
    rows = {(m["name"], m["version"]) for m in list_models(client3)}
    assert ("tiny", hosted.version) in rows
    info = show_model(client3, "tiny", hosted.version)
    assert info["config"]["n_layers"] == 2 and info["owner"] == "admin"
    assert [t["name"] for t in info["tensors"]] == list(_weights(tiny_dir))
    # the owner's receipt opens every commitment stored on the nodes
    receipt = load_receipt(hosted.receipt)
    assert {t["name"]: t["commitment"] for t in info["tensors"]} == receipt["commitments"]
    assert check_receipt(receipt, tiny_dir) == []


def test_publish_again_makes_a_new_version(client3, hosted, tiny_dir):
    again = publish_model(client3, tiny_dir, "tiny", receipt=False)
    assert again.version == hosted.version + 1
    assert show_model(client3, "tiny")["version"] == again.version  # latest by default
    assert remove_model(client3, "tiny", again.version) == [again.version]
    assert show_model(client3, "tiny")["version"] == hosted.version


def test_verify_checks_the_hosted_weights(client3, hosted, tiny_dir, other_dir):
    ok = verify_model(client3, "tiny", tiny_dir, hosted.version, seed=1)
    assert ok["ok"] and ok["max_error_to_tolerance"] < 0.5, ok
    bad = verify_model(client3, "tiny", other_dir, hosted.version, seed=1)
    assert not bad["ok"] and len(bad["mismatched"]) > 10
    st = client3.status()
    assert all(any(r["name"] == "tiny" and r["state"] == "ready" for r in s["resident"]) for s in st)


def test_verify_catches_one_changed_weight_at_smollm2_width(client3, tmp_path_factory):
    """One layer at SmolLM2's widths (576 / 1536): a single weight moved by 0.05 is named."""
    import torch

    from tests.models.tinymodels import make_llama, save_hf

    wide = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 1, "num_attention_heads": 9, "num_key_value_heads": 3}
    model = make_llama(seed=8, **wide)
    src = save_hf(tmp_path_factory.mktemp("wide") / "m", model)
    res = publish_model(client3, src, "wide", receipt=False)
    try:
        ok = verify_model(client3, "wide", src, res.version)
        assert ok["ok"], ok
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight[700, 100] += 0.05  # std of the weights: 0.15
        changed = save_hf(tmp_path_factory.mktemp("wide") / "changed", model)
        bad = verify_model(client3, "wide", changed, res.version)
        assert bad["mismatched"] == ["layers.0.w_up"], bad
    finally:
        remove_model(client3, "wide")


def _needles(weights, n_rows=6):
    """Byte patterns of plaintext weights: float32 rows, float16 rows, fixed-point rows."""
    out = []
    for name in ["embed", "layers.0.wq", "layers.1.w_down", "norm"]:
        w = np.asarray(weights[name], np.float32)
        rows = w.reshape(-1, w.shape[-1])[:n_rows] if w.ndim > 1 else w[None, :]
        for r in rows:
            r = r[:8]
            out.append(r.tobytes())
            out.append(r.astype(np.float16).tobytes())
            out.append(np.rint(r.astype(np.float64) * (1 << 18)).astype(np.int64).tobytes())
    return out


def test_no_plaintext_weight_on_any_node(cluster3, hosted, tiny_dir, client3):
    verify_model(client3, "tiny", tiny_dir, hosted.version, seed=2)  # load into the runtime too
    needles = _needles(_weights(tiny_dir))
    scanned = 0
    for node in range(3):
        for f in (cluster3.dir / f"node{node}").rglob("*"):
            if f.is_file():
                raw = f.read_bytes()
                scanned += len(raw)
                for nd in needles:
                    assert nd not in raw, f"plaintext weight bytes found in {f}"
    assert scanned > 100_000


def test_a_node_share_is_unrelated_to_the_weights(cluster3, hosted, tiny_dir):
    from misuan.mpc import _aby3
    from misuan.node.store import ShareStore

    w = _weights(tiny_dir)["embed"].reshape(-1).astype(np.float64)
    for node in range(3):
        nd = cluster3.dir / f"node{node}"
        store = ShareStore(nd / "shares", nd / "storage.key")
        data = store.read(f"models/admin/tiny/{hosted.version}/embed", f"model:admin/tiny:{hosted.version}:embed")
        meta, chunks = _aby3.expand(data)
        pairs = np.frombuffer(b"".join(c[-16 * w.size :] for c in chunks), dtype=np.uint64).reshape(-1, 2)
        for k in range(2):
            view = pairs[:, k].view(np.int64).astype(np.float64) / (1 << 18)
            corr = np.corrcoef(view, w)[0, 1]
            assert abs(corr) < 0.05, (node, k, corr)
            # uniform over the ring: about half the top bits set
            assert 0.45 < np.mean(pairs[:, k] >> np.uint64(63)) < 0.55
    # node 0 stores only seeds: a few bytes per tensor
    assert store.path_of(f"models/admin/tiny/{hosted.version}/embed").stat().st_size > 0


def test_no_api_returns_a_stored_share(client3, hosted, tiny_dir, tmp_path):
    from misuan.client.runtime import ModelRuntime

    rt = ModelRuntime.ensure(client3, "tiny", hosted.version)
    node = client3.nodes[0]
    with rt.request() as req:
        req.put("hi", np.ones(8, np.float32))
        for var in ["w:embed", "embed", "w:layers.0.wq", "hi", "y"]:
            with pytest.raises(misuan.NotFound):
                node.runtime_get(rt.name, rt.version, rt.runtime_id, req.id, var)
    # the runtime's session is not reachable through the generic session API
    with pytest.raises(misuan.NotFound):
        node.get_var(rt.runtime_id, "w:embed")
    with pytest.raises(misuan.NotFound):
        node.run(rt.runtime_id, b"x", "0" * 64)
    # and a generic session holds nothing but what its client put there
    with client3.session() as s:
        with pytest.raises(misuan.NotFound):  # nothing declared readable by that name (w: is the node's namespace)
            s.get("w:embed")
    # the only binary-returning routes are session variables and declared request outputs
    from tests.conftest import app_routes

    routes = {(r.path, tuple(sorted(r.methods))) for r in app_routes(tmp_path) if hasattr(r, "methods")}
    gets = sorted(p for p, m in routes if "GET" in m)
    assert gets == [
        "/v1/audit",
        "/v1/audit/head",
        "/v1/datasets",
        "/v1/datasets/{name}",  # metadata (owner, name, hash, size), never rows
        "/v1/health",
        "/v1/kbs",  # knowledge bases: public records (sizes, policy, chunk ids), never rows
        "/v1/kbs/{owner}/{name}",
        "/v1/kbs/{owner}/{name}/runtime",
        "/v1/kbs/{owner}/{name}/runtime/{rid}/requests/{req_id}/vars/{var}",  # a search's declared outputs
        "/v1/kbs/{owner}/{name}/tokenizer",
        "/v1/models",
        "/v1/models/{owner}/{name}",
        "/v1/models/{owner}/{name}/runtime",
        "/v1/models/{owner}/{name}/runtime/{rid}/requests/{req_id}/vars/{var}",
        "/v1/models/{owner}/{name}/tokenizer",
        "/v1/principals",  # names and public keys
        "/v1/psi/jobs/{jid}",
        "/v1/psi/jobs/{jid}/output",  # a PSI receiver's own result rows
        "/v1/runtimes/{rid}/alive",  # a boolean, for peers
        "/v1/sessions/{sid}/vars/{name}",
        "/v1/status",
        "/v1/whoami",
    ]


def test_nodes_refuse_to_run_different_programs(client3):
    """If one node is handed another executable, every node refuses to run."""
    import hashlib

    import jax.numpy as jnp

    prog_a = client3.compile(lambda a: a + 1.0, np.zeros(4, np.float32))
    prog_b = client3.compile(lambda a: jnp.sum(a) * a, np.zeros(4, np.float32))
    with client3.session() as s:
        s.put("in0", client3.sharer.share(np.ones(4, np.float32)))

        def run(i):
            exe = prog_b.executable if i == 2 else prog_a.executable
            return client3.nodes[i].run(s.id, exe, hashlib.sha256(exe).hexdigest())

        with pytest.raises(misuan.MisuanError, match="different program"):
            client3.fanout(run)


def test_grants(client3, cluster3, hosted, tiny_dir):
    bob = client_as(cluster3, "bob")
    try:
        assert all(m["model"] != "admin/tiny" for m in list_models(bob))
        with pytest.raises(misuan.NotFound):
            show_model(bob, "admin/tiny")
        with pytest.raises(misuan.NotFound):
            grant_model(bob, "admin/tiny", "bob")
        grant_model(client3, "tiny", "bob")
        assert show_model(client3, "tiny")["grants"] == ["bob"]
        assert any(m["model"] == "admin/tiny" for m in list_models(bob))
        assert "grants" not in show_model(bob, "admin/tiny")  # only the owner sees grants
        with pytest.raises(misuan.PermissionDenied):
            grant_model(bob, "admin/tiny", "carol")
        with pytest.raises(misuan.PermissionDenied):
            remove_model(bob, "admin/tiny")
        with pytest.raises(misuan.PermissionDenied, match="only the owner"):
            verify_model(bob, "admin/tiny", tiny_dir)  # reveals weight probes: owner only
        assert revoke_model(client3, "tiny", "bob")
        with pytest.raises(misuan.NotFound):
            show_model(bob, "admin/tiny")
        # another principal cannot publish over the owner's name
        with pytest.raises(misuan.PermissionDenied, match="your own name"):
            publish_model(bob, tiny_dir, "admin/tiny", receipt=False)
    finally:
        bob.close()


def test_tampered_or_truncated_share_fails_on_load(client3, cluster3, tiny_dir):
    from misuan.client.runtime import ModelRuntime

    res = publish_model(client3, tiny_dir, "tamper", receipt=False)
    f = cluster3.dir / "node1" / "shares" / "models" / "admin" / "tamper" / str(res.version) / "layers.0.wq"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    f.write_bytes(bytes(raw))
    with pytest.raises(misuan.IntegrityError, match="layers.0.wq"):
        ModelRuntime.ensure(client3, "tamper", res.version)
    f.write_bytes(bytes(raw[: len(raw) // 3]))
    with pytest.raises(misuan.IntegrityError, match="layers.0.wq"):
        ModelRuntime.ensure(client3, "tamper", res.version)
    remove_model(client3, "tamper")


def test_interrupted_publish_leaves_nothing(client3, cluster3, tiny_dir):
    calls = []

    def stop_midway(done, total, tensor):
        calls.append(tensor)
        if len(calls) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish_model(client3, tiny_dir, "halfway", progress=stop_midway, receipt=False)
    assert all(m["name"] != "halfway" for m in list_models(client3))
    for node in range(3):
        nd = cluster3.dir / f"node{node}"
        with sqlite3.connect(nd / "state.db") as c:
            assert c.execute("SELECT COUNT(*) FROM uploads").fetchone()[0] == 0
            assert c.execute("SELECT COUNT(*) FROM assets WHERE name='halfway'").fetchone()[0] == 0
        staging = nd / "shares" / "staging"
        assert not staging.exists() or not any(staging.iterdir())
        assert not (nd / "shares" / "models" / "admin" / "halfway").exists()


def test_a_node_failing_mid_publish_leaves_nothing(client3, cluster3, tiny_dir):
    node = client3.nodes[2]
    real = node.put_tensor
    sent = []

    def flaky(uid, tensor, parts):
        sent.append(tensor)
        if len(sent) == 3:
            raise misuan.NodeUnavailable("node 2 is unreachable (simulated)", party=2)
        return real(uid, tensor, parts)

    node.put_tensor = flaky
    try:
        with pytest.raises(misuan.NodeUnavailable):
            publish_model(client3, tiny_dir, "flaky", receipt=False)
    finally:
        node.put_tensor = real
    assert all(m["name"] != "flaky" for m in list_models(client3))


def test_remove_deletes_shares_everywhere_and_is_audited(client3, cluster3, tiny_dir):
    res = publish_model(client3, tiny_dir, "gone", receipt=False)
    dirs = [cluster3.dir / f"node{i}" / "shares" / "models" / "admin" / "gone" for i in range(3)]
    assert all(d.exists() for d in dirs)
    assert remove_model(client3, "gone") == [res.version]
    assert not any(d.exists() for d in dirs)
    for i in range(3):
        with sqlite3.connect(cluster3.dir / f"node{i}" / "state.db") as c:
            ops = [r[0] for r in c.execute("SELECT op FROM audit WHERE asset LIKE 'admin/gone%' ORDER BY seq")]
        assert "model.publish" in ops and ops[-1] == "model.remove"
    with pytest.raises(misuan.NotFound):
        show_model(client3, "gone")


@pytest.mark.parametrize("name", ["", "../evil", "a/b/c", "UPPER", "x" * 65, "..", "a..b", "admin/", "/x"])
def test_bad_names_are_refused(client3, tiny_dir, name):
    with pytest.raises(misuan.InvalidInput, match="model names"):
        publish_model(client3, tiny_dir, name, receipt=False)


def test_unsupported_model_is_one_line(client3, tmp_path):
    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(misuan.InvalidInput, match="GPT2") as exc:
        publish_model(client3, d, "gpt", receipt=False)
    assert "\n" not in str(exc.value)
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(misuan.InvalidInput):
        publish_model(client3, tmp_path / "junk.gguf", "junk", receipt=False)
