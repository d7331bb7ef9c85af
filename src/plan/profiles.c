/*
 * Device profiles: what an app can count on holding on common devices, as
 * data. budget_bytes is the working set (not the RAM): the OS, other apps
 * and the app's own UI take the rest, and mobile systems kill an app that
 * passes its limit rather than swapping. Figures are conservative readings
 * of the platforms' documented or commonly measured limits (the note says
 * which); a user with better numbers passes --budget instead.
 */
#include "plan.h"

#include <string.h>

#define GiB (1024ull * 1024 * 1024)
#define MiB (1024ull * 1024)

static const pl_device_profile k_profiles[] = {
    {"iphone-4gb", 4 * GiB, 2048 * MiB, "iOS jetsam limit for a foreground app on 4 GB devices (~2 GB)"},
    {"iphone-6gb", 6 * GiB, 3072 * MiB, "iOS foreground limit on 6 GB devices (~3 GB)"},
    {"iphone-8gb", 8 * GiB, 4096 * MiB, "iOS foreground limit on 8 GB devices, without the increased-memory entitlement"},
    {"ipad-8gb", 8 * GiB, 5400000000ull, "iPadOS with com.apple.developer.kernel.increased-memory-limit: 5.4 GB working set"},
    {"ipad-16gb", 16 * GiB, 12 * GiB, "iPadOS M-series with the increased-memory entitlement"},
    {"android-4gb", 4 * GiB, 1536 * MiB, "Android low-memory-killer headroom for a foreground app on 4 GB"},
    {"android-6gb", 6 * GiB, 2560 * MiB, "Android foreground app on 6 GB"},
    {"android-8gb", 8 * GiB, 3584 * MiB, "Android foreground app on 8 GB"},
    {"android-12gb", 12 * GiB, 6 * GiB, "Android foreground app on 12 GB"},
    {"mac-8gb", 8 * GiB, 5 * GiB, "macOS 8 GB: what stays resident beside a desktop session without swapping"},
    {"mac-16gb", 16 * GiB, 11 * GiB, "macOS 16 GB, likewise"},
    {"rpi-4gb", 4 * GiB, 3 * GiB, "Raspberry Pi 4/5 4 GB, headless Linux"},
    {"rpi-8gb", 8 * GiB, 6800 * MiB, "Raspberry Pi 4/5 8 GB, headless Linux"},
};

const pl_device_profile *pl_device_profile_at(int i) {
    if (i < 0 || (size_t)i >= sizeof k_profiles / sizeof k_profiles[0]) return NULL;
    return &k_profiles[i];
}

const pl_device_profile *pl_device_profile_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof k_profiles / sizeof k_profiles[0]; i++)
        if (!strcmp(k_profiles[i].name, name)) return &k_profiles[i];
    return NULL;
}
