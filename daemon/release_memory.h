/* release_memory.h: hand the allocator's freed memory back to the kernel.
 *
 * qslmd runs under a cgroup memory budget, and glibc keeps freed heap memory (a burst of
 * requests, start-up's scratch, the variant just unloaded) mapped and counted in the cgroup until
 * it is trimmed: the policy would take it for other services' memory and step down for nothing.
 * Three moments call this: after start-up, after a variant switch, and when the loop turns quiet
 * after a burst. Elsewhere than glibc it does nothing (musl returns freed memory by itself). */
#ifndef QD_RELEASE_MEMORY_H
#define QD_RELEASE_MEMORY_H

#include <stdbool.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

/* True when something was asked of the allocator (glibc), for the log. */
static inline bool qd_release_freed_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
    return true;
#else
    return false;
#endif
}

#endif
