/* bench-ssh2cat: what libssh2 alone moves over one SSH channel.
 *
 *   bench-ssh2cat HOST PORT USER KEYFILE COMMAND [WINDOW]
 *
 * Connects to HOST:PORT, authenticates USER with the private key KEYFILE
 * (the host key is not checked: this is a benchmark against our own test
 * sshd), runs COMMAND (e.g. "exec cat FILE") on one session channel opened
 * with a receive window of WINDOW bytes (default 16 MiB, as hashi's
 * transport; 2097152 is libssh2's own default) and reads the
 * channel's standard output non-blocking until end of file, discarding it.
 * Prints one line: "BYTES SECONDS" for the data phase (from the exec request
 * to end of file), so BYTES / SECONDS is libssh2's raw channel throughput.
 * Exit status 0, or 1 with one line on standard error.
 */
#include <libssh2.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW (16u * 1024 * 1024) /* as fuse/transport/ssh.c */
#define PACKET 32768u
#define RBUF (64 * 1024)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(LIBSSH2_SESSION *s, const char *what)
{
	char *msg = NULL;
	if (s != NULL)
		libssh2_session_last_error(s, &msg, NULL, 0);
	fprintf(stderr, "bench-ssh2cat: %s%s%s\n", what, msg != NULL ? ": " : "",
		msg != NULL ? msg : "");
	return 1;
}

static int connect_to(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "bench-ssh2cat: %s: %s\n", host, gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "bench-ssh2cat: connect to host %s port %s: %s\n", host, port,
			strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Wait until the socket is ready in the directions libssh2 is blocked on. */
static int wait_socket(LIBSSH2_SESSION *s, int fd)
{
	int dir = libssh2_session_block_directions(s);
	struct pollfd p = { .fd = fd, .events = 0 };
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		p.events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		p.events |= POLLOUT;
	if (p.events == 0)
		p.events = POLLIN;
	return poll(&p, 1, 60000);
}

int main(int argc, char **argv)
{
	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: bench-ssh2cat HOST PORT USER KEYFILE COMMAND [WINDOW]\n");
		return 2;
	}
	unsigned long window = argc == 7 ? strtoul(argv[6], NULL, 0) : WINDOW;
	if (window < PACKET || window > 0x7fffffffUL) {
		fprintf(stderr, "bench-ssh2cat: bad window %s\n", argv[6]);
		return 2;
	}
	const char *user = argv[3], *key = argv[4], *cmd = argv[5];
	if (libssh2_init(0) != 0)
		return die(NULL, "libssh2_init failed");
	int fd = connect_to(argv[1], argv[2]);
	if (fd < 0)
		return 1;
	LIBSSH2_SESSION *s = libssh2_session_init();
	if (s == NULL)
		return die(NULL, "libssh2_session_init failed");
	libssh2_session_set_blocking(s, 1);
	if (libssh2_session_handshake(s, fd) != 0)
		return die(s, "SSH handshake failed");
	if (libssh2_userauth_publickey_fromfile_ex(s, user, (unsigned)strlen(user), NULL, key,
						   NULL) != 0)
		return die(s, "Permission denied (publickey)");
	double t0 = now();
	LIBSSH2_CHANNEL *ch = libssh2_channel_open_ex(s, "session", 7, (unsigned)window, PACKET,
							   NULL, 0);
	if (ch == NULL)
		return die(s, "channel open failed");
	if (libssh2_channel_process_startup(ch, "exec", 4, cmd, (unsigned)strlen(cmd)) != 0)
		return die(s, "exec request failed");
	libssh2_channel_handle_extended_data2(ch, LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE);

	libssh2_session_set_blocking(s, 0);
	static char buf[RBUF];
	unsigned long long total = 0;
	for (;;) {
		ssize_t n = libssh2_channel_read_ex(ch, 0, buf, sizeof(buf));
		if (n > 0) {
			total += (unsigned long long)n;
			continue;
		}
		if (n == LIBSSH2_ERROR_EAGAIN || n == 0) {
			if (libssh2_channel_eof(ch))
				break;
			if (n == LIBSSH2_ERROR_EAGAIN && wait_socket(s, fd) <= 0)
				return die(s, "timed out waiting for data");
			continue;
		}
		return die(s, "channel read failed");
	}
	double t1 = now();

	libssh2_session_set_blocking(s, 1);
	libssh2_channel_close(ch);
	libssh2_channel_wait_closed(ch);
	int status = libssh2_channel_get_exit_status(ch);
	libssh2_channel_free(ch);
	libssh2_session_disconnect(s, "done");
	libssh2_session_free(s);
	close(fd);
	libssh2_exit();
	if (status != 0) {
		fprintf(stderr, "bench-ssh2cat: the remote command exited %d\n", status);
		return 1;
	}
	printf("%llu %.6f\n", total, t1 - t0);
	return 0;
}
