/* corral-shim-holder: the shim's loop once its container runs, as a small C program.
 *
 *   main.py (Python): fork, setsid, subreaper, `runtime create|run`, listen, "ok <pid>"
 *      │  once the container runs: execve(corral-shim-holder ARGS) - same pid, same
 *      │  subreaper role, the listening socket, stdio pipes, log file and open
 *      ▼  connections passed by fd number (see Shim.hand_over in main.py)
 *   holder: poll(listener, connections, stdout/stderr pipes, exec pipes, signalfd)
 *      pipes      -> CRI log lines (RFC 3339 nano time, stream, P|F) appended to the
 *                    log file, rotated by size to LOG.1 as the Python shim does
 *      SIGCHLD    -> reap; init's exit (code, time, OOMKilled from the memory cgroup)
 *                    written to exit.json atomically, "wait" callers answered
 *      requests   -> state / start / kill / exec / wait / delete / shutdown / reopen,
 *                    protocol.py's frames (ASCII length "\n" JSON object); the ops that
 *                    need the runtime ask the daemon's fork server to run it in a
 *                    forked, preloaded interpreter (--runtime-server, runcall.c: for
 *                    corral-runc), else, or when no fork server answers, fork and exec it
 *
 * A forked CPython keeps ~1.5 MB of pages dirty per shim; this keeps a few pages.
 * C11 and libc only. Usage (all fds are numbers of descriptors open in the holder):
 *   corral-shim-holder --id ID --init-pid N --status running|created --listen FD
 *     --log-fd FD --log-path P --log-max N --stdout FD --stderr FD [--memory-cgroup DIR]
 *     [--pending-stdout HEX] [--pending-stderr HEX] [--conn FD]... [--waiter FD]...
 *     [--runtime-server SOCKET] -- RUNTIME [GLOBAL OPTIONS...]
 *
 * exec through the fork server: `RUNTIME exec` without --detach, which waits for the
 * process and exits with its code (the process is the runtime's child, not ours); the
 * reply goes out when the fork server reports the runtime's end; a timeout kills the pid
 * the runtime wrote to --pid-file. Through fork+exec: `exec --detach`, and the process,
 * orphaned, is our child (we are a subreaper).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runcall.h"

#define MAX_FRAME (1 << 20)
#define MAX_LINE 16384
#define EXEC_OUTPUT_MAX (16 << 20)
#define SOCKET_NAME "shim.sock"
#define EXIT_NAME "exit.json"

typedef struct { char *p; size_t len, cap; } buf_t;

static void die(const char *what) { perror(what); exit(1); }

static void buf_add(buf_t *b, const void *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) die("realloc");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void buf_str(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }
static void buf_fmt(buf_t *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}
static void buf_drop(buf_t *b, size_t n) {  /* remove the first n bytes */
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}
static void buf_free(buf_t *b) { free(b->p); b->p = NULL; b->len = b->cap = 0; }

/* A JSON string: ASCII only (bytes >= 0x80 become '?', so any reply is valid UTF-8). */
static void buf_json_str(buf_t *b, const char *s, size_t n) {
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { buf_add(b, "\\", 1); buf_add(b, &s[i], 1); }
        else if (c < 0x20) buf_fmt(b, "\\u%04x", c);
        else if (c >= 0x80) buf_add(b, "?", 1);
        else buf_add(b, &s[i], 1);
    }
    buf_add(b, "\"", 1);
}

static void buf_base64(buf_t *b, const char *s, size_t n) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < n) v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)s[i + 2];
        char out[4] = {T[v >> 18], T[(v >> 12) & 63], i + 1 < n ? T[(v >> 6) & 63] : '=',
                       i + 2 < n ? T[v & 63] : '='};
        buf_add(b, out, 4);
    }
}

/* ---- state ------------------------------------------------------------------------- */

typedef struct conn {
    int fd;
    int waiting;  /* answered when init exits */
    buf_t in;
    struct conn *next;
} conn_t;

typedef struct exec_s {
    pid_t pid;
    conn_t *conn;  /* NULL once the caller hung up */
    int fds[2];    /* stdout, stderr pipes; -1 once closed */
    buf_t out[2];
    double deadline;  /* CLOCK_MONOTONIC seconds; 0: none */
    int timed_out, killed;
    int srv;          /* the fork server's connection (runtime exec runs there); else -1 */
    char proc_file[64], pid_file[64];  /* kept while the runtime may read or write them */
    struct exec_s *next;
} exec_t;

typedef struct { int fd; const char *name; buf_t pending; } stream_t;

static const char *id = "", *status = "running", *log_path = "", *memory_cgroup = "";
static const char *runtime_server = "";
static pid_t init_pid;
static long long log_max, log_size;
static int log_fd = -1, listen_fd = -1, sig_fd = -1, running = 1;
static stream_t streams[2] = {{-1, "stdout", {0}}, {-1, "stderr", {0}}};
static char **runtime_argv;
static int runtime_argc;
static conn_t *conns;
static exec_t *execs;
static buf_t exit_json;  /* the exit record, empty while init runs */

static long long now_ns(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- container logs ------------------------------------------------------------------ */

static void open_log(void) {
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0) return;
    struct stat st;
    log_size = fstat(log_fd, &st) == 0 ? st.st_size : 0;
}

static void write_log(const buf_t *data) {
    if (!data->len || log_fd < 0) return;
    if (log_max && log_size && log_size + (long long)data->len > log_max) {
        close(log_fd);
        char old[4096];
        snprintf(old, sizeof old, "%s.1", log_path);
        rename(log_path, old);
        open_log();
        if (log_fd < 0) return;
    }
    for (size_t off = 0; off < data->len;) {
        ssize_t n = write(log_fd, data->p + off, data->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    log_size += (long long)data->len;
}

static void cri_line(buf_t *out, const char *stream, char tag, const char *text, size_t n,
                     long long ns) {
    time_t secs = (time_t)(ns / 1000000000LL);
    struct tm t;
    gmtime_r(&secs, &t);
    buf_fmt(out, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ %s %c ", t.tm_year + 1900,
            t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ns % 1000000000LL,
            stream, tag);
    buf_add(out, text, n);
    buf_add(out, "\n", 1);
}

/* Whole lines tagged F; a line longer than MAX_LINE cut into P pieces (protocol.CriLog). */
static void cri_feed(stream_t *s, const char *data, size_t n, buf_t *out, long long ns) {
    buf_add(&s->pending, data, n);
    size_t off = 0;
    for (;;) {
        char *base = s->pending.p + off, *nl = memchr(base, '\n', s->pending.len - off);
        size_t at = nl ? (size_t)(nl - base) : 0;
        if (nl && at <= MAX_LINE) {
            cri_line(out, s->name, 'F', base, at, ns);
            off += at + 1;
        } else if (s->pending.len - off > MAX_LINE) {
            cri_line(out, s->name, 'P', base, MAX_LINE, ns);
            off += MAX_LINE;
        } else {
            break;
        }
    }
    buf_drop(&s->pending, off);
}

static void read_stream(stream_t *s, int drain) {
    static char chunk[65536];
    while (s->fd >= 0) {
        ssize_t n = read(s->fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        buf_t out = {0};
        if (n <= 0) {
            if (s->pending.len) cri_line(&out, s->name, 'F', s->pending.p, s->pending.len,
                                         now_ns(CLOCK_REALTIME));
            buf_free(&s->pending);
            close(s->fd);
            s->fd = -1;
        } else {
            cri_feed(s, chunk, (size_t)n, &out, now_ns(CLOCK_REALTIME));
        }
        write_log(&out);
        buf_free(&out);
        if (!drain) return;
    }
}

/* ---- replies ------------------------------------------------------------------------- */

static void send_frame(conn_t *c, const buf_t *body) {
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

static void send_ok(conn_t *c, const char *fields) {  /* {"ok":true<fields>} */
    buf_t b = {0};
    buf_str(&b, "{\"ok\":true");
    buf_str(&b, fields);
    buf_str(&b, "}");
    send_frame(c, &b);
    buf_free(&b);
}

static void send_error(conn_t *c, const char *msg) {
    buf_t b = {0};
    buf_str(&b, "{\"ok\":false,\"error\":");
    buf_json_str(&b, msg, strlen(msg));
    buf_str(&b, "}");
    send_frame(c, &b);
    buf_free(&b);
}

static const char *exit_or_null(void) { return exit_json.len ? exit_json.p : "null"; }

/* ---- running the OCI runtime ------------------------------------------------------- */

static void tail(const char *path, char *out, size_t size) {  /* last 2000 bytes, trimmed */
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > 2000 ? end - 2000 : 0;
    ssize_t n = pread(fd, out, size - 1 < 2000 ? size - 1 : 2000, from);
    close(fd);
    if (n <= 0) return;
    out[n] = 0;
    char *s = out;
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    memmove(out, s, strlen(s) + 1);
    size_t len = strlen(out);
    while (len && strchr(" \n\t\r", out[len - 1])) out[--len] = 0;
}

/* Fork and exec `RUNTIME ARGS...` with STDIO, wait: 0 and its status in ST, or -1. */
static int exec_runtime(const char **args, const int *stdio, int *st, char *err,
                        size_t errsize) {
    int nargs = 0;
    while (args[nargs]) nargs++;
    char **argv = calloc((size_t)(runtime_argc + nargs + 1), sizeof *argv);
    if (!argv) die("calloc");
    for (int i = 0; i < runtime_argc; i++) argv[i] = runtime_argv[i];
    for (int i = 0; i < nargs; i++) argv[runtime_argc + i] = (char *)args[i];
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int i = 0; i < 3; i++) dup2(stdio[i], i);  /* stdio fds are >= 3 here */
        char *env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       NULL};
        execve(argv[0], argv, env);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(argv);
    if (pid < 0) {
        snprintf(err, errsize, "fork: %s", strerror(errno));
        return -1;
    }
    while (waitpid(pid, st, 0) < 0 && errno == EINTR) {}
    return 0;
}

static const char *runtime_name(void) {
    const char *base = strrchr(runtime_argv[0], '/');
    return base ? base + 1 : runtime_argv[0];
}

/* Start `RUNTIME ARGS...` in the fork server: its connection, or RUNCALL_NOBODY (exec
 * it here), or RUNCALL_FAILED with the reason in ERR. */
static int server_runtime(const char **args, const int *stdio, char *err, size_t errsize) {
    char why[1024] = "";
    int fd = runcall_start(runtime_server, runtime_argv + 1, args, stdio, why, sizeof why);
    if (fd == RUNCALL_FAILED) snprintf(err, errsize, "%s %s: %s", runtime_name(), args[0], why);
    return fd;
}

/* Run `RUNTIME ARGS...` to its end, in the fork server if USE_SERVER and one answers;
 * 0, or -1 with the reason in ERR. STDIO NULL: stdin and stdout /dev/null, stderr
 * runtime.err (quoted in the error). */
static int run_runtime_how(const char **args, const int *stdio, int use_server, char *err,
                           size_t errsize) {
    int own[3] = {-1, -1, -1};
    if (!stdio) {
        own[0] = own[1] = open("/dev/null", O_RDWR | O_CLOEXEC);
        own[2] = open("runtime.err", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        stdio = own;
    }
    int st = 0, rc = 0;
    int srv = use_server ? server_runtime(args, stdio, err, errsize) : RUNCALL_NOBODY;
    if (srv >= 0) {
        if (runcall_status(srv, &st) != 0) {
            snprintf(err, errsize, "%s %s: runtime fork server: gone before the runtime ended",
                     runtime_name(), args[0]);
            rc = -1;
        }
    } else {
        rc = srv == RUNCALL_NOBODY ? exec_runtime(args, stdio, &st, err, errsize) : -1;
    }
    if (own[0] >= 0) close(own[0]);
    if (own[2] >= 0) close(own[2]);
    if (rc < 0) return -1;
    if (st == 0) return 0;
    char msg[2048] = "";
    if (own[2] >= 0) tail("runtime.err", msg, sizeof msg);
    if (!msg[0]) tail("runtime.log", msg, sizeof msg);
    if (!msg[0]) snprintf(msg, sizeof msg, "exit status %d",
                          WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    snprintf(err, errsize, "%s %s: %s", runtime_name(), args[0], msg);
    return -1;
}

static int run_runtime(const char **args, const int *stdio, char *err, size_t errsize) {
    return run_runtime_how(args, stdio, 1, err, errsize);
}

/* ---- processes ----------------------------------------------------------------------- */

static int wait_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

static int oom_killed(void) {
    static const char *names[] = {"memory.events", "memory.oom_control"};
    if (!memory_cgroup[0]) return 0;
    for (int i = 0; i < 2; i++) {
        char path[4096], line[256];
        snprintf(path, sizeof path, "%s/%s", memory_cgroup, names[i]);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        long long n = 0;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "oom_kill ", 9) == 0) n = atoll(line + 9);
        fclose(f);
        return n > 0;
    }
    return 0;
}

static void write_exit_file(void) {
    int fd = open(EXIT_NAME ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    ssize_t n = write(fd, exit_json.p, exit_json.len);
    close(fd);
    if (n == (ssize_t)exit_json.len) rename(EXIT_NAME ".tmp", EXIT_NAME);
}

static void init_exited(int st) {
    for (int i = 0; i < 2; i++) read_stream(&streams[i], 1);
    int code = wait_code(st);
    const char *reason = oom_killed() ? "OOMKilled" : code == 0 ? "Completed" : "Error";
    buf_fmt(&exit_json, "{\"pid\":%d,\"exit_code\":%d,\"exited_at_ns\":%lld,\"reason\":\"%s\"}",
            (int)init_pid, code, now_ns(CLOCK_REALTIME), reason);
    write_exit_file();
    status = "stopped";
    buf_t fields = {0};
    buf_fmt(&fields, ",\"exit\":%s", exit_json.p);
    for (conn_t *c = conns; c; c = c->next)
        if (c->waiting) { send_ok(c, fields.p); c->waiting = 0; }
    buf_free(&fields);
}

static void read_exec(exec_t *e, int i) {
    static char chunk[65536];
    while (e->fds[i] >= 0) {
        ssize_t n = read(e->fds[i], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;  /* EAGAIN */
        if (n == 0) { close(e->fds[i]); e->fds[i] = -1; return; }
        size_t room = EXEC_OUTPUT_MAX - e->out[i].len;
        buf_add(&e->out[i], chunk, (size_t)n < room ? (size_t)n : room);
    }
}

/* Unlink E's files, close what it holds, take it off the list, free it. */
static void exec_free(exec_t *e) {
    for (int i = 0; i < 2; i++)
        if (e->fds[i] >= 0) { close(e->fds[i]); e->fds[i] = -1; }
    if (e->srv >= 0) close(e->srv);
    if (e->proc_file[0]) unlink(e->proc_file);
    if (e->pid_file[0]) unlink(e->pid_file);
    for (exec_t **p = &execs; *p; p = &(*p)->next)
        if (*p == e) { *p = e->next; break; }
    buf_free(&e->out[0]);
    buf_free(&e->out[1]);
    free(e);
}

static void exec_exited(exec_t *e, int st) {
    for (int i = 0; i < 2; i++) {
        read_exec(e, i);  /* what the process wrote is in the pipe now */
        if (e->fds[i] >= 0) { close(e->fds[i]); e->fds[i] = -1; }  /* a child may hold it */
    }
    buf_t f = {0};
    buf_fmt(&f, ",\"exit_code\":%d,\"timed_out\":%s,\"stdout\":\"", wait_code(st),
            e->timed_out ? "true" : "false");
    buf_base64(&f, e->out[0].p ? e->out[0].p : "", e->out[0].len);
    buf_str(&f, "\",\"stderr\":\"");
    buf_base64(&f, e->out[1].p ? e->out[1].p : "", e->out[1].len);
    buf_str(&f, "\"");
    send_ok(e->conn, f.p);
    buf_free(&f);
    e->srv = -1;  /* closed by runcall_status */
    exec_free(e);
}

/* The pid of E's process from the runtime's --pid-file (0 until it is written). */
static pid_t exec_pid(exec_t *e) {
    if (e->pid > 0 || !e->pid_file[0]) return e->pid;
    char text[32] = "";
    int fd = open(e->pid_file, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
    if (fd >= 0) close(fd);
    e->pid = got > 0 ? (pid_t)atoi(text) : 0;
    return e->pid;
}

/* The fork server answered about E's `runtime exec`: the process's end, or the
 * runtime's failure before the process started (no pid file), or the server is gone. */
static void exec_server_done(exec_t *e) {
    int st = 0, rc = runcall_status(e->srv, &st);
    if (rc == 1) return;  /* not yet */
    e->srv = -1;
    char err[2048] = "", msg[2048] = "";
    if (rc < 0) {
        snprintf(err, sizeof err, "%s exec: runtime fork server: gone before the process "
                 "ended", runtime_name());
    } else if (exec_pid(e) <= 0 && st != 0) {  /* as a failed `exec --detach` reads */
        tail("runtime.log", msg, sizeof msg);
        if (!msg[0]) snprintf(msg, sizeof msg, "exit status %d", wait_code(st));
        snprintf(err, sizeof err, "%s exec: %s", runtime_name(), msg);
    }
    if (err[0]) {
        send_error(e->conn, err);
        exec_free(e);
    } else {
        exec_exited(e, st);
    }
}

static void reap(void) {
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) return;
        if (pid == init_pid && !exit_json.len) {
            init_exited(st);
            continue;
        }
        for (exec_t *e = execs; e; e = e->next)  /* our children: the exec --detach ones */
            if (e->srv < 0 && e->pid == pid) { exec_exited(e, st); break; }
    }
}

static int expire_execs(void) {  /* poll timeout in ms until the next deadline, or -1 */
    double now = (double)now_ns(CLOCK_MONOTONIC) / 1e9, soonest = 0;
    int retry = 0;
    for (exec_t *e = execs; e; e = e->next) {
        if (!e->deadline || e->killed) continue;
        if (e->deadline <= now) {
            e->timed_out = 1;
            /* through the fork server the process is the runtime's child, alive or a
             * zombie until the runtime reaps it and ends: its pid is not reused while
             * we have no answer; the pid file may not be written yet: look again soon */
            pid_t pid = exec_pid(e);
            if (pid > 0) {
                kill(pid, SIGKILL);
                e->killed = 1;
            } else {
                retry = 1;
            }
        } else if (!soonest || e->deadline < soonest) {
            soonest = e->deadline;
        }
    }
    if (retry) return 10;
    return soonest ? (int)((soonest - now) * 1000) + 1 : -1;
}

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

static void start_exec(conn_t *c, span_t process, span_t timeout, char *err, size_t errsize) {
    if (strcmp(status, "running") != 0) {
        snprintf(err, errsize, "container %s is %s, not running", id, status);
        return;
    }
    if (!process.n) { snprintf(err, errsize, "exec: process: missing"); return; }
    exec_t *e = calloc(1, sizeof *e);
    if (!e) die("calloc");
    long long n = now_ns(CLOCK_REALTIME);
    snprintf(e->proc_file, sizeof e->proc_file, "exec-%lld.json", n);
    snprintf(e->pid_file, sizeof e->pid_file, "exec-%lld.pid", n);
    e->conn = c;
    e->srv = -1;
    int fd = open(e->proc_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, process.p, process.n) != (ssize_t)process.n) {
        snprintf(err, errsize, "exec: write %s: %s", e->proc_file, strerror(errno));
        if (fd >= 0) close(fd);
        e->fds[0] = e->fds[1] = -1;
        exec_free(e);
        return;
    }
    close(fd);
    int out[2], errp[2], null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) die("pipe2");
    e->fds[0] = out[0];
    e->fds[1] = errp[0];
    int stdio[3] = {null, out[1], errp[1]};
    /* the fork server's runtime waits for the process: no --detach (see the top) */
    const char *waiting[] = {"exec", "--process", e->proc_file, "--pid-file", e->pid_file,
                             id, NULL};
    e->srv = server_runtime(waiting, stdio, err, errsize);
    int rc = e->srv >= 0 ? 0 : e->srv == RUNCALL_FAILED ? -1 : 1;
    if (rc == 1) {  /* no fork server: exec the runtime, which leaves the process to us */
        const char *args[] = {"exec", "--detach", "--process", e->proc_file, "--pid-file",
                              e->pid_file, id, NULL};
        /* exec'd here, never in a fork server that came up meanwhile: --detach there
         * would leave the process to the server's side, and no one would reap it here */
        rc = run_runtime_how(args, stdio, 0, err, errsize);
        if (rc == 0 && exec_pid(e) <= 0) {
            snprintf(err, errsize, "exec: no pid in %s", e->pid_file);
            rc = -1;
        }
        unlink(e->proc_file);
        unlink(e->pid_file);
        e->proc_file[0] = e->pid_file[0] = 0;
    }
    close(null);
    close(out[1]);
    close(errp[1]);
    if (rc < 0) { exec_free(e); return; }
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    if (e->srv >= 0) fcntl(e->srv, F_SETFL, O_NONBLOCK);
    double t = timeout.n && !is(timeout, "null") ? strtod(timeout.p, NULL) : 0;
    if (t > 0) e->deadline = (double)now_ns(CLOCK_MONOTONIC) / 1e9 + t;
    e->next = execs;
    execs = e;
}

static void handle(conn_t *c, const char *body, size_t n) {
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
        start_exec(c, v[K_PROCESS], v[K_EXEC_TIMEOUT], err, sizeof err);
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
    } else if (is(op, "\"shutdown\"")) {
        send_ok(c, "");
        running = 0;
    } else {
        if (!op.n || is(op, "null")) op = (span_t){"None", 4};
        snprintf(err, sizeof err, "unknown op %.*s; known: state, start, kill, exec, wait, "
                 "delete, shutdown, reopen", (int)(op.n > 100 ? 100 : op.n), op.p);
    }
    if (err[0]) send_error(c, err);  /* every failure is an answer, never a dead shim */
    buf_free(&f);
}

/* ---- connections and the loop -------------------------------------------------------- */

static conn_t *add_conn(int fd, int waiting) {
    conn_t *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = fd;
    c->waiting = waiting;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->next = conns;
    conns = c;
    return c;
}

static void drop_conn(conn_t *c) {
    for (exec_t *e = execs; e; e = e->next)
        if (e->conn == c) e->conn = NULL;
    for (conn_t **p = &conns; *p; p = &(*p)->next)
        if (*p == c) { *p = c->next; break; }
    close(c->fd);
    buf_free(&c->in);
    free(c);
}

static void on_conn(conn_t *c) {
    char chunk[65536];
    ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { drop_conn(c); return; }
    buf_add(&c->in, chunk, (size_t)n);
    for (;;) {  /* frame = ASCII length "\n" body */
        char *nl = memchr(c->in.p, '\n', c->in.len < 12 ? c->in.len : 12);
        if (!nl) {
            if (c->in.len >= 12) goto bad_header;
            return;
        }
        size_t size = 0;
        if (nl == c->in.p) goto bad_header;
        for (char *d = c->in.p; d < nl; d++) {
            if (*d < '0' || *d > '9') goto bad_header;
            size = size * 10 + (size_t)(*d - '0');
        }
        if (size > MAX_FRAME) {
            char msg[96];
            snprintf(msg, sizeof msg, "protocol: frame of %zu bytes exceeds %d", size, MAX_FRAME);
            send_error(c, msg);
            c->in.len = 0;
            return;
        }
        size_t head = (size_t)(nl - c->in.p) + 1;
        if (c->in.len < head + size) return;
        handle(c, c->in.p + head, size);
        buf_drop(&c->in, head + size);
    }
bad_header:
    send_error(c, "protocol: bad frame header");
    c->in.len = 0;
}

static void loop(void) {
    while (running) {
        int timeout = expire_execs(), n = 0, nconn = 0, nexec = 0;
        for (conn_t *c = conns; c; c = c->next) nconn++;
        for (exec_t *e = execs; e; e = e->next) nexec++;
        struct pollfd *pfd = calloc((size_t)(4 + nconn + 3 * nexec), sizeof *pfd);
        void **who = calloc((size_t)(4 + nconn + 3 * nexec), sizeof *who);
        if (!pfd || !who) die("calloc");
        pfd[n++] = (struct pollfd){sig_fd, POLLIN, 0};
        pfd[n++] = (struct pollfd){listen_fd, POLLIN, 0};
        for (int i = 0; i < 2; i++) pfd[n++] = (struct pollfd){streams[i].fd, POLLIN, 0};
        for (conn_t *c = conns; c; c = c->next) { who[n] = c; pfd[n++] = (struct pollfd){c->fd, POLLIN, 0}; }
        int first_exec = n;
        for (exec_t *e = execs; e; e = e->next)
            for (int i = 0; i < 3; i++) {  /* stdout, stderr, the fork server's answer */
                who[n] = e;
                pfd[n++] = (struct pollfd){i < 2 ? e->fds[i] : e->srv, POLLIN, 0};
            }
        int ready = poll(pfd, (nfds_t)n, timeout);
        if (ready > 0) {
            if (pfd[0].revents) {
                struct signalfd_siginfo si;
                while (read(sig_fd, &si, sizeof si) > 0) {}
                reap();
            }
            if (pfd[1].revents) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd >= 0) add_conn(fd, 0);
            }
            for (int i = 0; i < 2; i++)
                if (pfd[2 + i].revents && streams[i].fd == pfd[2 + i].fd) read_stream(&streams[i], 0);
            /* a handled request may end an exec or drop a connection: look each up again */
            for (int i = 4; i < first_exec; i++) {
                if (!pfd[i].revents) continue;
                for (conn_t *c = conns; c; c = c->next)
                    if (c == who[i] && c->fd == pfd[i].fd) { on_conn(c); break; }
            }
            for (int i = first_exec; i < n; i++) {
                if (!pfd[i].revents) continue;
                for (exec_t *e = execs; e; e = e->next)
                    if (e == who[i]) {
                        int k = e->fds[0] == pfd[i].fd ? 0 : e->fds[1] == pfd[i].fd ? 1 : -1;
                        if (k >= 0) read_exec(e, k);
                        else if (e->srv >= 0 && e->srv == pfd[i].fd) exec_server_done(e);
                        break;
                    }
            }
        }
        free(pfd);
        free(who);
        reap();  /* a SIGCHLD may have come while a runtime command ran */
    }
}

static void unhex(buf_t *b, const char *hex) {
    for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
        char byte[3] = {hex[i], hex[i + 1], 0};
        char c = (char)strtol(byte, NULL, 16);
        buf_add(b, &c, 1);
    }
}

static int fd_arg(const char *s) {
    int fd = atoi(s);
    if (fd < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        fprintf(stderr, "corral-shim-holder: fd %s: not open\n", s);
        exit(2);
    }
    return fd;
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) { i++; break; }
        if (!val) { fprintf(stderr, "corral-shim-holder: %s: missing value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--id")) id = val;
        else if (!strcmp(a, "--init-pid")) init_pid = (pid_t)atoi(val);
        else if (!strcmp(a, "--status")) status = !strcmp(val, "created") ? "created" : "running";
        else if (!strcmp(a, "--listen")) listen_fd = fd_arg(val);
        else if (!strcmp(a, "--log-fd")) log_fd = fd_arg(val);
        else if (!strcmp(a, "--log-path")) log_path = val;
        else if (!strcmp(a, "--log-max")) log_max = atoll(val);
        else if (!strcmp(a, "--stdout")) streams[0].fd = fd_arg(val);
        else if (!strcmp(a, "--stderr")) streams[1].fd = fd_arg(val);
        else if (!strcmp(a, "--memory-cgroup")) memory_cgroup = val;
        else if (!strcmp(a, "--pending-stdout")) unhex(&streams[0].pending, val);
        else if (!strcmp(a, "--pending-stderr")) unhex(&streams[1].pending, val);
        else if (!strcmp(a, "--conn")) add_conn(fd_arg(val), 0);
        else if (!strcmp(a, "--waiter")) add_conn(fd_arg(val), 1);
        else if (!strcmp(a, "--runtime-server")) runtime_server = val;
        else { fprintf(stderr, "corral-shim-holder: unknown option %s\n", a); return 2; }
    }
    runtime_argv = argv + i;
    runtime_argc = argc - i;
    if (runtime_argc < 1 || listen_fd < 0 || init_pid <= 0) {
        fprintf(stderr, "usage: corral-shim-holder --id ID --init-pid N --listen FD ... "
                        "-- RUNTIME [OPTIONS]\n");
        return 2;
    }
    struct stat st;
    log_size = log_fd >= 0 && fstat(log_fd, &st) == 0 ? st.st_size : 0;
    for (int k = 0; k < 2; k++)
        if (streams[k].fd >= 0) fcntl(streams[k].fd, F_SETFL, O_NONBLOCK);
    fcntl(listen_fd, F_SETFL, O_NONBLOCK);
    /* Only "shutdown" ends the holder: TERM, INT and HUP stay blocked (the Python shim
     * had no-op handlers); SIGCHLD comes through a signalfd. Children unblock all. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sig_fd < 0) die("signalfd");
    reap();  /* init may have exited before the exec: it is a zombie child of ours */
    loop();
    close(listen_fd);
    unlink(SOCKET_NAME);
    return 0;
}
