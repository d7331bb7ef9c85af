#!/usr/bin/env python3
"""pocketllm train against PyTorch (Debian's python3-torch) on tiny random models.

For each architecture (llama with GQA and an untied output; qwen2 with QKV
biases and tied embeddings; qwen3 with per-head Q/K norms) this writes a
random F32 model as GGUF, runs `pocketllm train` for 3 AdamW steps on fixed
token windows (--sequential, gradient clipping and weight decay on), and
repeats the same computation in torch from the model definition: the first
step's gradients (--dump-grads) and the weights after 3 steps (--out, F32)
must match. The torch model below is written from the architecture's
definition (HF transformers' llama/qwen2/qwen3 modules), not from our C code.
Usage: train_torch.py BUILD_DIR   (prints "N passed, M failed[, K skipped]")
"""
import math
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:  # CI installs python3-torch; a user's machine may not have it
    print(f"skipped: PyTorch/numpy not importable with {sys.executable} ({e}); apt-get install python3-torch")
    print("0 passed, 0 failed, 1 skipped")
    sys.exit(0)

torch.set_num_threads(2)

# ------------------------------------------------------------------ GGUF I/O

GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_write(path, kv, tensors):
    """kv: list of (key, type, value); tensors: list of (name, np.float32 array of shape (ne1, ne0) or (ne0,))."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for key, t, v in kv:
        out += s(key) + struct.pack("<I", t)
        if t == 8:
            out += s(v)
        elif t == 9:
            et, items = v
            out += struct.pack("<IQ", et, len(items))
            for it in items:
                out += s(it) if et == 8 else struct.pack("<" + GGUF_SCALAR[et], it)
        else:
            out += struct.pack("<" + GGUF_SCALAR[t], v)
    off = 0
    for name, a in tensors:
        ne = list(reversed(a.shape))
        out += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", 0, off)
        off += (a.nbytes + 31) // 32 * 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    for _, a in tensors:
        out += a.astype("<f4").tobytes()
        out += b"\0" * ((32 - a.nbytes % 32) % 32)
    with open(path, "wb") as f:
        f.write(out)


def gguf_read_f32(path):
    """Every F32 tensor of a GGUF file as numpy arrays shaped (ne1, ne0) (or (ne0,))."""
    data = open(path, "rb").read()
    assert data[:4] == b"GGUF", path
    version, n_t, n_kv = struct.unpack_from("<IQQ", data, 4)
    p = 24

    def rd_str(p):
        n = struct.unpack_from("<Q", data, p)[0]
        return data[p + 8:p + 8 + n].decode(), p + 8 + n

    def skip_val(t, p):
        if t == 8:
            return rd_str(p)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, p)
            p += 12
            for _ in range(n):
                p = skip_val(et, p)
            return p
        return p + struct.calcsize("<" + GGUF_SCALAR[t])

    align = 32
    for _ in range(n_kv):
        key, p = rd_str(p)
        t = struct.unpack_from("<I", data, p)[0]
        p += 4
        if key == "general.alignment":
            align = struct.unpack_from("<I", data, p)[0]
        p = skip_val(t, p)
    infos = []
    for _ in range(n_t):
        name, p = rd_str(p)
        nd = struct.unpack_from("<I", data, p)[0]
        ne = struct.unpack_from("<%dQ" % nd, data, p + 4)
        t, off = struct.unpack_from("<IQ", data, p + 4 + 8 * nd)
        p += 4 + 8 * nd + 12
        infos.append((name, ne, t, off))
    base = (p + align - 1) // align * align
    out = {}
    for name, ne, t, off in infos:
        if t != 0:
            continue
        n = int(np.prod(ne))
        a = np.frombuffer(data, dtype="<f4", count=n, offset=base + off).copy()
        out[name] = a.reshape(tuple(reversed(ne))) if len(ne) > 1 else a
    return out


# ------------------------------------------------------------------ the model in torch


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, n_rot, base, neox):
    """x: (B, T, heads, D). NORM rotates pairs (2i, 2i+1); NEOX rotates halves (i, i + n_rot/2)."""
    half = n_rot // 2
    inv = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / n_rot)
    ang = pos[:, None].double() * inv[None, :]
    cos, sin = torch.cos(ang).to(x.dtype)[None, :, None, :], torch.sin(ang).to(x.dtype)[None, :, None, :]
    if neox:
        x0, x1 = x[..., :half], x[..., half:n_rot]
    else:
        x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    r0, r1 = x0 * cos - x1 * sin, x0 * sin + x1 * cos
    if neox:
        rot = torch.cat([r0, r1], dim=-1)
    else:
        rot = torch.stack([r0, r1], dim=-1).flatten(-2)
    return torch.cat([rot, x[..., n_rot:]], dim=-1)


def forward_loss(P, cfg, tokens, targets):
    B, T = tokens.shape
    C, H, G, L = cfg["C"], cfg["H"], cfg["G"], cfg["L"]
    D = C // H
    eps, base, neox = cfg["eps"], cfg["rope_base"], cfg["arch"] != "llama"
    x = P["token_embd.weight"][tokens]
    pos = torch.arange(T)
    mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)
    for l in range(L):
        g = lambda s: P.get(f"blk.{l}.{s}")
        h = rms_norm(x, g("attn_norm.weight"), eps)
        q, k, v = h @ g("attn_q.weight").T, h @ g("attn_k.weight").T, h @ g("attn_v.weight").T
        if cfg["arch"] == "qwen2":
            q, k, v = q + g("attn_q.bias"), k + g("attn_k.bias"), v + g("attn_v.bias")
        q, k, v = q.view(B, T, H, D), k.view(B, T, G, D), v.view(B, T, G, D)
        if cfg["arch"] == "qwen3":
            q, k = rms_norm(q, g("attn_q_norm.weight"), eps), rms_norm(k, g("attn_k_norm.weight"), eps)
        q, k = rope(q, pos, D, base, neox), rope(k, pos, D, base, neox)
        k, v = k.repeat_interleave(H // G, dim=2), v.repeat_interleave(H // G, dim=2)
        att = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(D) + mask
        o = torch.einsum("bhts,bshd->bthd", att.softmax(-1), v).reshape(B, T, H * D)
        x = x + o @ g("attn_output.weight").T
        h = rms_norm(x, g("ffn_norm.weight"), eps)
        x = x + (torch.nn.functional.silu(h @ g("ffn_gate.weight").T) * (h @ g("ffn_up.weight").T)) @ g("ffn_down.weight").T
    x = rms_norm(x, P["output_norm.weight"], eps)
    logits = x @ P.get("output.weight", P["token_embd.weight"]).T
    return torch.nn.functional.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))


# ------------------------------------------------------------------ one case


def make_model(cfg, rng):
    C, H, G, L, F, V = cfg["C"], cfg["H"], cfg["G"], cfg["L"], cfg["F"], cfg["V"]
    D = C // H
    a = cfg["arch"]
    toks = ["<unk>", "<s>", "</s>"] + ["t%d" % i for i in range(3, V)]
    kv = [("general.architecture", 8, a), (f"{a}.context_length", 4, 64), (f"{a}.embedding_length", 4, C),
          (f"{a}.block_count", 4, L), (f"{a}.feed_forward_length", 4, F), (f"{a}.attention.head_count", 4, H),
          (f"{a}.attention.head_count_kv", 4, G), (f"{a}.attention.layer_norm_rms_epsilon", 6, cfg["eps"]),
          (f"{a}.rope.freq_base", 6, cfg["rope_base"]),
          ("tokenizer.ggml.model", 8, "llama"), ("tokenizer.ggml.tokens", 9, (8, toks)),
          ("tokenizer.ggml.token_type", 9, (5, [2, 3, 3] + [1] * (V - 3))),
          ("tokenizer.ggml.bos_token_id", 4, 1), ("tokenizer.ggml.eos_token_id", 4, 2)]
    mat = lambda o, i, s=0.3: (rng.standard_normal((o, i)) * s).astype(np.float32)
    vec = lambda n, m=0.0, s=0.3: (m + rng.standard_normal(n) * s).astype(np.float32)
    t = [("token_embd.weight", mat(V, C, 1.0)), ("output_norm.weight", vec(C, 1, 0.1))]
    if not cfg["tied"]:
        t.append(("output.weight", mat(V, C)))
    for l in range(L):
        b = f"blk.{l}."
        t += [(b + "attn_norm.weight", vec(C, 1, 0.1)), (b + "attn_q.weight", mat(H * D, C)),
              (b + "attn_k.weight", mat(G * D, C)), (b + "attn_v.weight", mat(G * D, C))]
        if a == "qwen2":
            t += [(b + "attn_q.bias", vec(H * D)), (b + "attn_k.bias", vec(G * D)), (b + "attn_v.bias", vec(G * D))]
        if a == "qwen3":
            t += [(b + "attn_q_norm.weight", vec(D, 1, 0.1)), (b + "attn_k_norm.weight", vec(D, 1, 0.1))]
        t += [(b + "attn_output.weight", mat(C, H * D)), (b + "ffn_norm.weight", vec(C, 1, 0.1)),
              (b + "ffn_gate.weight", mat(F, C)), (b + "ffn_up.weight", mat(F, C)), (b + "ffn_down.weight", mat(C, F))]
    return kv, t


def batches(ids, B, T, n_steps, bos):
    """pocketllm's --sequential windows: window (step*B + b) starts at its index * T (mod n - T)."""
    n, span = len(ids), len(ids) - T
    for s in range(n_steps):
        tok, tgt = np.zeros((B, T), np.int64), np.zeros((B, T), np.int64)
        for b in range(B):
            start = ((s * B + b) * T) % span
            for t in range(T):
                tok[b, t], tgt[b, t] = ids[(start + t) % n], ids[(start + t + 1) % n]
            tok[b, 0] = bos
        yield torch.from_numpy(tok), torch.from_numpy(tgt)


def lr_at(step, lr, min_lr, warmup, steps):
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    p = min(max((step - warmup) / (steps - warmup), 0.0), 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))


def run_case(cli, cfg, tmp, seed):
    rng = np.random.default_rng(seed)
    kv, tensors = make_model(cfg, rng)
    model, ids_path = os.path.join(tmp, "m.gguf"), os.path.join(tmp, "ids.txt")
    grads_path, out_path = os.path.join(tmp, "g.gguf"), os.path.join(tmp, "out.gguf")
    gguf_write(model, kv, tensors)
    ids = rng.integers(3, cfg["V"], size=200)
    with open(ids_path, "w") as f:
        f.write(" ".join(map(str, ids)))
    B, T, steps, lr, min_lr, warmup, wd, clip = 2, 12, 3, 2e-2, 4e-3, 1, 0.1, 1.0
    cmd = [cli, "train", "--model", model, "--data-ids", ids_path, "--sequential", "-b", str(B), "-c", str(T),
           "--steps", str(steps), "--lr", str(lr), "--min-lr", str(min_lr), "--warmup", str(warmup), "--wd", str(wd),
           "--clip", str(clip), "--dump-grads", grads_path, "-o", out_path, "-t", "2", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return [f"pocketllm train failed ({r.returncode}): {r.stderr.strip()[-400:]}"]
    c_grads, c_out = gguf_read_f32(grads_path), gguf_read_f32(out_path)

    # torch, float64 (the reference), same init, data, schedule, clipping and decay groups
    P = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in tensors}
    decay = [p for n, p in P.items() if p.dim() == 2]
    no_decay = [p for n, p in P.items() if p.dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8)
    errors = []
    for step, (tok, tgt) in enumerate(batches(ids, B, T, steps, 1)):
        opt.zero_grad()
        forward_loss(P, cfg, tok, tgt).backward()
        if step == 0:
            for n, p in P.items():
                e = rel_err(c_grads[n].reshape(p.shape), p.grad.numpy())
                if e > 1e-4:
                    errors.append(f"gradient of {n}: max |diff| / max |torch| = {e:.2e}")
        torch.nn.utils.clip_grad_norm_(list(P.values()), clip)
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step, lr, min_lr, warmup, steps)
        opt.step()
    for n, p in P.items():
        e = float(np.max(np.abs(c_out[n].reshape(p.shape) - p.detach().numpy())))
        if e > 1e-4:
            errors.append(f"{n} after {steps} AdamW steps: max |diff| = {e:.2e}")
    return errors


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    cli = os.path.join(build, "pocketllm")
    cases = [
        dict(arch="llama", V=48, C=32, H=4, G=2, L=2, F=40, tied=False, eps=1e-5, rope_base=10000.0),
        dict(arch="qwen2", V=48, C=32, H=4, G=1, L=2, F=40, tied=True, eps=1e-6, rope_base=1e6),
        dict(arch="qwen3", V=48, C=32, H=2, G=1, L=2, F=40, tied=False, eps=1e-6, rope_base=1e6),
    ]
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, cfg in enumerate(cases):
            errs = run_case(cli, cfg, tmp, 100 + i)
            name = f"{cfg['arch']} (H{cfg['H']}/G{cfg['G']}{', tied' if cfg['tied'] else ''})"
            if errs:
                failed += 1
                print(f"FAIL {name}")
                for e in errs[:8]:
                    print("  " + e)
            else:
                passed += 1
                print(f"ok   {name}: gradients and 3 AdamW steps match torch")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
