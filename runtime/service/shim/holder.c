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
 *      requests   -> state / start / kill / exec / wait / delete / shutdown / reopen /
 *                    attach, protocol.py's frames (ASCII length "\n" JSON object); the
 *                    ops that need the runtime ask the daemon's fork server to run it in
 *                    a forked, preloaded interpreter (--runtime-server, runcall.c: for
 *                    corral-runc), else, or when no fork server answers, fork and exec it
 *      stdin      -> held (a pipe's write end, or the pty master of a tty container,
 *                    which is also the stdout stream) until "attach" asks for a copy
 *                    (SCM_RIGHTS); stdin_once: our copy of the pipe closed after that
 *
 * Files (holder.h declares what they share): holder.c state, buffers, connections, the
 * loop, options; holder_log.c the CRI log; holder_exec.c runtime calls, execs, exits;
 * holder_req.c the protocol and its ops.
 * A forked CPython keeps ~1.5 MB of pages dirty per shim; this keeps a few pages.
 * C11 and libc only. Usage (all fds are numbers of descriptors open in the holder):
 *   corral-shim-holder --id ID --init-pid N --status running|created --listen FD
 *     --log-fd FD --log-path P --log-max N --stdout FD --stderr FD [--memory-cgroup DIR]
 *     [--pending-stdout HEX] [--pending-stderr HEX] [--conn FD]... [--waiter FD]...
 *     [--runtime-server SOCKET] [--stdin FD --stdin-once 0|1 --tty 0|1] [--stdin-closed 1]
 *     -- RUNTIME [GLOBAL OPTIONS...]
 *
 * exec through the fork server: `RUNTIME exec` without --detach, which waits for the
 * process and exits with its code (the process is the runtime's child, not ours); the
 * reply goes out when the fork server reports the runtime's end; a timeout kills the pid
 * the runtime wrote to --pid-file. Through fork+exec: `exec --detach`, and the process,
 * orphaned, is our child (we are a subreaper).
 */
#include "holder.h"

/* ---- state ------------------------------------------------------------------------- */

const char *id = "", *status = "running", *log_path = "", *memory_cgroup = "";
const char *runtime_server = "";
pid_t init_pid;
long long log_max, log_size;
int log_fd = -1, listen_fd = -1, sig_fd = -1, running = 1;
int stdin_fd = -1, stdin_once, stdin_closed, tty;
stream_t streams[2] = {{-1, "stdout", {0}, 0}, {-1, "stderr", {0}, 0}};
char **runtime_argv;
int runtime_argc;
conn_t *conns;
exec_t *execs;
buf_t exit_json;  /* the exit record, empty while init runs */

long long now_ns(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- buffers ------------------------------------------------------------------------- */

void die(const char *what) { perror(what); exit(1); }

void buf_add(buf_t *b, const void *data, size_t n) {
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
void buf_str(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }
void buf_fmt(buf_t *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}
void buf_drop(buf_t *b, size_t n) {  /* remove the first n bytes */
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}
void buf_free(buf_t *b) { free(b->p); b->p = NULL; b->len = b->cap = 0; }

/* A JSON string: ASCII only (bytes >= 0x80 become '?', so any reply is valid UTF-8). */
void buf_json_str(buf_t *b, const char *s, size_t n) {
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

void buf_base64(buf_t *b, const char *s, size_t n) {
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
        else if (!strcmp(a, "--stdin")) stdin_fd = fd_arg(val);
        else if (!strcmp(a, "--stdin-once")) stdin_once = atoi(val);
        else if (!strcmp(a, "--stdin-closed")) stdin_closed = atoi(val);
        else if (!strcmp(a, "--tty")) tty = atoi(val);
        else { fprintf(stderr, "corral-shim-holder: unknown option %s\n", a); return 2; }
    }
    streams[0].eager = tty;  /* the terminal's output: a prompt is logged before its line ends */
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

