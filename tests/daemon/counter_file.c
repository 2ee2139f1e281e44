/* counter_file.c: see counter_file.h. */
#include "counter_file.h"

#include <stdio.h>

static void *counter_main(void *arg)
{
    counter_file *c = arg;
    double t0 = dh_now_ms();
    while (!atomic_load(&c->stop)) {
        char text[256];
        unsigned long long v = c->start + (unsigned long long)((dh_now_ms() - t0) * c->per_ms);
        snprintf(text, sizeof text, c->format, v);
        if (dh_write_root_file(c->h, c->rel, text) != 0)
            atomic_fetch_add(&c->failures, 1);
        dh_sleep_ms(c->period_ms);
    }
    return NULL;
}

int counter_file_start(counter_file *c)
{
    atomic_init(&c->stop, false);
    atomic_init(&c->failures, 0);
    c->running = pthread_create(&c->thread, NULL, counter_main, c) == 0;
    return c->running ? 0 : -1;
}

int counter_file_stop(counter_file *c)
{
    if (c->running) {
        atomic_store(&c->stop, true);
        pthread_join(c->thread, NULL);
        c->running = false;
    }
    return atomic_load(&c->failures);
}
