/*
 * unicode: the codepoint facts the tokenizer needs — UTF-8 decoding that never
 * fails, the general-category class and White_Space property of a codepoint
 * (from the table tools/gen_unicode.py generates into unicode_table.c), and
 * GPT-2's reversible byte <-> printable-codepoint mapping.
 *
 * Invariants: tok_utf8_decode always consumes 1..4 bytes of a non-empty input;
 * a byte that does not start a well-formed sequence is one unit whose
 * codepoint is U+FFFD (what llama.cpp substitutes). Every codepoint, even an
 * out-of-range one, has exactly one class bit set.
 */
#ifndef PL_TOK_UNICODE_H
#define PL_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Class bits (one per codepoint) plus the White_Space property bit. */
enum {
    TOK_CPT_UNDEF = 1 << 0,     /* unassigned (Cn), or beyond U+10FFFF */
    TOK_CPT_NUMBER = 1 << 1,    /* \p{N} */
    TOK_CPT_LETTER = 1 << 2,    /* \p{L} */
    TOK_CPT_SEPARATOR = 1 << 3, /* \p{Z} */
    TOK_CPT_MARK = 1 << 4,      /* \p{M} */
    TOK_CPT_PUNCT = 1 << 5,     /* \p{P} */
    TOK_CPT_SYMBOL = 1 << 6,    /* \p{S} */
    TOK_CPT_CONTROL = 1 << 7,   /* \p{C} other than Cn */
    TOK_CPT_SPACE = 1 << 8,     /* White_Space property (regex \s) */
};

#define TOK_CPT_REPLACEMENT 0xFFFDu

/* Generated tables (unicode_table.c). */
extern const char tok_ucd_version[];
extern const uint32_t tok_ucd_ranges[];
extern const int tok_ucd_n_ranges;
extern const uint32_t tok_ucd_space[][2];
extern const int tok_ucd_n_space;

/* Class bits | TOK_CPT_SPACE of a codepoint. */
unsigned tok_cpt_flags(uint32_t cpt);

/* Byte length a UTF-8 lead byte announces (1 for continuation/invalid bytes),
 * as llama.cpp's SentencePiece splitter counts characters. */
static inline int tok_utf8_len(unsigned char c) {
    static const unsigned char k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k_len[c >> 4];
}

/* Decode the sequence at s[0..n) (n >= 1): returns bytes used (1..4) and the
 * codepoint in *cpt. Structurally valid sequences decode as-is (as llama.cpp
 * does, overlong forms included); anything else is one byte of U+FFFD. */
int tok_utf8_decode(const char *s, size_t n, uint32_t *cpt);
/* Encode cpt (< 0x200000) into out[4]; returns the byte count. */
int tok_utf8_encode(uint32_t cpt, char *out);

/* GPT-2 byte-level mapping: every byte value has a printable codepoint. */
uint32_t tok_byte_to_cpt(uint8_t b);
/* The byte a codepoint stands for, or -1 when it is not in the mapping. */
int tok_cpt_to_byte(uint32_t cpt);

#endif
