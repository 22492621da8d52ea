/*
 * How bytes reach an SFTP server: one small interface, several transports.
 *
 * A transport is created (connected, authenticated) by the main thread before
 * the mount, then handed to one connection's I/O thread, which alone uses it
 * from then on. Every call is non-blocking; the I/O thread waits with poll(2)
 * on the descriptors that pollfds() names.
 *
 * The transport hides its library's rules: with libssh2, a call that returned
 * EAGAIN must be repeated exactly before any other call; ssh.c keeps that
 * state internally, so callers may call read and write in any order and with
 * any lengths.
 */
#ifndef HASHI_TRANSPORT_H
#define HASHI_TRANSPORT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ssh_target;

/* The most pollfds a transport may ask for (the master's has one for each
 * channel it lends). */
#define TRANSPORT_MAX_POLLFDS 64

struct transport;

struct transport_ops {
	const char *name; /* "ssh", "command", "tcp", "fds" */
	/* > 0: bytes moved; 0 (read only): the server closed the stream;
	 * -EAGAIN: nothing can move now; other -errno: the stream is broken
	 * (transport_error() says why). */
	ssize_t (*read)(struct transport *t, void *buf, size_t len);
	ssize_t (*write)(struct transport *t, const void *buf, size_t len);
	/* Fill at most max pollfds to wait on before the next read/write;
	 * want_write says the caller has bytes to send. Returns how many. */
	int (*pollfds)(struct transport *t, bool want_write, struct pollfd *pfd, int max);
	/* Called after poll with the same array (so the transport can note
	 * revents); may be NULL. */
	void (*after_poll)(struct transport *t, const struct pollfd *pfd, int n);
	void (*destroy)(struct transport *t);
};

struct transport {
	const struct transport_ops *ops;
	char error[512]; /* the last error, one line, in OpenSSH's words */
	bool abandoned;  /* the peer is taken for dead: close without courtesies */
};

static inline const char *transport_error(const struct transport *t) { return t->error; }
void transport_destroy(struct transport *t);
/* Destroy a transport whose peer is taken for dead, without waiting on it. */
void transport_abandon(struct transport *t);

/* Constructors. Each blocks until the stream is ready (connected,
 * authenticated, subsystem started), or returns NULL with a one-line error
 * in err, worded as ssh words it ("ssh: connect to host h port 22:
 * Connection refused", "Permission denied (publickey,password).",
 * "Host key verification failed."). */

/* libssh2: TCP (or ProxyCommand/ProxyJump), known_hosts, authentication,
 * then a channel running the sftp subsystem (or target->sftp_server when it
 * is set: a path is run as a command, a bare name as a subsystem).
 * Sets *rsa_only when authentication failed because the only usable key is
 * RSA and libssh2 cannot sign with rsa-sha2 (the caller may then fall back
 * to the OpenSSH transport). */
struct transport *transport_ssh_connect(const struct ssh_target *target, bool *rsa_only,
					 char *err, size_t errlen);
/* More SFTP channels on a libssh2 transport's session, lent to other hashi
 * processes (master.c). Every call runs on the thread that drives t, and
 * obeys libssh2's rules for it; transport_chans_service advances opens and
 * closes and sends buffered bytes (call it after each poll). A channel
 * runs what the transport's own channel runs (the sftp subsystem, or
 * sftp_server=). Channels die with t. */
struct transport_chan;
bool transport_can_lend(struct transport *t);
/* Queue the opening of a channel; NULL if t cannot lend (not libssh2). */
struct transport_chan *transport_chan_open(struct transport *t);
/* 1: open; 0: still opening; -1: failed or ended (transport_chan_error
 * says why: "channel open failed: ..." when the server refused it, as sshd
 * does past MaxSessions). */
int transport_chan_status(const struct transport_chan *ch);
const char *transport_chan_error(const struct transport_chan *ch);
/* As transport read/write (0 from read: end of stream). */
ssize_t transport_chan_read(struct transport_chan *ch, void *buf, size_t len);
ssize_t transport_chan_write(struct transport_chan *ch, const void *buf, size_t len);
/* Whether the reader has room: pollfds counts only those channels' data. */
void transport_chan_want_read(struct transport_chan *ch, bool want);
/* Close and forget ch (the close finishes in the background). */
void transport_chan_close(struct transport_chan *ch);
void transport_chans_service(struct transport *t);

/* Run argv (e.g. "ssh -x -a -oClearAllForwardings=yes -2 host -s sftp", or a
 * local server binary) with its stdin/stdout as the stream; its stderr is
 * left alone (so ssh can prompt on the terminal). */
struct transport *transport_command_start(char *const argv[], char *err, size_t errlen);
/* A plain TCP connection to host:port speaking SFTP (sshfs's directport). */
struct transport *transport_tcp_connect(const char *host, const char *port, char *err,
					size_t errlen);
/* Two descriptors already connected to an SFTP server (sshfs's passive:
 * stdin and stdout). */
struct transport *transport_fds(int in, int out, char *err, size_t errlen);

#endif
