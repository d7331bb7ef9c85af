#!/usr/bin/env bash
# `pocketllm info` against facts of ../shared/README.md (kjv-llama: dim 256,
# 8 layers, 8 heads, 2 KV heads, FFN 768, vocab 32000, 22M parameters), its
# --help and usage errors, and a truncated file reported by name with exit 1.
# Usage: tests/cli_info.sh [BUILD_DIR]; ends with "N passed, M failed, K skipped".
set -u
B=${1:-build}
CLI=$B/pocketllm
SHARED=${PL_SHARED:-../shared}
pass=0 fail=0 skip=0
ok() { if eval "$2"; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }

out=$("$CLI" info --help); rc=$?
ok "help" '[ $rc -eq 0 ] && grep -q "usage: pocketllm info" <<<"$out"'
"$CLI" info >/dev/null 2>&1; rc=$?
ok "no file is a usage error" '[ $rc -eq 2 ]'
"$CLI" info --bogus x.gguf >/dev/null 2>&1; rc=$?
ok "unknown option is a usage error" '[ $rc -eq 2 ]'

f16=$SHARED/models/kjv-llama-f16.gguf q8=$SHARED/models/kjv-llama-q8_0.gguf
if [ -f "$f16" ] && [ -f "$q8" ]; then
    out=$("$CLI" info "$f16"); rc=$?
    ok "f16: exit 0" '[ $rc -eq 0 ]'
    ok "f16: architecture" 'grep -Eq "^  general.architecture +string +\"llama\"$" <<<"$out"'
    for kv in "embedding_length 256" "block_count 8" "attention.head_count 8" "attention.head_count_kv 2" "feed_forward_length 768"; do
        k=${kv% *} v=${kv#* }
        ok "f16: llama.$k = $v" 'grep -Eq "^  llama\.$k +uint32 +$v$" <<<"$out"'
    done
    ok "f16: 32000 tokens" 'grep -Eq "tokenizer.ggml.tokens +array +\[string x 32000\]" <<<"$out"'
    ok "f16: 75 tensors (8 layers x 9 + 3, untied output)" 'grep -q "^tensors: 75$" <<<"$out" && grep -q " output.weight " <<<"$out"'
    params=$(sed -nE 's/^total parameters: ([0-9]+) .*/\1/p' <<<"$out")
    ok "f16: about 22M parameters ($params)" '[ -n "$params" ] && [ "$params" -ge 21500000 ] && [ "$params" -le 22500000 ]'
    ok "f16: types f16 and f32 only" '[ "$(sed -n "/^by type:/,/total/p" <<<"$out" | awk "NR>2 {print \$1}" | sort | tr "\n" " ")" = "f16 f32 total " ]'
    out=$("$CLI" info --no-tensors "$q8"); rc=$?
    ok "q8_0: q8_0 tensors, no table" '[ $rc -eq 0 ] && grep -Eq "^  q8_0 " <<<"$out" && ! grep -q "token_embd" <<<"$out"'
    tmp=$(mktemp); head -c 100000 "$f16" >"$tmp"
    err=$("$CLI" info "$tmp" 2>&1 >/dev/null); rc=$?
    ok "truncated file: exit 1, named" '[ $rc -eq 1 ] && grep -q "$tmp" <<<"$err" && grep -Eq "truncated|past the end" <<<"$err"'
    rm -f "$tmp"
else
    echo "skip models: $SHARED/models absent"; skip=$((skip + 1))
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
