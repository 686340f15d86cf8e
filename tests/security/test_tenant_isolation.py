"""One principal never reaches another's session or generation request (real node processes).

Regression tests for checks the suite used to be able to lose silently:
``SessionManager.get``'s principal comparison and ``Runtimes._request``'s
owner check. Each attack is replayed on every node: with either check gone,
the other principal collects all three shares and reconstructs the victim's data.
"""

from __future__ import annotations

import numpy as np
import pytest

import misuan
from misuan.inference.secure import token_digits
from tests.conftest import client_as

X = np.arange(6, dtype=np.float32).reshape(2, 3)


def _double(a):
    return a * 2.0


def test_another_principal_cannot_reach_my_session(cluster3):
    alice, mallory = client_as(cluster3, "alice"), client_as(cluster3, "mallory")
    prog = alice.compile(_double, X)
    try:
        with alice.session() as s:
            s.put(prog.input_names[0], alice.sharer.share(X))
            s.run(prog)
            out = prog.output_names[0]
            for node in mallory.nodes:
                for var in (prog.input_names[0], out):
                    with pytest.raises(misuan.NotFound, match="unknown session"):
                        node.get_var(s.id, var)
                with pytest.raises(misuan.NotFound, match="unknown session"):
                    node.put_var(s.id, prog.input_names[0], alice.sharer.share(np.zeros_like(X))[node.party.rank].data)
                with pytest.raises(misuan.NotFound, match="unknown session"):
                    node.ping(s.id, "abcdef0123")
                with pytest.raises(misuan.NotFound, match="unknown session"):
                    node.run(s.id, prog.executable, prog.sha256)
                with pytest.raises(misuan.NotFound, match="unknown session"):
                    node.close_session(s.id)
            # alice's session is intact: her input unchanged, her output hers
            np.testing.assert_allclose(alice.sharer.reveal(s.get(prog.input_names[0])), X, atol=1e-4)
            np.testing.assert_allclose(alice.sharer.reveal(s.get(out)), 2 * X, atol=1e-4)
    finally:
        alice.close()
        mallory.close()


# ---------------------------------------------------------------- generation requests


@pytest.fixture(scope="module")
def shared_model(client3, tmp_path_factory):
    """A tiny LLaMA owned by admin and granted to two users, loaded once."""
    from misuan.hosting import grant_model, publish_model, remove_model
    from tests.models.tinymodels import make_llama, save_hf

    src = save_hf(tmp_path_factory.mktemp("shared") / "m", make_llama(seed=11, tie=False))
    publish_model(client3, src, "shared-tiny", receipt=False)
    for who in ("alice", "bob"):
        grant_model(client3, "shared-tiny", who)
    yield "admin/shared-tiny", src
    remove_model(client3, "shared-tiny")


def test_a_grantee_cannot_touch_another_grantees_request(cluster3, shared_model):
    from misuan.client.runtime import ModelRuntime
    from misuan.inference import GenerationParams
    from misuan.inference.plain import PlainModel

    name, src = shared_model
    alice, bob = client_as(cluster3, "alice"), client_as(cluster3, "bob")
    try:
        rt = ModelRuntime.ensure(alice, name)
        V = alice.model(name).config.vocab_size
        ids = [5, 17, 99, 3, 42]
        with rt.request() as req:
            hi, lo = token_digits(ids, 16, V)
            req.put("hi", hi)
            req.put("lo", lo)
            req.run("llama.prefill", {"T": 16, "S": 64}, {"seed": 0, "temperature": 0.0})
            # bob uses the same resident runtime (two users on one loaded model)...
            assert ModelRuntime.ensure(bob, name).runtime_id == rt.runtime_id
            args = (name, rt.version, rt.runtime_id, req.id)
            forged = bob.sharer.share(token_digits([7], 16, V)[0])
            for node in bob.nodes:
                # ... but alice's request does not exist for him: read, write, run, end
                with pytest.raises(misuan.NotFound, match="unknown request"):
                    node.runtime_get(*args, "id")
                with pytest.raises(misuan.NotFound, match="unknown request"):
                    node.runtime_put(*args, "hi", forged[node.party.rank].data)
                with pytest.raises(misuan.NotFound, match="unknown request"):
                    node.runtime_run(*args, "llama.decode", {"S": 64})
                with pytest.raises(misuan.NotFound, match="unknown request"):
                    node.runtime_end(*args)
            # alice still reads her own token
            tok = round(float(req.reveal("id")[0]))
        assert [tok] == list(PlainModel(src).generate_ids(ids, GenerationParams(max_tokens=1)))
    finally:
        alice.close()
        bob.close()
