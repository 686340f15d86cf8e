"""Issue 18, findings 1, 7 and 9: the doors around a resident model runtime.

Each test replays an attack against real node processes (the session cluster
``cluster3``): a tiny LLaMA published by ``vendor``, granted to ``alice`` and
``mallory``, loaded into its resident runtime by alice's chat.
"""

from __future__ import annotations

import numpy as np
import pytest

import misuan
from misuan.client.runtime import ModelRuntime
from misuan.mpc.compile import compile_program, spec_of
from tests.conftest import client_as

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def model(cluster3, tmp_path_factory):
    """(name, vendor, alice, mallory) with the runtime loaded and ready on every node."""
    from misuan.hosting import grant_model, publish_model
    from tests.models.tinymodels import make_llama, save_hf

    src = save_hf(tmp_path_factory.mktemp("sec") / "tiny", make_llama(seed=21, tie=False))
    vendor, alice, mallory = (client_as(cluster3, n) for n in ("vendor", "alice", "mallory"))
    publish_model(vendor, src, "guarded", receipt=False)
    for who in ("alice", "mallory"):
        grant_model(vendor, "guarded", who)
    assert "".join(alice.chat("vendor/guarded", MSGS, max_tokens=2)) is not None  # builds the runtime
    return "vendor/guarded", vendor, alice, mallory


def _runtime_id(client, name) -> str:
    states = client.fanout(lambda i: client.nodes[i].runtime_state(name, None))
    assert {s["state"] for s in states} == {"ready"}
    return states[0]["runtime_id"]


def _raw(client, rank, method, path, **kw):
    return client.nodes[rank]._request(method, path, **kw)


def test_system_and_admin_names_are_reserved(cluster3):
    """Finding 1: `token issue system` gave the principal that owns every runtime."""
    for name in ("system", "admin"):
        with pytest.raises(misuan.InvalidInput):
            client_as(cluster3, name)


def test_runtime_session_is_unreachable_through_client_routes(model, cluster3):
    """Finding 1: read a weight share, overwrite a weight, run in, or kill the runtime
    through the generic session routes — as a grantee, the owner or the admin."""
    name, vendor, _alice, mallory = model
    rid = _runtime_id(mallory, name)
    admin = cluster3.client()
    for who in (mallory, vendor, admin):
        for rank in range(3):
            with pytest.raises(misuan.NotFound):
                _raw(who, rank, "GET", f"/v1/sessions/{rid}/vars/w:embed")
            with pytest.raises(misuan.NotFound):
                _raw(who, rank, "PUT", f"/v1/sessions/{rid}/vars/w:norm", content=b"MSH1" + b"\0" * 64)
            with pytest.raises(misuan.NotFound):
                _raw(who, rank, "POST", f"/v1/sessions/{rid}/ping", json={"nonce": "abcdefgh12"})
            with pytest.raises(misuan.NotFound):
                _raw(who, rank, "DELETE", f"/v1/sessions/{rid}")
    assert _runtime_id(mallory, name) == rid  # still there, still ready


def _smuggle(executable: bytes, name: str) -> bytes:
    """Append an ``input_names`` entry (field 2) whose key is a 6-byte varint:
    libspu truncates the key to 32 bits and reads field 2; a 64-bit reader sees
    field 2^29 + 2, an unknown field."""
    key = (1 << 32) | (2 << 3) | 2
    out = bytearray()
    while key >= 0x80:
        out.append((key & 0x7F) | 0x80)
        key >>= 7
    out.append(key)
    data = name.encode()
    return executable + bytes(out) + bytes([len(data)]) + data


def test_parser_differential_cannot_smuggle_a_name(client3):
    """Finding 1: a tag libspu truncates to 32 bits made a stored weight (or another
    user's prompt) a hidden program input. The node refuses such a program."""
    from spu import libspu

    prog = compile_program(lambda x: x + 1.0, [spec_of(np.zeros((2,), np.float32))], name="smuggle")
    evil = _smuggle(prog.executable, "w:embed")
    exe = libspu.Executable()
    exe.ParseFromString(evil)
    assert list(exe.input_names) == ["in0", "w:embed"]  # what libspu would run
    import hashlib

    with client3.session() as sess:
        sess.put("in0", client3.sharer.share(np.ones(2, np.float32)))
        for rank in range(3):
            with pytest.raises(misuan.InvalidInput, match="not a valid SPU executable"):
                _raw(
                    client3,
                    rank,
                    "POST",
                    f"/v1/sessions/{sess.id}/run",
                    content=evil,
                    headers={"X-Misuan-Program-Sha256": hashlib.sha256(evil).hexdigest()},
                )


def test_reserved_names_in_a_clients_own_session(client3):
    """Finding 1: names of the node's namespaces (``w:``, ``r:<request>:``) are not a
    client's to set, read or use as program inputs or outputs."""
    frames = client3.sharer.share_frames(np.zeros(2, np.float32))  # a valid share: only the name is wrong
    with client3.session() as sess:
        for var in ("w:embed", "r:abcdefgh:x"):
            with pytest.raises(misuan.InvalidInput, match="reserved"):
                client3.nodes[0].put_var(sess.id, var, bytes(frames[0]))
        client3.nodes[0].put_var(sess.id, "in0", bytes(frames[0]))
        prog = compile_program(
            lambda x: x * 2.0, [spec_of(np.zeros((2,), np.float32))], name="reserved", input_names=["in0"], output_names=["r:abcdefgh:y"]
        )
        with pytest.raises(misuan.InvalidInput, match="reserved"):
            client3.nodes[0].run(sess.id, prog.executable, prog.sha256)


def test_session_runs_and_variable_reads_and_writes_are_audited(client3):
    """Finding 1: the attack's runs, reads and writes left no audit row."""
    assert np.allclose(client3.run(lambda a: a * 3.0, np.ones(3, np.float32)), 3.0)
    ops = [r["op"] for r in client3.nodes[1].audit(20)]
    for op in ("session.var.put", "session.run", "session.var.get"):
        assert op in ops, op


def test_grantee_cannot_replace_a_live_runtime(model):
    """Finding 7: a new runtime id from one grantee dropped the runtime everyone used."""
    name, _vendor, alice, mallory = model
    rid = _runtime_id(alice, name)
    version = alice.nodes[0].runtime_state(name, None)["version"]
    for rank in range(3):
        with pytest.raises(misuan.Conflict):
            mallory.nodes[rank].runtime_prepare(name, version, "evilruntime01")
    assert _runtime_id(alice, name) == rid
    assert "".join(alice.chat(name, MSGS, max_tokens=2)) is not None  # alice's requests still work


def test_request_owner_check(model):
    """A grantee cannot put into, run, read or end another principal's request."""
    name, _vendor, alice, mallory = model
    rt = ModelRuntime.ensure(alice, name)
    req = rt.request()
    req.put("hi", np.zeros((1, 4), np.float32))
    rid, v = rt.runtime_id, rt.version
    node = mallory.nodes[0]
    with pytest.raises(misuan.NotFound):
        node.runtime_put(name, v, rid, req.id, "hi", b"MSH1")
    with pytest.raises(misuan.NotFound):
        node.runtime_get(name, v, rid, req.id, "hi")
    with pytest.raises(misuan.NotFound):
        node.runtime_end(name, v, rid, req.id)
    req.end()


def test_benchmark_programs_are_off_by_default(model):
    """Finding 9: `bench.store_hf` added a copy of every matrix to the shared runtime."""
    name, _vendor, _alice, mallory = model
    rt = ModelRuntime.ensure(mallory, name)
    for program in ("bench.store_hf", "bench.puma"):
        with pytest.raises(misuan.InvalidInput, match="unknown program"):
            mallory.nodes[0].program_compile(name, rt.version, program, {"T": 4} if program == "bench.puma" else {})
        with pytest.raises(misuan.InvalidInput, match="unknown program"):
            mallory.nodes[0].runtime_run(
                rt.name, rt.version, rt.runtime_id, "benchreq01", program, {"T": 4} if program == "bench.puma" else {}
            )
    # nor upload the baseline's input (the allow-list is what the registered programs declare)
    with pytest.raises(misuan.InvalidInput, match="not an input a client may upload"):
        mallory.nodes[0].runtime_put(rt.name, rt.version, rt.runtime_id, "benchreq01", "x", b"MSH1" + bytes(16))


@pytest.mark.parametrize("params", [{"S": 64, "junk": 1}, {"T": 16, "S": 64, "x": "y"}])
def test_unknown_program_parameters_are_refused_before_compiling(model, params):
    """Finding 9: unknown keys each forced a new compile and cache entry."""
    name, _vendor, _alice, mallory = model
    rt = ModelRuntime.ensure(mallory, name)
    program = "llama.decode" if "T" not in params else "llama.prefill"
    with pytest.raises(misuan.InvalidInput, match="takes no parameter"):
        mallory.nodes[0].program_compile(name, rt.version, program, params)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/v1/models/vendor/guarded?version=9223372036854775808", None),
        ("GET", "/v1/models/vendor/guarded?version=-1", None),
        ("POST", "/v1/models/vendor/guarded/programs/compile", {"version": 1 << 63, "program": "llama.decode", "params": {}}),
        ("POST", "/v1/models/vendor/guarded/programs/compile", {"version": 1, "program": "llama.decode", "params": {"S": [64]}}),
        ("POST", "/v1/models/vendor/guarded/programs/compile", {"version": 1, "program": "llama.decode", "params": {"S": {"a": 1}}}),
        ("POST", "/v1/models/vendor/guarded/runtime", {"version": -1, "runtime_id": "abcdefgh12"}),
    ],
)
def test_malformed_requests_are_4xx(model, method, path, body):
    """Finding 9: these answered HTTP 500."""
    _name, _vendor, _alice, mallory = model
    with pytest.raises(misuan.InvalidInput):
        _raw(mallory, 0, method, path, **({"json": body} if body is not None else {}))


def test_status_and_audit_are_scoped_to_the_caller(model, cluster3):
    """Finding 9: any principal saw every tenant's models, sessions and activity."""
    name, _vendor, _alice, _mallory = model
    eve = client_as(cluster3, "eve")
    st = eve.nodes[0].status()
    assert st["assets"] == [] and st["resident"] == [] and st["sessions"] == [] and st["audit_rows"] is None
    assert {r["requester"] for r in eve.nodes[0].audit(200)} <= {"eve"}
    admin = cluster3.client()
    assert any(a["model"] == name for a in admin.nodes[0].status()["assets"])


def test_verify_probes_are_drawn_by_the_nodes_and_runs_are_limited(model):
    """Finding 2: with chosen probes (u = e_i, v = e_j) the owner-only ``verify``
    returned exact weight entries. Probes are now ±1 vectors every node draws from
    the owner's seed; the owner cannot upload any, and runs are rate-limited."""
    from misuan.hosting.protocol import VERIFY_RUNS_PER_HOUR

    name, vendor, _alice, _mallory = model
    rt = ModelRuntime.ensure(vendor, name)
    e0 = np.zeros(8, np.float32)
    e0[0] = 1.0  # a unit probe: would single out one weight
    with rt.request() as req:
        for var in ("p0_0", "p0_1", "p1_0"):
            with pytest.raises(misuan.InvalidInput, match="not an input a client may upload"):
                req.put(var, e0)
        with pytest.raises(misuan.InvalidInput, match="needs a seed"):
            req.run("verify", {}, {})
    runs = 0
    with pytest.raises(misuan.Conflict, match="last hour"):
        while runs <= VERIFY_RUNS_PER_HOUR:
            with rt.request() as req:
                req.run("verify", {}, {"seed": runs})
            runs += 1
    assert runs == VERIFY_RUNS_PER_HOUR  # refused runs (no seed) do not count


def test_publishing_reveals_nothing_about_others_models(model, cluster3, tmp_path):
    """Finding 9: an upload reservation answered 'belongs to another principal' for a
    hidden name. Each principal publishes under its own name: the same bare name is
    free for everyone, and publishing into another's namespace is refused alike
    whether or not that model exists."""
    from misuan.hosting import list_models, publish_model
    from tests.models.tinymodels import make_llama, save_hf

    _name, _vendor, _alice, mallory = model
    src = save_hf(tmp_path / "m", make_llama(seed=22, tie=False))
    mine = publish_model(mallory, src, "guarded", receipt=False)  # the same bare name as the vendor's model
    assert mine.name == "mallory/guarded"
    assert {m["model"] for m in list_models(mallory)} >= {"mallory/guarded", "vendor/guarded"}  # granted + own
    errors = []
    for target in ("vendor/guarded", "vendor/no-such-model"):
        with pytest.raises(misuan.PermissionDenied) as exc:
            publish_model(mallory, src, target, receipt=False)
        errors.append(str(exc.value).split(": ", 1)[1])
    assert errors[0] == errors[1]
    eve = client_as(cluster3, "eve")
    with pytest.raises(misuan.NotFound) as a:
        eve.nodes[0].show_model("vendor/guarded")
    with pytest.raises(misuan.NotFound) as b:
        eve.nodes[0].show_model("vendor/no-such-model")
    assert str(a.value).replace("guarded", "X") == str(b.value).replace("no-such-model", "X")


def test_malformed_upload_is_refused_before_it_can_fail_the_shared_runtime(model):
    """A share of the wrong shape, dtype or visibility would make SPU fail inside the
    run, which fails the runtime for every user: the node refuses it first."""
    from spu import api as spu_api
    from spu import libspu

    from misuan.mpc.shares import encode_share
    from misuan.secure.onehot import token_digits

    name, _vendor, alice, mallory = model
    rid = _runtime_id(mallory, name)
    rt = ModelRuntime.ensure(mallory, name)
    V = mallory.model(name).config.vocab_size
    hi, lo = token_digits([1, 2], 16, V)
    io = spu_api.Io(3, libspu.RuntimeConfig(protocol=libspu.ProtocolKind.ABY3, field=libspu.FieldType.FM64))
    public = io.make_shares(hi, libspu.Visibility.VIS_PUBLIC)

    bad_uploads = {
        "shape": lambda r: r.put("hi", np.zeros((3, 3), np.int32)),
        "dtype": lambda r: r.put("hi", hi.astype(np.float32)),
        "public": lambda r: mallory.fanout(
            lambda i: mallory.nodes[i].runtime_put(rt.name, rt.version, rt.runtime_id, r.id, "hi", encode_share(public[i]))
        ),
    }
    for _kind, upload in bad_uploads.items():
        req = rt.request()
        upload(req)
        req.put("lo", lo)
        with pytest.raises(misuan.InvalidInput, match="must be a secret int32 share"):
            req.run("llama.prefill", {"T": 16, "S": 64}, {"seed": 0, "temperature": 0.0})
        req.end()
    assert _runtime_id(alice, name) == rid  # the shared runtime survived every attempt
    assert "".join(alice.chat(name, MSGS, max_tokens=2)) is not None
