/* The holder's side of the fork server's runtime socket (runtime/service/shim/forkserver.py).
 *
 *   runcall_start(server, opts, args, stdio)  connect (SOCK_SEQPACKET), send
 *       b"run\0CWD\0OPT...\0ARG...\0" with the three stdio fds (SCM_RIGHTS), read b"pid N"
 *   runcall_status(fd, &status)               read b"exit STATUS" (a waitpid status)
 *
 * The fork server runs corral-runc's CLI in a forked child of its preloaded interpreter:
 * same argv, stdio, exit status as exec'ing the launcher, without an interpreter start.
 */
#ifndef CORRAL_RUNCALL_H
#define CORRAL_RUNCALL_H

#include <stddef.h>

enum { RUNCALL_NOBODY = -1, RUNCALL_FAILED = -2 };

/* The connection (>= 0) once the server has forked the runtime; RUNCALL_NOBODY when no
 * server answered before it could have run anything (the caller execs the runtime
 * itself); RUNCALL_FAILED, the reason in ERR, when the call may have started. SERVER is
 * an absolute path; OPTS (the runtime's global options) and ARGS end with NULL. */
int runcall_start(const char *server, char *const *opts, const char *const *args,
                  const int stdio[3], char *err, size_t errsize);

/* Read the runtime's end from FD (blocking unless FD is non-blocking), closing it: 0 with
 * its waitpid status in STATUS; 1 if not there yet (non-blocking FD); -1 if the server
 * went away first. */
int runcall_status(int fd, int *status);

#endif
