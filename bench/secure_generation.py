"""Secure generation benchmark (not a test): SmolLM2-135M on 3 local nodes, ABY3/FM64.

Measures, in one run on one machine:
  * ours: prefill of a 32-token prompt, decode s/token for 16 new tokens,
    bytes/token, peak RSS per node (daemon + session workers);
  * greedy-token agreement with the plaintext engine over >= 20 varied prompts;
  * the baseline, the PUMA recipe of SPU's examples (no KV cache: a full
    forward over the whole sequence per new token; weights in stored
    orientation, x @ W.T; SPU's default softmax/silu/rsqrt), per token;
and writes bench/results/secure_generation.json plus a one-line summary.
The timed generation runs ``--repeats`` times, each followed by two baseline
steps (interleaved: this machine's speed drifts by up to ~40 % within an hour):
one at the mean sequence length of the decoded tokens (the per-token figure) and
one at the first, shortest one; prefill, decode and the baseline are medians.

    .venv/bin/python bench/secure_generation.py [--dir /tmp/misuan-bench] [--prompts 20] [--agree-tokens 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import psutil

PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "The three primary colors are",
    "Once upon a time, in a small village by the sea,",
    "Photosynthesis is the process by which plants",
    "To make a cup of tea, first",
    "The largest planet in our solar system is",
    "import numpy as np\n\nx = np.arange(10)\nprint(",
    "A haiku about autumn leaves:\n",
    "The French word for 'cat' is",
    "In 1969, the first humans landed on",
    "Machine learning is a field of computer science that",
    "The speed of light in a vacuum is approximately",
    "My favourite recipe for pancakes uses flour, eggs,",
    "SELECT name, age FROM users WHERE",
    "Dear customer, thank you for your order. Your package",
    "The opposite of hot is",
    "Shakespeare wrote many plays, including",
    "To sort a list in Python, you can use",
    "The human heart has four chambers:",
    "Paris, London and Berlin are all",
]
LONG_TEXT = (
    "Secure multi-party computation lets several parties compute a function of their private inputs "
    "without revealing those inputs to each other. In this benchmark three independent nodes hold "
    "secret shares of a language model and answer prompts that none of them can read."
)


class RssSampler(threading.Thread):
    """Peak memory per node: the node daemon plus all its descendants (zygote, workers).

    ``peak`` sums RSS (pages shared by the forked zygote and worker count twice),
    read from /proc/<pid>/statm: cheap, sampled all the time. ``peak_pss`` sums PSS
    (shared pages split between the processes that map them), the fair "memory this
    node uses"; it needs a walk over every page table (smaps_rollup: ~0.15 s of CPU
    per sample of 9 processes, and it holds each process's mmap lock), so it is
    sampled only while ``pss_on`` is set (loading) and never while timing."""

    def __init__(self, pids: list[int], period: float = 0.5):
        super().__init__(daemon=True)
        self.pids, self.period = pids, period
        self.peak = [0] * len(pids)
        self.peak_pss = [0] * len(pids)
        self.peak_union = [0] * len(pids)
        self.pss_on = threading.Event()
        self._halt = threading.Event()

    def _procs(self, pid: int) -> list:
        p = psutil.Process(pid)
        return [q for q in (p, *p.children(recursive=True)) if q.is_running()]

    def sample(self) -> list[int]:
        rss = []
        for pid in self.pids:
            try:
                rss.append(sum(q.memory_info().rss for q in self._procs(pid)))
            except psutil.Error:
                rss.append(0)
        return rss

    def sample_pss(self) -> list[int]:
        pss = []
        for pid in self.pids:
            try:
                pss.append(sum(getattr(i, "pss", i.rss) for i in (q.memory_full_info() for q in self._procs(pid))))
            except psutil.Error:
                pss.append(0)
        return pss

    def run(self) -> None:
        while not self._halt.wait(self.period):
            self.peak = [max(a, b) for a, b in zip(self.peak, self.sample())]
            if self.pss_on.is_set():
                self.peak_pss = [max(a, b) for a, b in zip(self.peak_pss, self.sample_pss())]
                self.peak_union = [max(a, b) for a, b in zip(self.peak_union, self.sample_union())]

    def sample_union(self) -> list[int]:
        """Per node: its processes' resident pages, each physical page counted once."""
        out = []
        for pid in self.pids:
            try:
                out.append(union_rss([q.pid for q in self._procs(pid)]))
            except (psutil.Error, OSError):
                out.append(0)
        return out

    def stop(self) -> list[int]:
        self._halt.set()
        self.join(5)
        return self.peak


def union_rss(pids: list[int]) -> int:
    """Resident bytes of a set of processes with every physical page counted once:
    what the node would hold on a machine of its own (summed RSS counts the pages a
    forked worker shares with its zygote twice; PSS splits shared libraries among all
    9 processes of the local cluster). Page frame numbers from /proc/<pid>/pagemap
    (root only: without it the kernel hides them and this returns 0)."""
    page = os.sysconf("SC_PAGE_SIZE")
    frames = []
    for pid in pids:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in maps:
                start, end = (int(a, 16) for a in line.split()[0].split("-"))
                if line.rstrip().endswith("[vsyscall]"):
                    continue
                pagemap.seek(start // page * 8)
                entries = np.frombuffer(pagemap.read((end - start) // page * 8), dtype=np.uint64)
                present = entries[(entries >> np.uint64(63)) == 1]  # bit 63: page present in RAM
                frames.append(present & np.uint64((1 << 55) - 1))  # bits 0-54: frame number
    if not frames:
        return 0
    pfns = np.unique(np.concatenate(frames))
    return 0 if pfns.size and pfns[-1] == 0 else int(pfns.size) * page


def cpu_model() -> str:
    """The CPU's model name and family (machines of one class differ between sessions)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    return f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/misuan-bench")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--agree-tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="timed generations (medians are reported)")
    ap.add_argument(
        "--baseline-steps",
        type=int,
        default=3,
        help="repeats followed by PUMA steps (each: a full forward at the mean and at the first sequence length); medians are reported",
    )
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "secure_generation.json"))
    args = ap.parse_args()

    from misuan.benchmarks import protocol as BP
    from misuan.cluster.local import local_cluster
    from misuan.hosting import list_models, publish_model
    from misuan.inference import GenerationParams, GenerationStats
    from misuan.inference.plain import PlainModel
    from misuan.models.assets import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    result: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "ram_gb": round(psutil.virtual_memory().total / 2**30),
            "python": platform.python_version(),
            "cpu": cpu_model(),
        },
        "setup": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantised), 3 node processes on loopback, ABY3, FM64, 18 fractional bits",
    }
    with local_cluster(3, dir=args.dir, keep=False, bench=True) as lc:
        client = lc.client()
        if not any(m["model"] == client.model_ref("smollm2") for m in list_models(client)):
            res = publish_model(client, gguf, "smollm2", receipt=False)
            result["publish_s"] = round(res.seconds, 1)
        pids = [s["pid"] for s in client.status()]
        sampler = RssSampler(pids)
        sampler.pss_on.set()  # PSS while loading only: its page-table walks would perturb the timing
        sampler.start()
        t0 = time.perf_counter()
        model = client.model("smollm2")
        result["runtime_ready_s"] = round(time.perf_counter() - t0, 1)
        sampler.pss_on.clear()
        result["peak_pss_per_node_bytes"] = list(sampler.peak_pss)  # while loading
        result["peak_union_rss_per_node_bytes"] = list(sampler.peak_union)
        plain = PlainModel(gguf)
        tok = model.tokenizer

        # 1. timing: a 32-token prompt, 16 new tokens (programs compiled by a warm-up
        # first), repeated; each repeat is followed by one baseline step (the PUMA
        # recipe, same cluster, same weights in stored orientation), so that the
        # machine's drifting speed (up to ~40 % within an hour here) hits both alike.
        # Reported: medians over the repeats.
        ids32 = tok.encode(LONG_TEXT)[:32]
        warm = GenerationStats()
        sampler.peak_pss = [0] * len(pids)
        sampler.peak_union = [0] * len(pids)
        sampler.pss_on.set()  # the warm-up is untimed: PSS while the nodes compile and run prefill + decode
        list(model.generate_ids(ids32, GenerationParams(max_tokens=2), warm))
        sampler.pss_on.clear()
        result["peak_pss_generating_per_node_bytes"] = list(sampler.peak_pss)  # compiling, prefill, decode
        result["peak_union_rss_generating_per_node_bytes"] = list(sampler.peak_union)
        reference = list(plain.generate_ids(ids32, GenerationParams(max_tokens=args.new_tokens)))
        rt = model.runtime
        runs, steps, order = [], [], []
        for r in range(args.repeats):
            stats = GenerationStats()
            secure = list(model.generate_ids(ids32, GenerationParams(max_tokens=args.new_tokens), stats))
            runs.append(
                {
                    "prefill_s": round(stats.prefill_s, 2),
                    "decode_s_per_token": round(stats.decode_s_per_token, 3),
                    "decode_s_all": [round(x, 3) for x in stats.decode_s],
                    "bytes_per_token": int(stats.bytes_per_token),
                    "prefill_bytes": stats.prefill_bytes,
                    "tokens_match_plaintext": secure[: len(reference)] == reference[: len(secure)],
                }
            )
            order.append(f"ours{r + 1}")
            print(f"ours run {r + 1}: prefill {stats.prefill_s:.1f} s, decode {stats.decode_s_per_token:.2f} s/token", flush=True)
            if r == 0:
                result["peak_rss_per_node_bytes"] = list(sampler.peak)  # before the baseline adds its copies
                result["steady_pss_per_node_bytes"] = sampler.sample_pss()  # after the timed generation
            if not args.skip_baseline and r == 0:
                with rt.request() as req:  # the baseline's weight copies, after the memory samples
                    t1 = time.perf_counter()
                    req.run(BP.STORE_HF)
                    result["baseline_store_hf_s"] = round(time.perf_counter() - t1, 1)
            if not args.skip_baseline and r < args.baseline_steps:
                # The baseline re-runs the whole sequence for every new token: token k
                # (k = 2..N, the decode steps we time) costs a forward over P + k - 1
                # tokens. Timed at two lengths after each repeat: the mean length P + N/2
                # (a lower bound on its mean step time over the decode steps, which is
                # convex in T) and, as in earlier stops, the first one, P + 1.
                for T in (len(ids32) + args.new_tokens // 2, len(ids32) + 1):
                    seq = (ids32 + reference)[:T]
                    x = np.zeros((T, model.config.vocab_size), np.float32)
                    x[np.arange(T), seq] = 1.0
                    rt.compile(BP.PUMA, {"T": T})
                    with rt.request() as req:
                        req.put(BP.X, x)
                        t1 = time.perf_counter()
                        res = req.run(BP.PUMA, {"T": T})
                        base_tok = int(round(float(req.reveal(BP.TOKEN_ID)[0])))
                        steps.append(
                            {
                                "T": T,
                                "seconds": round(time.perf_counter() - t1, 2),
                                "send_bytes": sum(r_["send_bytes"] for r_ in res),
                                "token": base_tok,
                            }
                        )
                    order.append(f"baseline{r + 1}(T={T})")
                    print(f"  baseline T={T}: {steps[-1]['seconds']} s", flush=True)
        result["ours"] = {
            "prompt_tokens": len(ids32),
            "new_tokens": args.new_tokens,
            "repeats": len(runs),
            "prefill_s": round(statistics.median(x["prefill_s"] for x in runs), 2),
            "decode_s_per_token": round(statistics.median(x["decode_s_per_token"] for x in runs), 3),
            "bytes_per_token": int(statistics.median(x["bytes_per_token"] for x in runs)),
            "first_compile_prefill_s": round(warm.prefill_s, 1),
            "tokens_match_plaintext": all(x["tokens_match_plaintext"] for x in runs),
            "runs": runs,
        }
        result["timing_order"] = order
        if steps:
            ours_tok = max(result["ours"]["decode_s_per_token"], 1e-9)
            mean_t = len(ids32) + args.new_tokens // 2
            base = statistics.median(s_["seconds"] for s_ in steps if s_["T"] == mean_t)
            first = statistics.median(s_["seconds"] for s_ in steps if s_["T"] == len(ids32) + 1)
            result["baseline_puma"] = {
                "per_token_s": round(base, 2),
                "per_token_basis": f"median step at T={mean_t}, the mean sequence length of decode tokens 2..{args.new_tokens} "
                f"(T={len(ids32) + 1}..{len(ids32) + args.new_tokens - 1}); a lower bound on the mean step (convex in T)",
                "first_step_s": round(first, 2),
                "first_step_basis": f"median step at T={len(ids32) + 1} (the shortest sequence; stops 12-15 reported this one)",
                "steps": steps,
            }
            result["speedup_per_token"] = round(base / ours_tok, 2)
            result["speedup_vs_first_step"] = round(first / ours_tok, 2)
        result["baseline_peak_rss_per_node_bytes"] = list(sampler.peak)
        save(result, args.out)

        # 3. agreement over varied prompts (position-wise, free-running). Not timed, so
        # PSS is sampled here too; the baseline's weight copies (bench.store_hf) are
        # still resident, so this peak is an upper bound, reported apart.
        sampler.peak_pss = [0] * len(pids)
        sampler.pss_on.set()
        same = total = prefix_ok = 0
        per_prompt = []
        for text in PROMPTS[: args.prompts]:
            ids = tok.encode(text)[:32]
            a = list(model.generate_ids(ids, GenerationParams(max_tokens=args.agree_tokens)))
            b = list(plain.generate_ids(ids, GenerationParams(max_tokens=args.agree_tokens)))
            n = max(len(a), len(b))
            s = sum(x == y for x, y in zip(a, b))
            same, total = same + s, total + n
            prefix_ok += a == b
            per_prompt.append({"prompt": text[:40], "secure": a, "plain": b, "identical": s, "of": n})
            print(f"  agreement {s}/{n}: {text[:40]!r}", flush=True)
            result["agreement"] = {
                "prompts": len(per_prompt),
                "tokens_per_prompt": args.agree_tokens,
                "identical_tokens": same,
                "total_tokens": total,
                "fraction": round(same / max(total, 1), 4),
                "prompts_fully_identical": prefix_ok,
                "per_prompt": per_prompt,
            }
            result["peak_pss_agreement_with_baseline_vars_per_node_bytes"] = list(sampler.peak_pss)
            save(result, args.out)
        sampler.stop()
        save(result, args.out)

    save(result, args.out, final=True)


def save(result: dict, out: str, final: bool = False) -> None:
    """Write the JSON after every section, so a long run that is cut short keeps its numbers."""
    ours = result["ours"]
    agreement = result.get("agreement", {}).get("fraction")
    rss = result.get("peak_rss_per_node_bytes") or [0]
    pss = (result.get("peak_pss_per_node_bytes") or [0]) + (result.get("peak_pss_generating_per_node_bytes") or [0])
    union = [x for key in ("peak_union_rss_per_node_bytes", "peak_union_rss_generating_per_node_bytes") for x in result.get(key) or []]
    result["complete"] = final
    result["targets"] = {
        "decode_s_per_token<=8": ours["decode_s_per_token"] <= 8,
        "prefill_32_s<=60": ours["prefill_s"] <= 60,
        "agreement>=0.95": None if agreement is None else agreement >= 0.95,
        # PSS: each page once (RSS summed over daemon, zygote and worker counts the
        # pages the forked worker shares with the zygote twice)
        "pss_per_node<=3GB (loading and generating)": max(pss) <= 3 * 2**30,
        "rss_summed_per_node<=3GB": max(rss) <= 3 * 2**30,
        # each physical page once per node (its own machine's view), loading and generating
        "union_rss_per_node<=3GB (loading and generating)": None if not union else max(union) <= 3 * 2**30,
        "speedup>=8x": result.get("speedup_per_token", 0) >= 8,
        "speedup_vs_first_step>=8x": result.get("speedup_vs_first_step", 0) >= 8,
    }
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    if not final:
        return
    print(
        f"secure_generation ({result['machine']['cores']} cores): prefill(32) {ours['prefill_s']} s, "
        f"decode {ours['decode_s_per_token']} s/token, {ours['bytes_per_token'] / 1e6:.1f} MB/token, "
        f"agreement {agreement:.1%} over {result['agreement']['prompts']} prompts, "
        f"peak PSS/node {max(pss) / 2**30:.2f} GB, each page once {max(union or [0]) / 2**30:.2f} GB (RSS summed {max(rss) / 2**30:.2f} GB), "
        f"baseline {result.get('baseline_puma', {}).get('per_token_s', '-')} s/token ({result.get('speedup_per_token', '-')}x; "
        f"first step {result.get('baseline_puma', {}).get('first_step_s', '-')} s, {result.get('speedup_vs_first_step', '-')}x)"
    )


if __name__ == "__main__":
    main()
