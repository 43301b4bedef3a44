/* corral-shim-holder: the OCI runtime's calls, execs, reaping, init's exit (holder.h). */
#include "holder.h"

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

const char *runtime_name(void) {
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

int run_runtime(const char **args, const int *stdio, char *err, size_t errsize) {
    return run_runtime_how(args, stdio, 1, err, errsize);
}

/* ---- processes ----------------------------------------------------------------------- */

int wait_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

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

void init_exited(int st) {
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

void read_exec(exec_t *e, int i) {
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
void exec_server_done(exec_t *e) {
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

void reap(void) {
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

int expire_execs(void) {  /* poll timeout in ms until the next deadline, or -1 */
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

/* ---- exec ---------------------------------------------------------------------------- */

void start_exec(conn_t *c, const char *process, size_t process_n, double timeout,
                char *err, size_t errsize) {
    if (strcmp(status, "running") != 0) {
        snprintf(err, errsize, "container %s is %s, not running", id, status);
        return;
    }
    if (!process_n) { snprintf(err, errsize, "exec: process: missing"); return; }
    exec_t *e = calloc(1, sizeof *e);
    if (!e) die("calloc");
    long long n = now_ns(CLOCK_REALTIME);
    snprintf(e->proc_file, sizeof e->proc_file, "exec-%lld.json", n);
    snprintf(e->pid_file, sizeof e->pid_file, "exec-%lld.pid", n);
    e->conn = c;
    e->srv = -1;
    int fd = open(e->proc_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, process, process_n) != (ssize_t)process_n) {
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
    if (timeout > 0) e->deadline = (double)now_ns(CLOCK_MONOTONIC) / 1e9 + timeout;
    e->next = execs;
    execs = e;
}

