/*
 * fsync-delay: a preload library that makes every fsync and fdatasync of the process
 * it is loaded into take STOCKSYNC_MARIADB_FSYNC_DELAY_US microseconds longer, as on a disk
 * whose flush is slower than this machine's (networked block storage, a disk without
 * a power-loss-protected cache). The call still syncs; the thread then sleeps, as it
 * would while a slower disk flushed.
 *
 * For benchmarks only: scripts/mariadb.sh builds it and loads it into mariadbd when
 * STOCKSYNC_MARIADB_FSYNC_DELAY_US is set (docs/BENCHMARKS.md, "Hot-SKU deductions").
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void sleep_like_a_slower_disk(void) {
    static long delay_ns = -1;
    if (delay_ns < 0) {
        const char *us = getenv("STOCKSYNC_MARIADB_FSYNC_DELAY_US");
        delay_ns = us ? atol(us) * 1000L : 0;
    }
    if (delay_ns > 0) {
        struct timespec t = {delay_ns / 1000000000L, delay_ns % 1000000000L};
        while (nanosleep(&t, &t) != 0) {
        }
    }
}

int fsync(int fd) {
    static int (*real_fsync)(int);
    if (!real_fsync) real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int r = real_fsync(fd);
    sleep_like_a_slower_disk();
    return r;
}

int fdatasync(int fd) {
    static int (*real_fdatasync)(int);
    if (!real_fdatasync) real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int r = real_fdatasync(fd);
    sleep_like_a_slower_disk();
    return r;
}
