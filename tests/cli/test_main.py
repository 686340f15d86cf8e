"""The misuan command, run as a real subprocess."""

import json
import sqlite3
import subprocess
import sys

import pytest


def misuan(*args, check=True, timeout=300):
    r = subprocess.run([sys.executable, "-m", "misuan", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"misuan {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r


def test_selftest_json_and_nothing_left_running(tmp_path):
    d = tmp_path / "st"
    res = json.loads(misuan("selftest", "--dir", str(d), "--json").stdout)
    assert res["ok"] and res["parties"] == 3 and res["protocol"] == "ABY3"
    assert res["max_abs_error"] <= res["tolerance"]
    assert len(set(res["node_pids"])) == 3 and res["send_bytes"] > 0
    assert res["cluster_started_here"]
    import psutil

    assert not any(psutil.pid_exists(p) for p in res["node_pids"])


def test_cluster_commands_json(tmp_path):
    d = str(tmp_path / "c")
    init = json.loads(misuan("cluster", "init", "--dir", d, "--parties", "2", "--json").stdout)
    assert init["protocol"] == "CHEETAH" and init["parties"] == 2
    try:
        ups = json.loads(misuan("cluster", "up", "--dir", d, "--json").stdout)
        assert [u["healthy"] for u in ups] == [True, True]
        st = json.loads(misuan("cluster", "status", "--dir", d, "--json").stdout)
        assert [s["protocol"] for s in st] == ["CHEETAH", "CHEETAH"] and all(s["uptime_s"] >= 0 for s in st)
        again = json.loads(misuan("cluster", "up", "--dir", d, "--json").stdout)
        assert [u["pid"] for u in again] == [u["pid"] for u in ups]
    finally:
        downs = json.loads(misuan("cluster", "down", "--dir", d, "--json").stdout)
    assert [x["note"] for x in downs] == ["stopped", "stopped"]
    st = misuan("cluster", "status", "--dir", d, "--json", check=False)
    assert st.returncode == 0 and not any(s["healthy"] for s in json.loads(st.stdout))
    verify = json.loads(misuan("audit", "verify", "--dir", d, "--json").stdout)
    assert all(v["ok"] and v["rows"] > 0 for v in verify)
    with sqlite3.connect(tmp_path / "c" / "node1" / "state.db") as c:
        c.execute("UPDATE audit SET requester='mallory' WHERE seq=2")
    r = misuan("audit", "verify", "--dir", d, "--json", check=False)
    assert r.returncode == 1
    rep = json.loads(r.stdout)
    assert rep[0]["ok"] and not rep[1]["ok"] and rep[1]["first_broken"] == 2


def test_errors_are_one_line(tmp_path):
    r = misuan("cluster", "init", "--dir", str(tmp_path / "x"), "--parties", "2", "--protocol", "ABY3", check=False)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "ABY3 needs 3" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ["alice", "bob-2"])
def test_key_new(tmp_path, name):
    res = json.loads(misuan("key", "new", name, "--out", str(tmp_path / "k.key"), "--json").stdout)
    assert res["principal"] == name and res["public_key"].startswith("ed25519:")
    shown = json.loads(misuan("key", "show", str(tmp_path / "k.key"), "--json").stdout)
    assert shown == {"principal": name, "public_key": res["public_key"]}
    r = misuan("key", "new", name, "--out", str(tmp_path / "k.key"), check=False)
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr


def test_model_commands(cluster3, tmp_path):
    from tests.models.tinymodels import make_llama, save_hf

    src = save_hf(tmp_path / "m", make_llama(seed=3, tie=True))
    c = str(cluster3.cluster_file)
    pub = json.loads(
        misuan("model", "publish", str(src), "--name", "cli-tiny", "--cluster", c, "--receipt", str(tmp_path / "r.json"), "--json").stdout
    )
    assert pub["name"] == "admin/cli-tiny" and pub["version"] >= 1 and pub["tensors"] > 10
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o600
    rows = json.loads(misuan("model", "list", "--cluster", c, "--json").stdout)
    assert any(r["name"] == "cli-tiny" for r in rows)
    show = json.loads(misuan("model", "show", "cli-tiny", "--cluster", c, "--json").stdout)
    assert show["config"]["tie_embeddings"] and all(t["name"] != "lm_head" for t in show["tensors"])
    assert json.loads(misuan("model", "grant", "cli-tiny", "--to", "dave", "--cluster", c, "--json").stdout)["granted"] == "dave"
    assert json.loads(misuan("model", "revoke", "cli-tiny", "--from", "dave", "--cluster", c, "--json").stdout)["had_grant"]
    ver = json.loads(misuan("model", "verify", "cli-tiny", str(src), "--cluster", c, "--json").stdout)
    assert ver["ok"]
    rm = json.loads(misuan("model", "rm", "cli-tiny", "--cluster", c, "--json").stdout)
    assert rm["removed_versions"] == [pub["version"]]
    r = misuan("model", "show", "cli-tiny", "--cluster", c, check=False)
    assert r.returncode == 1 and "unknown model" in r.stderr and r.stderr.strip().count("\n") == 0
    r = misuan("model", "publish", str(tmp_path / "nope.gguf"), "--name", "x", "--cluster", c, check=False)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_generate_json_secure_and_plaintext(cluster3, tmp_path):
    from misuan.hosting import publish_model
    from tests.models.tinymodels import make_llama, save_hf

    src = save_hf(tmp_path / "g", make_llama(seed=4, tie=False))
    with misuan_client(cluster3) as c:
        publish_model(c, src, "cli-gen", receipt=False)
    c = str(cluster3.cluster_file)
    sec = json.loads(misuan("generate", "--model", "cli-gen", "hi", "--max-tokens", "3", "--cluster", c, "--json").stdout)
    plain = json.loads(
        misuan("generate", "--model", "cli-gen", "hi", "--max-tokens", "3", "--plaintext", "--weights", str(src), "--json").stdout
    )
    assert sec["token_ids"] == plain["token_ids"] and len(sec["token_ids"]) == 3
    for key in ("text", "token_ids", "prompt_tokens", "prefill_s", "decode_s_per_token"):
        assert key in sec
    # "hb" as raw text: this model answers one token, then EOS; --fixed-length still runs every step
    fixed = json.loads(
        misuan("generate", "--model", "cli-gen", "hb", "--raw", "--max-tokens", "5", "--fixed-length", "--cluster", c, "--json").stdout
    )
    assert fixed["token_ids"] == [244] and fixed["finish_reason"] == "stop" and fixed["decode_steps"] == 4
    r = misuan("generate", "--model", "cli-gen", "hi", "--max-tokens", "0", "--cluster", c, check=False)
    assert r.returncode == 1 and "max_tokens" in r.stderr and "Traceback" not in r.stderr
    r = misuan("generate", "--model", "cli-gen", "hi", "--top-p", "0.5", "--cluster", c, check=False)
    assert r.returncode == 1 and "top-p" in r.stderr


def misuan_client(cluster):
    import misuan as m

    return m.connect(cluster.cluster_file)
