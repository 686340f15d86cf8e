"""The misuan command, run as a real subprocess: the root app and the core command groups."""

import json
import re
import sqlite3
import subprocess
import sys

import pytest

from tests.cli.run import misuan

GROUPS = {"node", "cluster", "audit", "model", "psi", "data", "key", "principal", "generate", "chat", "demo", "selftest"}


def test_help_lists_every_command_group():
    r = misuan("--help")
    listed = set(re.findall(r"^\W+([a-z][a-z-]*)\s{2,}", r.stdout, re.M))  # "│ node   Run a compute node…"
    assert GROUPS <= listed, GROUPS - listed
    for group in ("node", "cluster", "audit", "model", "psi", "data", "key", "principal"):
        assert "Commands" in misuan(group, "--help").stdout


HEAVY = ("jax", "spu", "misuan.client")
LOADED = "import json, sys, importlib; importlib.import_module(sys.argv[1]); print(json.dumps([m for m in {heavy} if m in sys.modules]))"


def _loaded(module: str) -> list[str]:
    code = LOADED.format(heavy=HEAVY)
    return json.loads(subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, check=True).stdout)


def test_cli_import_loads_no_jax():
    assert _loaded("misuan.cli.main") == []
    assert _loaded("misuan.inference.secure") == list(HEAVY)  # the probe sees them when they are loaded


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
