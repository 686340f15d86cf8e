"""``misuan model``, run as a real subprocess against real nodes."""

import json

from tests.cli.run import misuan


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
