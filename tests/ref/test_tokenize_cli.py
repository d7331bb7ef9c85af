#!/usr/bin/env python3
"""`pocketllm tokenize` against llama.cpp's tokenizer suite (../shared/tokenizer):

- every .inp string of the llama-spm and gpt-2 vocabularies, passed as a file
  with --no-bos, prints exactly the ids of its .out line;
- the KJV model's HF prompt tokens (../shared/models/kjv-llama.hf.json) with
  the model's own BOS;
- --help exits 0, a missing -m exits 2, an unreadable model exits 1.

Usage: test_tokenize_cli.py build/pocketllm   (PL_SHARED overrides ../shared)
Prints one line per case and ends with "N passed, M failed, K skipped".
"""
import json
import os
import subprocess
import sys
import tempfile

CLI = sys.argv[1] if len(sys.argv) > 1 else "build/pocketllm"
SHARED = os.environ.get("PL_SHARED", "../shared")
results = {"passed": 0, "failed": 0, "skipped": 0}
SEP = b"\n__ggml_vocab_test__\n"


def case(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


def skip(name, why):
    results["skipped"] += 1
    print("skip " + name + ": " + why, flush=True)


def tokenize(args):
    p = subprocess.run([CLI, "tokenize"] + args, capture_output=True)
    return p.returncode, p.stdout.decode("utf-8", "replace").split(), p.stderr.decode("utf-8", "replace")


def suite(name):
    vocab = os.path.join(SHARED, "tokenizer", "ggml-vocab-%s.gguf" % name)
    if not all(os.path.exists(vocab + ext) for ext in ("", ".inp", ".out")):
        skip("tokenize " + name, vocab + " absent")
        return
    raw = open(vocab + ".inp", "rb").read()
    strings = raw.split(SEP)
    if strings and strings[-1] == b"":
        strings.pop()
    expected = open(vocab + ".out", encoding="utf-8").read().splitlines()
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text")
        for i, (s, line) in enumerate(zip(strings, expected)):
            with open(path, "wb") as fp:
                fp.write(s)
            rc, ids, err = tokenize(["-m", vocab, "--no-bos", "-f", path])
            if rc != 0 or ids != line.split():
                bad.append("#%d %r: got %s (rc %d %s)" % (i + 1, s[:40], " ".join(ids), rc, err.strip()[:200]))
    ok = not bad and len(strings) == len(expected) == 46
    case("tokenize %s: %d strings as llama.cpp" % (name, len(strings)), ok, "; ".join(bad[:3]))


def hf_prompts():
    model = os.path.join(SHARED, "models", "kjv-llama-q8_0.gguf")
    ref = os.path.join(SHARED, "models", "kjv-llama.hf.json")
    if not os.path.exists(model) or not os.path.exists(ref):
        skip("tokenize HF prompts", "../shared/models absent")
        return
    greedy = json.load(open(ref))["greedy"]
    for g in greedy:
        rc, ids, err = tokenize(["-m", model, g["prompt"]])
        want = [str(x) for x in g["prompt_tokens"]]
        ok = rc == 0 and ids == want
        case("tokenize %r with BOS as HF" % g["prompt"][:24], ok,
             "" if ok else "got %s %s" % (" ".join(ids), err.strip()[:200]))


def usage():
    rc, out, _ = tokenize(["--help"])
    case("tokenize --help exits 0", rc == 0 and "usage:" in out)
    rc, _, _ = tokenize(["text"])
    case("tokenize without -m exits 2", rc == 2)
    rc, _, err = tokenize(["-m", "/nonexistent.gguf", "text"])
    case("tokenize with a missing model exits 1 with a message", rc == 1 and "nonexistent" in err)


def main():
    if not os.path.exists(CLI):
        skip("tokenize", CLI + " not built")
    else:
        usage()
        suite("llama-spm")
        suite("gpt-2")
        hf_prompts()
    print("%d passed, %d failed, %d skipped" % (results["passed"], results["failed"], results["skipped"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
