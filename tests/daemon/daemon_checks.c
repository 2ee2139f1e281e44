/* daemon_checks.c: cmocka assertions around daemon_harness and the ipc client (daemon_checks.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "daemon_checks.h"
#include "reply_parse.h"

int dc_read_timeout_ms = 30000;

/* ---------------------------------------------------------------- fixture */

int dc_init(dh_daemon *h)
{
    if (dh_init(h) != 0) {
        print_error("setup: %s\n", h->err);
        return -1;
    }
    return 0;
}

int dc_start(dh_daemon *h, const char *const *extra)
{
    if (dh_start(h, extra) != 0) {
        print_error("setup: %s\n", h->err);
        return -1;
    }
    return 0;
}

int dc_setup_started(void **state, const char *const *extra)
{
    dh_daemon *h = calloc(1, sizeof *h);
    if (!h || dc_init(h) != 0 || dc_start(h, extra) != 0) {
        free(h);
        return -1;
    }
    *state = h;
    return 0;
}

bool dc_log_has_report(const char *log)
{
    if (strstr(log, "Sanitizer") || strstr(log, "runtime error:") || strstr(log, "Invalid read") ||
        strstr(log, "Invalid write"))
        return true;
    /* valgrind's leak summary: "definitely lost: 0 bytes" is clean unless another memcheck
     * error ("Invalid free()", ...) stands beside it */
    const char *dl = strstr(log, "definitely lost: ");
    return dl && (strncmp(dl, "definitely lost: 0 bytes", 24) != 0 || strstr(log, "Invalid "));
}

int dc_finish(dh_daemon *h)
{
    int rc = 0;
    if (h->pid > 0) {
        int st = dh_stop(h);
        if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            print_error("teardown: qslmd did not exit 0 after SIGTERM (wait status %#x)\n", (unsigned)st);
            rc = -1;
        }
    }
    char *log = h->dir[0] ? dh_read_log(h) : NULL;
    if (log && dc_log_has_report(log)) {
        print_error("teardown: a sanitizer or memcheck report in qslmd's stderr\n");
        rc = -1;
    }
    if (rc != 0 && log)
        print_error("--- qslmd's stderr:\n%s\n", log);
    free(log);
    dh_teardown(h);
    return rc;
}

/* ---------------------------------------------------------------- wire */

qi_client *connect_or_fail(dh_daemon *h)
{
    qi_client *c = dh_connect(h);
    if (!c)
        fail_msg("%s", h->err);
    return c;
}

void send_vf(qi_client *c, const char *fmt, va_list ap)
{
    char *line = NULL;
    int n = vasprintf(&line, fmt, ap);
    assert_true(n >= 0);
    qi_error e;
    qi_code rc = qi_client_send_line(c, line, (size_t)n, &e);
    free(line);
    if (rc != QI_OK)
        fail_msg("send: %s", e.msg);
}

void sendf(qi_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_vf(c, fmt, ap);
    va_end(ap);
}

void read_reply(qi_client *c, qi_reply *r)
{
    qi_error e;
    qi_code rc = qi_client_read_reply(c, dc_read_timeout_ms, r, &e);
    if (rc != QI_OK)
        fail_msg("reading a reply: %s (%s)", qi_code_name(rc), e.msg);
}

void rpc(qi_client *c, qi_reply *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_vf(c, fmt, ap);
    va_end(ap);
    read_reply(c, r);
    assert_true(qi_reply_is_final(r));
}

void rpc_final(qi_client *c, qi_reply *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_vf(c, fmt, ap);
    va_end(ap);
    for (;;) {
        read_reply(c, r);
        if (qi_reply_is_final(r))
            return;
        qi_reply_free(r);
    }
}

bool id_is_str(const qi_id *id, const char *s)
{
    return id->kind == QI_ID_STRING && strcmp(id->str, s) == 0;
}

bool id_is_int(const qi_id *id, uint64_t n)
{
    return id->kind == QI_ID_INT && id->num == n;
}

void expect_error(const qi_reply *r, qi_code code, const char *field)
{
    if (r->kind != QI_REPLY_ERROR)
        fail_msg("expected the error %s, got %s", qi_code_name(code), json_object_to_json_string(r->body));
    if (r->code != code)
        fail_msg("expected the error %s, got %s (%s)", qi_code_name(code), r->code_name, r->message);
    assert_non_null(r->message);
    assert_true(r->message[0] != '\0');
    if (field) {
        if (!r->field || strcmp(r->field, field) != 0)
            fail_msg("error %s: expected field '%s', got '%s' (%s)", r->code_name, field,
                     r->field ? r->field : "(none)", r->message);
        assert_true(strncmp(r->message, field, strlen(field)) == 0); /* the message names it */
    } else {
        assert_null(r->field);
    }
}

/* ---------------------------------------------------------------- JSON */

json_object *jget(json_object *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save)) {
        json_object *v = NULL;
        if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, k, &v))
            return NULL;
        o = v;
    }
    return o;
}

const char *jstr(json_object *o, const char *path)
{
    json_object *v = jget(o, path);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

void assert_jstr(json_object *o, const char *path, const char *want)
{
    const char *v = jstr(o, path);
    if (!v || strcmp(v, want) != 0)
        fail_msg("%s: expected \"%s\" in %s", path, want, json_object_to_json_string(o));
}

int64_t jint(json_object *o, const char *path)
{
    json_object *v = jget(o, path);
    if (!v || !json_object_is_type(v, json_type_int))
        fail_msg("%s: not an integer in %s", path, json_object_to_json_string(o));
    return json_object_get_int64(v);
}

bool jbool(json_object *o, const char *path)
{
    json_object *v = jget(o, path);
    if (!v || !json_object_is_type(v, json_type_boolean))
        fail_msg("%s: not a boolean in %s", path, json_object_to_json_string(o));
    return json_object_get_boolean(v);
}

/* jget cannot tell null from absent (both NULL): look the last key up in its parent. */
bool jnull(json_object *o, const char *path)
{
    json_object *v = (json_object *)1;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *dot = strrchr(buf, '.');
    json_object *parent = o;
    const char *key = buf;
    if (dot) {
        *dot = '\0';
        parent = jget(o, buf);
        key = dot + 1;
    }
    return parent && json_object_object_get_ex(parent, key, &v) && v == NULL;
}

/* ---------------------------------------------------------------- status */

void status(qi_client *c, qi_reply *r)
{
    rpc(c, r, "{\"id\":\"st\",\"op\":\"status\"}");
    if (r->kind != QI_REPLY_RESULT)
        fail_msg("status: %s", r->message ? r->message : "not a result");
    assert_true(id_is_str(&r->id, "st"));
    assert_int_equal(jint(r->body, "protocol"), QI_PROTOCOL_VERSION);
}

int64_t counter(json_object *st, const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "counters.%s", name);
    return jint(st, path);
}

double wait_active(qi_client *c, const char *want, int pinned, int timeout_ms)
{
    double t0 = dh_now_ms(), end = t0 + timeout_ms;
    for (;;) {
        qi_reply r;
        status(c, &r);
        const char *v = jstr(r.body, "active.variant");
        bool ok = want ? v && strcmp(v, want) == 0 : jnull(r.body, "active.variant");
        if (ok && pinned >= 0)
            ok = jbool(r.body, "active.pinned") == (pinned == 1);
        if (ok) {
            qi_reply_free(&r);
            return dh_now_ms() - t0;
        }
        if (dh_now_ms() > end) {
            char *last = strdup(json_object_to_json_string(r.body));
            qi_reply_free(&r);
            fail_msg("active variant is not %s after %d ms; last status: %s", want ? want : "null", timeout_ms,
                     last);
        }
        qi_reply_free(&r);
        dh_sleep_ms(20);
    }
}

long rss_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl) && line[fl] == ':')
            kb = strtol(line + fl + 1, NULL, 10);
    fclose(f);
    return kb;
}

void set_memory_budget(qi_client *c, uint64_t bytes)
{
    qi_reply r;
    if (bytes)
        rpc(c, &r, "{\"id\":\"b\",\"op\":\"set-budget\",\"memory\":%llu}", (unsigned long long)bytes);
    else
        rpc(c, &r, "{\"id\":\"b\",\"op\":\"set-budget\",\"memory\":\"auto\"}");
    if (r.kind != QI_REPLY_RESULT || !jbool(r.body, "ok"))
        fail_msg("set-budget %llu: %s", (unsigned long long)bytes, json_object_to_json_string(r.body));
    if (bytes)
        assert_int_equal(jint(r.body, "memory_bytes"), bytes);
    else
        assert_true(jnull(r.body, "memory_bytes"));
    qi_reply_free(&r);
}
