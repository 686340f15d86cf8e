"""Encrypted retrieval benchmark (not a test): secure top-5 search and RAG on 3 local nodes.

Measures, in one run on one fresh local cluster (ABY3, FM64, 18 fractional bits):
  * secure top-5 over synthetic 10k x 384 and 100k x 384 KBs (random unit embeddings,
    random token ids of the model's tokenizer, 128-token chunks: the index content
    does not change the MPC cost): per-query seconds against the resident KB with the
    oblivious fetch of 5 x 128 tokens, the first query's load + compile apart, bytes
    and rounds per query (the nodes' SPU link counters), the time a user waits for
    ``misuan kb search ... --json`` (a subprocess: Python start, embedder compile);
  * side by side: the same search with a full secret sort (``jnp.argsort``, a
    bench-only variant run under the SPU simulator, with the top-k program under the
    simulator for the same harness) and the fp32 numpy top-5 of ``--plaintext``; the
    search's phases (score product, top-k, fetch) under the simulator;
  * agreement: >= 500 real questions against a real-text KB (docstrings of Python's
    standard library, embedded with all-MiniLM-L6-v2), secure top-5 sets against fp32
    cosine top-5 (differences only within the fixed-point resolution count as ties);
  * ``ask`` with SmolLM2-135M and k = 2 chunks of <= 64 tokens: time to first token and
    s/token against a plain ``generate`` of a prompt of the same length (same bucket),
    interleaved, and greedy tokens against the plaintext RAG reference.

    PYTHONPATH=src .venv/bin/python bench/retrieval.py [--dir /tmp/misuan-bench-kb] \\
        [--sizes 10000,100000] [--queries 10] [--agree-queries 500] [--questions 2] [--tiny]

``--tiny`` runs everything at development sizes with the tiny test model.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

K, C_SEARCH, C_ASK, DIM = 5, 128, 64, 384
#: fixed-point resolution of an encoded score (18 fractional bits)
RESOLUTION = 2.0**-18
QUESTIONS = [
    "How do I compare two files line by line?",
    "What does a context manager's exit method return?",
    "How can I parse a date string into a datetime?",
]


def rnd(x: float, n: int = 3) -> float:
    return round(float(x), n)


# ------------------------------------------------------------------ data


def stdlib_docstrings(limit: int) -> list[str]:
    """Real English text shipped with Python: docstrings of the standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if "test" in path.parts or "idlelib" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                text = " ".join((doc or "").split())
                if len(text) >= 80 and text not in seen:
                    seen.add(text)
                    out.append(text)
                    if len(out) >= limit:
                        return out
    return out


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.?!])\s", text, maxsplit=1)[0][:200]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


# ------------------------------------------------------------------ publishing


def publish_arrays(client, name: str, emb, hi, lo, chunk_ids, tok_json: str, vocab: int, chunk_tokens: int, overlap: int = 0) -> float:
    """A KB from arrays, as ``publish_kb`` builds it (config valid for ``validate_kb``)."""
    from misuan.client.publish import next_version, publish_tensors
    from misuan.retrieval import protocol as P
    from misuan.retrieval.publish import tokenizer_sha256

    t0 = time.perf_counter()
    config = {
        "n_chunks": len(chunk_ids),
        "dim": int(emb.shape[1]),
        "chunk_tokens": chunk_tokens,
        "overlap": overlap,
        "vocab_size": vocab,
        "tokenizer_sha256": tokenizer_sha256(tok_json),
        "model": "bench",
        "embedder": P.EMBEDDER,
        "reveal": P.REVEAL_PASSAGES,
        "documents": len(chunk_ids),
        "chunk_ids": list(chunk_ids),
    }
    tensors = [(P.EMB, np.asarray(emb, np.float32)), (P.HI, hi), (P.LO, lo)]
    body = {
        "version": next_version(client, client.model_ref(name), P.KB),
        "kind": P.KB,
        "config": config,
        "tokenizer": tok_json,
        "tensors": [{"name": n, "shape": list(a.shape)} for n, a in tensors],
    }
    publish_tensors(client, P.KB, client.model_ref(name), body, tensors)
    return time.perf_counter() - t0


def synthetic_kb(n: int, vocab: int, seed: int = 0):
    from misuan.secure.onehot import digit_base

    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, DIM), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    _, base = digit_base(vocab)
    ids = rng.integers(0, vocab, (n, C_SEARCH))
    return emb, (ids // base).astype(np.int32), (ids % base).astype(np.int32)


def real_kb(client, name: str, source: Path, tok_json: str, chunk_tokens: int, embedder) -> tuple[np.ndarray, list, float]:
    from misuan.retrieval.publish import embed_chunks, prepare_chunks, token_digits_matrix

    _, chunks, tok = prepare_chunks(source, tok_json, chunk_tokens, 16)
    t0 = time.perf_counter()
    emb = embed_chunks(embedder, tok, chunks)
    embed_s = time.perf_counter() - t0
    hi, lo = token_digits_matrix(chunks, chunk_tokens, tok.vocab_size)
    publish_arrays(client, name, emb, hi, lo, [c.id for c in chunks], tok_json, tok.vocab_size, chunk_tokens, 16)
    return emb, chunks, embed_s


# ------------------------------------------------------------------ secure search


def one_search(rt, q: np.ndarray) -> dict:
    """One query in the KB's resident runtime, as ``retrieval.client.search`` runs it."""
    from misuan.retrieval import protocol as P

    t0 = time.perf_counter()
    with rt.request() as req:
        req.put(P.QUERY, q)
        runs = req.run(P.SEARCH, {P.PARAM_K: K})
        got = req.reveal_many([P.INDEX, P.SCORES, P.TOKENS])  # one fan-out, as KnowledgeBase.search
        index = got[P.INDEX].astype(np.int64).reshape(-1)
    return {
        "seconds": time.perf_counter() - t0,
        "node_seconds": max(r["seconds"] for r in runs),
        "send_bytes": sum(r.get("send_bytes", 0) for r in runs),
        "rounds": max(r.get("send_actions", 0) for r in runs),
        "index": index,
    }


def bench_search(client, name: str, emb: np.ndarray, n_queries: int) -> dict:
    from misuan.client.runtime import ModelRuntime
    from misuan.retrieval import protocol as P

    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    rt = ModelRuntime.ensure(client, name, kind=P.KB)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rt.compile(P.SEARCH, {P.PARAM_K: K})
    compile_s = time.perf_counter() - t1
    qs = rng.standard_normal((n_queries + 1, DIM)).astype(np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    first = one_search(rt, qs[:1])
    runs = [one_search(rt, qs[i : i + 1]) for i in range(1, n_queries + 1)]
    agree = sum(set(r["index"]) == set(np.argsort(-(emb @ qs[i + 1]), kind="stable")[:K]) for i, r in enumerate(runs))
    tp = []
    for q in qs[1:]:
        t = time.perf_counter()
        np.argsort(-(emb @ q), kind="stable")[:K]
        tp.append(time.perf_counter() - t)
    return {
        "n": int(emb.shape[0]),
        "queries": n_queries,
        "per_query_s": rnd(statistics.median(r["seconds"] for r in runs)),
        "per_query_s_min_max": [rnd(min(r["seconds"] for r in runs)), rnd(max(r["seconds"] for r in runs))],
        "node_run_s": rnd(statistics.median(r["node_seconds"] for r in runs)),
        "bytes_per_query_all_nodes": int(statistics.median(r["send_bytes"] for r in runs)),
        "rounds_per_query": int(statistics.median(r["rounds"] for r in runs)),
        "first_query": {"runtime_load_s": rnd(load_s, 2), "compile_s": rnd(compile_s, 2), "first_run_s": rnd(first["seconds"])},
        "sets_equal_plaintext": f"{agree}/{n_queries}",
        "plaintext_fp32_top5_s": rnd(statistics.median(tp), 5),
    }


def cli_search(cluster_dir: Path, name: str, question: str) -> dict:
    """The time a user waits: ``misuan kb search NAME QUESTION --json`` in a new process."""
    cmd = [sys.executable, "-m", "misuan.cli.main", "kb", "search", name, question, "-k", str(K), "--json"]
    cmd += ["--cluster", str(cluster_dir / "cluster.toml")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - t0
    ok = proc.returncode == 0 and len(json.loads(proc.stdout).get("results", [])) == K
    return {"wall_s": rnd(wall, 2), "ok": ok, **({} if ok else {"stderr": proc.stderr[-500:]})}


# ------------------------------------------------------------------ simulator: variants and phases


def sim_variants(n: int, vocab: int, with_sort: bool) -> dict:
    """The search, its phases, and the full-sort variant under the ABY3 simulator."""
    import jax
    import jax.numpy as jnp

    from misuan.mpc.simulator import run_program, runtime_config, sim_program
    from misuan.retrieval import specs

    emb, hi, lo = synthetic_kb(n, vocab, seed=1)
    tok = np.asarray(specs.pack_tokens(jnp.asarray(hi), jnp.asarray(lo), vocab))
    q = emb[3:4] + 0.01
    q /= np.linalg.norm(q)
    cfg = runtime_config()
    idx = np.array([3, 1, n - 1, 0, n // 2], np.int32)

    def argsort_search(emb, tok, q):
        s = specs.scores(emb, q)
        # a full secret sort of N (score, index) pairs: what jnp.argsort lowers to, keeping the values
        neg, order = jax.lax.sort_key_val(-s, jnp.arange(s.shape[0], dtype=jnp.int32))
        vals, order = -neg[:K], order[:K]  # (K,) best first
        fetched = specs.index_onehot(order, s.shape[0]) @ tok
        return vals, order, *specs.unpack_tokens(fetched, C_SEARCH, vocab)

    def top_k_only(s):
        return specs.rank_sort(*jax.lax.top_k(s, K))

    def fetch_only(tok, idx):
        return specs.unpack_tokens(specs.index_onehot(idx, tok.shape[0]) @ tok, C_SEARCH, vocab)

    search = lambda e, t, q_: specs.search(e, t, q_, k=K, C=C_SEARCH, vocab=vocab)  # noqa: E731
    cases = [
        ("search_top_k", search, (emb, tok, q)),
        ("phase_scores", specs.scores, (emb, q)),
        ("phase_top_k", top_k_only, (emb @ q[0],)),
        ("phase_fetch", fetch_only, (tok, idx)),
    ]
    if with_sort:
        cases.append(("search_argsort", argsort_search, (emb, tok, q)))
    out = {}
    for name, fn, args in cases:
        prog = sim_program(fn, *args)
        res, secs = run_program(prog, *args, config=cfg, with_run_seconds=True)
        out[f"{name}_s"] = rnd(secs)
        if name == "search_argsort":
            ref = set(np.argsort(-(emb @ q[0]))[:K].tolist())
            out["argsort_set_equal_plaintext"] = set(np.asarray(res[1]).astype(int).tolist()) == ref
        print(f"  sim n={n} {name}: {secs:.2f} s", flush=True)
    return out


# ------------------------------------------------------------------ agreement on real text


def bench_agreement(client, name: str, emb: np.ndarray, questions: list[str], embedder) -> dict:
    """Secure top-5 sets vs fp32 cosine top-5 on real question embeddings."""
    from misuan.client.runtime import ModelRuntime
    from misuan.retrieval import protocol as P

    qs = embedder.embed(questions)  # (Q, D)
    rt = ModelRuntime.ensure(client, name, kind=P.KB)
    equal, ties, misses, gaps, secs = 0, 0, [], [], []
    for i, q in enumerate(qs):
        r = one_search(rt, q[None, :])
        secs.append(r["seconds"])
        s = emb @ q  # (N,) fp32 cosine
        ref = np.argsort(-s, kind="stable")[:K]
        diff = set(r["index"].tolist()) ^ set(ref.tolist())
        if not diff:
            equal += 1
            continue
        gap = max(abs(float(s[j]) - float(s[ref[-1]])) for j in diff)
        gaps.append(gap)
        if gap <= RESOLUTION:
            ties += 1
        else:
            misses.append({"query": i, "gap": gap})
    n = len(qs)
    return {
        "kb_chunks": int(emb.shape[0]),
        "queries": n,
        "sets_equal": equal,
        "ties_within_resolution": ties,
        "disagreements": len(misses),
        "disagreement_gaps": sorted(gaps)[-10:],
        "misses": misses[:10],
        "fraction": rnd((equal + ties) / n, 4),
        "per_query_s": rnd(statistics.median(secs)),
    }


# ------------------------------------------------------------------ ask vs generate


def bench_ask(client, model: str, kb: str, source: Path, model_path, questions: list[str], max_tokens: int, embedder, corpus: str) -> dict:
    from misuan.client.runtime import ModelRuntime
    from misuan.inference import GenerationParams, GenerationStats, SecureModel
    from misuan.inference import protocol as IP
    from misuan.retrieval import protocol as P
    from misuan.retrieval.rag import RagModel, ask_plaintext

    params = GenerationParams(max_tokens=max_tokens)
    rag = RagModel(client, model, kb, k=2, embedder=embedder)
    gen = SecureModel(client, model)
    filler = gen.tokenizer.encode(corpus, add_special_tokens=False)
    t0 = time.perf_counter()
    kbrt = ModelRuntime.ensure(client, kb, kind=P.KB)
    compiled = set()
    rows, same, total = [], 0, 0
    for q in questions:
        msgs = [{"role": "user", "content": q}]
        layout, _ = rag.layout(msgs, max_tokens)
        n = len(layout.before) + layout.K * layout.C + len(layout.after)
        ids = filler[:n]
        T, S = gen.buckets(n, max_tokens)
        key = (layout.T, layout.S, T, S)
        if key not in compiled:  # compile every program first: the timed runs measure runs
            kbrt.compile(P.RETRIEVE, {P.PARAM_K: rag.k})
            rag.model.runtime.compile(IP.CONTEXT_PREFILL, layout.params)
            gen.runtime.compile(IP.PREFILL, {IP.PARAM_T: T, IP.PARAM_S: S})
            gen.runtime.compile(IP.DECODE, {IP.PARAM_S: S})
            gen.runtime.compile(IP.DECODE, {IP.PARAM_S: layout.S})
            compiled.add(key)
        row = {"question": q, "prompt_tokens": n, "T": layout.T, "S": layout.S, "generate_T": T}
        for what, run in (
            ("ask", lambda st: rag.generate_ids(msgs, params, st)),
            ("generate", lambda st: gen.generate_ids(ids, params, st)),
        ):
            st = GenerationStats()
            t1 = time.perf_counter()
            it = iter(run(st))
            toks = [next(it)]
            ttft = time.perf_counter() - t1
            toks += list(it)
            row[what] = {
                "ttft_s": rnd(ttft, 2),
                "prefill_s": rnd(st.prefill_s, 2),
                "s_per_token": rnd(st.decode_s_per_token),
                "tokens": toks,
            }
            print(f"  {what}: ttft {ttft:.1f} s, {st.decode_s_per_token:.2f} s/token", flush=True)
        try:
            ref, facts = ask_plaintext(model_path, source, client, kb, msgs, params, k=2, embedder=embedder)
        except Exception as e:  # the reference's own failure is a finding, not a reason to lose the timings
            row["plaintext_error"] = f"{type(e).__name__}: {str(e)[:300]}"
            ref, facts = [], {"chunks": None}
        got = row["ask"]["tokens"]
        same += sum(a == b for a, b in zip(got, ref))
        total += max(len(got), len(ref))
        row.update(plaintext_tokens=ref, chunks=facts["chunks"])
        rows.append(row)
    ratio = statistics.median(r["ask"]["ttft_s"] / r["generate"]["ttft_s"] for r in rows)
    return {
        "setup_s": rnd(time.perf_counter() - t0, 1),
        "k": 2,
        "chunk_tokens": rag.kb_config["chunk_tokens"],
        "max_tokens": max_tokens,
        "ask_ttft_s": rnd(statistics.median(r["ask"]["ttft_s"] for r in rows), 2),
        "generate_ttft_s": rnd(statistics.median(r["generate"]["ttft_s"] for r in rows), 2),
        "ttft_ratio": rnd(ratio),
        "ask_s_per_token": rnd(statistics.median(r["ask"]["s_per_token"] for r in rows)),
        "generate_s_per_token": rnd(statistics.median(r["generate"]["s_per_token"] for r in rows)),
        "tokens_equal_plaintext": rnd(same / max(total, 1), 4),
        "questions": rows,
    }


# ------------------------------------------------------------------ main


def write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    tmp.replace(out)


def summarize(r: dict) -> None:
    s = {x["n"]: x for x in r.get("search", [])}
    sim = r.get("simulator", {})
    a, ask = r.get("agreement", {}), r.get("ask", {})
    big = max(s) if s else None

    def q(n):
        return s[n]["per_query_s"] if n in s else None

    r["targets"] = {
        "search_10k_le_0.3s": q(10_000) is not None and q(10_000) <= 0.3,
        "search_100k_le_1.5s": q(100_000) is not None and q(100_000) <= 1.5,
        "agreement_100pct": a.get("fraction") == 1.0 and a.get("queries", 0) >= 500,
        "ask_ttft_le_1.25x_generate": bool(ask) and ask["ttft_ratio"] <= 1.25,
        "ask_tokens_ge_95pct_plaintext": bool(ask) and ask["tokens_equal_plaintext"] >= 0.95,
    }
    missing = {"search_10k_le_0.3s": 10_000 not in s, "search_100k_le_1.5s": 100_000 not in s, "agreement_100pct": not a}
    missing |= {"ask_ttft_le_1.25x_generate": not ask, "ask_tokens_ge_95pct_plaintext": not ask}
    r["not_reached"] = [t for t, m in missing.items() if m]  # targets this run did not measure (false above)
    parts = [
        f"{n // 1000}k: {x['per_query_s']} s/query ({x['rounds_per_query']} rounds, {x['bytes_per_query_all_nodes'] / 1e6:.1f} MB; "
        f"first query +{x['first_query']['runtime_load_s']} s load +{x['first_query']['compile_s']} s compile; "
        f"argsort {sim.get(str(n), {}).get('search_argsort_s', '-')} s vs top-k {sim.get(str(n), {}).get('search_top_k_s', '-')} s sim; "
        f"plaintext {x['plaintext_fp32_top5_s'] * 1e3:.2f} ms)"
        for n, x in sorted(s.items())
    ]
    cli = r.get("cli_search", [])
    r["summary"] = (
        f"retrieval ({r['cores']} cores, load {r['loadavg_start']}->{r.get('loadavg_end')}): secure top-{K} "
        + "; ".join(parts)
        + (f"; user wait (kb search --json, {big // 1000}k) {cli[0]['wall_s']} s" if cli else "")
        + (
            f"; agreement {a['sets_equal'] + a['ties_within_resolution']}/{a['queries']} ({a['ties_within_resolution']} ties) "
            f"on {a['kb_chunks']} real chunks"
            if a
            else ""
        )
        + (
            f"; ask TTFT {ask['ask_ttft_s']} s vs generate {ask['generate_ttft_s']} s ({ask['ttft_ratio']}x), "
            f"{ask['ask_s_per_token']} vs {ask['generate_s_per_token']} s/token, tokens = plaintext {ask['tokens_equal_plaintext']:.0%}"
            if ask
            else "; ask: not measured in this run"
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/misuan-bench-kb")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--sort-sizes", default="10000", help="sizes at which the simulator runs the full-sort variant")
    ap.add_argument("--agree-docs", type=int, default=1800)
    ap.add_argument("--agree-queries", type=int, default=500)
    ap.add_argument("--ask-docs", type=int, default=120)
    ap.add_argument("--questions", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--skip", default="", help="comma list of: search,sim,cli,agree,ask")
    ap.add_argument("--tiny", action="store_true", help="development sizes and the tiny test model")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "retrieval.json"))
    ap.add_argument("--merge", default=None, help="an earlier result JSON whose parts this run skips (kept, with its args and load)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out = Path(args.out)

    from misuan.cluster.local import local_cluster
    from misuan.hosting import list_models, publish_model
    from misuan.retrieval.embedder import Embedder
    from misuan.retrieval.publish import model_tokenizer

    if args.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.models.tinymodels import make_llama, save_hf

        model_path = save_hf(Path(args.dir) / "tiny1024", make_llama(seed=5, tie=True, max_position_embeddings=1024))
    else:
        from misuan.models.assets import smollm2_gguf_path

        model_path = smollm2_gguf_path()
    result: dict = {
        "cores": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "setup": f"3 node processes on loopback, ABY3, FM64, 18 fractional bits; top-{K}; model {Path(model_path).name}",
        "args": vars(args),
    }
    if args.merge:
        prev = json.loads(Path(args.merge).read_text())
        keep = {k: prev[k] for k in ("model_publish_s", "search", "cli_search", "agreement", "ask", "simulator") if k in prev}
        result = {**keep, **result, "earlier_run": {k: prev.get(k) for k in ("args", "loadavg_start", "loadavg_end")}}
    t_all = time.perf_counter()
    texts = stdlib_docstrings(args.agree_docs + args.agree_queries + 50)
    embedder = Embedder.load()
    work = Path(args.dir) / "data"
    work.mkdir(parents=True, exist_ok=True)
    with local_cluster(3, dir=args.dir, keep=False) as lc:
        client = lc.client()
        if "ask" in skip:  # the KBs need only the model's tokenizer: read it here, host nothing
            from misuan.models.loader import load_model

            tok_json = load_model(model_path)[2].to_json()
        else:
            if not any(m["model"] == client.model_ref("llm") for m in list_models(client)):
                t0 = time.perf_counter()
                publish_model(client, model_path, "llm", receipt=False)
                result["model_publish_s"] = rnd(time.perf_counter() - t0, 1)
            tok_json = model_tokenizer(client, "llm")
        from misuan.models.tokenizer import Tokenizer

        vocab = Tokenizer.from_json(tok_json).vocab_size
        result["vocab"] = vocab
        sizes = [int(x) for x in args.sizes.split(",") if x]
        if "search" not in skip:
            result["search"], result["cli_search"] = [], []
            for n in sizes:
                emb, hi, lo = synthetic_kb(n, vocab)
                pub = publish_arrays(client, f"syn{n}", emb, hi, lo, [f"syn#{i}" for i in range(n)], tok_json, vocab, C_SEARCH)
                print(f"published syn{n} in {pub:.1f} s", flush=True)
                res = bench_search(client, f"syn{n}", emb, args.queries)
                res["publish_s"] = rnd(pub, 1)
                result["search"].append(res)
                print(f"search {n}: {res}", flush=True)
                if "cli" not in skip and n == max(sizes):
                    result["cli_search"] = [cli_search(Path(args.dir), f"syn{n}", QUESTIONS[i]) for i in range(2)]
                    print(f"cli: {result['cli_search']}", flush=True)
                write(out, result)
        if "agree" not in skip:
            src = write_jsonl(work / "agree.jsonl", texts[: args.agree_docs])
            emb, chunks, embed_s = real_kb(client, "docs", src, tok_json, C_SEARCH, embedder)
            questions = [first_sentence(t) for t in texts[args.agree_docs : args.agree_docs + args.agree_queries]]
            result["agreement"] = bench_agreement(client, "docs", emb, questions, embedder)
            result["agreement"]["embed_s"] = rnd(embed_s, 1)
            print(f"agreement: {result['agreement']}", flush=True)
            write(out, result)
        if "ask" not in skip:
            src = write_jsonl(work / "ask.jsonl", texts[: args.ask_docs])
            from misuan.retrieval.publish import publish_kb

            publish_kb(client, src, "askdocs", "llm", chunk_tokens=C_ASK, overlap=8, embedder=embedder)
            corpus = " ".join(texts[args.ask_docs : args.ask_docs + 40])
            result["ask"] = bench_ask(
                client, "llm", "askdocs", src, model_path, QUESTIONS[: args.questions], args.max_tokens, embedder, corpus
            )
            write(out, result)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    summarize(result)
    write(out, result)  # what the cluster measured, before the simulator's long full sorts
    if "sim" not in skip:  # after the cluster is gone: the simulator's parties get the cores
        sort_sizes = {int(x) for x in args.sort_sizes.split(",") if x}
        result["simulator"] = {str(n): sim_variants(n, vocab, n in sort_sizes) for n in sizes}
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_s"] = rnd(time.perf_counter() - t_all, 1)
    summarize(result)
    write(out, result)
    print(result["summary"])
    print(json.dumps(result["targets"]))


if __name__ == "__main__":
    main()
