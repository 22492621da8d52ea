/*
 * Transports over plain descriptors: a child process (ssh_command=, or a
 * local server binary), a TCP connection (directport=), or two descriptors
 * we were given (passive). Also the helpers the ssh transport shares:
 * connecting a TCP socket as ssh does, and running a child on a
 * socketpair.
 */
#include "transport.h"
#include "transport-int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void transport_destroy(struct transport *t)
{
	if (t != NULL)
		t->ops->destroy(t);
}

void transport_abandon(struct transport *t)
{
	if (t != NULL) {
		t->abandoned = true;
		t->ops->destroy(t);
	}
}

void transport_set_error(struct transport *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->error, sizeof(t->error), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ */
/* shared helpers */

static int set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -1;
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, fl);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One non-blocking connect with a deadline; returns 0 or an errno. */
static int connect_one(int fd, const struct sockaddr *sa, socklen_t salen, int timeout_s)
{
	if (connect(fd, sa, salen) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return errno;

	long long deadline = timeout_s > 0 ? now_ms() + (long long)timeout_s * 1000 : -1;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int wait = -1;
		if (deadline >= 0) {
			long long left = deadline - now_ms();
			if (left <= 0)
				return ETIMEDOUT;
			wait = left > 1000000 ? 1000000 : (int)left;
		}
		int r = poll(&p, 1, wait);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			continue; /* the deadline check above ends this */
		int soerr = 0;
		socklen_t l = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0)
			return errno;
		return soerr;
	}
}

int transport_sock_connect(const char *host, const char *port, int family, int timeout_s,
			   const char *prefix, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	const char *pre = prefix != NULL ? prefix : "";
	const char *sep = prefix != NULL ? ": " : "";
	int last = 0;

	int r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		snprintf(err, errlen, "%s%sCould not resolve hostname %s: %s", pre, sep, host,
			 r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		last = connect_one(fd, ai->ai_addr, ai->ai_addrlen, timeout_s);
		if (last == 0) {
			int one = 1;
			set_nonblock(fd, false);
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			freeaddrinfo(res);
			return fd;
		}
		close(fd);
	}
	freeaddrinfo(res);
	snprintf(err, errlen, "%s%sconnect to host %s port %s: %s", pre, sep, host, port,
		 strerror(last != 0 ? last : EHOSTUNREACH));
	return -1;
}

void transport_sock_keepalive(int fd, unsigned user_timeout_ms)
{
	int one = 1;
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
		return;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
#ifdef TCP_USER_TIMEOUT
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
#else
	(void)user_timeout_ms;
#endif
}

int transport_spawn(char *const argv[], const char *shell_cmd, pid_t *pidp, int *errfd,
		    char *err, size_t errlen)
{
	int sv[2], ep[2], xp[2] = { -1, -1 };
	const char *what = shell_cmd != NULL ? "/bin/sh" : argv[0];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return -1;
	}
	if (pipe2(ep, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	/* The child's stderr comes back through a pipe that we relay: a child
	 * holding our own stderr would keep `$(hashi ...)` waiting after we go
	 * to the background. */
	if (errfd != NULL && pipe2(xp, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		close(ep[0]);
		close(ep[1]);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		close(ep[0]);
		close(ep[1]);
		if (xp[0] >= 0) {
			close(xp[0]);
			close(xp[1]);
		}
		return -1;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here on. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(sv[1], 0) < 0 || dup2(sv[1], 1) < 0)
			_exit(127);
		if (xp[1] >= 0 && dup2(xp[1], 2) < 0)
			_exit(127);
		if (shell_cmd != NULL)
			execl("/bin/sh", "sh", "-c", shell_cmd, (char *)NULL);
		else
			execvp(argv[0], argv);
		int e = errno;
		ssize_t w = write(ep[1], &e, sizeof(e));
		(void)w;
		_exit(127);
	}
	close(sv[1]);
	close(ep[1]);
	if (xp[1] >= 0) {
		close(xp[1]);
		set_nonblock(xp[0], true);
		*errfd = xp[0];
	}
	int e = 0;
	ssize_t n;
	do {
		n = read(ep[0], &e, sizeof(e));
	} while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == (ssize_t)sizeof(e)) {
		snprintf(err, errlen, "%s: %s", what, strerror(e));
		close(sv[0]);
		if (xp[0] >= 0)
			close(xp[0]);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return -1;
	}
	*pidp = pid;
	return sv[0];
}

void transport_reap(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
#ifdef SYS_pidfd_open
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd >= 0) {
		struct pollfd p = { .fd = pfd, .events = POLLIN };
		long long deadline = now_ms() + 2000;
		for (;;) {
			long long left = deadline - now_ms();
			if (left <= 0)
				break;
			int r = poll(&p, 1, (int)left);
			if (r > 0 || (r < 0 && errno != EINTR))
				break;
		}
		close(pfd);
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
	}
#endif
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* descriptor transports */

struct fd_transport {
	struct transport base;
	int in, out;
	int err;   /* the command's stderr, relayed to ours; -1 if none */
	bool in_sock, out_sock;
	pid_t pid; /* command: the child, else 0 */
};

static bool is_socket(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Pass what the command said on its stderr on to ours. */
static void relay_stderr(struct fd_transport *f)
{
	char buf[4096];
	while (f->err >= 0) {
		ssize_t n = read(f->err, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN) {
				close(f->err);
				f->err = -1;
			}
			return;
		}
		ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
		(void)w;
	}
}

static ssize_t fd_read(struct transport *t, void *buf, size_t len)
{
	struct fd_transport *f = (struct fd_transport *)t;
	relay_stderr(f);
	for (;;) {
		ssize_t n = read(f->in, buf, len);
		if (n == 0)
			transport_set_error(t, "Connection closed");
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		int e = errno;
		transport_set_error(t, "read: %s", strerror(e));
		return -e;
	}
}

static ssize_t fd_write(struct transport *t, const void *buf, size_t len)
{
	struct fd_transport *f = (struct fd_transport *)t;
	for (;;) {
		ssize_t n = f->out_sock ? send(f->out, buf, len, MSG_NOSIGNAL)
					: write(f->out, buf, len);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		int e = errno;
		transport_set_error(t, "write: %s", strerror(e));
		return -e;
	}
}

static int fd_pollfds(struct transport *t, bool want_write, struct pollfd *pfd, int max)
{
	struct fd_transport *f = (struct fd_transport *)t;
	int n = 0;

	if (max < 1)
		return 0;
	pfd[n].fd = f->in;
	pfd[n].events = POLLIN;
	pfd[n].revents = 0;
	if (f->err >= 0 && max >= 3) {
		n++;
		pfd[n].fd = f->err;
		pfd[n].events = POLLIN;
		pfd[n].revents = 0;
	}
	if (want_write) {
		if (f->out == f->in) {
			pfd[0].events |= POLLOUT; /* (pfd[n] may be stderr's) */
		} else if (max >= 2) {
			n++;
			pfd[n].fd = f->out;
			pfd[n].events = POLLOUT;
			pfd[n].revents = 0;
		}
	}
	return n + 1;
}

static void fd_destroy(struct transport *t)
{
	struct fd_transport *f = (struct fd_transport *)t;
	relay_stderr(f);
	if (f->err >= 0)
		close(f->err);
	if (f->out >= 0 && f->out != f->in)
		close(f->out);
	if (f->in >= 0)
		close(f->in);
	transport_reap(f->pid);
	free(f);
}

static const struct transport_ops command_ops = {
	.name = "command", .read = fd_read, .write = fd_write, .pollfds = fd_pollfds,
	.destroy = fd_destroy,
};
static const struct transport_ops tcp_ops = {
	.name = "tcp", .read = fd_read, .write = fd_write, .pollfds = fd_pollfds,
	.destroy = fd_destroy,
};
static const struct transport_ops fds_ops = {
	.name = "fds", .read = fd_read, .write = fd_write, .pollfds = fd_pollfds,
	.destroy = fd_destroy,
};

static struct transport *fd_new(const struct transport_ops *ops, int in, int out, pid_t pid,
				char *err, size_t errlen)
{
	struct fd_transport *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (set_nonblock(in, true) < 0 || set_nonblock(out, true) < 0) {
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		free(f);
		return NULL;
	}
	f->base.ops = ops;
	f->in = in;
	f->out = out;
	f->err = -1;
	f->in_sock = is_socket(in);
	f->out_sock = is_socket(out);
	f->pid = pid;
	return &f->base;
}

struct transport *transport_command_start(char *const argv[], char *err, size_t errlen)
{
	pid_t pid = 0;

	if (argv == NULL || argv[0] == NULL) {
		snprintf(err, errlen, "no command to run");
		return NULL;
	}
	int errfd = -1;
	int fd = transport_spawn(argv, NULL, &pid, &errfd, err, errlen);
	if (fd < 0)
		return NULL;
	struct transport *t = fd_new(&command_ops, fd, fd, pid, err, errlen);
	if (t)
		((struct fd_transport *)t)->err = errfd;
	else if (errfd >= 0)
		close(errfd);
	if (t == NULL) {
		close(fd);
		transport_reap(pid);
	}
	return t;
}

struct transport *transport_tcp_connect(const char *host, const char *port, char *err,
					size_t errlen)
{
	int fd = transport_sock_connect(host, port, AF_UNSPEC, 0, NULL, err, errlen);
	if (fd < 0)
		return NULL;
	transport_sock_keepalive(fd, 60000);
	struct transport *t = fd_new(&tcp_ops, fd, fd, 0, err, errlen);
	if (t == NULL)
		close(fd);
	return t;
}

struct transport *transport_fds(int in, int out, char *err, size_t errlen)
{
	if (in < 0 || out < 0) {
		snprintf(err, errlen, "bad descriptors");
		return NULL;
	}
	return fd_new(&fds_ops, in, out, 0, err, errlen);
}
