/*
 * hashi-sftp-server's sandbox, entered once start-up is done:
 *
 * - Landlock (where the kernel has it): with -R the whole file system is
 *   read-only; with -r DIR, files are reachable only beneath DIR (plus
 *   read-only /etc and /usr for the user database and time zone).
 * - seccomp-BPF: only the system calls the server makes are allowed; any
 *   other fails with ENOSYS (a request gets an error reply, the session
 *   goes on), and clearly dangerous ones (execve, ptrace, sockets other
 *   than syslog's, mount, namespaces, bpf, kexec, ...) kill the process.
 *
 * What the kernel does not offer is logged at debug level and skipped.
 */
#ifndef HASHI_SANDBOX_H
#define HASHI_SANDBOX_H

#include <stdbool.h>

struct sandbox_opts {
	bool readonly;    /* -R */
	const char *root; /* -r: the root directory's real path, or NULL */
};

/* Returns a bit set of what is now in effect. */
#define SANDBOX_LANDLOCK 1
#define SANDBOX_SECCOMP 2
int sandbox_enter(const struct sandbox_opts *o);

#endif
