/* corral-shim-holder: the protocol: replies, requests, the ops (holder.h). */
#include "holder.h"

/* ---- replies ------------------------------------------------------------------------- */

void send_frame(conn_t *c, const buf_t *body) {
    if (!c || c->fd < 0) return;
    buf_t f = {0};
    if (body->len > MAX_FRAME) {
        buf_t err = {0};
        buf_fmt(&err, "{\"ok\":false,\"error\":\"reply of %zu bytes exceeds %d\"}", body->len,
                MAX_FRAME);
        send_frame(c, &err);
        buf_free(&err);
        return;
    }
    buf_fmt(&f, "%zu\n", body->len);
    buf_add(&f, body->p, body->len);
    int flags = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
    for (size_t off = 0; off < f.len;) {
        ssize_t n = send(c->fd, f.p + off, f.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    fcntl(c->fd, F_SETFL, flags);
    buf_free(&f);
}

void send_ok(conn_t *c, const char *fields) {  /* {"ok":true<fields>} */
    buf_t b = {0};
    buf_str(&b, "{\"ok\":true");
    buf_str(&b, fields);
    buf_str(&b, "}");
    send_frame(c, &b);
    buf_free(&b);
}

void send_error(conn_t *c, const char *msg) {
    buf_t b = {0};
    buf_str(&b, "{\"ok\":false,\"error\":");
    buf_json_str(&b, msg, strlen(msg));
    buf_str(&b, "}");
    send_frame(c, &b);
    buf_free(&b);
}

/* {"ok":true,"tty":...} with a copy of FD attached (SCM_RIGHTS), in one sendmsg. */
static int send_ok_fd(conn_t *c, const char *fields, int fd) {
    buf_t body = {0}, f = {0};
    buf_str(&body, "{\"ok\":true");
    buf_str(&body, fields);
    buf_str(&body, "}");
    buf_fmt(&f, "%zu\n", body.len);
    buf_add(&f, body.p, body.len);
    buf_free(&body);
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {f.p, f.len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    int flags = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
    ssize_t n;
    while ((n = sendmsg(c->fd, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    for (size_t off = n > 0 ? (size_t)n : f.len; off < f.len;) {  /* the rest, if cut */
        ssize_t m = send(c->fd, f.p + off, f.len - off, MSG_NOSIGNAL);
        if (m < 0 && errno == EINTR) continue;
        if (m <= 0) break;
        off += (size_t)m;
    }
    fcntl(c->fd, F_SETFL, flags);
    buf_free(&f);
    return n > 0 ? 0 : -1;
}

const char *exit_or_null(void) { return exit_json.len ? exit_json.p : "null"; }

/* ---- requests: a JSON object's top-level members, values kept as raw spans ----------- */

typedef struct { const char *p; size_t n; } span_t;
enum { K_OP, K_SIGNAL, K_ALL, K_FORCE, K_SHUTDOWN, K_PROCESS, K_EXEC_TIMEOUT, K_COUNT };
static const char *const KEYS[K_COUNT] = {"op", "signal", "all", "force", "shutdown",
                                          "process", "exec_timeout"};

static const char *ws(const char *s, const char *end) {
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
    return s;
}

static const char *skip_string(const char *s, const char *end) {  /* s at the '"' */
    for (s++; s < end; s++) {
        if (*s == '\\') s++;
        else if (*s == '"') return s + 1;
    }
    return NULL;
}

static const char *skip_value(const char *s, const char *end, int depth) {
    s = ws(s, end);
    if (s >= end || depth > 64) return NULL;
    if (*s == '"') return skip_string(s, end);
    if (*s == '{' || *s == '[') {
        char close = *s == '{' ? '}' : ']';
        s = ws(s + 1, end);
        if (s < end && *s == close) return s + 1;
        for (;;) {
            if (close == '}') {
                if (s >= end || *s != '"' || !(s = skip_string(s, end))) return NULL;
                s = ws(s, end);
                if (s >= end || *s++ != ':') return NULL;
            }
            if (!(s = skip_value(s, end, depth + 1))) return NULL;
            s = ws(s, end);
            if (s < end && *s == ',') { s = ws(s + 1, end); continue; }
            return s < end && *s == close ? s + 1 : NULL;
        }
    }
    const char *start = s;  /* number, true, false, null */
    while (s < end && strchr("+-.0123456789eEtruefalsn", *s)) s++;
    return s > start ? s : NULL;
}

/* The members of the object in BODY that are KEYS; -1 if BODY is not a JSON object. */
static int parse_request(const char *body, size_t n, span_t *vals) {
    const char *s = ws(body, body + n), *end = body + n;
    memset(vals, 0, K_COUNT * sizeof *vals);
    if (s >= end || *s != '{') return -1;
    const char *after = skip_value(s, end, 0);
    if (!after || ws(after, end) != end) return -1;
    s = ws(s + 1, end);
    while (*s == '"') {
        const char *kend = skip_string(s, end);
        const char *v = ws(kend, end) + 1, *vend = skip_value(v, end, 1);
        v = ws(v, end);
        for (int k = 0; k < K_COUNT; k++)
            if ((size_t)(kend - s - 2) == strlen(KEYS[k]) && !memcmp(s + 1, KEYS[k], kend - s - 2))
                vals[k] = (span_t){v, (size_t)(vend - v)};
        s = ws(vend, end);
        if (*s == ',') s = ws(s + 1, end);
    }
    return 0;
}

static int is(span_t v, const char *lit) { return v.n == strlen(lit) && !memcmp(v.p, lit, v.n); }
static int truthy(span_t v) {
    return v.n && !is(v, "false") && !is(v, "null") && !is(v, "0") && !is(v, "\"\"");
}

/* ---- requests: the ops --------------------------------------------------------------- */

void handle(conn_t *c, const char *body, size_t n) {
    span_t v[K_COUNT];
    char err[4096] = "";
    if (parse_request(body, n, v) < 0) {
        send_error(c, "protocol: frame body is not a JSON object");
        return;
    }
    span_t op = v[K_OP];
    buf_t f = {0};
    if (is(op, "\"state\"")) {
        buf_fmt(&f, ",\"status\":\"%s\",\"pid\":%d,\"shim_pid\":%d,\"exit\":%s", status,
                (int)init_pid, (int)getpid(), exit_or_null());
        send_ok(c, f.p);
    } else if (is(op, "\"start\"")) {
        if (strcmp(status, "created") != 0) {
            snprintf(err, sizeof err, "container %s is %s, not created", id, status);
        } else {
            const char *args[] = {"start", id, NULL};
            if (run_runtime(args, NULL, err, sizeof err) == 0) {
                if (strcmp(status, "created") == 0) status = "running";
                send_ok(c, "");
            }
        }
    } else if (is(op, "\"kill\"")) {
        int sig = v[K_SIGNAL].n ? atoi(v[K_SIGNAL].p) : SIGTERM;
        int failed = 0;
        if (!exit_json.len) {
            if (truthy(v[K_ALL])) {
                char num[16];
                snprintf(num, sizeof num, "%d", sig);
                const char *args[] = {"kill", "--all", id, num, NULL};
                failed = run_runtime(args, NULL, err, sizeof err) != 0;
            } else if (kill(init_pid, sig) < 0) {  /* our child: the pid is not reused yet */
                snprintf(err, sizeof err, "kill %d: %s", (int)init_pid, strerror(errno));
                failed = 1;
            }
        }
        if (!failed) send_ok(c, exit_json.len ? ",\"exited\":true" : ",\"exited\":false");
    } else if (is(op, "\"exec\"")) {
        span_t t = v[K_EXEC_TIMEOUT];
        start_exec(c, v[K_PROCESS].p, v[K_PROCESS].n,
                   t.n && !is(t, "null") ? strtod(t.p, NULL) : 0, err, sizeof err);
    } else if (is(op, "\"wait\"")) {
        if (exit_json.len) {
            buf_fmt(&f, ",\"exit\":%s", exit_json.p);
            send_ok(c, f.p);
        } else {
            c->waiting = 1;
        }
    } else if (is(op, "\"delete\"")) {
        int force = truthy(v[K_FORCE]);
        if (!exit_json.len && !force) {
            snprintf(err, sizeof err, "container %s is %s: stop it first", id, status);
        } else {
            const char *args[] = {"delete", force ? "--force" : id, force ? id : NULL, NULL};
            if (run_runtime(args, NULL, err, sizeof err) == 0) {
                if (truthy(v[K_SHUTDOWN])) running = 0;  /* and exit: one call, not two */
                buf_fmt(&f, ",\"exit\":%s,\"shutdown\":%s", exit_or_null(),
                        running ? "false" : "true");
                send_ok(c, f.p);
            }
        }
    } else if (is(op, "\"reopen\"")) {
        if (exit_json.len) {
            snprintf(err, sizeof err, "container %s is %s, not running: its log is closed", id,
                     status);
        } else {
            int old = log_fd;
            long long old_size = log_size;
            open_log();  /* the new file first: a failure leaves the old one in use */
            if (log_fd < 0) {
                snprintf(err, sizeof err, "open %s: %s", log_path, strerror(errno));
                log_fd = old;
                log_size = old_size;
            } else {
                if (old >= 0) close(old);
                send_ok(c, "");
            }
        }
    } else if (is(op, "\"attach\"")) {  /* a copy of the container's stdin: shim/stdio.py */
        if (exit_json.len) {
            snprintf(err, sizeof err, "container %s is %s, not running", id, status);
        } else if (stdin_fd < 0) {
            snprintf(err, sizeof err, "container %s: stdin: %s", id, stdin_closed
                     ? "closed: stdin_once, and a session attached before"
                     : "the container was created without stdin");
        } else if (send_ok_fd(c, tty ? ",\"tty\":true" : ",\"tty\":false", stdin_fd) == 0
                   && stdin_once && !tty) {  /* EOF when that one session lets go */
            close(stdin_fd);
            stdin_fd = -1;
            stdin_closed = 1;
        }
    } else if (is(op, "\"shutdown\"")) {
        send_ok(c, "");
        running = 0;
    } else {
        if (!op.n || is(op, "null")) op = (span_t){"None", 4};
        snprintf(err, sizeof err, "unknown op %.*s; known: state, start, kill, exec, wait, "
                 "delete, shutdown, reopen, attach", (int)(op.n > 100 ? 100 : op.n), op.p);
    }
    if (err[0]) send_error(c, err);  /* every failure is an answer, never a dead shim */
    buf_free(&f);
}
