/*
 * tokenizer: text <-> token ids from the vocabulary stored in a GGUF file.
 *
 * Two models, chosen by `tokenizer.ggml.model`: "llama" (SentencePiece BPE over
 * scores, with byte fallback) and "gpt2" (byte-level BPE over merges, with the
 * pre-tokenizer named by `tokenizer.ggml.pre`). Special/control tokens are
 * matched in the text only when parse_special is set.
 *
 * The tokenizer copies what it needs out of the GGUF image at load, so it does
 * not depend on the gguf_file staying open.
 */
#ifndef PL_TOKENIZER_H
#define PL_TOKENIZER_H

#include "../gguf/gguf.h"

#include <stdbool.h>

typedef struct tokenizer tokenizer;

pl_status tok_load(const gguf_file *f, tokenizer **out);
void tok_free(tokenizer *t);

int tok_n_vocab(const tokenizer *t);
pl_token tok_bos(const tokenizer *t);  /* -1 if none */
pl_token tok_eos(const tokenizer *t);  /* -1 if none */
bool tok_add_bos(const tokenizer *t);  /* tokenizer.ggml.add_bos_token (default by model type) */
bool tok_is_eog(const tokenizer *t, pl_token id); /* EOS, EOT, <|im_end|>, <|endoftext|>, ... */

/* See pl_tokenize in pocketllm.h for the contract. */
pl_status tok_encode(const tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                     pl_token *out, int cap, int *n_out);
/* See pl_token_to_piece. Control and unknown tokens give no text (llama.cpp's
 * token_to_piece with special = false), so streamed output and tok_decode agree. */
int tok_piece(const tokenizer *t, pl_token id, char *buf, int cap);
/* Like tok_piece; with special = true, control and unknown tokens give their
 * own text ("<|im_start|>", "</s>") instead of nothing. */
int tok_piece_ex(const tokenizer *t, pl_token id, bool special, char *buf, int cap);
/* See pl_detokenize. */
int tok_decode(const tokenizer *t, const pl_token *ids, int n, char *buf, int cap);

#endif
