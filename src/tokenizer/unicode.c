/*
 * unicode: codepoint classification over the generated range table, UTF-8
 * decoding with llama.cpp's tolerance for bad input, and the GPT-2 byte map.
 *
 * The class lookup is a binary search over tok_ucd_ranges (sorted by first
 * codepoint, first entry at U+0000), so it is O(log ranges) and needs no
 * initialisation or global state: safe from any thread.
 */
#include "unicode.h"

unsigned tok_cpt_flags(uint32_t cpt) {
    if (cpt >= 0x110000) return TOK_CPT_UNDEF;
    /* last range whose first codepoint is <= cpt */
    int lo = 0, hi = tok_ucd_n_ranges - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if ((tok_ucd_ranges[mid] >> 8) <= cpt) lo = mid;
        else hi = mid - 1;
    }
    unsigned flags = tok_ucd_ranges[lo] & 0xFF;
    if (cpt == 0x20 || (cpt >= 0x09 && cpt <= 0x0D)) return flags | TOK_CPT_SPACE;
    if (cpt >= 0x80) {
        for (int i = 0; i < tok_ucd_n_space && tok_ucd_space[i][0] <= cpt; i++)
            if (cpt <= tok_ucd_space[i][1]) return flags | TOK_CPT_SPACE;
    }
    return flags;
}

int tok_utf8_decode(const char *str, size_t n, uint32_t *cpt) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0];
    int len;
    uint32_t v = 0;
    if (c < 0x80) {
        *cpt = c;
        return 1;
    } else if (c < 0xC0) {
        len = 0; /* continuation byte where a character should start */
    } else if (c < 0xE0) {
        len = 2, v = c & 0x1F;
    } else if (c < 0xF0) {
        len = 3, v = c & 0x0F;
    } else if (c < 0xF8) {
        len = 4, v = c & 0x07;
    } else {
        len = 0;
    }
    if (len == 0 || (size_t)len > n) goto invalid;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) goto invalid;
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cpt = v;
    return len;
invalid:
    *cpt = TOK_CPT_REPLACEMENT;
    return 1;
}

int tok_utf8_encode(uint32_t cpt, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cpt < 0x80) {
        o[0] = (unsigned char)cpt;
        return 1;
    }
    if (cpt < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cpt >> 6));
        o[1] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 2;
    }
    if (cpt < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cpt >> 12));
        o[1] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | ((cpt >> 18) & 0x07));
    o[1] = (unsigned char)(0x80 | ((cpt >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cpt & 0x3F));
    return 4;
}

/* GPT-2 keeps the printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC,
 * U+00AE..U+00FF) as themselves and numbers the other 68 byte values, in
 * byte order, from U+0100: 0x00..0x20 -> U+0100..U+0120, 0x7F..0xA0 ->
 * U+0121..U+0142, 0xAD -> U+0143. */
uint32_t tok_byte_to_cpt(uint8_t b) {
    if (b <= 0x20) return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0) return 0x121u + (b - 0x7Fu);
    if (b == 0xAD) return 0x143;
    return b;
}

int tok_cpt_to_byte(uint32_t cpt) {
    if ((cpt >= 0x21 && cpt <= 0x7E) || (cpt >= 0xA1 && cpt <= 0xAC) || (cpt >= 0xAE && cpt <= 0xFF))
        return (int)cpt;
    if (cpt >= 0x100 && cpt <= 0x120) return (int)(cpt - 0x100);
    if (cpt >= 0x121 && cpt <= 0x142) return (int)(0x7F + (cpt - 0x121));
    if (cpt == 0x143) return 0xAD;
    return -1;
}
