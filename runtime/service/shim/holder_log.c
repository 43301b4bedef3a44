/* corral-shim-holder: the container's output as CRI log lines (holder.h). */
#include "holder.h"

/* ---- container logs ------------------------------------------------------------------ */

void open_log(void) {
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0) return;
    struct stat st;
    log_size = fstat(log_fd, &st) == 0 ? st.st_size : 0;
}

/* Append whole lines; when the next ones would take the file past log_max, rename it to
 * <log>.1 first, so that neither file holds more than log_max (a burst read in one go
 * included). A single line longer than log_max has a file of its own. */
void write_log(const buf_t *data) {
    const char *p = data->p;
    size_t left = data->len;
    while (left && log_fd >= 0) {
        size_t n = left;
        if (log_max && log_size + (long long)left > log_max) {
            long long room = log_max - log_size;
            const char *nl = room > 0 ? memrchr(p, '\n', (size_t)room) : NULL;
            n = nl ? (size_t)(nl - p) + 1 : 0;
            if (!n && log_size) {
                close(log_fd);
                char old[4096];
                snprintf(old, sizeof old, "%s.1", log_path);
                rename(log_path, old);
                open_log();
                continue;
            }
            if (!n) {
                nl = memchr(p, '\n', left);
                n = nl ? (size_t)(nl - p) + 1 : left;
            }
        }
        for (size_t off = 0; off < n;) {
            ssize_t w = write(log_fd, p + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            off += (size_t)w;
        }
        log_size += (long long)n;
        p += n;
        left -= n;
    }
}

void cri_line(buf_t *out, const char *stream, char tag, const char *text, size_t n,
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

/* Whole lines tagged F; a line longer than MAX_LINE cut into P pieces; with s->eager, the
 * rest of a line not ended yet as a P piece at once (protocol.CriLog). */
void cri_feed(stream_t *s, const char *data, size_t n, buf_t *out, long long ns) {
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
            if (s->eager && s->pending.len > off) {  /* a line not ended yet: P, now */
                cri_line(out, s->name, 'P', base, s->pending.len - off, ns);
                off = s->pending.len;
            }
            break;
        }
    }
    buf_drop(&s->pending, off);
}

void read_stream(stream_t *s, int drain) {
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
