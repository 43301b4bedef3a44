/* corral-runc calls through the fork server's runtime socket: see runcall.h. */
#define _GNU_SOURCE
#include "runcall.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define PID_REPLY_TIMEOUT_S 10  /* the server forks at once: longer means it is stuck */

typedef struct { char *p; size_t len, cap; } msg_t;

static int msg_add(msg_t *m, const char *s) {  /* S and its NUL */
    size_t n = strlen(s) + 1;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        while (cap < m->len + n) cap *= 2;
        char *p = realloc(m->p, cap);
        if (!p) return -1;
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->len, s, n);
    m->len += n;
    return 0;
}

/* Connect to SERVER; a path too long for sun_path is reached through its directory. */
static int connect_server(const char *server) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int dirfd = -1;
    const char *slash = strrchr(server, '/');
    if (strlen(server) < sizeof sa.sun_path) {
        memcpy(sa.sun_path, server, strlen(server) + 1);
    } else if (slash) {
        char *dir = strndup(server, (size_t)(slash - server));
        dirfd = dir ? open(*dir ? dir : "/", O_PATH | O_CLOEXEC) : -1;
        free(dir);
        int n = snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dirfd,
                         slash + 1);
        if (dirfd < 0 || n < 0 || (size_t)n >= sizeof sa.sun_path) {
            if (dirfd >= 0) close(dirfd);
            close(fd);
            return -1;
        }
    }
    int rc;
    do rc = connect(fd, (struct sockaddr *)&sa, sizeof sa); while (rc < 0 && errno == EINTR);
    if (dirfd >= 0) close(dirfd);
    if (rc < 0) { close(fd); return -1; }
    return fd;
}

static ssize_t recv_reply(int fd, char *out, size_t size) {
    ssize_t n;
    do n = recv(fd, out, size - 1, 0); while (n < 0 && errno == EINTR);
    out[n > 0 ? n : 0] = 0;
    return n;
}

int runcall_start(const char *server, char *const *opts, const char *const *args,
                  const int stdio[3], char *err, size_t errsize) {
    if (!server || !server[0]) return RUNCALL_NOBODY;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return RUNCALL_NOBODY;
    msg_t m = {0};
    int bad = msg_add(&m, "run") || msg_add(&m, cwd);
    for (int i = 0; opts[i] && !bad; i++) bad = msg_add(&m, opts[i]);
    for (int i = 0; args[i] && !bad; i++) bad = msg_add(&m, args[i]);
    int fd = bad ? -1 : connect_server(server);
    if (fd < 0) { free(m.p); return RUNCALL_NOBODY; }
    struct iovec iov = {m.p, m.len};
    union { char buf[CMSG_SPACE(3 * sizeof(int))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof u);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(3 * sizeof(int));
    memcpy(CMSG_DATA(cm), stdio, 3 * sizeof(int));
    ssize_t n;
    do n = sendmsg(fd, &mh, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    free(m.p);
    if (n < 0) { close(fd); return RUNCALL_NOBODY; }
    struct timeval tv = {PID_REPLY_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char reply[512];
    n = recv_reply(fd, reply, sizeof reply);
    if (n > 4 && !strncmp(reply, "pid ", 4)) {
        tv.tv_sec = 0;  /* the runtime's end takes as long as it takes */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        return fd;
    }
    close(fd);
    if (n > 6 && !strncmp(reply, "error ", 6)) {  /* refused before forking anything */
        snprintf(err, errsize, "runtime fork server: %s", reply + 6);
        return RUNCALL_FAILED;
    }
    /* closed, or reset with our request unread (its listener closed with us in the
     * backlog): nothing was forked, so the caller may run the runtime itself */
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return RUNCALL_NOBODY;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        /* no answer in time: it may have forked the runtime; do not run it twice */
        snprintf(err, errsize, "runtime fork server: no answer in %d s", PID_REPLY_TIMEOUT_S);
    } else {
        snprintf(err, errsize, "runtime fork server: %s",
                 n < 0 ? strerror(errno) : "unexpected answer");
    }
    return RUNCALL_FAILED;
}

int runcall_status(int fd, int *status) {
    char reply[64];
    ssize_t n = recv_reply(fd, reply, sizeof reply);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    close(fd);
    if (n > 5 && !strncmp(reply, "exit ", 5)) {
        *status = atoi(reply + 5);
        return 0;
    }
    return -1;
}
