/*
 * The control socket: hashi's ControlMaster. See master.h, and mux.h for
 * the protocol.
 *
 * The master is this process when it holds the SSH connection and listens
 * at the ControlPath. Its accept thread checks each caller's uid
 * (SO_PEERCRED), answers CHECK, EXIT, STOP and STATUS itself, and queues a
 * BORROW for the I/O thread. The I/O thread drives the "lend" transport,
 * which wraps the libssh2 one: its own reads and writes go to the SSH
 * transport's channel, and after each poll it opens the queued channels and
 * relays bytes between each channel and its borrower's socket. When the
 * SSH connection breaks, the lend transport dies with it and so do the
 * relays: the borrowers reconnect (their requests are replayed) and are
 * served by the new lend transport once the master has reconnected.
 */
#include "master.h"
#include "transport/mux.h"
#include "log.h"
#include "sftp-proto.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RELAY_BUF (64 * 1024)
#define MAX_RELAYS 48 /* each needs a pollfd; sshd's MaxSessions is 10 by default */
#define LINGER_GRACE_S 3 /* ControlPersist=no: how long re-borrowers have to come back */
#define SPARES 1 /* channels kept open ahead of borrowers */
#define MAX_REPORTERS 64 /* borrowers' REPORT connections kept */
#define STATS_WAIT_MS 2000 /* -O status: how long borrowers have to answer */

/* ------------------------------------------------------------------ */
/* settings */

static void add_suffix(char *path, size_t len, const char *suffix)
{
	size_t n = strlen(path);
	snprintf(path + n, len - n, "%s", suffix);
}

int master_settings_get(const struct ssh_target *t, bool from_cmdline,
			struct master_settings *ms, char *err, size_t errlen)
{
	memset(ms, 0, sizeof(*ms));
	ms->control_master = t->control_master;
	ms->persist = t->control_persist;
	const char *cp = t->control_path;
	if (cp != NULL && strcasecmp(cp, "none") == 0) {
		ms->control_master = TARGET_CM_NO;
		return 0;
	}
	if (cp != NULL) {
		ms->path_configured = true;
		if (strlen(cp) + (from_cmdline ? 0 : 6) >= sizeof(ms->path)) {
			snprintf(err, errlen, "ControlPath \"%s\" too long for Unix domain socket",
				 cp);
			return -1;
		}
		snprintf(ms->path, sizeof(ms->path), "%s", cp);
		if (!from_cmdline)
			add_suffix(ms->path, sizeof(ms->path), ".hashi");
		return 0;
	}
	/* %C as ssh computes it: SHA-1 of %l%h%p%r */
	char local[256] = "", ruser[256];
	gethostname(local, sizeof(local) - 1);
	char *dot = strchr(local, '.');
	if (dot != NULL)
		*dot = '\0';
	if (t->user != NULL) {
		snprintf(ruser, sizeof(ruser), "%s", t->user);
	} else {
		struct passwd *pw = getpwuid(getuid());
		snprintf(ruser, sizeof(ruser), "%s", pw != NULL ? pw->pw_name : "");
	}
	gchar *id = g_strdup_printf("%s%s%s%s", local,
				    t->hostname != NULL ? t->hostname : t->host_arg,
				    t->port != NULL ? t->port : "22", ruser);
	gchar *hash = g_compute_checksum_for_string(G_CHECKSUM_SHA1, id, -1);
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dir[200];
	if (xdg != NULL && xdg[0] == '/') {
		snprintf(dir, sizeof(dir), "%s/hashi", xdg);
	} else {
		const char *home = getenv("HOME");
		struct passwd *pw = getpwuid(getuid());
		if (home == NULL || home[0] != '/')
			home = pw != NULL ? pw->pw_dir : "/";
		snprintf(dir, sizeof(dir), "%s/.ssh/hashi", home);
	}
	int n = snprintf(ms->path, sizeof(ms->path), "%s/%s", dir, hash);
	g_free(id);
	g_free(hash);
	if (n < 0 || (size_t)n >= sizeof(ms->path)) {
		snprintf(err, errlen, "ControlPath \"%s/...\" too long for Unix domain socket",
			 dir);
		return -1;
	}
	return 0;
}

/* The default directory (…/hashi) is ours to make, 0700. */
static void make_socket_dir(const char *path)
{
	char dir[108];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return;
	*slash = '\0';
	if (strcmp(strrchr(dir, '/') != NULL ? strrchr(dir, '/') + 1 : dir, "hashi") != 0)
		return; /* the user's own ControlPath: its directory is theirs */
	char parent[108];
	snprintf(parent, sizeof(parent), "%s", dir);
	char *ps = strrchr(parent, '/');
	if (ps != NULL && ps != parent) {
		*ps = '\0';
		mkdir(parent, 0700); /* ~/.ssh, if it is missing */
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		log_debug("mkdir %s: %s", dir, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* the master's state */

struct borrow_req {
	int fd;
	pid_t pid;
	char *mountpoint;
	unsigned reconnects;
	struct borrow_req *next;
};

/* Counts SFTP packets going one way through a relay (for requests in
 * flight), following the length fields. */
struct framer {
	uint8_t hdr[4];
	unsigned have;
	uint32_t left;
	uint64_t packets;
};

/* A channel opened ahead of borrowers. Once open, the master says INIT on
 * it and keeps what the server answers (its VERSION), and asks for its
 * limits@openssh.com if it has them, so that the borrower finds an
 * sftp-server that has started and answered, and gets those answers with
 * no wait (its own INIT, the same bytes, and its limits request go no
 * further: their answers are the same for every channel of a server). */
struct spare {
	struct transport_chan *ch;
	bool init_sent;
	bool version;       /* the whole VERSION is in pre */
	bool limits_asked;
	bool have_limits;   /* (limits: its answer) */
	bool warm;          /* nothing more to wait for */
	bool bad;           /* the server said something else: close it */
	uint8_t *pre;       /* what the server sent (RELAY_BUF) */
	size_t pre_len, version_len;
	uint64_t limits[4];
};

/* The id of the master's own limits request on a spare. */
#define SPARE_LIMITS_ID 1

struct relay {
	struct relay *next;
	int fd;
	struct transport_chan *ch;
	bool open; /* OK sent: bytes flow */
	bool fd_eof;
	uint8_t *up;   /* borrower -> channel */
	size_t up_len;
	uint8_t *down; /* channel -> borrower */
	size_t down_pos, down_len;
	pid_t pid;
	char *mountpoint;
	unsigned reconnects;
	uint64_t bytes_up, bytes_down;
	struct framer f_up, f_down;
	struct spare sp; /* its channel, until warm (then ch) */
	bool skip_init; /* the master said INIT on the channel: drop the borrower's */
	bool have_limits; /* and asked for limits@openssh.com: answer the borrower's */
	uint64_t limits[4];
};

/* A borrower's REPORT connection: it answers STATS_REQ with its own
 * figures (see mux.h). */
struct reporter {
	struct reporter *next;
	int fd;
	pid_t pid;      /* SO_PEERCRED's: its pid when it connected */
	pid_t now_pid;  /* as it says (it may have daemonized since) */
	char *mountpoint;
	bool answered;
	struct master_stats st;
};

struct lend {
	struct transport base;
	struct transport *inner;
	struct relay *relays;
	int n_inner; /* how many of the pollfds are the inner transport's */
	/* Channels opened ahead, their sftp-servers started: sshd takes far
	 * longer to start a session (a fork and two execs) than a borrower
	 * takes to mount, so the next borrowers find them ready. */
	struct spare spare[SPARES];
	bool spare_failed; /* (the server refused one: until a channel closes) */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool active;     /* this process is a master */
	bool lingering;  /* its own mount is gone */
	bool started;    /* master_start: the process is what it will stay */
	bool exiting;    /* -O exit */
	int lfd;         /* listening; -1 after -O stop */
	int stop_efd;
	int queue_efd;   /* borrow requests are queued */
	pthread_t thread;
	bool thread_running;
	char path[108];
	char mountpoint[4096];
	int persist;
	struct borrow_req *queue;
	int borrowers;   /* queued or relayed */
	struct lend *lend;
	master_stats_fn stats_fn;
	void *stats_arg;
	struct reporter *reporters; /* the accept thread's alone */
	uint32_t stats_seq;
} M = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.lfd = -1,
	.stop_efd = -1,
	.queue_efd = -1,
};

void master_set_stats(const char *mountpoint, master_stats_fn fn, void *arg)
{
	pthread_mutex_lock(&M.lock);
	snprintf(M.mountpoint, sizeof(M.mountpoint), "%s", mountpoint);
	M.stats_fn = fn;
	M.stats_arg = arg;
	pthread_mutex_unlock(&M.lock);
}

static void borrowers_add(int delta)
{
	M.borrowers += delta;
	pthread_cond_broadcast(&M.cond);
}

static void send_packet(int fd, struct wire_buf *b)
{
	if (mux_write_all(fd, wire_buf_ptr(b), wire_buf_len(b)) < 0)
		log_debug("control socket: a client went away before our answer");
}

static void send_ok(int fd)
{
	struct wire_buf b;
	size_t mark;
	wire_buf_init(&b, 64);
	if (wire_packet_begin(&b, MUX_OK, &mark) == 0 && wire_put_u32(&b, (uint32_t)getpid()) == 0 &&
	    wire_packet_end(&b, mark) == 0)
		send_packet(fd, &b);
	wire_buf_free(&b);
}

static void send_fail(int fd, uint32_t code, const char *why)
{
	struct wire_buf b;
	size_t mark;
	wire_buf_init(&b, 2048);
	if (wire_packet_begin(&b, MUX_FAIL, &mark) == 0 && wire_put_u32(&b, code) == 0 &&
	    wire_put_cstring(&b, why) == 0 && wire_packet_end(&b, mark) == 0)
		send_packet(fd, &b);
	wire_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* relays (the I/O thread) */

static void framer_feed(struct framer *f, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (f->left > 0) {
			size_t k = n < f->left ? n : f->left;
			f->left -= (uint32_t)k;
			p += k;
			n -= k;
			continue;
		}
		f->hdr[f->have++] = *p++;
		n--;
		if (f->have == 4) {
			struct wire_reader r;
			wire_reader_init(&r, f->hdr, 4);
			wire_get_u32(&r, &f->left);
			f->have = 0;
			f->packets++;
		}
	}
}

/* A whole packet at the start of buf? Its length (with the length field),
 * else 0. */
static size_t whole_packet(const uint8_t *buf, size_t len)
{
	struct wire_reader rd;
	uint32_t n = 0;
	wire_reader_init(&rd, buf, len);
	if (wire_get_u32(&rd, &n) != 0 || wire_remaining(&rd) < n)
		return 0;
	return 4 + (size_t)n;
}

static void relay_free(struct relay *r, bool close_chan)
{
	if (r->fd >= 0)
		close(r->fd);
	if (close_chan && (r->ch != NULL || r->sp.ch != NULL))
		transport_chan_close(r->ch != NULL ? r->ch : r->sp.ch);
	free(r->sp.pre);
	free(r->up);
	free(r->down);
	free(r->mountpoint);
	free(r);
}

/* The borrower's first packet, on a channel where the master said INIT:
 * it must be that INIT, and goes no further. False if it is not. */
static bool drop_init(struct relay *r)
{
	size_t n = whole_packet(r->up, r->up_len);
	if (n == 0)
		return true; /* not all of it yet */
	struct wire_reader rd;
	uint32_t len = 0;
	wire_reader_init(&rd, r->up, n);
	wire_get_u32(&rd, &len);
	uint8_t type = 0;
	uint32_t version = 0;
	if (len != 5 || wire_get_u8(&rd, &type) != 0 || type != SSH_FXP_INIT ||
	    wire_get_u32(&rd, &version) != 0 || version != SFTP_VERSION) {
		log_error("pid %d began with another packet than the INIT the master sent",
			  (int)r->pid);
		return false;
	}
	r->up_len -= 4 + (size_t)len;
	memmove(r->up, r->up + 4 + len, r->up_len);
	r->skip_init = false;
	return true;
}

/* The borrower's next packet, after the INIT the master dropped: if it
 * asks for limits@openssh.com, answer it with the spare's. */
static void answer_limits(struct relay *r)
{
	size_t n = whole_packet(r->up, r->up_len);
	if (n == 0)
		return; /* not all of it yet */
	r->have_limits = false;
	struct wire_reader rd;
	uint32_t len, id;
	uint8_t type;
	const uint8_t *name;
	uint32_t nl;
	wire_reader_init(&rd, r->up, n);
	if (wire_get_u32(&rd, &len) || wire_get_u8(&rd, &type) || type != SSH_FXP_EXTENDED ||
	    wire_get_u32(&rd, &id) || wire_get_string(&rd, &name, &nl) ||
	    nl != strlen(SFTP_EXT_LIMITS) || memcmp(name, SFTP_EXT_LIMITS, nl) != 0 ||
	    wire_remaining(&rd) != 0)
		return; /* something else: it goes on to the server */
	struct wire_buf b;
	size_t mark;
	wire_buf_init(&b, 64);
	bool ok = wire_packet_begin(&b, SSH_FXP_EXTENDED_REPLY, &mark) == 0 &&
		  wire_put_u32(&b, id) == 0;
	for (int i = 0; i < 4 && ok; i++)
		ok = wire_put_u64(&b, r->limits[i]) == 0;
	ok = ok && wire_packet_end(&b, mark) == 0;
	size_t k = wire_buf_len(&b);
	if (r->down_pos > 0) {
		memmove(r->down, r->down + r->down_pos, r->down_len);
		r->down_pos = 0;
	}
	if (ok && r->down_len + k <= RELAY_BUF) {
		memcpy(r->down + r->down_len, wire_buf_ptr(&b), k);
		framer_feed(&r->f_down, r->down + r->down_len, k);
		r->down_len += k;
		r->bytes_down += k;
		r->up_len -= n;
		memmove(r->up, r->up + n, r->up_len);
	}
	wire_buf_free(&b);
}

/* Move what can move both ways. Returns false when the relay is over. */
static bool relay_pump(struct relay *r)
{
	bool progress = true;
	while (progress) {
		progress = false;
		/* borrower -> channel */
		if (!r->fd_eof && r->up_len < RELAY_BUF) {
			ssize_t n = read(r->fd, r->up + r->up_len, RELAY_BUF - r->up_len);
			if (n > 0) {
				framer_feed(&r->f_up, r->up + r->up_len, (size_t)n);
				r->up_len += (size_t)n;
				r->bytes_up += (uint64_t)n;
				progress = true;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				r->fd_eof = true;
			}
		}
		if (r->skip_init && !drop_init(r))
			return false;
		if (!r->skip_init && r->have_limits)
			answer_limits(r);
		if (r->up_len > 0 && !r->skip_init) {
			ssize_t n = transport_chan_write(r->ch, r->up, r->up_len);
			if (n > 0) {
				memmove(r->up, r->up + n, r->up_len - (size_t)n);
				r->up_len -= (size_t)n;
				progress = true;
			} else if (n != -EAGAIN) {
				return false;
			}
		}
		if (r->fd_eof && r->up_len == 0)
			return false; /* the borrower is gone */
		/* channel -> borrower */
		if (r->down_len == 0) {
			ssize_t n = transport_chan_read(r->ch, r->down, RELAY_BUF);
			if (n > 0) {
				framer_feed(&r->f_down, r->down, (size_t)n);
				r->down_pos = 0;
				r->down_len = (size_t)n;
				r->bytes_down += (uint64_t)n;
				progress = true;
			} else if (n != -EAGAIN) {
				return false; /* the server's end closed, or the channel failed */
			}
		}
		if (r->down_len > 0) {
			ssize_t n = send(r->fd, r->down + r->down_pos, r->down_len, MSG_NOSIGNAL);
			if (n > 0) {
				r->down_pos += (size_t)n;
				r->down_len -= (size_t)n;
				progress = true;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				return false;
			}
		}
	}
	transport_chan_want_read(r->ch, r->down_len == 0);
	return true;
}

/* The spare to lend: a warm one, else an open one, else one still
 * opening; -1 if none. */
static int take_spare(struct lend *l)
{
	int k = -1, best = 0;
	for (int i = 0; i < SPARES; i++) {
		struct spare *sp = &l->spare[i];
		if (sp->ch == NULL)
			continue;
		int rank = sp->warm ? 3 : transport_chan_status(sp->ch) > 0 ? 2 : 1;
		if (rank > best) {
			best = rank;
			k = i;
		}
	}
	return k;
}

static void spare_clear(struct spare *sp)
{
	free(sp->pre);
	memset(sp, 0, sizeof(*sp));
}

/* SSH_FXP_INIT as hashi's engine sends it. */
static void init_packet(struct wire_buf *b)
{
	size_t mark;
	wire_buf_init(b, 16);
	wire_packet_begin(b, SSH_FXP_INIT, &mark);
	wire_put_u32(b, SFTP_VERSION);
	wire_packet_end(b, mark);
}

/* A warm channel to r: and what the server has said on it. */
static void lend_spare(struct spare *sp, struct relay *r)
{
	r->ch = sp->ch;
	transport_chan_want_read(r->ch, true);
	if (sp->init_sent) {
		r->skip_init = true;
		r->have_limits = sp->have_limits;
		memcpy(r->limits, sp->limits, sizeof(r->limits));
		memcpy(r->down, sp->pre, sp->pre_len);
		r->down_len = sp->pre_len;
		framer_feed(&r->f_down, r->down, r->down_len);
		r->bytes_down += r->down_len;
	}
	spare_clear(sp);
}

/* New borrowers from the queue: a channel each, opened in turn. */
static void take_borrowers(struct lend *l)
{
	uint64_t v;
	if (read(M.queue_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("control socket: eventfd: %s", strerror(errno));
	struct borrow_req *q = M.queue;
	M.queue = NULL;
	int n = 0;
	for (struct relay *r = l->relays; r != NULL; r = r->next)
		n++;
	while (q != NULL) {
		struct borrow_req *next = q->next;
		struct relay *r = calloc(1, sizeof(*r));
		if (r != NULL) {
			r->up = malloc(RELAY_BUF);
			r->down = malloc(RELAY_BUF);
		}
		int k = take_spare(l);
		if (r != NULL && r->up != NULL && r->down != NULL && k >= 0 && n < MAX_RELAYS) {
			r->sp = l->spare[k]; /* (warm, or warmed for r) */
			memset(&l->spare[k], 0, sizeof(l->spare[k]));
		}
		if (r == NULL || r->up == NULL || r->down == NULL || n >= MAX_RELAYS ||
		    (r->sp.ch == NULL && (r->sp.ch = transport_chan_open(l->inner)) == NULL)) {
			send_fail(q->fd, MUX_FAIL_BUSY, "the master lends no more channels");
			close(q->fd);
			if (r != NULL) {
				r->fd = -1;
				relay_free(r, true);
			}
			borrowers_add(-1);
		} else {
			r->fd = q->fd;
			r->pid = q->pid;
			r->mountpoint = q->mountpoint;
			q->mountpoint = NULL;
			r->reconnects = q->reconnects;
			r->next = l->relays;
			l->relays = r;
			n++;
			fcntl(r->fd, F_SETFL, fcntl(r->fd, F_GETFL) | O_NONBLOCK);
		}
		free(q->mountpoint);
		free(q);
		q = next;
	}
}

/* Does the VERSION packet in buf list extension name? */
static bool version_has(const uint8_t *buf, size_t len, const char *name)
{
	struct wire_reader rd;
	uint32_t n, version, nl, vl;
	uint8_t type;
	const uint8_t *k, *v;
	wire_reader_init(&rd, buf, len);
	if (wire_get_u32(&rd, &n) || wire_get_u8(&rd, &type) || type != SSH_FXP_VERSION ||
	    wire_get_u32(&rd, &version))
		return false;
	while (wire_get_string(&rd, &k, &nl) == 0 && wire_get_string(&rd, &v, &vl) == 0)
		if (nl == strlen(name) && memcmp(k, name, nl) == 0)
			return true;
	return false;
}

/* A limits request: EXTENDED id "limits@openssh.com". */
static void limits_request(struct wire_buf *b, uint32_t id)
{
	size_t mark;
	wire_buf_init(b, 64);
	wire_packet_begin(b, SSH_FXP_EXTENDED, &mark);
	wire_put_u32(b, id);
	wire_put_cstring(b, SFTP_EXT_LIMITS);
	wire_packet_end(b, mark);
}

/* Write b (and free it); false if it was not written. */
static bool write_packet(struct transport_chan *ch, struct wire_buf *b)
{
	bool ok = transport_chan_write(ch, wire_buf_ptr(b), wire_buf_len(b)) ==
		  (ssize_t)wire_buf_len(b);
	wire_buf_free(b);
	return ok; /* (nothing written otherwise: a spare's buffer is empty) */
}

/* The answer to our limits request, once whole in pre after the VERSION. */
static void take_limits(struct spare *sp)
{
	const uint8_t *p = sp->pre + sp->version_len;
	size_t len = sp->pre_len - sp->version_len, n = whole_packet(p, len);
	if (n == 0 && sp->pre_len < RELAY_BUF)
		return; /* not all of it yet */
	if (n == 0) {
		sp->bad = true; /* (an answer this long to our request) */
		return;
	}
	struct wire_reader rd;
	uint32_t plen, id;
	uint8_t type;
	wire_reader_init(&rd, p, n);
	sp->have_limits = wire_get_u32(&rd, &plen) == 0 && wire_get_u8(&rd, &type) == 0 &&
			  type == SSH_FXP_EXTENDED_REPLY && wire_get_u32(&rd, &id) == 0 &&
			  id == SPARE_LIMITS_ID;
	for (int i = 0; i < 4 && sp->have_limits; i++)
		sp->have_limits = wire_get_u64(&rd, &sp->limits[i]) == 0;
	sp->pre_len = sp->version_len; /* the borrower gets only the VERSION */
	sp->warm = true;
}

/* An open spare: say INIT (and ask for limits), and keep the answers. */
static void warm_up(struct spare *sp)
{
	if (sp->pre == NULL && (sp->pre = malloc(RELAY_BUF)) == NULL)
		return;
	struct wire_buf b;
	if (!sp->init_sent) {
		init_packet(&b);
		if (!(sp->init_sent = write_packet(sp->ch, &b)))
			return;
		transport_chan_want_read(sp->ch, true);
	}
	while (!sp->warm && !sp->bad) {
		ssize_t n = transport_chan_read(sp->ch, sp->pre + sp->pre_len,
						RELAY_BUF - sp->pre_len);
		if (n <= 0)
			return; /* (an error shows in its status) */
		sp->pre_len += (size_t)n;
		if (!sp->version) {
			sp->version_len = whole_packet(sp->pre, sp->pre_len);
			sp->version = sp->version_len > 0;
			if (!sp->version && sp->pre_len < RELAY_BUF)
				continue;
			/* (a VERSION this long: the relay reads the rest) */
			if (sp->version && version_has(sp->pre, sp->version_len, SFTP_EXT_LIMITS)) {
				limits_request(&b, SPARE_LIMITS_ID);
				sp->limits_asked = write_packet(sp->ch, &b);
			}
			if (!sp->limits_asked) {
				sp->warm = true;
				break;
			}
		}
		take_limits(sp);
	}
	transport_chan_want_read(sp->ch, false);
}

/* Keep the spare channels opening, open or warm while we listen. */
static void keep_spare(struct lend *l)
{
	for (int i = 0; i < SPARES; i++) {
		struct spare *sp = &l->spare[i];
		if (sp->ch != NULL && (transport_chan_status(sp->ch) < 0 || sp->bad)) {
			log_debug("no spare channel: %s", sp->bad ? "a strange answer"
								  : transport_chan_error(sp->ch));
			transport_chan_close(sp->ch);
			spare_clear(sp);
			l->spare_failed = true;
		}
		if (sp->ch == NULL && !l->spare_failed && M.lfd >= 0) {
			sp->ch = transport_chan_open(l->inner);
			if (sp->ch != NULL)
				transport_chan_want_read(sp->ch, false);
		} else if (sp->ch != NULL && transport_chan_status(sp->ch) > 0) {
			warm_up(sp);
		}
	}
}

static void lend_work(struct lend *l)
{
	pthread_mutex_lock(&M.lock);
	transport_chans_service(l->inner);
	if (M.queue != NULL)
		take_borrowers(l);
	keep_spare(l);
	for (struct relay **pp = &l->relays; *pp != NULL;) {
		struct relay *r = *pp;
		bool keep = true;
		if (!r->open) {
			struct transport_chan *ch = r->sp.ch;
			if (transport_chan_status(ch) > 0)
				warm_up(&r->sp);
			if (transport_chan_status(ch) < 0 || r->sp.bad) {
				const char *why = r->sp.bad ? "the server's SFTP session did not start"
							    : transport_chan_error(ch);
				log_info("cannot lend a channel to pid %d: %s", (int)r->pid, why);
				send_fail(r->fd, MUX_FAIL_CHANNEL, why);
				keep = false;
			} else if (r->sp.warm) {
				lend_spare(&r->sp, r);
				send_ok(r->fd);
				r->open = true;
				log_info("lending an SFTP channel to pid %d (%s)", (int)r->pid,
					 r->mountpoint);
			}
		}
		if (keep && r->open)
			keep = relay_pump(r);
		if (!keep) {
			if (r->open)
				log_info("the channel lent to pid %d (%s) is closed", (int)r->pid,
					 r->mountpoint);
			*pp = r->next;
			relay_free(r, true);
			borrowers_add(-1);
			l->spare_failed = false;
		} else {
			pp = &r->next;
		}
	}
	transport_chans_service(l->inner);
	pthread_mutex_unlock(&M.lock);
}

static ssize_t lend_read(struct transport *t, void *buf, size_t len)
{
	struct lend *l = (struct lend *)t;
	ssize_t n = l->inner->ops->read(l->inner, buf, len);
	if (n == -EAGAIN)
		lend_work(l); /* the engine is about to wait: our turn */
	if (n <= 0 && n != -EAGAIN)
		snprintf(t->error, sizeof(t->error), "%s", transport_error(l->inner));
	return n;
}

static ssize_t lend_write(struct transport *t, const void *buf, size_t len)
{
	struct lend *l = (struct lend *)t;
	ssize_t n = l->inner->ops->write(l->inner, buf, len);
	if (n < 0 && n != -EAGAIN)
		snprintf(t->error, sizeof(t->error), "%s", transport_error(l->inner));
	return n;
}

static int lend_pollfds(struct transport *t, bool want_write, struct pollfd *pfd, int max)
{
	struct lend *l = (struct lend *)t;
	int n = l->inner->ops->pollfds(l->inner, want_write, pfd, max > 2 ? 2 : max);
	l->n_inner = n;
	if (n < max) {
		pfd[n].fd = M.queue_efd;
		pfd[n].events = POLLIN;
		pfd[n].revents = 0;
		n++;
	}
	for (struct relay *r = l->relays; r != NULL && n < max; r = r->next) {
		if (!r->open)
			continue;
		short ev = (short)((!r->fd_eof && r->up_len < RELAY_BUF ? POLLIN : 0) |
				   (r->down_len > 0 ? POLLOUT : 0));
		if (ev == 0)
			continue;
		pfd[n].fd = r->fd;
		pfd[n].events = ev;
		pfd[n].revents = 0;
		n++;
	}
	return n;
}

static void lend_after_poll(struct transport *t, const struct pollfd *pfd, int n)
{
	struct lend *l = (struct lend *)t;
	if (l->inner->ops->after_poll != NULL)
		l->inner->ops->after_poll(l->inner, pfd, n < l->n_inner ? n : l->n_inner);
	lend_work(l);
}

static void lend_destroy(struct transport *t)
{
	struct lend *l = (struct lend *)t;
	pthread_mutex_lock(&M.lock);
	if (M.lend == l)
		M.lend = NULL;
	int closed = 0;
	while (l->relays != NULL) {
		struct relay *r = l->relays;
		l->relays = r->next;
		relay_free(r, false); /* the channels go with the session */
		closed++;
	}
	for (int i = 0; i < SPARES; i++)
		spare_clear(&l->spare[i]);
	borrowers_add(-closed);
	pthread_mutex_unlock(&M.lock);
	if (closed > 0)
		log_info("the connection is gone: %d borrowed channel(s) closed", closed);
	if (t->abandoned)
		transport_abandon(l->inner);
	else
		transport_destroy(l->inner);
	free(l);
}

static const struct transport_ops lend_ops = {
	.name = "ssh",
	.read = lend_read,
	.write = lend_write,
	.pollfds = lend_pollfds,
	.after_poll = lend_after_poll,
	.destroy = lend_destroy,
};

static struct transport *lend_new(struct transport *inner)
{
	struct lend *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return inner; /* no lending, but a working mount */
	l->base.ops = &lend_ops;
	l->inner = inner;
	pthread_mutex_lock(&M.lock);
	M.lend = l;
	pthread_mutex_unlock(&M.lock);
	return &l->base;
}

/* ------------------------------------------------------------------ */
/* the borrowers' own figures, for -O status (see mux.h) */

static void sock_timeouts(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* The peer has closed (or the socket failed): nothing more will come. */
static bool hung_up(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

static void reporter_free(struct reporter *p)
{
	close(p->fd);
	free(p->mountpoint);
	free(p);
}

/* Drop the reporters whose borrower has gone. Returns how many remain. */
static int reporters_prune(void)
{
	int n = 0;
	for (struct reporter **pp = &M.reporters; *pp != NULL;) {
		struct reporter *p = *pp;
		if (hung_up(p->fd)) {
			*pp = p->next;
			reporter_free(p);
		} else {
			n++;
			pp = &p->next;
		}
	}
	return n;
}

static void stats_decode(struct wire_reader *r, uint32_t want_seq, struct reporter *p)
{
	uint32_t seq, reconnects, pid;
	uint8_t connected;
	struct master_stats st = { 0 };
	if (wire_get_u32(r, &seq) || wire_get_u32(r, &pid) || wire_get_u8(r, &connected) ||
	    wire_get_u64(r, &st.in_flight) || wire_get_u64(r, &st.bytes_sent) ||
	    wire_get_u64(r, &st.bytes_received) || wire_get_u32(r, &reconnects) ||
	    wire_get_u64(r, &st.cache_hits) || wire_get_u64(r, &st.cache_lookups) ||
	    seq != want_seq)
		return; /* malformed, or the answer to an earlier request */
	if (st.cache_hits > st.cache_lookups)
		st.cache_lookups = st.cache_hits;
	st.connected = connected != 0;
	st.reconnects = reconnects;
	p->now_pid = (pid_t)pid;
	p->st = st;
	p->answered = true;
}

/* Ask every borrower for its figures and wait (a while) for the answers.
 * The accept thread's: it alone holds the reporters. */
static void reporters_collect(void)
{
	reporters_prune();
	uint32_t seq = ++M.stats_seq;
	struct wire_buf b;
	size_t mark;
	wire_buf_init(&b, 64);
	bool built = wire_packet_begin(&b, MUX_STATS_REQ, &mark) == 0 &&
		     wire_put_u32(&b, seq) == 0 && wire_packet_end(&b, mark) == 0;
	for (struct reporter *p = M.reporters; p != NULL; p = p->next) {
		p->answered = false;
		if (built && mux_write_all(p->fd, wire_buf_ptr(&b), wire_buf_len(&b)) < 0)
			shutdown(p->fd, SHUT_RDWR); /* pruned next time */
	}
	wire_buf_free(&b);
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (struct reporter *p = M.reporters; p != NULL; p = p->next) {
		uint8_t buf[256];
		while (!p->answered) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			long left = STATS_WAIT_MS - ((now.tv_sec - t0.tv_sec) * 1000 +
						     (now.tv_nsec - t0.tv_nsec) / 1000000);
			struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
			if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
				break;
			int n = mux_read_packet(p->fd, buf, sizeof(buf));
			struct wire_reader r;
			uint8_t type;
			wire_reader_init(&r, buf, n > 0 ? (size_t)n : 0);
			if (n < 0 || wire_get_u8(&r, &type)) {
				shutdown(p->fd, SHUT_RDWR);
				break;
			}
			if (type == MUX_STATS)
				stats_decode(&r, seq, p);
		}
	}
}

/* A borrower's REPORT: keep its connection (the fd is ours now). */
static void reporters_add(int fd, pid_t pid, char *mountpoint)
{
	if (reporters_prune() >= MAX_REPORTERS) {
		send_fail(fd, MUX_FAIL_BUSY, "too many borrowers");
		close(fd);
		free(mountpoint);
		return;
	}
	struct reporter *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		close(fd);
		free(mountpoint);
		return;
	}
	p->fd = fd;
	p->pid = pid;
	p->mountpoint = mountpoint;
	sock_timeouts(fd, 2);
	send_ok(fd);
	struct reporter **pp = &M.reporters;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = p; /* in the order they came */
}

static void reporters_free(void)
{
	while (M.reporters != NULL) {
		struct reporter *p = M.reporters;
		M.reporters = p->next;
		reporter_free(p);
	}
}

/* The borrower's side: a thread that answers STATS_REQ on the REPORT
 * connection made when a channel was borrowed. */
static struct {
	pthread_mutex_t lock;
	int fd;      /* the connection served; -1 */
	int pending; /* a newer one (after a re-borrow), for the thread to take */
	int efd;     /* wakes the thread (a new connection, or the end) */
	bool stop;
	bool running;
	pthread_t thread;
} R = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .pending = -1, .efd = -1 };

static void wake(int efd)
{
	uint64_t one = 1;
	if (efd >= 0 && write(efd, &one, sizeof(one)) < 0)
		log_debug("control socket: eventfd: %s", strerror(errno));
}

static int report_answer(int fd, const uint8_t *buf, int n)
{
	struct wire_reader r;
	uint8_t type;
	uint32_t seq;
	wire_reader_init(&r, buf, (size_t)n);
	if (wire_get_u8(&r, &type) || type != MUX_STATS_REQ || wire_get_u32(&r, &seq))
		return 0; /* nothing we know: ignored */
	struct master_stats st = { 0 };
	pthread_mutex_lock(&M.lock);
	if (M.stats_fn != NULL)
		M.stats_fn(M.stats_arg, &st);
	pthread_mutex_unlock(&M.lock);
	struct wire_buf b;
	size_t mark;
	wire_buf_init(&b, 128);
	int ret = -1;
	if (wire_packet_begin(&b, MUX_STATS, &mark) == 0 && wire_put_u32(&b, seq) == 0 &&
	    wire_put_u32(&b, (uint32_t)getpid()) == 0 && wire_put_u8(&b, st.connected ? 1 : 0) == 0 && wire_put_u64(&b, st.in_flight) == 0 &&
	    wire_put_u64(&b, st.bytes_sent) == 0 && wire_put_u64(&b, st.bytes_received) == 0 &&
	    wire_put_u32(&b, st.reconnects) == 0 && wire_put_u64(&b, st.cache_hits) == 0 &&
	    wire_put_u64(&b, st.cache_lookups) == 0 && wire_packet_end(&b, mark) == 0)
		ret = mux_write_all(fd, wire_buf_ptr(&b), wire_buf_len(&b));
	wire_buf_free(&b);
	return ret;
}

static void *reporter_thread(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&R.lock);
		if (R.stop) {
			pthread_mutex_unlock(&R.lock);
			break;
		}
		if (R.pending >= 0) {
			if (R.fd >= 0)
				close(R.fd);
			R.fd = R.pending;
			R.pending = -1;
			sock_timeouts(R.fd, 5);
		}
		int fd = R.fd;
		pthread_mutex_unlock(&R.lock);
		struct pollfd p[2] = { { .fd = R.efd, .events = POLLIN },
				       { .fd = fd, .events = POLLIN } };
		if (poll(p, fd >= 0 ? 2 : 1, -1) < 0)
			continue;
		if (p[0].revents) {
			uint64_t v;
			if (read(R.efd, &v, sizeof(v)) < 0)
				log_debug("control socket: eventfd: %s", strerror(errno));
			continue;
		}
		if (fd < 0 || !p[1].revents)
			continue;
		uint8_t buf[256];
		int n = mux_read_packet(fd, buf, sizeof(buf));
		if (n < 0 || report_answer(fd, buf, n) < 0) {
			pthread_mutex_lock(&R.lock);
			close(fd); /* the master is gone: a re-borrow reports anew */
			R.fd = -1;
			pthread_mutex_unlock(&R.lock);
		}
	}
	return NULL;
}

static bool start_thread_fn(pthread_t *th, void *(*fn)(void *))
{
	sigset_t block, prev;
	sigfillset(&block);
	pthread_sigmask(SIG_BLOCK, &block, &prev);
	bool ok = pthread_create(th, NULL, fn, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &prev, NULL);
	return ok;
}

/* After fuse_daemonize (whose fork keeps no thread), or at once later. */
static void reporter_start(void)
{
	pthread_mutex_lock(&R.lock);
	if (!R.running && !R.stop && R.efd >= 0 && (R.fd >= 0 || R.pending >= 0))
		R.running = start_thread_fn(&R.thread, reporter_thread);
	pthread_mutex_unlock(&R.lock);
}

/* We have just borrowed a channel from the master at path: make sure it
 * can ask us for our figures. */
static void report_to(const char *path, const char *mountpoint)
{
	pthread_mutex_lock(&R.lock);
	bool have = R.pending >= 0 || (R.fd >= 0 && !hung_up(R.fd));
	if (R.efd < 0)
		R.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_unlock(&R.lock);
	if (have || R.efd < 0)
		return;
	enum mux_result res;
	char why[512];
	int fd = transport_mux_report(path, mountpoint, &res, why, sizeof(why));
	if (fd < 0) {
		log_debug("no figures for -O status: %s", why);
		return;
	}
	pthread_mutex_lock(&R.lock);
	if (R.pending >= 0)
		close(R.pending);
	R.pending = fd;
	pthread_mutex_unlock(&R.lock);
	wake(R.efd);
	if (M.started)
		reporter_start();
}

static void reporter_stop(void)
{
	pthread_mutex_lock(&R.lock);
	R.stop = true;
	bool running = R.running;
	R.running = false;
	pthread_mutex_unlock(&R.lock);
	wake(R.efd);
	if (running)
		pthread_join(R.thread, NULL);
	if (R.fd >= 0)
		close(R.fd);
	if (R.pending >= 0)
		close(R.pending);
	R.fd = R.pending = -1;
}

/* ------------------------------------------------------------------ */
/* the accept thread */

static void human_bytes(uint64_t n, char *out, size_t len)
{
	if (n < 10 * 1024)
		snprintf(out, len, "%llu B", (unsigned long long)n);
	else if (n < 10ull * 1024 * 1024)
		snprintf(out, len, "%.1f KiB", (double)n / 1024);
	else if (n < 10ull * 1024 * 1024 * 1024)
		snprintf(out, len, "%.1f MiB", (double)n / (1024 * 1024));
	else
		snprintf(out, len, "%.1f GiB", (double)n / (1024.0 * 1024 * 1024));
}

static void append_mount(GString *s, const char *mountpoint, const char *role,
			 const struct master_stats *st)
{
	char a[32], b[32], hits[64];
	if (st->cache_lookups > 0)
		snprintf(hits, sizeof(hits), "%.1f%% of %llu",
			 100.0 * (double)st->cache_hits / (double)st->cache_lookups,
			 (unsigned long long)st->cache_lookups);
	else
		snprintf(hits, sizeof(hits), "n/a");
	human_bytes(st->bytes_sent, a, sizeof(a));
	human_bytes(st->bytes_received, b, sizeof(b));
	g_string_append_printf(s,
			       "%s (%s): %s; %llu requests in flight; sent %s, received %s; "
			       "%u reconnects; cache hits %s\n",
			       mountpoint, role, st->connected ? "connected" : "reconnecting",
			       (unsigned long long)st->in_flight, a, b, st->reconnects, hits);
}

/* After reporters_collect: each mount as its own engine and cache see it;
 * a borrowed channel whose borrower did not answer, as the relay sees it. */
static char *status_text(void)
{
	GString *s = g_string_new(NULL);
	struct master_stats st = { 0 };

	pthread_mutex_lock(&M.lock);
	if (M.stats_fn != NULL)
		M.stats_fn(M.stats_arg, &st);
	g_string_append_printf(s, "Master running (pid=%d), %s, %d borrowed channel(s)\n",
			       (int)getpid(),
			       M.lend != NULL ? "connected" : "reconnecting", M.borrowers);
	if (M.stats_fn == NULL)
		g_string_append_printf(s, "the master's own mount: gone, kept for the borrowers\n");
	else
		append_mount(s, M.mountpoint, "the master's own mount", &st);
	for (struct reporter *p = M.reporters; p != NULL; p = p->next) {
		if (!p->answered) {
			g_string_append_printf(s, "%s (borrower, pid %d): no answer\n",
					       p->mountpoint, (int)p->pid);
			continue;
		}
		gchar *role = g_strdup_printf("borrower, pid %d", (int)p->now_pid);
		append_mount(s, p->mountpoint, role, &p->st);
		g_free(role);
	}
	for (struct relay *r = M.lend != NULL ? M.lend->relays : NULL; r != NULL; r = r->next) {
		bool reported = false;
		for (struct reporter *p = M.reporters; p != NULL && !reported; p = p->next)
			reported = p->answered && (p->pid == r->pid || p->now_pid == r->pid);
		if (reported)
			continue;
		struct master_stats rs = {
			.connected = r->open,
			.in_flight = r->f_up.packets > r->f_down.packets ?
					     r->f_up.packets - r->f_down.packets : 0,
			.bytes_sent = r->bytes_up,
			.bytes_received = r->bytes_down,
			.reconnects = r->reconnects,
		};
		append_mount(s, r->mountpoint, "borrowed channel", &rs);
	}
	pthread_mutex_unlock(&M.lock);
	return g_string_free(s, FALSE);
}

static void send_text(int fd, const char *text)
{
	struct wire_buf b;
	size_t mark;
	wire_buf_init(&b, MUX_MAX_PACKET);
	if (wire_packet_begin(&b, MUX_TEXT, &mark) == 0 && wire_put_cstring(&b, text) == 0 &&
	    wire_packet_end(&b, mark) == 0)
		send_packet(fd, &b);
	wire_buf_free(&b);
}

/* Stop listening (the lock held). */
static void stop_listening(void)
{
	if (M.lfd >= 0) {
		close(M.lfd);
		M.lfd = -1;
		unlink(M.path);
		pthread_cond_broadcast(&M.cond); /* a lingering master may go */
	}
}

/* One client: the HELLO, its request, our answer. Returns false when the
 * thread should end (stop or exit). */
static bool serve_client(int fd)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != getuid()) {
		log_error("control socket: connection from uid %d refused",
			  cl == sizeof(cred) ? (int)cred.uid : -1);
		close(fd);
		return true;
	}
	sock_timeouts(fd, 5);

	struct wire_buf b;
	size_t mark;
	wire_buf_init(&b, 512);
	if (wire_packet_begin(&b, MUX_HELLO, &mark) == 0 && wire_put_cstring(&b, MUX_MAGIC) == 0 &&
	    wire_put_u32(&b, MUX_VERSION) == 0 && wire_put_u32(&b, (uint32_t)getpid()) == 0 &&
	    wire_packet_end(&b, mark) == 0)
		send_packet(fd, &b);
	wire_buf_free(&b);

	uint8_t buf[4200];
	int n = mux_read_packet(fd, buf, sizeof(buf));
	struct wire_reader r;
	uint8_t type = 0;
	wire_reader_init(&r, buf, n > 0 ? (size_t)n : 0);
	if (n < 0 || wire_get_u8(&r, &type)) {
		close(fd);
		return true;
	}
	switch (type) {
	case MUX_CHECK:
		send_ok(fd);
		break;
	case MUX_STATUS: {
		reporters_collect();
		char *text = status_text();
		send_text(fd, text);
		g_free(text);
		break;
	}
	case MUX_STOP:
		log_info("control socket: stop listening request");
		send_ok(fd);
		close(fd);
		pthread_mutex_lock(&M.lock);
		stop_listening();
		pthread_mutex_unlock(&M.lock);
		return false;
	case MUX_EXIT:
		log_info("control socket: exit request");
		send_ok(fd);
		close(fd);
		pthread_mutex_lock(&M.lock);
		M.exiting = true;
		bool mounted = !M.lingering;
		stop_listening();
		pthread_cond_broadcast(&M.cond);
		pthread_mutex_unlock(&M.lock);
		/* End the FUSE loop as a signal would (it unmounts). */
		if (mounted)
			kill(getpid(), SIGTERM);
		return false;
	case MUX_REPORT: {
		char *mp = NULL;
		if (wire_get_cstring(&r, &mp, 4096)) {
			close(fd);
			return true;
		}
		reporters_add(fd, cred.pid, mp);
		return true;
	}
	case MUX_BORROW: {
		struct borrow_req *q = calloc(1, sizeof(*q));
		char *mp = NULL;
		uint32_t rc = 0;
		if (q == NULL || wire_get_cstring(&r, &mp, 4096) || wire_get_u32(&r, &rc)) {
			free(q);
			free(mp);
			close(fd);
			return true;
		}
		q->fd = fd;
		q->pid = cred.pid;
		q->mountpoint = mp;
		q->reconnects = rc;
		pthread_mutex_lock(&M.lock);
		q->next = M.queue;
		M.queue = q;
		borrowers_add(1);
		pthread_mutex_unlock(&M.lock);
		wake(M.queue_efd);
		return true; /* the I/O thread answers, once the channel is open */
	}
	default:
		send_fail(fd, 0, "unknown request");
		break;
	}
	close(fd);
	return true;
}

static void *accept_thread(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&M.lock);
		int lfd = M.lfd;
		pthread_mutex_unlock(&M.lock);
		if (lfd < 0)
			break;
		struct pollfd pfd[2] = { { .fd = lfd, .events = POLLIN },
					 { .fd = M.stop_efd, .events = POLLIN } };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (!serve_client(fd))
			break;
	}
	return NULL;
}

static int start_thread(void)
{
	if (!M.thread_running)
		M.thread_running = start_thread_fn(&M.thread, accept_thread);
	return M.thread_running ? 0 : -1;
}

void master_start(void)
{
	M.started = true;
	reporter_start();
	if (M.lfd >= 0 && start_thread() < 0) {
		log_error("control socket: cannot start its thread, disabling multiplexing");
		pthread_mutex_lock(&M.lock);
		stop_listening();
		pthread_mutex_unlock(&M.lock);
	}
}

/* Listen at M.path (we hold the election lock, and no master answered
 * there: a socket left there is stale). */
static int start_listening(const struct master_settings *ms, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ms->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	struct stat stt;
	if (lstat(ms->path, &stt) == 0 && S_ISSOCK(stt.st_mode)) {
		log_info("control socket %s: replacing a stale socket", ms->path);
		unlink(ms->path);
	}
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "ControlSocket %s: %s", ms->path, strerror(errno));
		close(fd);
		return -1;
	}
	pthread_mutex_lock(&M.lock);
	snprintf(M.path, sizeof(M.path), "%s", ms->path);
	M.persist = ms->persist;
	M.lfd = fd;
	M.exiting = false;
	if (M.queue_efd < 0)
		M.queue_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (M.stop_efd < 0)
		M.stop_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_unlock(&M.lock);

	if ((M.started && start_thread() < 0) || M.queue_efd < 0 || M.stop_efd < 0) {
		snprintf(err, errlen, "control socket: cannot start listening");
		pthread_mutex_lock(&M.lock);
		stop_listening();
		pthread_mutex_unlock(&M.lock);
		return -1;
	}
	M.active = true;
	log_info("control socket listening at %s", ms->path);
	return 0;
}

/* ------------------------------------------------------------------ */
/* connecting: borrow, or become the master */

static int lock_election(const char *path)
{
	char lp[128];
	snprintf(lp, sizeof(lp), "%s.lock", path);
	int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
		;
	return fd;
}

static void unlock_election(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* Ask the master at ms->path for a channel (and report to it). */
static struct transport *ask_master(const struct master_settings *ms, const char *mountpoint,
				    unsigned reconnects, enum mux_result *res, char *why,
				    size_t whylen)
{
	struct transport *t = transport_mux_borrow(ms->path, mountpoint, reconnects, res, why,
						   whylen);
	if (t != NULL)
		report_to(ms->path, mountpoint);
	return t;
}

struct transport *master_borrow(const struct master_settings *ms, const char *mountpoint)
{
	enum mux_result res;
	char why[512];
	struct transport *t = ask_master(ms, mountpoint, 0, &res, why, sizeof(why));
	if (t == NULL)
		log_debug("%s", why);
	return t;
}

/* Try the master at ms->path. Returns its channel, or NULL with *res. */
static struct transport *borrow(const struct master_settings *ms, const char *mountpoint,
				unsigned reconnects, enum mux_result *res)
{
	char why[512];
	struct transport *t = ask_master(ms, mountpoint, reconnects, res, why, sizeof(why));
	if (t != NULL)
		return t;
	if (*res == MUX_REFUSED || (*res == MUX_NO_ANSWER && reconnects == 0))
		log_info("%s; connecting on our own", why);
	else if (*res == MUX_UNUSABLE)
		log_error("%s, disabling multiplexing", why);
	else
		log_debug("%s", why);
	return NULL;
}

/* A borrower that is reconnecting and finds the master alive but silent
 * (it queues borrowers while it reconnects itself, and answers them once
 * it is back) waits for it rather than log in on its own: the engine asks
 * again after its back-off. A new mount connects on its own instead. */
static bool wait_for_master(enum mux_result res, unsigned reconnects, const char *path,
			    char *err, size_t errlen)
{
	if (res != MUX_NO_ANSWER || reconnects == 0)
		return false;
	snprintf(err, errlen, "the master at %s has not answered yet (it may be reconnecting)",
		 path);
	return true;
}

struct transport *master_transport(const struct master_settings *ms, const char *mountpoint,
				   unsigned reconnects, master_connect_fn connect_fn, void *arg,
				   char *err, size_t errlen)
{
	enum mux_result res = MUX_NO_MASTER;
	struct transport *t;
	bool use = ms->path[0] != '\0' &&
		   (ms->control_master != TARGET_CM_NO || ms->path_configured);
	if (!use)
		return connect_fn(arg, err, errlen);

	/* Already the master (reconnecting for everyone)? */
	pthread_mutex_lock(&M.lock);
	bool listening = M.lfd >= 0 && strcmp(M.path, ms->path) == 0;
	pthread_mutex_unlock(&M.lock);
	if (listening) {
		t = connect_fn(arg, err, errlen);
		return t != NULL && transport_can_lend(t) ? lend_new(t) : t;
	}

	/* ControlMaster=no|auto: a running master lends us a channel. */
	if (ms->control_master != TARGET_CM_YES) {
		if ((t = borrow(ms, mountpoint, reconnects, &res)) != NULL)
			return t;
		if (wait_for_master(res, reconnects, ms->path, err, errlen))
			return NULL;
		if (res != MUX_NO_MASTER || ms->control_master == TARGET_CM_NO)
			return connect_fn(arg, err, errlen);
	}
	/* No master: elect one. Whoever takes the lock first connects and
	 * listens; the others find it when they hold the lock in turn. */
	make_socket_dir(ms->path);
	int lockfd = lock_election(ms->path);
	if (ms->control_master == TARGET_CM_YES) {
		uint32_t pid;
		char why[512];
		if (transport_mux_request(ms->path, MUX_CHECK, &pid, NULL, &res, why,
					  sizeof(why)) == 0) {
			log_error("ControlSocket %s already exists, disabling multiplexing",
				  ms->path);
			unlock_election(lockfd);
			return connect_fn(arg, err, errlen);
		}
	} else if ((t = borrow(ms, mountpoint, reconnects, &res)) != NULL) {
		unlock_election(lockfd);
		return t;
	}
	if (wait_for_master(res, reconnects, ms->path, err, errlen)) {
		unlock_election(lockfd);
		return NULL;
	}
	if (res != MUX_NO_MASTER) {
		unlock_election(lockfd);
		return connect_fn(arg, err, errlen);
	}
	t = connect_fn(arg, err, errlen);
	if (t != NULL && transport_can_lend(t)) {
		char lerr[512];
		if (start_listening(ms, lerr, sizeof(lerr)) == 0)
			t = lend_new(t);
		else
			log_error("%s, disabling multiplexing", lerr);
	}
	unlock_election(lockfd);
	return t;
}

/* ------------------------------------------------------------------ */
/* the end */

static void wait_until(const struct timespec *deadline)
{
	if (deadline == NULL)
		pthread_cond_wait(&M.cond, &M.lock);
	else
		pthread_cond_timedwait(&M.cond, &M.lock, deadline);
}

void master_linger(void)
{
	if (!M.active)
		return;
	pthread_mutex_lock(&M.lock);
	M.lingering = true;
	M.stats_fn = NULL; /* the mount (and what it counted) is gone */
	for (;;) {
		if (M.exiting)
			break;
		if (M.borrowers > 0) {
			log_info("unmounted; keeping the connection for %d borrowed channel(s)",
				 M.borrowers);
			while (M.borrowers > 0 && !M.exiting)
				wait_until(NULL);
			continue;
		}
		if (M.persist == 0 && M.lfd >= 0) {
			/* ControlPersist=yes: until -O exit (or stop with nobody left) */
			wait_until(NULL);
			continue;
		}
		/* ControlPersist=no: leave now, unless the borrowers were cut
		 * off by a broken connection and are about to come back */
		int secs = M.persist > 0 ? M.persist : M.lend == NULL ? LINGER_GRACE_S : 0;
		if (M.lfd < 0)
			secs = 0; /* stopped listening: nobody new can come */
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += secs;
		while (M.borrowers == 0 && !M.exiting && secs > 0) {
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			if (now.tv_sec > dl.tv_sec ||
			    (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec))
				break;
			wait_until(&dl);
		}
		if (M.borrowers == 0)
			break;
	}
	pthread_mutex_unlock(&M.lock);
}

void master_shutdown(void)
{
	reporter_stop();
	if (!M.active)
		return;
	pthread_mutex_lock(&M.lock);
	stop_listening();
	pthread_mutex_unlock(&M.lock);
	if (M.thread_running) {
		wake(M.stop_efd);
		pthread_join(M.thread, NULL);
		M.thread_running = false;
	}
	reporters_free();
	M.active = false;
}

/* ------------------------------------------------------------------ */
/* hashi -O */

int master_command(const char *cmd, const char *path)
{
	static const struct {
		const char *name;
		uint8_t type;
		const char *done;
	} cmds[] = {
		{ "check", MUX_CHECK, NULL },
		{ "exit", MUX_EXIT, "Exit request sent." },
		{ "stop", MUX_STOP, "Stop listening request sent." },
		{ "status", MUX_STATUS, NULL },
	};
	size_t i;
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmd, cmds[i].name) == 0)
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0])) {
		fprintf(stderr, "Invalid multiplex command.\n");
		return 255;
	}
	uint32_t pid = 0;
	char *text = NULL, err[600];
	enum mux_result res;
	if (transport_mux_request(path, cmds[i].type, &pid, &text, &res, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 255;
	}
	if (cmds[i].type == MUX_CHECK)
		fprintf(stderr, "Master running (pid=%u)\r\n", pid);
	else if (cmds[i].type == MUX_STATUS)
		fputs(text != NULL ? text : "", stdout);
	else
		fprintf(stderr, "%s\r\n", cmds[i].done);
	free(text);
	return 0;
}
