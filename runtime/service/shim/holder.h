/* corral-shim-holder's shared state and functions (see holder.c for the flow).
 *
 *   holder.c       state, buffers, connections, the poll loop, the command line
 *   holder_log.c   the container's output as CRI log lines; the log file, rotated by size
 *   holder_exec.c  the OCI runtime's calls (fork server or fork+exec), execs, reaping,
 *                  init's exit
 *   holder_req.c   the protocol: replies, requests parsed, the ops (attach included)
 */
#ifndef CORRAL_HOLDER_H
#define CORRAL_HOLDER_H

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

/* eager (a tty's stdout): a line not yet ended is logged at once as a P piece */
typedef struct { int fd; const char *name; buf_t pending; int eager; } stream_t;

/* ---- state (holder.c) ---------------------------------------------------------------- */

extern const char *id, *status, *log_path, *memory_cgroup, *runtime_server;
extern pid_t init_pid;
extern long long log_max, log_size;
extern int log_fd, listen_fd, sig_fd, running;
/* the container's stdin: a pipe's write end, or the pty master (tty); -1: none or closed */
extern int stdin_fd, stdin_once, stdin_closed, tty;
extern stream_t streams[2];
extern char **runtime_argv;
extern int runtime_argc;
extern conn_t *conns;
extern exec_t *execs;
extern buf_t exit_json;  /* the exit record, empty while init runs */

void die(const char *what);
long long now_ns(clockid_t clk);
void buf_add(buf_t *b, const void *data, size_t n);
void buf_str(buf_t *b, const char *s);
void buf_fmt(buf_t *b, const char *fmt, ...);
void buf_drop(buf_t *b, size_t n);
void buf_free(buf_t *b);
void buf_json_str(buf_t *b, const char *s, size_t n);
void buf_base64(buf_t *b, const char *s, size_t n);

/* ---- container logs (holder_log.c) --------------------------------------------------- */

void open_log(void);
void write_log(const buf_t *data);
void cri_line(buf_t *out, const char *stream, char tag, const char *text, size_t n,
              long long ns);
void cri_feed(stream_t *s, const char *data, size_t n, buf_t *out, long long ns);
void read_stream(stream_t *s, int drain);

/* ---- the runtime and processes (holder_exec.c) --------------------------------------- */

const char *runtime_name(void);
int run_runtime(const char **args, const int *stdio, char *err, size_t errsize);
int wait_code(int st);
void init_exited(int st);
void reap(void);
int expire_execs(void);
void read_exec(exec_t *e, int i);
void exec_server_done(exec_t *e);
/* Start PROCESS (an OCI process, JSON) in the container for C; ERR set on failure. */
void start_exec(conn_t *c, const char *process, size_t n, double timeout, char *err,
                size_t errsize);

/* ---- the protocol (holder_req.c) ----------------------------------------------------- */

void send_frame(conn_t *c, const buf_t *body);
void send_ok(conn_t *c, const char *fields);
void send_error(conn_t *c, const char *msg);
const char *exit_or_null(void);
void handle(conn_t *c, const char *body, size_t n);

#endif
