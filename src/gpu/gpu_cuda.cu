/*
 * The CUDA runtime side of the device layer: opening the device, memory,
 * copies on the device's stream, graph capture/replay and the copy-bandwidth
 * probe. All work goes to one non-blocking stream per gdev; graphs are
 * captured thread-locally so other threads' CUDA use does not break them.
 */
#include "gpu_impl.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pl_status gdev_cuda_fail(cudaError_t e, const char *what) {
    const pl_status s = e == cudaErrorMemoryAllocation ? PL_ERR_NOMEM : PL_ERR_INTERNAL;
    return pl_fail(s, "gpu: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

pl_status gdev_launch_check(const char *what) {
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? PL_OK : gdev_cuda_fail(e, what);
}

extern "C" int gdev_built(void) { return 1; }

/* An integer from the environment, or def when unset or not a number. */
static int gdev_env_int(const char *name, int def) {
    const char *v = getenv(name);
    char *end = NULL;
    const long x = v && *v ? strtol(v, &end, 10) : def;
    return v && *v && end && !*end ? (int)x : def;
}

extern "C" pl_status gdev_open(gdev **out, gdev_info *info) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return pl_fail(PL_ERR_UNSUPPORTED, "gpu: no CUDA device is usable here (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    cudaDeviceProp prop;
    GDEV_TRY(cudaGetDeviceProperties(&prop, 0), "reading the device's properties");
    if (prop.major < 7)
        return pl_fail(PL_ERR_UNSUPPORTED, "gpu: %s has compute capability %d.%d; the CUDA backend needs 7.0 or newer",
                       prop.name, prop.major, prop.minor);
    GDEV_TRY(cudaSetDevice(0), "selecting device 0");
    gdev *d = (gdev *)calloc(1, sizeof *d);
    if (!d) return pl_fail(PL_ERR_NOMEM, "gpu: out of memory");
    d->device = 0;
    d->smem_optin = prop.sharedMemPerBlockOptin;
    d->n_sm = prop.multiProcessorCount;
    const char *pdl = getenv("PL_GPU_PDL");
    d->pdl = prop.major >= 9 && !(pdl && !strcmp(pdl, "0"));
    e = cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(d);
        return gdev_cuda_fail(e, "creating a stream");
    }
    /* xq, carry and the counters in one allocation; the counters start at 0
     * and every hand-off resets the ones it used */
    e = cudaMalloc((void **)&d->xq, 2 * GDEV_XQ_BYTES + GDEV_CNT * sizeof(int));
    if (e == cudaSuccess) e = cudaMemset(d->xq, 0, 2 * GDEV_XQ_BYTES + GDEV_CNT * sizeof(int));
    if (e != cudaSuccess) {
        if (d->xq) cudaFree(d->xq);
        cudaStreamDestroy(d->stream);
        free(d);
        return gdev_cuda_fail(e, "allocating device scratch");
    }
    d->carry = d->xq + GDEV_XQ_BYTES;
    d->cnt = (int *)(d->xq + 2 * GDEV_XQ_BYTES);
    /* PL_GPU_FUSE=0 gives the earlier op sequence (a quantization kernel
     * before every int8 product), for A/B measurements; the others opt in */
    d->hand_att = gdev_env_int("PL_GPU_FUSE", 1) != 0;
    d->hand_glu = d->hand_att && gdev_env_int("PL_GPU_FUSE_GLU", 0) != 0;
    d->fuse_attn = d->hand_att && gdev_env_int("PL_GPU_FUSE_ATTN", 0) != 0;
    d->stage_blocks = d->hand_att ? gdev_env_int("PL_GPU_STAGE_BLOCKS", 0) : 0;
    pl_status st = gdev_kernels_init(d);
    if (st) {
        gdev_close(d);
        return st;
    }
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->name, sizeof info->name, "%.127s", prop.name);
        info->cc_major = prop.major;
        info->cc_minor = prop.minor;
        info->n_sm = prop.multiProcessorCount;
        info->integrated = prop.integrated;
        info->smem_optin = d->smem_optin;
        if (cudaMemGetInfo(&info->mem_free, &info->mem_total) != cudaSuccess) {
            gdev_close(d);
            return pl_fail(PL_ERR_INTERNAL, "gpu: cannot read the device's free memory");
        }
    }
    *out = d;
    return PL_OK;
}

extern "C" void gdev_close(gdev *d) {
    if (!d) return;
    if (d->exec) cudaGraphExecDestroy(d->exec);
    if (d->graph) cudaGraphDestroy(d->graph);
    if (d->stream) {
        cudaStreamSynchronize(d->stream);
        cudaStreamDestroy(d->stream);
    }
    if (d->xq) cudaFree(d->xq);
    free(d);
}

extern "C" pl_status gdev_alloc(gdev *d, size_t bytes, void **out) {
    (void)d;
    *out = NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error so later calls work */
        return pl_fail(PL_ERR_NOMEM, "gpu: cannot allocate %zu bytes of device memory (%s)", bytes,
                       cudaGetErrorString(e));
    }
    e = cudaMemset(p, 0, bytes);
    if (e != cudaSuccess) {
        cudaFree(p);
        return gdev_cuda_fail(e, "clearing device memory");
    }
    *out = p;
    return PL_OK;
}

extern "C" void gdev_free(gdev *d, void *p) {
    if (d) d->carry_src = NULL; /* the address may come back for other data */
    if (p) cudaFree(p);
}

extern "C" pl_status gdev_host_alloc(gdev *d, size_t bytes, void **out) {
    (void)d;
    *out = NULL;
    GDEV_TRY(cudaMallocHost(out, bytes ? bytes : 1), "allocating pinned host memory");
    return PL_OK;
}

extern "C" void gdev_host_free(gdev *d, void *p) {
    (void)d;
    if (p) cudaFreeHost(p);
}

extern "C" pl_status gdev_host_register(gdev *d, void *p, size_t bytes) {
    (void)d;
    const cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return gdev_cuda_fail(e, "pinning host memory");
    }
    return PL_OK;
}

extern "C" void gdev_host_unregister(gdev *d, void *p) {
    (void)d;
    if (p) cudaHostUnregister(p);
}

extern "C" pl_status gdev_h2d(gdev *d, void *dst, const void *src, size_t bytes) {
    d->after_kernel = 0;
    d->carry_src = NULL;
    GDEV_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, d->stream), "copying to the device");
    return PL_OK;
}

extern "C" pl_status gdev_d2h(gdev *d, void *dst, const void *src, size_t bytes) {
    d->after_kernel = 0;
    GDEV_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, d->stream), "copying from the device");
    return PL_OK;
}

extern "C" pl_status gdev_sync(gdev *d) {
    GDEV_TRY(cudaStreamSynchronize(d->stream), "running the queued GPU work");
    return PL_OK;
}

extern "C" pl_status gdev_capture_begin(gdev *d) {
    d->after_kernel = 0;
    d->carry_src = NULL;
    GDEV_TRY(cudaStreamBeginCapture(d->stream, cudaStreamCaptureModeThreadLocal), "starting graph capture");
    return PL_OK;
}

extern "C" pl_status gdev_capture_end(gdev *d) {
    cudaGraph_t g = NULL;
    GDEV_TRY(cudaStreamEndCapture(d->stream, &g), "ending graph capture");
    if (d->exec) cudaGraphExecDestroy(d->exec);
    if (d->graph) cudaGraphDestroy(d->graph);
    d->exec = NULL;
    d->graph = g;
    GDEV_TRY(cudaGraphInstantiate(&d->exec, g, 0), "instantiating the graph");
    return PL_OK;
}

extern "C" void gdev_capture_abort(gdev *d) {
    cudaGraph_t g = NULL;
    if (cudaStreamEndCapture(d->stream, &g) == cudaSuccess && g) cudaGraphDestroy(g);
    cudaGetLastError();
}

extern "C" pl_status gdev_replay(gdev *d) {
    d->after_kernel = 0;
    d->carry_src = NULL;
    if (!d->exec) return pl_fail(PL_ERR_INTERNAL, "gpu: no graph was captured");
    GDEV_TRY(cudaGraphLaunch(d->exec, d->stream), "launching the graph");
    return PL_OK;
}

extern "C" pl_status gdev_copy_bandwidth(gdev *d, size_t bytes, double *gbps) {
    *gbps = 0;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    pl_status st = gdev_alloc(d, bytes, &a);
    if (!st) st = gdev_alloc(d, bytes, &b);
    if (!st && (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess))
        st = pl_fail(PL_ERR_INTERNAL, "gpu: cannot create events");
    const int reps = 20;
    float ms = 0;
    if (!st) {
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, d->stream); /* warm-up */
        cudaEventRecord(e0, d->stream);
        for (int i = 0; i < reps; i++)
            cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice, d->stream);
        cudaEventRecord(e1, d->stream);
        if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess || ms <= 0)
            st = pl_fail(PL_ERR_INTERNAL, "gpu: timing the copy failed");
    }
    if (!st) *gbps = 2.0 * (double)bytes * reps / (ms * 1e-3) / 1e9;
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    gdev_free(d, a);
    gdev_free(d, b);
    return st;
}
