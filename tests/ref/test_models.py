#!/usr/bin/env python3
"""Model outputs against references we did not write (../shared/models):

- kjv-{llama,qwen2}-f16: Hugging Face float32 logprobs on 3 windows of 64 ids
  (|delta logprob_next| <= 0.01 at every position, argmax equal everywhere) and
  the 3x48 HF greedy tokens.
- every other GGUF: llama.cpp's perplexity on kjv-val.txt (ctx 256) within
  0.5 %, and argmax agreement with llama.cpp on the windows >= 95 %.
- stories260K: llama.cpp's 64 greedy ids exactly.

Usage: test_models.py build/pocketllm   (PL_SHARED overrides ../shared;
PL_PPL_CHUNKS=K limits perplexity to K chunks for a quick local run - the
comparison is then skipped because the reference covers the whole file).
Prints one line per case and ends with "N passed, M failed, K skipped".
"""
import json
import os
import subprocess
import sys

CLI = sys.argv[1] if len(sys.argv) > 1 else "build/pocketllm"
SHARED = os.environ.get("PL_SHARED", "../shared")
MODELS = os.path.join(SHARED, "models")
results = {"passed": 0, "failed": 0, "skipped": 0}


def case(name, ok, detail=""):
    key = "passed" if ok else "failed"
    results[key] += 1
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


def skip(name, why):
    results["skipped"] += 1
    print("skip " + name + ": " + why, flush=True)


def run(args, **kw):
    p = subprocess.run([CLI] + args, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr.strip()[-2000:]))
    return p.stdout


def score(model, ids):
    out = run(["score", "-m", model, "--ids", ",".join(map(str, ids))])
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(rows) == len(ids), "score printed %d rows for %d ids" % (len(rows), len(ids))
    return rows


def greedy(model, prompt_ids, n):
    out = run(["run", "-m", model, "--prompt-ids", ",".join(map(str, prompt_ids)), "-n", str(n),
               "--temp", "0", "--ids", "--ignore-eos"])
    return [int(x) for x in out.split()]


def perplexity(model):
    args = ["perplexity", "-m", model, "-f", os.path.join(SHARED, "text", "kjv-val.txt"), "-c", "256"]
    if os.environ.get("PL_PPL_CHUNKS"):
        args += ["--chunks", os.environ["PL_PPL_CHUNKS"]]
    out = run(args)
    return float([l for l in out.splitlines() if l.startswith("PPL = ")][-1].split("=")[1])


def check_hf(name):
    model = os.path.join(MODELS, "kjv-%s-f16.gguf" % name)
    ref_path = os.path.join(MODELS, "kjv-%s.hf.json" % name)
    if not (os.path.exists(model) and os.path.exists(ref_path)):
        skip("hf_" + name, "%s or its reference is absent" % model)
        return
    ref = json.load(open(ref_path))
    for wi, w in enumerate(ref["windows"]):
        try:
            rows = score(model, w["tokens"])
        except Exception as e:  # noqa: BLE001 - report and count as failure
            case("hf_%s_window%d" % (name, wi), False, str(e))
            continue
        worst, worst_pos, bad_argmax = 0.0, -1, []
        for i, r in enumerate(rows):
            if r["argmax"] != w["argmax"][i]:
                bad_argmax.append(i)
            if i < len(rows) - 1:
                d = abs(r["logprob_next"] - w["logprob_next"][i])
                if d > worst:
                    worst, worst_pos = d, i
        case("hf_%s_window%d_logprob" % (name, wi), worst <= 0.01,
             "max |delta logprob| %.5f at pos %d" % (worst, worst_pos))
        case("hf_%s_window%d_argmax" % (name, wi), not bad_argmax,
             "argmax differs at %s" % bad_argmax if bad_argmax else "64/64 equal")
    for gi, g in enumerate(ref["greedy"]):
        try:
            toks = greedy(model, g["prompt_tokens"], len(g["tokens"]))
        except Exception as e:  # noqa: BLE001
            case("hf_%s_greedy%d" % (name, gi), False, str(e))
            continue
        same = next((i for i, (a, b) in enumerate(zip(toks, g["tokens"])) if a != b), None)
        ok = toks == g["tokens"]
        case("hf_%s_greedy%d" % (name, gi), ok,
             "%d tokens equal" % len(toks) if ok else "first difference at %s (got %d tokens)" % (same, len(toks)))


def check_llamacpp(fname):
    model = os.path.join(MODELS, fname)
    ref = json.load(open(model.replace(".gguf", ".llamacpp.json")))
    agree = total = 0
    try:
        for w in ref["windows"]:
            rows = score(model, w["tokens"])
            for i, r in enumerate(rows):
                total += 1
                agree += r["argmax"] == w["argmax"][i]
        case("llamacpp_%s_argmax" % fname, total > 0 and agree >= 0.95 * total,
             "%d/%d positions agree" % (agree, total))
    except Exception as e:  # noqa: BLE001
        case("llamacpp_%s_argmax" % fname, False, str(e))
    if "perplexity" in ref:
        want = ref["perplexity"]["ppl"]
        try:
            got = perplexity(model)
        except Exception as e:  # noqa: BLE001
            case("llamacpp_%s_ppl" % fname, False, str(e))
            return
        if os.environ.get("PL_PPL_CHUNKS"):
            skip("llamacpp_%s_ppl" % fname, "PPL %.4f on %s chunks only (reference %.4f is whole file)"
                 % (got, os.environ["PL_PPL_CHUNKS"], want))
            return
        rel = abs(got - want) / want
        case("llamacpp_%s_ppl" % fname, rel <= 0.005, "PPL %.4f vs llama.cpp %.4f (%.3f %%)" % (got, want, 100 * rel))


def check_stories():
    model = os.path.join(MODELS, "stories260K.gguf")
    ref = json.load(open(os.path.join(MODELS, "stories260K.llamacpp.json")))
    for gi, g in enumerate(ref["greedy"]):
        toks = greedy(model, g["prompt_tokens"], len(g["tokens"]))
        case("stories260K_greedy%d" % gi, toks == g["tokens"],
             "got %s" % toks if toks != g["tokens"] else "%d ids equal" % len(toks))


def main():
    if not os.path.isdir(MODELS):
        skip("models", "%s is absent (a fresh clone without ../shared)" % MODELS)
    else:
        only = os.environ.get("PL_MODEL_FILTER", "")
        check_hf("llama")
        check_hf("qwen2")
        for f in sorted(os.listdir(MODELS)):
            if not f.endswith(".gguf") or f.endswith("-f16.gguf") or f.startswith("stories") or only not in f:
                continue
            if not os.path.exists(os.path.join(MODELS, f.replace(".gguf", ".llamacpp.json"))):
                continue
            check_llamacpp(f)
        # the f16 files also have llama.cpp references: argmax + perplexity too
        for f in ("kjv-llama-f16.gguf", "kjv-qwen2-f16.gguf"):
            if os.path.exists(os.path.join(MODELS, f.replace(".gguf", ".llamacpp.json"))) and only in f:
                check_llamacpp(f)
        try:
            check_stories()
        except Exception as e:  # noqa: BLE001
            case("stories260K_greedy", False, str(e))
    print("%d passed, %d failed, %d skipped" % (results["passed"], results["failed"], results["skipped"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
