/* test_ipc_client.c: the client against real Unix sockets: a listening socket in a temporary
 * directory served by a small server thread built from the library's own server half (line
 * reader, request parser, reply builders), socketpairs for scripted peers, and every connect
 * failure a user can meet. No mocks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "client.h"
#include "line_reader.h"
#include "reply.h"
#include "request.h"

/* ---------------------------------------------------------------- a tiny server */

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the client went away: fine for a test server */
        s += w;
        n -= (size_t)w;
    }
}

static void send_line(int fd, char *line, size_t len)
{
    send_all(fd, line, len);
    free(line);
}

/* Answers one request the way qslmd will, with made-up results: generate echoes the prompt's
 * bytes as tokens (streamed or not); classify labels by length parity. */
static void answer(int fd, const qi_request *r)
{
    char *line;
    size_t len;
    qi_error e;
    switch (r->op) {
    case QI_OP_GENERATE: {
        const qi_generate *g = &r->u.generate;
        size_t n = strlen(g->prompt);
        if (n > g->max_tokens)
            n = g->max_tokens;
        for (size_t i = 0; g->stream && i < n; i++) {
            if (qi_reply_token(&r->id, g->prompt + i, 1, (int32_t)(unsigned char)g->prompt[i],
                               (uint32_t)i, &line, &len, &e) == QI_OK)
                send_line(fd, line, len);
        }
        qi_span span = {"f32", 0, (uint32_t)n};
        qi_gen_stats st = {.tokens = (uint32_t)n, .ms = 1.5, .tokens_per_s = n / 0.0015,
                           .stop_reason = QI_STOP_LENGTH, .spans = &span, .n_spans = 1};
        if (qi_reply_done(&r->id, g->prompt, n, &st, &line, &len, &e) == QI_OK)
            send_line(fd, line, len);
        break;
    }
    case QI_OP_CLASSIFY: {
        qi_class_result res[QI_TEXTS_MAX];
        float probs[QI_TEXTS_MAX][2];
        for (size_t i = 0; i < r->u.classify.n_texts; i++) {
            int odd = strlen(r->u.classify.texts[i]) % 2;
            probs[i][0] = odd ? 0.25f : 0.75f;
            probs[i][1] = 1 - probs[i][0];
            res[i] = (qi_class_result){odd, probs[i], 2};
        }
        static const char *const names[] = {"even", "odd"};
        const qi_class_head hd = {r->u.classify.task ? r->u.classify.task : "parity", names, 2};
        if (qi_reply_classify(&r->id, &hd, res, r->u.classify.n_texts, &line, &len, &e) == QI_OK)
            send_line(fd, line, len);
        break;
    }
    case QI_OP_CANCEL:
        if (qi_reply_cancel(&r->id, false, &line, &len, &e) == QI_OK)
            send_line(fd, line, len);
        break;
    default:
        if (qi_reply_pin(&r->id, NULL, &line, &len, &e) == QI_OK)
            send_line(fd, line, len);
        break;
    }
}

/* Serves one connection until the client closes it. An over-long line gets too_large and
 * the connection is closed, as PROTOCOL.md says. Small reads, to exercise the framing. */
static void serve_connection(int fd)
{
    qi_line_reader *lr;
    qi_error e;
    if (qi_line_reader_new(256, &lr, &e) != QI_OK)
        return;
    qi_limits lim = qi_limits_default();
    lim.max_line = 256;
    char buf[64];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        for (size_t off = 0, used; off < (size_t)n; off += used) {
            const char *text;
            size_t text_len;
            char *line;
            size_t len;
            qi_line_event ev = qi_line_reader_feed(lr, buf + off, (size_t)n - off, &used, &text,
                                                   &text_len);
            if (ev == QI_LINE_TOO_LARGE) {
                qi_id none = qi_id_none();
                if (qi_reply_error(&none, QI_ERR_TOO_LARGE, NULL, "line longer than 256 bytes",
                                   &line, &len, &e) == QI_OK)
                    send_line(fd, line, len);
                goto out;
            }
            if (ev != QI_LINE_READY)
                continue;
            qi_request r;
            if (qi_request_parse(text, text_len, &lim, &r, &e) != QI_OK) {
                if (qi_reply_error_from(&r.id, &e, &line, &len, &e) == QI_OK)
                    send_line(fd, line, len);
                continue;
            }
            answer(fd, &r);
            qi_request_free(&r);
        }
    }
out:
    qi_line_reader_free(lr);
}

typedef struct {
    char dir[64];
    char path[128];
    int listen_fd;
    pthread_t thread;
} server;

static void *accept_one(void *arg)
{
    server *s = arg;
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        serve_connection(fd);
        close(fd);
    }
    return NULL;
}

/* Binds a socket in a fresh temporary directory; listens unless told not to. */
static void server_bind(server *s, bool listen_too)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/qi-client-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->path, sizeof s->path, "%s/qslmd.sock", s->dir);
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->listen_fd >= 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    assert_true(strlen(s->path) < sizeof addr.sun_path);
    memcpy(addr.sun_path, s->path, strlen(s->path) + 1);
    assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr), 0);
    if (listen_too)
        assert_int_equal(listen(s->listen_fd, 8), 0);
}

static void server_start(server *s)
{
    server_bind(s, true);
    assert_int_equal(pthread_create(&s->thread, NULL, accept_one, s), 0);
}

static void server_cleanup(server *s)
{
    close(s->listen_fd);
    unlink(s->path);
    rmdir(s->dir);
}

static void server_stop(server *s)
{
    pthread_join(s->thread, NULL);
    server_cleanup(s);
}

static qi_client *connect_to(const char *path)
{
    qi_client *c;
    qi_error e;
    if (qi_client_connect(path, &c, &e) != QI_OK)
        fail_msg("connect %s: %s", path, e.msg);
    return c;
}

static qi_reply read_reply(qi_client *c)
{
    qi_reply r;
    qi_error e;
    qi_code code = qi_client_read_reply(c, 5000, &r, &e);
    if (code != QI_OK)
        fail_msg("read: %s (%s)", e.msg, qi_code_name(code));
    return r;
}

static void send_req(qi_client *c, const char *line)
{
    qi_error e;
    if (qi_client_send_line(c, line, strlen(line), &e) != QI_OK)
        fail_msg("send: %s", e.msg);
}

/* ---------------------------------------------------------------- tests over a socket path */

static void test_generate_stream(void **state)
{
    (void)state;
    server s;
    server_start(&s);
    qi_client *c = connect_to(s.path);
    qi_id id;
    assert_true(qi_id_set_string(&id, "g1"));
    qi_request req;
    qi_request_init(&req, QI_OP_GENERATE, &id, NULL);
    req.u.generate.prompt = "Hello";
    req.u.generate.stream = true;
    qi_error e;
    assert_int_equal(qi_client_send(c, &req, &e), QI_OK);
    char text[16] = "";
    for (uint32_t i = 0; i < 5; i++) {
        qi_reply r = read_reply(c);
        assert_int_equal(r.kind, QI_REPLY_TOKEN);
        assert_true(qi_id_equal(&r.id, &id));
        assert_int_equal(r.index, i);
        strncat(text, r.text, r.text_len);
        qi_reply_free(&r);
    }
    qi_reply r = read_reply(c);
    assert_int_equal(r.kind, QI_REPLY_DONE);
    assert_string_equal(r.text, "Hello");
    assert_string_equal(text, "Hello");
    assert_int_equal(r.stats.tokens, 5);
    assert_string_equal(r.stats.spans[0].variant, "f32");
    qi_reply_free(&r);
    qi_client_close(c);
    server_stop(&s);
}

/* Pipelining: several requests sent before any reply is read; every id gets its one final
 * reply, in its own JSON type; a bad line in the middle gets its error and the connection
 * stays usable. */
static void test_pipelined(void **state)
{
    (void)state;
    server s;
    server_start(&s);
    qi_client *c = connect_to(s.path);
    send_req(c, "{\"id\":1,\"op\":\"generate\",\"prompt\":\"abc\"}");
    send_req(c, "{\"id\":\"1\",\"op\":\"classify\",\"texts\":[\"ab\",\"abc\"]}");
    send_req(c, "{\"id\":2,\"op\":\"generate\",\"prompt\":\"xy\",\"stream\":true}\n");
    send_req(c, "this is not json");
    send_req(c, "{\"id\":3,\"op\":\"warp\"}");
    send_req(c, "{\"id\":4,\"op\":\"generate\",\"prompt\":\"p\",\"top_p\":2}");
    send_req(c, "{\"id\":5,\"op\":\"cancel\",\"target\":1}");
    send_req(c, "{\"id\":6,\"op\":\"status\"}");

    qi_reply r = read_reply(c);
    assert_int_equal(r.kind, QI_REPLY_DONE);
    assert_int_equal(r.id.kind, QI_ID_INT);
    assert_string_equal(r.text, "abc");
    qi_reply_free(&r);

    r = read_reply(c);
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    assert_int_equal(r.id.kind, QI_ID_STRING);
    assert_string_equal(r.id.str, "1");
    json_object *results;
    assert_true(json_object_object_get_ex(r.body, "results", &results));
    assert_int_equal(json_object_array_length(results), 2);
    qi_reply_free(&r);

    for (int i = 0; i < 2; i++) {
        r = read_reply(c);
        assert_int_equal(r.kind, QI_REPLY_TOKEN);
        assert_int_equal(r.id.num, 2);
        qi_reply_free(&r);
    }
    r = read_reply(c);
    assert_int_equal(r.kind, QI_REPLY_DONE);
    qi_reply_free(&r);

    r = read_reply(c);
    assert_int_equal(r.kind, QI_REPLY_ERROR);
    assert_int_equal(r.code, QI_ERR_INVALID_JSON);
    assert_int_equal(r.id.kind, QI_ID_NONE);
    qi_reply_free(&r);
    r = read_reply(c);
    assert_int_equal(r.code, QI_ERR_UNKNOWN_OP);
    assert_int_equal(r.id.num, 3);
    qi_reply_free(&r);
    r = read_reply(c);
    assert_int_equal(r.code, QI_ERR_INVALID_ARGUMENT);
    assert_string_equal(r.field, "top_p");
    assert_int_equal(r.id.num, 4);
    qi_reply_free(&r);
    r = read_reply(c);
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    assert_int_equal(r.id.num, 5);
    qi_reply_free(&r);
    r = read_reply(c);
    assert_int_equal(r.id.num, 6);
    qi_reply_free(&r);
    qi_client_close(c);
    server_stop(&s);
}

/* An over-long line: too_large with a null id, then the server hangs up. The server may hang
 * up before the client has written all of the line (it stops reading at its limit), so the
 * send may end in QI_ERR_CLOSED; the reply is in the client's receive queue either way, and
 * reading it after a closed send is what qslmctl does. */
static void test_oversize_line(void **state)
{
    (void)state;
    server s;
    server_start(&s);
    qi_client *c = connect_to(s.path);
    static char big[1 << 20]; /* far over the socket buffer: the send does end early */
    for (int round = 0; round < 2; round++) {
        size_t len = round == 0 ? 1000 : sizeof big;
        memset(big, 'x', len);
        qi_error se;
        qi_code sent = qi_client_send_line(c, big, len, &se);
        assert_true(sent == QI_OK || sent == QI_ERR_CLOSED);
        if (round == 1)
            assert_int_equal(sent, QI_ERR_CLOSED);
        qi_reply r = read_reply(c);
        assert_int_equal(r.kind, QI_REPLY_ERROR);
        assert_int_equal(r.code, QI_ERR_TOO_LARGE);
        assert_int_equal(r.id.kind, QI_ID_NONE);
        qi_reply_free(&r);
        qi_error e;
        assert_int_equal(qi_client_read_reply(c, 5000, &r, &e), QI_ERR_CLOSED);
        qi_client_close(c);
        server_stop(&s);
        if (round == 0) {
            server_start(&s);
            c = connect_to(s.path);
        }
    }
}

/* A line far larger than the socket buffer reaches the peer whole, newline last, through
 * the client's short writes. */
static void *drain_line(void *arg)
{
    int fd = *(int *)arg;
    size_t total = 0, newlines = 0;
    bool newline_last = false;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            newlines += buf[i] == '\n';
        total += (size_t)n;
        newline_last = buf[n - 1] == '\n';
    }
    size_t *out = malloc(2 * sizeof *out);
    out[0] = total;
    out[1] = newlines == 1 && newline_last;
    return out;
}

static void test_short_writes(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int small = 4096;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    qi_client *c;
    qi_error e;
    assert_int_equal(qi_client_from_fd(sv[0], 1024, &c, &e), QI_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_line, &sv[1]), 0);
    size_t len = 3 << 20;
    char *line = malloc(len);
    assert_non_null(line);
    memset(line, 'y', len);
    assert_int_equal(qi_client_send_line(c, line, len, &e), QI_OK);
    free(line);
    qi_client_close(c); /* the peer sees EOF */
    void *res;
    pthread_join(t, &res);
    size_t *got = res;
    assert_int_equal(got[0], len + 1);
    assert_int_equal(got[1], 1);
    free(got);
    close(sv[1]);
}

static void test_send_rules(void **state)
{
    (void)state;
    server s;
    server_start(&s);
    qi_client *c = connect_to(s.path);
    qi_error e;
    assert_int_equal(qi_client_send_line(c, "{\"id\":1,\n\"op\":\"status\"}", 24, &e),
                     QI_ERR_INVALID_ARGUMENT);
    qi_request req;
    qi_request_init(&req, QI_OP_STATUS, NULL, NULL); /* no id: refused before sending */
    assert_int_equal(qi_client_send(c, &req, &e), QI_ERR_INVALID_ARGUMENT);
    assert_string_equal(e.field, "id");
    send_req(c, "{\"id\":1,\"op\":\"status\"}");
    qi_reply r = read_reply(c);
    assert_int_equal(r.id.num, 1); /* nothing stray was sent before it */
    qi_reply_free(&r);
    assert_true(qi_client_fd(c) >= 0);
    qi_client_close(c);
    server_stop(&s);
}

/* ---------------------------------------------------------------- connect failures */

static void expect_connect(const char *path, qi_code want)
{
    qi_client *c = (qi_client *)1;
    qi_error e;
    qi_code got = qi_client_connect(path, &c, &e);
    if (got != want)
        fail_msg("connect %s: %s (%s), want %s", path, qi_code_name(got), got ? e.msg : "",
                 qi_code_name(want));
    assert_null(c);
    if (want != QI_ERR_INVALID_ARGUMENT)
        assert_non_null(strstr(e.msg, path)); /* the message names the socket */
}

static void test_connect_errors(void **state)
{
    (void)state;
    server s;
    server_bind(&s, false); /* a socket file nobody listens on: a stale socket */
    expect_connect(s.path, QI_ERR_REFUSED);
    char path[200];
    snprintf(path, sizeof path, "%s/missing.sock", s.dir);
    expect_connect(path, QI_ERR_NO_SOCKET);
    snprintf(path, sizeof path, "%s/no/such/dir.sock", s.dir);
    expect_connect(path, QI_ERR_NO_SOCKET);
    snprintf(path, sizeof path, "%s/plain-file", s.dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    assert_true(fd >= 0);
    close(fd);
    expect_connect(path, QI_ERR_REFUSED); /* not a socket */
    char file_as_dir[220];
    snprintf(file_as_dir, sizeof file_as_dir, "%s/x.sock", path);
    expect_connect(file_as_dir, QI_ERR_NO_SOCKET); /* ENOTDIR */
    unlink(path);
    expect_connect("", QI_ERR_INVALID_ARGUMENT);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    expect_connect(longp, QI_ERR_INVALID_ARGUMENT);
    server_cleanup(&s);
}

/* Permission denied on the socket itself. As root (who passes every permission check) the
 * connect runs in a child that has become nobody. */
static void test_connect_permission(void **state)
{
    (void)state;
    server s;
    server_bind(&s, true);
    if (geteuid() == 0) {
        assert_int_equal(chmod(s.dir, 0711), 0); /* the directory is not the obstacle */
        assert_int_equal(chmod(s.path, 0600), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(100);
            qi_client *c;
            qi_error e;
            _exit((int)qi_client_connect(s.path, &c, &e));
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), QI_ERR_ACCESS);
    } else {
        assert_int_equal(chmod(s.path, 0), 0);
        expect_connect(s.path, QI_ERR_ACCESS);
    }
    server_cleanup(&s);
}

/* ---------------------------------------------------------------- scripted peers */

typedef struct {
    int fd;
    const char *const *chunks; /* written in order, with a pause after each */
    size_t n;
    int pause_ms;
    bool drain;                /* read everything the client sends before closing */
} script;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void *run_script(void *arg)
{
    script *s = arg;
    for (size_t i = 0; i < s->n; i++) {
        send_all(s->fd, s->chunks[i], strlen(s->chunks[i]));
        sleep_ms(s->pause_ms);
    }
    if (s->drain) {
        char buf[256];
        while (recv(s->fd, buf, sizeof buf, 0) > 0) {
        }
    }
    close(s->fd);
    return NULL;
}

/* A client on one end of a socketpair, a script on the other. */
static qi_client *paired(script *s, size_t max_reply, pthread_t *t)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    s->fd = sv[1];
    qi_client *c;
    qi_error e;
    assert_int_equal(qi_client_from_fd(sv[0], max_reply, &c, &e), QI_OK);
    assert_int_equal(pthread_create(t, NULL, run_script, s), 0);
    return c;
}

/* A reply that arrives in pieces, slower than the timeout: the timeout fires, the bytes read
 * so far are kept, and the next read returns the whole line. */
static void test_timeout_keeps_partial(void **state)
{
    (void)state;
    static const char *const chunks[] = {"{\"id\":1,\"ok\"", ":true}\n"};
    script sc = {.chunks = chunks, .n = 2, .pause_ms = 300};
    pthread_t t;
    qi_client *c = paired(&sc, 0, &t);
    const char *line;
    size_t len;
    qi_error e;
    assert_int_equal(qi_client_read_line(c, 100, &line, &len, &e), QI_ERR_TIMEOUT);
    assert_int_equal(qi_client_read_line(c, 5000, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":1,\"ok\":true}");
    assert_int_equal(qi_client_read_line(c, 5000, &line, &len, &e), QI_ERR_CLOSED);
    pthread_join(t, NULL);
    qi_client_close(c);
}

/* A timeout of 0 takes what has already arrived (it polls once); qi_client_has_buffered says
 * when a second line waits in the client's buffer, where poll on the socket cannot see it. */
static void test_timeout_zero_reads_arrived(void **state)
{
    (void)state;
    static const char *const chunks[] = {"{\"id\":1,\"ok\":true}\n{\"id\":2,\"ok\":true}\n"};
    script sc = {.chunks = chunks, .n = 1};
    pthread_t t;
    qi_client *c = paired(&sc, 0, &t);
    const char *line;
    size_t len;
    qi_error e;
    pthread_join(t, NULL); /* both lines are in the socket now */
    assert_false(qi_client_has_buffered(c));
    assert_int_equal(qi_client_read_line(c, 0, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":1,\"ok\":true}");
    assert_true(qi_client_has_buffered(c));
    assert_int_equal(qi_client_read_line(c, 0, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":2,\"ok\":true}");
    assert_false(qi_client_has_buffered(c));
    assert_int_equal(qi_client_read_line(c, 0, &line, &len, &e), QI_ERR_CLOSED);
    qi_client_close(c);
}

/* The server dies in the middle of a reply. */
static void test_closed_mid_line(void **state)
{
    (void)state;
    static const char *const chunks[] = {"{\"id\":1,\"event\":\"token\",\"te"};
    script sc = {.chunks = chunks, .n = 1};
    pthread_t t;
    qi_client *c = paired(&sc, 0, &t);
    qi_reply r;
    qi_error e;
    assert_int_equal(qi_client_read_reply(c, 5000, &r, &e), QI_ERR_CLOSED);
    assert_non_null(strstr(e.msg, "middle"));
    pthread_join(t, NULL);
    qi_client_close(c);
}

/* A reply longer than the client accepts is refused, skipped, and the next one read; a reply
 * that is not valid protocol is refused without ending the connection. */
static void test_long_and_bad_replies(void **state)
{
    (void)state;
    static char big[300];
    memset(big, 'x', sizeof big - 2);
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = '\0';
    static const char *const chunks[] = {big, "{\"id\":2,\"ok\":true}\n", "[1,2]\n",
                                         "{\"id\":3,\"ok\":true}\n"};
    script sc = {.chunks = chunks, .n = 4};
    pthread_t t;
    qi_client *c = paired(&sc, 100, &t);
    qi_reply r;
    qi_error e;
    assert_int_equal(qi_client_read_reply(c, 5000, &r, &e), QI_ERR_PROTOCOL);
    r = read_reply(c);
    assert_int_equal(r.id.num, 2);
    qi_reply_free(&r);
    assert_int_equal(qi_client_read_reply(c, 5000, &r, &e), QI_ERR_PROTOCOL);
    r = read_reply(c);
    assert_int_equal(r.id.num, 3);
    qi_reply_free(&r);
    pthread_join(t, NULL);
    qi_client_close(c);
}

/* Writing to a server that has gone: an error, not a SIGPIPE that kills the client. */
static void test_send_after_close(void **state)
{
    (void)state;
    script sc = {.n = 0};
    pthread_t t;
    qi_client *c = paired(&sc, 0, &t);
    pthread_join(t, NULL); /* the peer has closed */
    qi_error e;
    qi_code code = QI_OK;
    for (int i = 0; i < 100 && code == QI_OK; i++) /* the first writes may still be buffered */
        code = qi_client_send_line(c, "{\"id\":1,\"op\":\"status\"}", 23, &e);
    assert_int_equal(code, QI_ERR_CLOSED);
    qi_client_close(c);
}

/* Many lines in one read, the last one split across reads, a megabyte-long request. */
static void test_bulk(void **state)
{
    (void)state;
    server s;
    server_start(&s);
    qi_client *c = connect_to(s.path);
    /* 200 requests in one go: the server's replies arrive packed together. */
    char *batch = malloc(200 * 64);
    assert_non_null(batch);
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)sprintf(batch + n, "{\"id\":%d,\"op\":\"classify\",\"text\":\"t%d\"}\n", i, i);
    qi_error e;
    assert_int_equal(qi_client_send_line(c, batch, n, &e), QI_ERR_INVALID_ARGUMENT);
    /* send_line takes one line; a caller with a batch writes it itself */
    send_all(qi_client_fd(c), batch, n);
    free(batch);
    for (int i = 0; i < 200; i++) {
        qi_reply r = read_reply(c);
        assert_int_equal(r.kind, QI_REPLY_RESULT);
        assert_int_equal(r.id.num, (uint64_t)i);
        qi_reply_free(&r);
    }
    qi_client_close(c);
    server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_stream),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_oversize_line),
        cmocka_unit_test(test_short_writes),
        cmocka_unit_test(test_send_rules),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_connect_permission),
        cmocka_unit_test(test_timeout_keeps_partial),
        cmocka_unit_test(test_timeout_zero_reads_arrived),
        cmocka_unit_test(test_closed_mid_line),
        cmocka_unit_test(test_long_and_bad_replies),
        cmocka_unit_test(test_send_after_close),
        cmocka_unit_test(test_bulk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
