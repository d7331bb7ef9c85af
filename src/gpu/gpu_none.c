/*
 * The device layer of a build without CUDA (plain `make`): gdev_open fails
 * with PL_ERR_UNSUPPORTED saying how to get the backend, so a context asking
 * for the GPU fails cleanly and nothing else is ever called. The other
 * functions exist so the host code links; they fail the same way or do
 * nothing. `make GPU=cuda` leaves this file out and builds the .cu files.
 */
#include "gpu_dev.h"

#include "../core/core.h"

static pl_status none_fail(void) {
    return pl_fail(PL_ERR_UNSUPPORTED, "gpu: pocketllm was built without CUDA; rebuild with make GPU=cuda");
}

int gdev_built(void) { return 0; }
pl_status gdev_open(gdev **out, gdev_info *info) {
    (void)info;
    *out = NULL;
    return none_fail();
}
void gdev_close(gdev *d) { (void)d; }
pl_status gdev_alloc(gdev *d, size_t bytes, void **out) {
    (void)d, (void)bytes;
    *out = NULL;
    return none_fail();
}
void gdev_free(gdev *d, void *p) { (void)d, (void)p; }
pl_status gdev_host_alloc(gdev *d, size_t bytes, void **out) { return gdev_alloc(d, bytes, out); }
void gdev_host_free(gdev *d, void *p) { (void)d, (void)p; }
pl_status gdev_host_register(gdev *d, void *p, size_t bytes) {
    (void)d, (void)p, (void)bytes;
    return none_fail();
}
void gdev_host_unregister(gdev *d, void *p) { (void)d, (void)p; }
pl_status gdev_h2d(gdev *d, void *d_dst, const void *src, size_t bytes) {
    (void)d, (void)d_dst, (void)src, (void)bytes;
    return none_fail();
}
pl_status gdev_d2h(gdev *d, void *dst, const void *d_src, size_t bytes) {
    (void)d, (void)dst, (void)d_src, (void)bytes;
    return none_fail();
}
pl_status gdev_sync(gdev *d) {
    (void)d;
    return none_fail();
}
pl_status gdev_capture_begin(gdev *d) { return gdev_sync(d); }
pl_status gdev_capture_end(gdev *d) { return gdev_sync(d); }
void gdev_capture_abort(gdev *d) { (void)d; }
pl_status gdev_replay(gdev *d) { return gdev_sync(d); }
pl_status gdev_copy_bandwidth(gdev *d, size_t bytes, double *gbps) {
    (void)d, (void)bytes;
    *gbps = 0;
    return none_fail();
}
pl_status gdev_matvec(gdev *d, const gdev_mv_out *outs, int n_outs, const float *d_x, const float *d_norm, float eps) {
    (void)d, (void)outs, (void)n_outs, (void)d_x, (void)d_norm, (void)eps;
    return none_fail();
}
pl_status gdev_matvec_glu(gdev *d, const gdev_mat *gate, const gdev_mat *up, const float *d_x, const float *d_norm,
                          float eps, float *d_h) {
    (void)d, (void)gate, (void)up, (void)d_x, (void)d_norm, (void)eps, (void)d_h;
    return none_fail();
}
pl_status gdev_gemm(gdev *d, const gdev_mat *w, const float *d_x, int ldx, int T, float *d_y, int ldy,
                    const float *d_bias, int accumulate) {
    (void)d, (void)w, (void)d_x, (void)ldx, (void)T, (void)d_y, (void)ldy, (void)d_bias, (void)accumulate;
    return none_fail();
}
pl_status gdev_rmsnorm(gdev *d, const float *d_x, float *d_y, const float *d_w, int n, int ld, int T, float eps) {
    (void)d, (void)d_x, (void)d_y, (void)d_w, (void)n, (void)ld, (void)T, (void)eps;
    return none_fail();
}
pl_status gdev_silu_mul(gdev *d, float *d_g, const float *d_u, size_t n) {
    (void)d, (void)d_g, (void)d_u, (void)n;
    return none_fail();
}
pl_status gdev_embed(gdev *d, const gdev_mat *emb, const int *d_tok, int T, float *d_x) {
    (void)d, (void)emb, (void)d_tok, (void)T, (void)d_x;
    return none_fail();
}
pl_status gdev_rope_kv(gdev *d, const gdev_attn *a) {
    (void)d, (void)a;
    return none_fail();
}
pl_status gdev_matvec_qkv(gdev *d, const gdev_mv_out *outs, const float *d_x, const float *d_norm, float eps,
                          const gdev_attn *a, int *attended) {
    (void)d, (void)outs, (void)d_x, (void)d_norm, (void)eps, (void)a;
    if (attended) *attended = 0;
    return none_fail();
}
pl_status gdev_attention(gdev *d, const gdev_attn *a) {
    (void)d, (void)a;
    return none_fail();
}
