/* telemetry_fds.c: telemetry's files and directories kept open between reads (telemetry_impl.h).
 *
 * Why: when a limit shrinks below what the service holds, the kernel throttles every task of the
 * cgroup that charges memory: on the way back from the system call it sleeps up to 2 s
 * (mem_cgroup_handle_over_high). Opening a file charges a struct file and, for the cgroup and
 * proc files, a seq_file buffer; a tick opens about fifteen, so the tick that should step down
 * took 10 to 20 s in the system test's VM, the event loop asleep in that function throughout.
 * A file kept open and read again from offset 0 (pread: seq_file files then show afresh, into
 * the buffer they kept) charges nothing. A directory kept open is rewound.
 *
 * A kept file that was replaced or removed (a test tree renames new contents into place; a
 * cgroup goes) has no links left (fstat: st_nlink 0) or fails to read: it is closed and the path
 * opened again. At most TEL_MAX_OPEN are kept (the daemon's descriptor reserve has room for
 * them); the rest are opened and closed each read, as before. */
#include "telemetry_impl.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char rel[TEL_KEPT_PATH_MAX]; /* "" : a free slot */
    int fd;                      /* a file's (dir NULL) */
    DIR *dir;                    /* a directory's */
} kept;

struct tel_kept_files {
    kept slot[TEL_MAX_OPEN];
};

tel_kept_files *tel_kept_new(void)
{
    return calloc(1, sizeof(tel_kept_files));
}

static void drop(kept *k)
{
    if (k->dir)
        closedir(k->dir);
    else if (k->rel[0])
        close(k->fd);
    memset(k, 0, sizeof *k);
}

void tel_kept_free(tel_kept_files *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < TEL_MAX_OPEN; i++)
        drop(&c->slot[i]);
    free(c);
}

static kept *find(tel_kept_files *c, const char *rel)
{
    for (size_t i = 0; c && i < TEL_MAX_OPEN; i++)
        if (c->slot[i].rel[0] && strcmp(c->slot[i].rel, rel) == 0)
            return &c->slot[i];
    return NULL;
}

/* Still the file (or directory) at its path: linked, and of the kind it was. */
static bool still_there(int fd, bool dir)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_nlink > 0 && (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

int tel_kept_fd(tel_kept_files *c, const char *rel)
{
    kept *k = find(c, rel);
    if (!k || k->dir)
        return -1;
    if (still_there(k->fd, false))
        return k->fd;
    drop(k);
    return -1;
}

DIR *tel_kept_dir(tel_kept_files *c, const char *rel)
{
    kept *k = find(c, rel);
    if (!k || !k->dir)
        return NULL;
    if (still_there(dirfd(k->dir), true)) {
        rewinddir(k->dir);
        return k->dir;
    }
    drop(k);
    return NULL;
}

void tel_kept_forget(tel_kept_files *c, const char *rel)
{
    kept *k = find(c, rel);
    if (k)
        drop(k);
}

/* A free slot for rel, or NULL (full, no cache, or a path too long to keep). */
static kept *free_slot(tel_kept_files *c, const char *rel)
{
    if (!c || strlen(rel) >= TEL_KEPT_PATH_MAX)
        return NULL;
    for (size_t i = 0; i < TEL_MAX_OPEN; i++)
        if (!c->slot[i].rel[0])
            return &c->slot[i];
    return NULL;
}

/* Keeps a file's fd or a directory's d (the other -1 / NULL) for rel, if there is room. */
static bool keep(tel_kept_files *c, const char *rel, int fd, DIR *d)
{
    kept *k = free_slot(c, rel);
    if (!k)
        return false;
    memcpy(k->rel, rel, strlen(rel) + 1);
    k->fd = fd;
    k->dir = d;
    return true;
}

bool tel_kept_add_fd(tel_kept_files *c, const char *rel, int fd) { return keep(c, rel, fd, NULL); }
bool tel_kept_add_dir(tel_kept_files *c, const char *rel, DIR *d) { return keep(c, rel, -1, d); }
