/* Helpers shared by the transports (not part of the public interface). */
#ifndef HASHI_TRANSPORT_INT_H
#define HASHI_TRANSPORT_INT_H

#include <stddef.h>
#include <sys/types.h>

struct transport;

/* Resolve host:port (family AF_UNSPEC/AF_INET/AF_INET6) and connect a TCP
 * socket, trying each address in turn, each within timeout_s seconds
 * (0 = the kernel's own limit). Returns a blocking socket fd with
 * TCP_NODELAY set, or -1 with ssh's words in err: "ssh: connect to host H
 * port P: Connection refused", "ssh: Could not resolve hostname H: Name or
 * service not known" (prefix replaces "ssh"). */
int transport_sock_connect(const char *host, const char *port, int family, int timeout_s,
			   const char *prefix, char *err, size_t errlen);

/* SO_KEEPALIVE and TCP_USER_TIMEOUT on a TCP socket (ignored on others). */
void transport_sock_keepalive(int fd, unsigned user_timeout_ms);

/* How many AES-CTR contexts have their keystream computed in batches
 * (ctr-batch.c; 0 when HASHI_NO_CTR_BATCH=1 or the cipher is not CTR). */
int transport_ctr_batched(void);

/* Start argv (or "/bin/sh -c cmd" when shell_cmd is set) with one end of a
 * socketpair as its stdin and stdout; stderr is inherited. Returns our end
 * (blocking, close-on-exec) and the child's pid, or -1 with err set. */
int transport_spawn(char *const argv[], const char *shell_cmd, pid_t *pid, int *errfd, char *err,
		    size_t errlen);
/* SIGTERM the child and reap it (SIGKILL if it is still there after 2 s). */
void transport_reap(pid_t pid);

void transport_set_error(struct transport *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
