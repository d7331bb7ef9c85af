/*
 * AdamW (Loshchilov & Hutter: decoupled weight decay, applied only to params
 * marked `decay`, i.e. matrices), gradient clipping by the global L2 norm,
 * and the learning-rate schedule (linear warmup, then cosine or linear decay
 * to min_lr). The update follows torch.optim.AdamW exactly, so
 * tests/test_train_torch.sh can compare weights after a few steps:
 *   w -= lr*wd*w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 */
#include "train.h"

#include <math.h>
#include <string.h>

train_opt train_opt_default(void) {
    train_opt o = {.lr = 1e-3f, .min_lr = 1e-4f, .warmup = 0, .steps = 100, .cosine = true,
                   .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f, .clip = 1.0f};
    return o;
}

float train_lr_at(const train_opt *o, int step) {
    if (o->warmup > 0 && step < o->warmup) return o->lr * (float)(step + 1) / (float)o->warmup;
    const int span = o->steps - o->warmup;
    if (span <= 0) return o->lr;
    double p = (double)(step - o->warmup) / span;
    if (p > 1) p = 1;
    if (p < 0) p = 0;
    const double f = o->cosine ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
    return (float)(o->min_lr + (o->lr - o->min_lr) * f);
}

void train_zero_grads(train_model *m) {
    if (m->n_params) memset(m->params[0].g, 0, sizeof(float) * (size_t)m->n_trainable);
}

double train_grad_norm(const train_model *m) {
    if (!m->n_params) return 0.0;
    const float *g = m->params[0].g; /* gradients are one contiguous run */
    double ss = 0.0;
    for (int64_t i = 0; i < m->n_trainable; i++) ss += (double)g[i] * g[i];
    return sqrt(ss);
}

double train_adamw_step(train_model *m, const train_opt *o, int t, float lr) {
    const double norm = train_grad_norm(m);
    const float clip = (o->clip > 0 && norm > o->clip) ? (float)(o->clip / (norm + 1e-6)) : 1.0f;
    const double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    const float b1 = o->beta1, b2 = o->beta2;
    for (int p = 0; p < m->n_params; p++) {
        train_param *pr = &m->params[p];
        const int64_t n = pr->ne0 * pr->ne1;
        const float decay = pr->decay ? 1.0f - lr * o->weight_decay : 1.0f;
        for (int64_t i = 0; i < n; i++) {
            const float g = pr->g[i] * clip;
            pr->m[i] = b1 * pr->m[i] + (1.0f - b1) * g;
            pr->v[i] = b2 * pr->v[i] + (1.0f - b2) * g * g;
            const double mh = pr->m[i] / bc1, vh = pr->v[i] / bc2;
            pr->w[i] = (float)(pr->w[i] * decay - lr * mh / (sqrt(vh) + o->eps));
        }
    }
    return norm;
}
