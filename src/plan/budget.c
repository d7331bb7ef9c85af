/*
 * What limits memory on this machine: physical RAM (/proc/meminfo), the
 * memory limit of this process's cgroup (v2 memory.max or v1
 * memory.limit_in_bytes, the smallest along the path up to the hierarchy's
 * mount, found through /proc/self/cgroup and /proc/self/mountinfo), the room
 * RLIMIT_AS and RLIMIT_DATA leave, and the user's PL_BUDGET. Every path is
 * read under a root prefix so tests can feed a fake /proc and /sys.
 * Also pl_parse_bytes, the size syntax every budget option uses.
 */
#include "plan.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* A v1 limit this large means "no limit" (the kernel's LONG_MAX page-rounded). */
#define BUDGET_NO_LIMIT (1ull << 60)

pl_status pl_parse_bytes(const char *text, uint64_t *out) {
    if (!text || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_parse_bytes: text and out are required");
    static const struct { const char *suffix; double mult; } units[] = {
        {"", 1}, {"b", 1},
        {"k", 1024.0}, {"kib", 1024.0}, {"kb", 1e3},
        {"m", 1048576.0}, {"mib", 1048576.0}, {"mb", 1e6},
        {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9},
        {"t", 1099511627776.0}, {"tib", 1099511627776.0}, {"tb", 1e12},
    };
    char *end;
    errno = 0;
    const double v = strtod(text, &end);
    if (end == text || errno || !(v >= 0) || isinf(v))
        return pl_fail(PL_ERR_INVALID_ARG, "'%s' is not a size (examples: 3.5G, 512M, 2GiB, 1500000)", text);
    char suf[8];
    size_t n = 0;
    while (*end == ' ') end++;
    for (; *end && n < sizeof suf - 1; end++) suf[n++] = (char)tolower((unsigned char)*end);
    suf[n] = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!*end && !strcmp(suf, units[i].suffix)) {
            const double b = v * units[i].mult;
            if (b >= 18446744073709549568.0)
                return pl_fail(PL_ERR_INVALID_ARG, "size '%s' is too large", text);
            *out = (uint64_t)(b + 0.5);
            return PL_OK;
        }
    return pl_fail(PL_ERR_INVALID_ARG, "'%s': unknown unit (use K, M, G, T for powers of 1024 or KB, MB, GB, TB for powers of 1000)",
                   text);
}

/* First line of a small file into buf; 0 when it cannot be read. */
static int budget_read(const char *path, char *buf, size_t cap) {
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    size_t n = fread(buf, 1, cap - 1, fp);
    fclose(fp);
    buf[n] = 0;
    return n > 0;
}

/* The limit file's value: a number, or 0 for "max" / the v1 no-limit value. */
static uint64_t budget_limit_value(const char *path) {
    char buf[64];
    if (!budget_read(path, buf, sizeof buf)) return 0;
    if (!strncmp(buf, "max", 3)) return 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf || v >= BUDGET_NO_LIMIT) return 0;
    return (uint64_t)v;
}

/* Mount point (under root) and mount root of the hierarchy: cgroup2 when v2,
 * else the v1 hierarchy whose super options include "memory". 1 when found. */
static int budget_find_mount(const char *root, bool v2, char *mnt, size_t mcap, char *mroot, size_t rcap) {
    char path[512];
    snprintf(path, sizeof path, "%s/proc/self/mountinfo", root);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof line, fp)) {
        /* id parent major:minor root mount-point options [optional...] - fstype source super-options */
        char *fields[16];
        int nf = 0;
        for (char *save = NULL, *tok = strtok_r(line, " \n", &save); tok && nf < 16; tok = strtok_r(NULL, " \n", &save))
            fields[nf++] = tok;
        int dash = -1;
        for (int i = 6; i < nf; i++)
            if (!strcmp(fields[i], "-")) {
                dash = i;
                break;
            }
        if (dash < 0 || dash + 1 >= nf) continue;
        const char *fstype = fields[dash + 1], *super = dash + 3 < nf ? fields[dash + 3] : "";
        bool match = v2 ? !strcmp(fstype, "cgroup2") : (!strcmp(fstype, "cgroup") && strstr(super, "memory") != NULL);
        if (!match) continue;
        if (!v2) { /* "memory" as a whole option, not a prefix of another */
            match = false;
            char opts[512];
            snprintf(opts, sizeof opts, "%s", super);
            for (char *save = NULL, *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save))
                if (!strcmp(o, "memory")) match = true;
            if (!match) continue;
        }
        snprintf(mnt, mcap, "%s%s", root, fields[4]);
        snprintf(mroot, rcap, "%s", fields[3]);
        found = 1;
    }
    fclose(fp);
    return found;
}

/* The smallest limit from the cgroup directory up to the mount point. */
static uint64_t budget_walk(const char *mnt, const char *mroot, const char *cg, const char *file) {
    /* the path inside the mount: the cgroup path minus the mount's root */
    const size_t rl = strlen(mroot);
    const char *rel = cg;
    if (rl > 1 && !strncmp(cg, mroot, rl) && (cg[rl] == '/' || cg[rl] == 0)) rel = cg + rl;
    else if (rl > 1) rel = ""; /* a namespaced mount: we sit at its root */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s%s", mnt, !strcmp(rel, "/") ? "" : rel);
    uint64_t best = 0;
    const size_t base = strlen(mnt);
    for (;;) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, file);
        const uint64_t v = budget_limit_value(path);
        if (v && (!best || v < best)) best = v;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < base) break;
        *slash = 0;
        if (strlen(dir) < base) break;
    }
    return best;
}

uint64_t plan_cgroup_limit(const char *root) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    char v1_path[1024] = "", v2_path[1024] = "";
    bool has_v1 = false, has_v2 = false;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = 0;
        const char *ctrls = c1 + 1, *cgpath = c2 + 1;
        if (!strcmp(line, "0") && !*ctrls) {
            snprintf(v2_path, sizeof v2_path, "%s", cgpath);
            has_v2 = true;
        } else {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", ctrls);
            for (char *save = NULL, *o = strtok_r(buf, ",", &save); o; o = strtok_r(NULL, ",", &save))
                if (!strcmp(o, "memory")) {
                    snprintf(v1_path, sizeof v1_path, "%s", cgpath);
                    has_v1 = true;
                }
        }
    }
    fclose(fp);
    uint64_t best = 0;
    char mnt[600], mroot[600];
    if (has_v1 && budget_find_mount(root, false, mnt, sizeof mnt, mroot, sizeof mroot))
        best = budget_walk(mnt, mroot, v1_path, "memory.limit_in_bytes");
    if (has_v2 && budget_find_mount(root, true, mnt, sizeof mnt, mroot, sizeof mroot)) {
        const uint64_t v = budget_walk(mnt, mroot, v2_path, "memory.max");
        if (v && (!best || v < best)) best = v;
    }
    return best;
}

static void budget_take(pl_budget *b, uint64_t v, const char *source) {
    if (v && (!b->bytes || v < b->bytes)) {
        b->bytes = v;
        snprintf(b->source, sizeof b->source, "%s", source);
    }
}

pl_status plan_budget_detect_at(const char *root, pl_budget *b) {
    memset(b, 0, sizeof *b);
    char path[512];
    snprintf(path, sizeof path, "%s/proc/meminfo", root);
    b->phys_bytes = alloc_proc_kb(path, "MemTotal");
    b->avail_bytes = alloc_proc_kb(path, "MemAvailable");
    if (!b->phys_bytes && !*root) {
        long pages = sysconf(_SC_PHYS_PAGES);
        if (pages > 0) b->phys_bytes = (uint64_t)pages * mem_page_size();
    }
    b->cgroup_bytes = plan_cgroup_limit(root);
    snprintf(path, sizeof path, "%s/proc/self/status", root);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        const uint64_t used = alloc_proc_kb(path, "VmSize");
        b->rlimit_as_bytes = rl.rlim_cur > used ? rl.rlim_cur - used : 1;
    }
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        const uint64_t used = alloc_proc_kb(path, "VmData");
        b->rlimit_data_bytes = rl.rlim_cur > used ? rl.rlim_cur - used : 1;
    }
    const char *env = getenv("PL_BUDGET");
    if (env && *env) {
        pl_status st = pl_parse_bytes(env, &b->override_bytes);
        if (st) return pl_fail_prefix(st, "environment variable PL_BUDGET");
    }
    if (b->override_bytes) {
        /* the user's word replaces what RAM and cgroups say */
        b->bytes = b->override_bytes;
        snprintf(b->source, sizeof b->source, "PL_BUDGET");
    } else {
        budget_take(b, b->phys_bytes, "ram");
        budget_take(b, b->cgroup_bytes, "cgroup");
    }
    return PL_OK;
}

const char *pl_plan_limit_text(const pl_plan *p, char *buf, size_t cap) {
    if (!buf || !cap) return buf;
    buf[0] = 0;
    if (!p) return buf;
    const double mib = 1048576.0;
    static const char *const what[] = {[PL_LIMIT_DATA] = "data segment", [PL_LIMIT_AS] = "address space"};
    switch (p->limit) {
    case PL_LIMIT_BUDGET:
        snprintf(buf, cap, "the budget is %.1f MiB (%s)", (double)p->limit_room_bytes / mib, p->budget_source);
        break;
    case PL_LIMIT_DATA:
    case PL_LIMIT_AS:
        snprintf(buf, cap, "%s is %.1f MiB and leaves %.1f MiB for the %.1f MiB of %s it needs",
                 p->limit == PL_LIMIT_DATA ? "RLIMIT_DATA" : "RLIMIT_AS", (double)p->limit_set_bytes / mib,
                 (double)p->limit_room_bytes / mib, (double)p->limit_need_bytes / mib, what[p->limit]);
        break;
    default:
        break;
    }
    return buf;
}

pl_status pl_budget_detect(pl_budget *out) {
    if (!out) return pl_fail(PL_ERR_INVALID_ARG, "pl_budget_detect: out is NULL");
    return plan_budget_detect_at("", out);
}

pl_status plan_limits_resolve(uint64_t budget_bytes, plan_limits *lim) {
    memset(lim, 0, sizeof *lim);
    if (budget_bytes == PL_BUDGET_NONE) {
        snprintf(lim->source, sizeof lim->source, "none");
        return PL_OK;
    }
    pl_budget b;
    pl_status st = pl_budget_detect(&b);
    if (st) return st;
    lim->as = b.rlimit_as_bytes;
    lim->data = b.rlimit_data_bytes;
    struct rlimit rl;
    if (lim->as && getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) lim->as_set = rl.rlim_cur;
    if (lim->data && getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) lim->data_set = rl.rlim_cur;
    if (budget_bytes) {
        lim->rss = budget_bytes;
        snprintf(lim->source, sizeof lim->source, "given");
    } else {
        lim->rss = b.bytes;
        snprintf(lim->source, sizeof lim->source, "%s", b.source);
    }
    /* source names where rss came from only: a plan that passes RLIMIT_AS or
     * RLIMIT_DATA names that limit itself (pl_plan.limit, pl_plan_limit_text) */
    return PL_OK;
}
