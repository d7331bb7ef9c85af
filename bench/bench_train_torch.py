#!/usr/bin/env python3
"""Training speed: pocketllm train vs PyTorch CPU (Debian's python3-torch) on the
same model, data and thread count. Prints milliseconds per optimizer step and
tokens/s for both (figures only; nothing is asserted).

Usage: /usr/bin/python3 bench/bench_train_torch.py [BUILD_DIR] [--threads N] [--steps N]
       [--embd C --layers L --heads H --kv-heads G --ff F --vocab V --batch B --ctx T]
Defaults are the shapes of the default model (models/pocket-kjv.gguf).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import train_torch as tt  # noqa: E402  (GGUF writer and the torch model)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=704)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=256)
    a = ap.parse_args()
    cfg = dict(arch="llama", V=a.vocab, C=a.embd, H=a.heads, G=a.kv_heads, L=a.layers, F=a.ff, tied=True,
               eps=1e-5, rope_base=10000.0)
    rng = np.random.default_rng(0)
    kv, tensors = tt.make_model(cfg, rng)
    tensors = [(n, (t * 0.1).astype(np.float32) if t.ndim == 2 else t) for n, t in tensors]
    kv = [(k, t, 4096 if k.endswith("context_length") else v) for k, t, v in kv]
    with tempfile.TemporaryDirectory() as tmp:
        model, ids_path = os.path.join(tmp, "m.gguf"), os.path.join(tmp, "ids.txt")
        tt.gguf_write(model, kv, tensors)
        ids = rng.integers(3, a.vocab, size=a.batch * a.ctx * (a.steps + 2) + 1)
        with open(ids_path, "w") as f:
            f.write(" ".join(map(str, ids)))
        # pocketllm: total wall time of the steps, from its own summary line
        cmd = [os.path.join(a.build, "pocketllm"), "train", "--model", model, "--data-ids", ids_path, "--sequential",
               "-b", str(a.batch), "-c", str(a.ctx), "--steps", str(a.steps), "-t", str(a.threads), "-q",
               "-o", os.path.join(tmp, "out.gguf")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        m = re.search(r"trained \d+ steps in ([0-9.]+) s", r.stderr)
        if r.returncode or not m:
            print("pocketllm train failed:", r.stderr[-500:])
            return 1
        pl_ms = float(m.group(1)) * 1e3 / a.steps

    torch.set_num_threads(a.threads)
    P = {n: torch.tensor(t, dtype=torch.float32, requires_grad=True) for n, t in tensors}
    opt = torch.optim.AdamW(list(P.values()), lr=1e-3, weight_decay=0.01)
    batches = list(tt.batches(ids, a.batch, a.ctx, a.steps + 1, 1))
    times = []
    for i, (tok, tgt) in enumerate(batches):
        t0 = time.perf_counter()
        opt.zero_grad()
        tt.forward_loss(P, cfg, tok, tgt).backward()
        torch.nn.utils.clip_grad_norm_(list(P.values()), 1.0)
        opt.step()
        if i > 0:  # the first step warms up allocators
            times.append(time.perf_counter() - t0)
    th_ms = 1e3 * sum(times) / len(times)
    tok = a.batch * a.ctx
    print(f"model: llama embd {a.embd}, {a.layers} layers, heads {a.heads}/{a.kv_heads}, ffn {a.ff}, vocab {a.vocab}; "
          f"batch {a.batch} x {a.ctx}; {a.threads} threads; torch {torch.__version__}")
    print(f"pocketllm: {pl_ms:8.1f} ms/step  {tok / pl_ms * 1e3:8.0f} tokens/s")
    print(f"torch:     {th_ms:8.1f} ms/step  {tok / th_ms * 1e3:8.0f} tokens/s")
    print(f"ratio (torch time / pocketllm time): {th_ms / pl_ms:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
