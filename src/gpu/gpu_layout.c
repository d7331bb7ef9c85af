/*
 * Repacking GGUF rows into the GPU layout (gpu_layout.h) and a plain reference
 * decoder of that layout. Built in every configuration: the repack runs on
 * the host before upload, and tests check repack + decode against the quant
 * module's dequantizers without a GPU.
 */
#include "gpu_layout.h"

#include "../quant/quant_ref.h"

#include <string.h>

int gpu_layout_row(uint32_t type, int64_t n_in, gpu_row_layout *out) {
    memset(out, 0, sizeof *out);
    if (n_in <= 0 || n_in > (1 << 24)) return 0;
    const int64_t pad = (n_in + GPU_CHUNK - 1) / GPU_CHUNK * GPU_CHUNK;
    switch (type) {
    case QT_F32: out->q_row = (uint32_t)(pad * 4); break;
    case QT_F16:
    case QT_BF16: out->q_row = (uint32_t)(pad * 2); break;
    case QT_Q8_0:
        if (n_in % QK8_0) return 0;
        out->q_row = (uint32_t)n_in;
        out->s_row = (uint32_t)(n_in / QK8_0 * 2);
        break;
    case QT_Q4_0:
        if (n_in % QK4_0) return 0;
        out->q_row = (uint32_t)(n_in / 2);
        out->s_row = (uint32_t)(n_in / QK4_0 * 2);
        break;
    case QT_Q4_K:
        if (n_in % QK_K) return 0;
        out->q_row = (uint32_t)(n_in / QK_K * GPU_Q4K_SB);
        break;
    case QT_Q6_K:
        if (n_in % QK_K) return 0;
        out->q_row = (uint32_t)(n_in / QK_K * GPU_Q6K_SB);
        out->s_row = (uint32_t)(n_in / QK_K * 2);
        break;
    default: return 0;
    }
    out->n_in_pad = (int)pad;
    return 1;
}

const char *gpu_layout_types(void) { return "f32, f16, bf16, q8_0, q4_0, q4_k, q6_k"; }

/* Put 4-bit value v as element i (0..15) of the nibble part at p (8 bytes). */
static void put_nibble(uint8_t *p, int i, int v) {
    if (i < 8) p[i] = (uint8_t)((p[i] & 0xF0) | v);
    else p[i - 8] = (uint8_t)((p[i - 8] & 0x0F) | (v << 4));
}

static int get_nibble(const uint8_t *p, int i) { return i < 8 ? p[i] & 0xF : p[i - 8] >> 4; }

void gpu_layout_repack_row(uint32_t type, int64_t n_in, const void *src, uint8_t *q, uint8_t *s) {
    gpu_row_layout lay;
    if (!gpu_layout_row(type, n_in, &lay)) return;
    memset(q, 0, lay.q_row);
    switch (type) {
    case QT_F32: memcpy(q, src, (size_t)n_in * 4); break;
    case QT_F16:
    case QT_BF16: memcpy(q, src, (size_t)n_in * 2); break;
    case QT_Q8_0: {
        const block_q8_0 *b = src;
        for (int64_t k = 0; k < n_in / QK8_0; k++) {
            memcpy(q + 32 * k, b[k].qs, 32);
            memcpy(s + 2 * k, &b[k].d, 2);
        }
        break;
    }
    case QT_Q4_0: {
        const block_q4_0 *b = src;
        for (int64_t k = 0; k < n_in / QK4_0; k++) {
            memcpy(s + 2 * k, &b[k].d, 2);
            for (int e = 0; e < QK4_0; e++) {
                const int v = e < 16 ? b[k].qs[e] & 0xF : b[k].qs[e - 16] >> 4;
                put_nibble(q + 16 * k + 8 * (e / 16), e % 16, v);
            }
        }
        break;
    }
    case QT_Q4_K: {
        const block_q4_K *b = src;
        for (int64_t k = 0; k < n_in / QK_K; k++) {
            uint8_t *o = q + GPU_Q4K_SB * k;
            memcpy(o, &b[k].d, 2);
            memcpy(o + 2, &b[k].dmin, 2);
            memcpy(o + 4, b[k].scales, K_SCALE_SIZE);
            for (int e = 0; e < QK_K; e++) {
                const uint8_t byte = b[k].qs[32 * (e / 64) + e % 32];
                const int v = e % 64 < 32 ? byte & 0xF : byte >> 4;
                put_nibble(o + 16 + 8 * (e / 16), e % 16, v);
            }
        }
        break;
    }
    case QT_Q6_K: {
        const block_q6_K *b = src;
        for (int64_t k = 0; k < n_in / QK_K; k++) {
            uint8_t *o = q + GPU_Q6K_SB * k;
            memcpy(s + 2 * k, &b[k].d, 2);
            memcpy(o + 192, b[k].scales, 16);
            for (int e = 0; e < QK_K; e++) {
                const int h = e / 128, kq = (e % 128) / 32, l = e % 32;
                const int lo = (b[k].ql[64 * h + l + 32 * (kq & 1)] >> (kq >= 2 ? 4 : 0)) & 0xF;
                const int hi = (b[k].qh[32 * h + l] >> (2 * kq)) & 3;
                const int p = e / 16, i = e % 16;
                put_nibble(o + 8 * p, i, lo);
                o[128 + 4 * p + (i & 3)] |= (uint8_t)(hi << (2 * (i >> 2)));
            }
        }
        break;
    }
    default: break;
    }
}

void gpu_layout_decode_part(uint32_t type, const uint8_t *q, const uint8_t *s, int u, float out[16]) {
    switch (type) {
    case QT_F32: memcpy(out, q + 64 * (size_t)u, 64); break;
    case QT_F16: {
        const uint8_t *p = q + 32 * (size_t)u;
        for (int i = 0; i < 16; i++) {
            pl_fp16 h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = quant_fp16_to_f32(h);
        }
        break;
    }
    case QT_BF16: {
        const uint8_t *p = q + 32 * (size_t)u;
        for (int i = 0; i < 16; i++) {
            pl_bf16 h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = pl_bf16_to_f32(h);
        }
        break;
    }
    case QT_Q8_0: {
        pl_fp16 dh;
        memcpy(&dh, s + 2 * (size_t)(u / 2), 2);
        const float d = quant_fp16_to_f32(dh);
        for (int i = 0; i < 16; i++) out[i] = (float)(int8_t)q[16 * (size_t)u + i] * d;
        break;
    }
    case QT_Q4_0: {
        pl_fp16 dh;
        memcpy(&dh, s + 2 * (size_t)(u / 2), 2);
        const float d = quant_fp16_to_f32(dh);
        for (int i = 0; i < 16; i++) out[i] = (float)(get_nibble(q + 8 * (size_t)u, i) - 8) * d;
        break;
    }
    case QT_Q4_K: {
        const uint8_t *o = q + GPU_Q4K_SB * (size_t)(u / 16);
        pl_fp16 dh, mh;
        memcpy(&dh, o, 2);
        memcpy(&mh, o + 2, 2);
        uint8_t sc, m;
        quant_k4_get_scale_min(u % 16 / 2, o + 4, &sc, &m);
        const float dl = quant_fp16_to_f32(dh) * (float)sc, ml = quant_fp16_to_f32(mh) * (float)m;
        for (int i = 0; i < 16; i++) out[i] = dl * (float)get_nibble(o + 16 + 8 * (u % 16), i) - ml;
        break;
    }
    case QT_Q6_K: {
        const uint8_t *o = q + GPU_Q6K_SB * (size_t)(u / 16);
        const int p = u % 16;
        pl_fp16 dh;
        memcpy(&dh, s + 2 * (size_t)(u / 16), 2);
        const float dl = quant_fp16_to_f32(dh) * (float)(int8_t)o[192 + p];
        for (int i = 0; i < 16; i++) {
            const int hi = (o[128 + 4 * p + (i & 3)] >> (2 * (i >> 2))) & 3;
            out[i] = dl * (float)((get_nibble(o + 8 * p, i) | hi << 4) - 32);
        }
        break;
    }
    default: memset(out, 0, 16 * sizeof(float)); break;
    }
}
