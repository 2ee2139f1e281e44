/* bg_load.c: background clients for daemon tests (bg_load.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json.h>
#include <stdio.h>
#include <string.h>

#include "bg_load.h"
#include "client.h"
#include "reply_parse.h"

static void bg_bad(bg_load *bg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bg_bad(bg_load *bg, const char *fmt, ...)
{
    atomic_fetch_add(&bg->bad, 1);
    pthread_mutex_lock(&bg->mu);
    if (!bg->first_bad[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(bg->first_bad, sizeof bg->first_bad, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&bg->mu);
}

/* One request at a time on one connection; reconnects when the daemon closed it. */
static void *bg_main(void *arg)
{
    bg_load *bg = arg;
    qi_client *c = NULL;
    uint64_t id = 0;
    while (!atomic_load(&bg->stop)) {
        if (!c) {
            if (qi_client_connect(bg->h->sock, &c, NULL) != QI_OK) {
                c = NULL;
                atomic_fetch_add(&bg->connect_fail, 1);
                dh_sleep_ms(20);
                continue;
            }
        }
        id++;
        int kind = (int)(id % 4);
        char line[512];
        if (kind <= 1)
            snprintf(line, sizeof line,
                     "{\"id\":%llu,\"op\":\"generate\",\"prompt\":\"The state of the Union\",\"max_tokens\":6,"
                     "\"seed\":%llu,\"stream\":%s}",
                     (unsigned long long)id, (unsigned long long)(id % 7), kind ? "true" : "false");
        else if (kind == 2)
            snprintf(line, sizeof line, "{\"id\":%llu,\"op\":\"classify\",\"texts\":[\"A great day.\",\"Bad news.\"]}",
                     (unsigned long long)id);
        else
            snprintf(line, sizeof line, "{\"id\":%llu,\"op\":\"status\"}", (unsigned long long)id);
        qi_error e;
        if (qi_client_send_line(c, line, strlen(line), &e) != QI_OK) {
            atomic_fetch_add(&bg->closed, 1);
            qi_client_close(c);
            c = NULL;
            continue;
        }
        uint32_t next_index = 0;
        for (;;) {
            qi_reply r;
            qi_code rc = qi_client_read_reply(c, BG_READ_TIMEOUT_MS, &r, &e);
            if (rc == QI_ERR_CLOSED || rc == QI_ERR_IO) {
                atomic_fetch_add(&bg->closed, 1);
                qi_client_close(c);
                c = NULL;
                break;
            }
            if (rc == QI_ERR_TIMEOUT) {
                atomic_fetch_add(&bg->lost, 1);
                bg_bad(bg, "no reply to %s within %d ms", line, BG_READ_TIMEOUT_MS);
                qi_client_close(c);
                c = NULL;
                break;
            }
            if (rc != QI_OK) {
                bg_bad(bg, "a bad line after %s: %s", line, e.msg);
                continue;
            }
            if (r.id.kind != QI_ID_INT || r.id.num != id) {
                bg_bad(bg, "a reply for another id after %s: %s", line, json_object_to_json_string(r.body));
            } else if (r.kind == QI_REPLY_TOKEN) {
                if (kind != 1 || r.index != next_index)
                    bg_bad(bg, "token event out of place after %s: %s", line, json_object_to_json_string(r.body));
                next_index++;
            } else if (r.kind == QI_REPLY_ERROR) {
                atomic_fetch_add(&bg->errs[r.code <= QI_ERR_UNKNOWN_CODE ? r.code : QI_ERR_UNKNOWN_CODE], 1);
            } else {
                bool good = kind <= 1 ? r.kind == QI_REPLY_DONE && (kind == 0 || r.stats.tokens == next_index)
                                      : r.kind == QI_REPLY_RESULT;
                if (good)
                    atomic_fetch_add(&bg->ok, 1);
                else
                    bg_bad(bg, "an unexpected reply to %s: %s", line, json_object_to_json_string(r.body));
            }
            bool final = qi_reply_is_final(&r);
            qi_reply_free(&r);
            if (final)
                break;
        }
    }
    qi_client_close(c);
    return NULL;
}

void bg_start(bg_load *bg, dh_daemon *h)
{
    memset(bg, 0, sizeof *bg);
    bg->h = h;
    pthread_mutex_init(&bg->mu, NULL);
    for (int i = 0; i < BG_CLIENTS; i++)
        if (pthread_create(&bg->th[i], NULL, bg_main, bg) == 0)
            bg->n++;
    assert_int_equal(bg->n, BG_CLIENTS);
}

void bg_wait_ok(bg_load *bg, uint64_t more)
{
    uint64_t target = atomic_load(&bg->ok) + more;
    double end = dh_now_ms() + BG_WAIT_MS;
    while (atomic_load(&bg->ok) < target) {
        if (dh_now_ms() > end)
            fail_msg("the background load made no progress (%llu ok, bad: %s)", (unsigned long long)atomic_load(&bg->ok),
                     bg->first_bad);
        dh_sleep_ms(10);
    }
}

void bg_stop(bg_load *bg, const qi_code *allowed)
{
    atomic_store(&bg->stop, true);
    for (int i = 0; i < bg->n; i++)
        pthread_join(bg->th[i], NULL);
    bg->n = 0;
    print_message("[   LOAD   ] %llu ok, %llu closed, %llu bad, %llu lost\n", (unsigned long long)atomic_load(&bg->ok),
                  (unsigned long long)atomic_load(&bg->closed), (unsigned long long)atomic_load(&bg->bad),
                  (unsigned long long)atomic_load(&bg->lost));
    if (atomic_load(&bg->bad))
        fail_msg("background load: %llu bad replies; the first: %s", (unsigned long long)atomic_load(&bg->bad),
                 bg->first_bad);
    for (int code = 1; code <= QI_ERR_UNKNOWN_CODE; code++) {
        uint64_t n = atomic_load(&bg->errs[code]);
        if (!n)
            continue;
        bool ok = false;
        for (const qi_code *a = allowed; a && *a != QI_OK; a++)
            ok = ok || *a == (qi_code)code;
        if (!ok)
            fail_msg("background load: %llu unexpected %s errors", (unsigned long long)n, qi_code_name((qi_code)code));
    }
    pthread_mutex_destroy(&bg->mu);
}
