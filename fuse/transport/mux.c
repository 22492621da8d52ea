/*
 * The mux transport: an SFTP channel borrowed from another hashi process
 * (the master) through its control socket. The master opens a new channel
 * on its SSH session and relays bytes between it and our Unix socket, so
 * after the exchange in mux.h the socket is simply the SFTP stream: the
 * descriptor transport carries it.
 */
#include "mux.h"
#include "transport-int.h"
#include "log.h"
#include "wire.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* How long a master may take to answer: it may be reconnecting itself. */
#define MUX_REPLY_TIMEOUT_S 20

int mux_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			if (poll(&pfd, 1, 5000) <= 0)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_exact(int fd, uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = read(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int mux_read_packet(int fd, uint8_t *buf, size_t max)
{
	uint8_t hdr[4];
	uint32_t len;
	struct wire_reader r;
	if (read_exact(fd, hdr, 4) < 0)
		return -1;
	wire_reader_init(&r, hdr, 4);
	if (wire_get_u32(&r, &len) || len == 0 || len > max)
		return -1;
	if (read_exact(fd, buf, len) < 0)
		return -1;
	return (int)len;
}

static void set_timeout(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Connect, send req (before the master's HELLO, which is read after it:
 * one wait fewer), and read the HELLO unless hello is false (then whoever
 * reads the socket next ignores it). Returns the socket, or -1. */
static int mux_open(const char *path, const struct wire_buf *req, bool hello, uint32_t *pid,
		    enum mux_result *res, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "ControlPath \"%s\" too long for Unix domain socket", path);
		*res = MUX_UNUSABLE;
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		*res = MUX_UNUSABLE;
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		snprintf(err, errlen, "Control socket connect(%s): %s", path, strerror(e));
		*res = e == ENOENT || e == ECONNREFUSED ? MUX_NO_MASTER : MUX_UNUSABLE;
		close(fd);
		return -1;
	}
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != getuid()) {
		snprintf(err, errlen, "control socket %s: the master runs as another user", path);
		*res = MUX_UNUSABLE;
		close(fd);
		return -1;
	}
	set_timeout(fd, 5);
	if (mux_write_all(fd, wire_buf_ptr(req), wire_buf_len(req)) < 0) {
		snprintf(err, errlen, "control socket %s: the master went away", path);
		*res = MUX_NO_ANSWER;
		close(fd);
		return -1;
	}
	if (!hello)
		return fd;
	uint8_t buf[512];
	int n = mux_read_packet(fd, buf, sizeof(buf));
	struct wire_reader r;
	uint8_t type = 0;
	const uint8_t *magic = NULL;
	uint32_t mlen = 0, version = 0;
	wire_reader_init(&r, buf, n > 0 ? (size_t)n : 0);
	if (n < 0 || wire_get_u8(&r, &type) || type != MUX_HELLO ||
	    wire_get_string(&r, &magic, &mlen) || mlen != strlen(MUX_MAGIC) ||
	    memcmp(magic, MUX_MAGIC, mlen) != 0 || wire_get_u32(&r, &version) ||
	    wire_get_u32(&r, pid)) {
		snprintf(err, errlen, "control socket %s: not a hashi master", path);
		*res = MUX_UNUSABLE;
		close(fd);
		return -1;
	}
	return fd;
}

/* Read the answer to the request into buf; returns its length or -1. */
static int mux_answer(int fd, uint8_t *buf, size_t max, int timeout_s)
{
	set_timeout(fd, timeout_s);
	return mux_read_packet(fd, buf, max);
}

/* OK (pid), FAIL or TEXT. Returns 0 for OK/TEXT, -1 otherwise (err set). */
static int parse_answer(const uint8_t *buf, int n, const char *path, uint32_t *pid, char **text,
			enum mux_result *res, char *err, size_t errlen)
{
	struct wire_reader r;
	uint8_t type;
	uint32_t code;
	char *s = NULL;
	if (n < 0) {
		snprintf(err, errlen, "control socket %s: no answer from the master", path);
		*res = MUX_NO_ANSWER;
		return -1;
	}
	wire_reader_init(&r, buf, (size_t)n);
	if (wire_get_u8(&r, &type) == 0) {
		if (type == MUX_OK && wire_get_u32(&r, pid) == 0)
			return 0;
		if (type == MUX_TEXT && wire_get_cstring(&r, &s, MUX_MAX_PACKET) == 0) {
			if (text != NULL)
				*text = s;
			else
				free(s);
			return 0;
		}
		if (type == MUX_FAIL && wire_get_u32(&r, &code) == 0 &&
		    wire_get_cstring(&r, &s, 1024) == 0) {
			snprintf(err, errlen, "the master refused: %s", s);
			free(s);
			*res = MUX_REFUSED;
			return -1;
		}
	}
	snprintf(err, errlen, "control socket %s: a malformed answer from the master", path);
	*res = MUX_UNUSABLE;
	return -1;
}

static void request(struct wire_buf *b, uint8_t type)
{
	size_t mark;
	wire_buf_init(b, MUX_MAX_PACKET);
	wire_packet_begin(b, type, &mark);
	wire_packet_end(b, mark);
}

int transport_mux_request(const char *path, uint8_t type, uint32_t *pid, char **text,
			  enum mux_result *res, char *err, size_t errlen)
{
	uint32_t hello_pid;
	struct wire_buf b;
	request(&b, type);
	int fd = mux_open(path, &b, true, &hello_pid, res, err, errlen);
	wire_buf_free(&b);
	if (fd < 0)
		return -1;
	uint8_t *buf = malloc(MUX_MAX_PACKET);
	int ret = -1;
	if (buf != NULL) {
		int n = mux_answer(fd, buf, MUX_MAX_PACKET, 10);
		ret = parse_answer(buf, n, path, pid, text, res, err, errlen);
	}
	free(buf);
	close(fd);
	if (ret == 0)
		*res = MUX_DONE;
	return ret;
}

/* Open a connection, ask for a channel (BORROW, and read the OK) or to
 * report (REPORT) for mountpoint. Returns the socket, or -1. */
static int mux_ask(const char *path, uint8_t type, const char *mountpoint, unsigned reconnects,
		   enum mux_result *res, char *err, size_t errlen)
{
	uint32_t pid;
	struct wire_buf b;
	size_t mark;
	uint8_t buf[1200];
	wire_buf_init(&b, MUX_MAX_PACKET);
	if (wire_packet_begin(&b, type, &mark) ||
	    wire_put_cstring(&b, mountpoint != NULL ? mountpoint : "") ||
	    (type == MUX_BORROW && wire_put_u32(&b, reconnects)) || wire_packet_end(&b, mark)) {
		wire_buf_free(&b);
		snprintf(err, errlen, "out of memory");
		*res = MUX_UNUSABLE;
		return -1;
	}
	/* (a REPORT follows a BORROW, which has seen the HELLO of a master
	 * there; our reporter ignores this one) */
	int fd = mux_open(path, &b, type != MUX_REPORT, &pid, res, err, errlen);
	wire_buf_free(&b);
	if (fd < 0)
		return -1;
	if (type == MUX_REPORT) {
		/* Not worth a round trip before the mount: the master's answer
		 * (OK, or FAIL and the end) is read with its STATS_REQs. */
		set_timeout(fd, 0);
		*res = MUX_DONE;
		return fd;
	}
	int n = mux_answer(fd, buf, sizeof(buf), MUX_REPLY_TIMEOUT_S);
	if (parse_answer(buf, n, path, &pid, NULL, res, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	set_timeout(fd, 0);
	log_debug("borrowed an SFTP channel from the master (pid %u) at %s", pid, path);
	*res = MUX_DONE;
	return fd;
}

int transport_mux_report(const char *path, const char *mountpoint, enum mux_result *res,
			 char *err, size_t errlen)
{
	return mux_ask(path, MUX_REPORT, mountpoint, 0, res, err, errlen);
}

struct transport *transport_mux_borrow(const char *path, const char *mountpoint,
				       unsigned reconnects, enum mux_result *res, char *err,
				       size_t errlen)
{
	int fd = mux_ask(path, MUX_BORROW, mountpoint, reconnects, res, err, errlen);
	if (fd < 0)
		return NULL;
	struct transport *t = transport_fds(fd, fd, err, errlen);
	if (t == NULL) {
		close(fd);
		*res = MUX_UNUSABLE;
		return NULL;
	}
	return t;
}
