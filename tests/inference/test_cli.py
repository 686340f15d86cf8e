"""``misuan generate``, run as a real subprocess against real nodes."""

import json

from tests.cli.run import misuan


def test_generate_json_secure_and_plaintext(cluster3, tmp_path):
    from misuan.hosting import publish_model
    from tests.conftest import client_as
    from tests.models.tinymodels import make_llama, save_hf

    src = save_hf(tmp_path / "g", make_llama(seed=4, tie=False))
    # a principal of its own: runtime builds are rate-limited per principal, and the
    # admin's budget is spent by the tests that ran just before on this cluster
    with client_as(cluster3, "cligen") as c:
        publish_model(c, src, "cli-gen", receipt=False)
    key_file = str(cluster3.dir / "keys" / "cligen.key")
    c = str(cluster3.cluster_file)
    sec = json.loads(
        misuan("generate", "--model", "cli-gen", "hi", "--max-tokens", "3", "--cluster", c, "--key-file", key_file, "--json").stdout
    )
    plain = json.loads(
        misuan("generate", "--model", "cli-gen", "hi", "--max-tokens", "3", "--plaintext", "--weights", str(src), "--json").stdout
    )
    assert sec["token_ids"] == plain["token_ids"] and len(sec["token_ids"]) == 3
    for key in ("text", "token_ids", "prompt_tokens", "prefill_s", "decode_s_per_token"):
        assert key in sec
    # "hb" as raw text: this model answers one token, then EOS; --fixed-length still runs every step
    fixed = json.loads(
        misuan(
            "generate",
            "--model",
            "cli-gen",
            "hb",
            "--raw",
            "--max-tokens",
            "5",
            "--fixed-length",
            "--cluster",
            c,
            "--key-file",
            key_file,
            "--json",
        ).stdout
    )
    assert fixed["token_ids"] == [244] and fixed["finish_reason"] == "stop" and fixed["decode_steps"] == 4
    r = misuan("generate", "--model", "cli-gen", "hi", "--max-tokens", "0", "--cluster", c, "--key-file", key_file, check=False)
    assert r.returncode == 1 and "max_tokens" in r.stderr and "Traceback" not in r.stderr
    r = misuan("generate", "--model", "cli-gen", "hi", "--top-p", "0.5", "--cluster", c, "--key-file", key_file, check=False)
    assert r.returncode == 1 and "top-p" in r.stderr
