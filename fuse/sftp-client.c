#include "sftp-client.h"

#include <errno.h>
#include <glib.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "sftp-proto.h"

/* Replies larger than this are malformed (a server's packets are bounded
 * by its own limit, 256 KiB for OpenSSH). */
#define MAX_REPLY_PACKET (1024 * 1024 + 1024)
#define IN_CHUNK (256 * 1024)
#define DEFAULT_MAX_RW 32768

struct sftp_msg {
	struct wire_buf buf;
	size_t sent;          /* bytes of buf already written (I/O thread) */
	struct sftp_msg *next;
};

struct pending {
	sftp_cb cb;
	void *arg;
	uint8_t type;        /* for the debug log */
	struct timespec t0;
};

struct sftp_client {
	struct transport *t;

	pthread_mutex_t lock;           /* guards: queue, pending, next_id, dead */
	struct sftp_msg *q_head, *q_tail; /* submitted, not yet taken by the I/O thread */
	GHashTable *pending;            /* id -> struct pending */
	uint32_t next_id;
	bool dead;
	int efd;

	pthread_t thread;
	bool started;
	volatile bool stop;

	/* Owned by whoever drives the transport (the I/O thread once started). */
	struct sftp_msg *w_head, *w_tail; /* being written */
	struct wire_buf in;
	bool got_version;
	uint32_t version;

	uint32_t exts;
	uint32_t max_read, max_write;
	char error[600];
};

static const struct {
	const char *name;
	uint32_t bit;
} known_exts[] = {
	{ SFTP_EXT_POSIX_RENAME, SFTP_HAS_POSIX_RENAME }, { SFTP_EXT_STATVFS, SFTP_HAS_STATVFS },
	{ SFTP_EXT_FSTATVFS, SFTP_HAS_FSTATVFS },         { SFTP_EXT_HARDLINK, SFTP_HAS_HARDLINK },
	{ SFTP_EXT_FSYNC, SFTP_HAS_FSYNC },               { SFTP_EXT_LSETSTAT, SFTP_HAS_LSETSTAT },
	{ SFTP_EXT_LIMITS, SFTP_HAS_LIMITS },             { SFTP_EXT_EXPAND_PATH, SFTP_HAS_EXPAND_PATH },
	{ SFTP_EXT_COPY_DATA, SFTP_HAS_COPY_DATA },       { SFTP_EXT_HOME_DIR, SFTP_HAS_HOME_DIR },
	{ SFTP_EXT_USERS_GROUPS, SFTP_HAS_USERS_GROUPS },
};

uint32_t sftp_client_exts(const struct sftp_client *c) { return c->exts; }
uint32_t sftp_client_max_read(const struct sftp_client *c) { return c->max_read; }
uint32_t sftp_client_max_write(const struct sftp_client *c) { return c->max_write; }

bool sftp_client_alive(const struct sftp_client *c)
{
	return !__atomic_load_n(&c->dead, __ATOMIC_ACQUIRE);
}

struct sftp_msg *sftp_msg_new(uint8_t type)
{
	struct sftp_msg *m = calloc(1, sizeof(*m));
	size_t mark;
	if (!m)
		abort();
	wire_buf_init(&m->buf, 0);
	if (wire_packet_begin(&m->buf, type, &mark) || wire_put_u32(&m->buf, 0))
		abort();
	return m;
}

struct sftp_msg *sftp_msg_new_ext(const char *ext_name)
{
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_EXTENDED);
	if (wire_put_cstring(&m->buf, ext_name))
		abort();
	return m;
}

struct wire_buf *sftp_msg_buf(struct sftp_msg *m) { return &m->buf; }

void sftp_msg_free(struct sftp_msg *m)
{
	if (!m)
		return;
	wire_buf_free(&m->buf);
	free(m);
}

static const char *type_name(uint8_t t)
{
	static const char *const names[] = {
		[SSH_FXP_INIT] = "INIT", [SSH_FXP_VERSION] = "VERSION", [SSH_FXP_OPEN] = "OPEN",
		[SSH_FXP_CLOSE] = "CLOSE", [SSH_FXP_READ] = "READ", [SSH_FXP_WRITE] = "WRITE",
		[SSH_FXP_LSTAT] = "LSTAT", [SSH_FXP_FSTAT] = "FSTAT", [SSH_FXP_SETSTAT] = "SETSTAT",
		[SSH_FXP_FSETSTAT] = "FSETSTAT", [SSH_FXP_OPENDIR] = "OPENDIR",
		[SSH_FXP_READDIR] = "READDIR", [SSH_FXP_REMOVE] = "REMOVE", [SSH_FXP_MKDIR] = "MKDIR",
		[SSH_FXP_RMDIR] = "RMDIR", [SSH_FXP_REALPATH] = "REALPATH", [SSH_FXP_STAT] = "STAT",
		[SSH_FXP_RENAME] = "RENAME", [SSH_FXP_READLINK] = "READLINK",
		[SSH_FXP_SYMLINK] = "SYMLINK",
	};
	switch (t) {
	case SSH_FXP_STATUS: return "STATUS";
	case SSH_FXP_HANDLE: return "HANDLE";
	case SSH_FXP_DATA: return "DATA";
	case SSH_FXP_NAME: return "NAME";
	case SSH_FXP_ATTRS: return "ATTRS";
	case SSH_FXP_EXTENDED: return "EXTENDED";
	case SSH_FXP_EXTENDED_REPLY: return "EXTENDED_REPLY";
	}
	return t < sizeof(names) / sizeof(names[0]) && names[t] ? names[t] : "?";
}

/* -d: one readable line per request. */
static void log_request(uint32_t id, const struct wire_buf *b)
{
	struct wire_reader r;
	uint8_t type;
	uint32_t skip;
	const uint8_t *s;
	uint32_t slen;
	char arg[300] = "";

	wire_reader_init(&r, wire_buf_ptr(b), wire_buf_len(b));
	if (wire_get_u32(&r, &skip) || wire_get_u8(&r, &type) || wire_get_u32(&r, &skip))
		return;
	if (wire_get_string(&r, &s, &slen) == 0) {
		switch (type) {
		case SSH_FXP_CLOSE: case SSH_FXP_READ: case SSH_FXP_WRITE: case SSH_FXP_FSTAT:
		case SSH_FXP_FSETSTAT: case SSH_FXP_READDIR: {
			/* a handle: in hex, then the offset and length of a read or write */
			size_t n = 0;
			n += (size_t)snprintf(arg + n, sizeof(arg) - n, "handle ");
			for (uint32_t i = 0; i < slen && i < 16 && n + 3 < sizeof(arg); i++)
				n += (size_t)snprintf(arg + n, sizeof(arg) - n, "%02x", s[i]);
			uint64_t off;
			uint32_t len;
			if ((type == SSH_FXP_READ || type == SSH_FXP_WRITE) && !wire_get_u64(&r, &off) &&
			    !wire_get_u32(&r, &len))
				snprintf(arg + n, sizeof(arg) - n, " offset %llu length %u",
					 (unsigned long long)off, len);
			break;
		}
		default:
			snprintf(arg, sizeof(arg), "\"%.*s\"", (int)(slen > 256 ? 256 : slen),
				 (const char *)s);
		}
	}
	log_debug("sftp %u -> %s %s", id, type_name(type), arg);
}

static void log_reply(uint32_t id, const struct pending *p, const struct sftp_reply *r)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double ms = (double)(now.tv_sec - p->t0.tv_sec) * 1e3 + (double)(now.tv_nsec - p->t0.tv_nsec) / 1e6;
	if (r->type == SSH_FXP_STATUS)
		log_debug("sftp %u <- %s %s (%s, %.1f ms)", id, type_name(r->type),
			  attrs_status_message(r->status), type_name(p->type), ms);
	else
		log_debug("sftp %u <- %s, %zu bytes (%s, %.1f ms)", id, type_name(r->type),
			  wire_remaining(&r->body), type_name(p->type), ms);
}

static void wake(struct sftp_client *c)
{
	uint64_t one = 1;
	ssize_t n = write(c->efd, &one, sizeof(one));
	(void)n;
}

static void call_lost(sftp_cb cb, void *arg)
{
	struct sftp_reply r = { .type = 0, .status = SSH_FX_CONNECTION_LOST, .err = EIO };
	wire_reader_init(&r.body, NULL, 0);
	cb(arg, &r);
}

void sftp_submit(struct sftp_client *c, struct sftp_msg *m, sftp_cb cb, void *arg)
{
	/* Fill in the length now that the arguments are there. */
	if (wire_packet_end(&m->buf, 0))
		abort();
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		sftp_msg_free(m);
		call_lost(cb, arg);
		return;
	}
	uint32_t id = c->next_id++;
	while (g_hash_table_contains(c->pending, GUINT_TO_POINTER(id)))
		id = c->next_id++;
	wire_poke_u32(&m->buf, 5, id);
	struct pending *p = g_new(struct pending, 1);
	p->cb = cb;
	p->arg = arg;
	p->type = wire_buf_ptr(&m->buf)[4];
	if (log_enabled(LOGL_DEBUG1)) {
		clock_gettime(CLOCK_MONOTONIC, &p->t0);
		log_request(id, &m->buf);
	}
	g_hash_table_insert(c->pending, GUINT_TO_POINTER(id), p);
	m->next = NULL;
	if (c->q_tail)
		c->q_tail->next = m;
	else
		c->q_head = m;
	c->q_tail = m;
	pthread_mutex_unlock(&c->lock);
	wake(c);
}

/* The connection is gone: every request waiting for a reply fails. */
static void fail_all(struct sftp_client *c, const char *why)
{
	pthread_mutex_lock(&c->lock);
	bool was_dead = c->dead;
	__atomic_store_n(&c->dead, true, __ATOMIC_RELEASE);
	GHashTable *pending = c->pending;
	c->pending = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
	struct sftp_msg *q = c->q_head;
	c->q_head = c->q_tail = NULL;
	pthread_mutex_unlock(&c->lock);

	if (!was_dead && why)
		log_error("connection to the server lost: %s", why);
	while (q) {
		struct sftp_msg *n = q->next;
		sftp_msg_free(q);
		q = n;
	}
	while (c->w_head) {
		struct sftp_msg *n = c->w_head->next;
		sftp_msg_free(c->w_head);
		c->w_head = n;
	}
	c->w_tail = NULL;
	GHashTableIter it;
	gpointer key, val;
	g_hash_table_iter_init(&it, pending);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		struct pending *p = val;
		call_lost(p->cb, p->arg);
	}
	g_hash_table_destroy(pending);
}

static int parse_version(struct sftp_client *c, struct wire_reader *r)
{
	if (wire_get_u32(r, &c->version))
		return -1;
	while (wire_remaining(r) > 0) {
		const uint8_t *name, *data;
		uint32_t nlen, dlen;
		if (wire_get_string(r, &name, &nlen) || wire_get_string(r, &data, &dlen))
			return -1;
		for (size_t i = 0; i < sizeof(known_exts) / sizeof(known_exts[0]); i++)
			if (strlen(known_exts[i].name) == nlen &&
			    memcmp(known_exts[i].name, name, nlen) == 0)
				c->exts |= known_exts[i].bit;
	}
	c->got_version = true;
	return 0;
}

/* One reply packet. Returns -1 when it is malformed (the caller drops the connection). */
static int dispatch(struct sftp_client *c, const uint8_t *pkt, uint32_t len)
{
	struct wire_reader r;
	uint8_t type;
	uint32_t id;

	wire_reader_init(&r, pkt, len);
	if (wire_get_u8(&r, &type)) {
		snprintf(c->error, sizeof(c->error), "empty packet from the server");
		return -1;
	}
	if (type == SSH_FXP_VERSION) {
		if (c->got_version || parse_version(c, &r) < 0) {
			snprintf(c->error, sizeof(c->error), "unexpected or malformed VERSION packet");
			return -1;
		}
		return 0;
	}
	if (!c->got_version) {
		snprintf(c->error, sizeof(c->error), "server sent packet type %u before VERSION", type);
		return -1;
	}
	if (wire_get_u32(&r, &id)) {
		snprintf(c->error, sizeof(c->error), "reply of type %u too short for an id", type);
		return -1;
	}
	pthread_mutex_lock(&c->lock);
	struct pending *p = g_hash_table_lookup(c->pending, GUINT_TO_POINTER(id));
	if (p)
		g_hash_table_steal(c->pending, GUINT_TO_POINTER(id));
	pthread_mutex_unlock(&c->lock);
	if (!p) {
		snprintf(c->error, sizeof(c->error), "reply to request id %u that was never sent", id);
		return -1;
	}
	struct sftp_reply rep = { .type = type, .status = SSH_FX_OK, .err = 0, .body = r };
	switch (type) {
	case SSH_FXP_STATUS:
		if (wire_get_u32(&rep.body, &rep.status)) {
			rep.type = 0;
			rep.err = EIO;
			snprintf(c->error, sizeof(c->error), "malformed STATUS reply");
			p->cb(p->arg, &rep);
			g_free(p);
			return -1;
		}
		rep.err = attrs_status_to_errno(rep.status);
		break;
	case SSH_FXP_HANDLE:
	case SSH_FXP_DATA:
	case SSH_FXP_NAME:
	case SSH_FXP_ATTRS:
	case SSH_FXP_EXTENDED_REPLY:
		break;
	default:
		rep.type = 0;
		rep.err = EIO;
		snprintf(c->error, sizeof(c->error), "unknown reply type %u", type);
		p->cb(p->arg, &rep);
		g_free(p);
		return -1;
	}
	if (log_enabled(LOGL_DEBUG1))
		log_reply(id, p, &rep);
	p->cb(p->arg, &rep);
	g_free(p);
	return 0;
}

/* Move bytes both ways as far as the transport allows, then dispatch whole
 * replies. Returns -1 when the connection is lost. */
static int pump(struct sftp_client *c)
{
	struct transport *t = c->t;

	pthread_mutex_lock(&c->lock);
	if (c->q_head) {
		if (c->w_tail)
			c->w_tail->next = c->q_head;
		else
			c->w_head = c->q_head;
		c->w_tail = c->q_tail;
		c->q_head = c->q_tail = NULL;
	}
	pthread_mutex_unlock(&c->lock);

	while (c->w_head) {
		struct sftp_msg *m = c->w_head;
		size_t left = wire_buf_len(&m->buf) - m->sent;
		ssize_t n = t->ops->write(t, wire_buf_ptr(&m->buf) + m->sent, left);
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			snprintf(c->error, sizeof(c->error), "%s",
				 transport_error(t)[0] ? transport_error(t) : strerror((int)-n));
			return -1;
		}
		m->sent += (size_t)n;
		if (m->sent == wire_buf_len(&m->buf)) {
			c->w_head = m->next;
			if (!c->w_head)
				c->w_tail = NULL;
			sftp_msg_free(m);
		}
	}

	for (int rounds = 0; rounds < 64; rounds++) {
		uint8_t *p = wire_buf_reserve(&c->in, IN_CHUNK);
		if (!p) {
			snprintf(c->error, sizeof(c->error), "out of memory");
			return -1;
		}
		ssize_t n = t->ops->read(t, p, IN_CHUNK);
		if (n == -EAGAIN)
			break;
		if (n == 0) {
			snprintf(c->error, sizeof(c->error), "%s",
				 transport_error(t)[0] ? transport_error(t) : "the server closed the connection");
			return -1;
		}
		if (n < 0) {
			snprintf(c->error, sizeof(c->error), "%s",
				 transport_error(t)[0] ? transport_error(t) : strerror((int)-n));
			return -1;
		}
		wire_buf_commit(&c->in, (size_t)n);
		/* Dispatch as we go so the input buffer stays small. */
		for (;;) {
			uint32_t plen;
			int ret = wire_peek_packet(wire_buf_ptr(&c->in), wire_buf_len(&c->in),
						   MAX_REPLY_PACKET, &plen);
			if (ret == WIRE_ETOOLONG) {
				snprintf(c->error, sizeof(c->error),
					 "malformed reply from the server (packet length %u)",
					 wire_load_u32(wire_buf_ptr(&c->in)));
				return -1;
			}
			if (ret == 0)
				break;
			ret = dispatch(c, wire_buf_ptr(&c->in) + 4, plen);
			wire_buf_consume(&c->in, (size_t)plen + 4);
			if (ret < 0)
				return -1;
		}
	}
	return 0;
}

/* Wait for the transport or a wake-up, for at most timeout_ms. */
static int wait_io(struct sftp_client *c, int timeout_ms)
{
	struct pollfd pfd[5];
	bool want_write = c->w_head != NULL;
	int n = c->t->ops->pollfds(c->t, want_write, pfd, 4);
	pfd[n].fd = c->efd;
	pfd[n].events = POLLIN;
	pfd[n].revents = 0;
	int ret = poll(pfd, (nfds_t)n + 1, timeout_ms);
	if (ret < 0 && errno != EINTR)
		return -1;
	if (ret > 0 && c->t->ops->after_poll)
		c->t->ops->after_poll(c->t, pfd, n);
	if (ret > 0 && (pfd[n].revents & POLLIN)) {
		uint64_t v;
		ssize_t r = read(c->efd, &v, sizeof(v));
		(void)r;
	}
	return 0;
}

static void *io_thread(void *arg)
{
	struct sftp_client *c = arg;
	while (!c->stop) {
		if (pump(c) < 0) {
			fail_all(c, c->error);
			break;
		}
		if (c->stop)
			break;
		/* Anything submitted while we pumped is picked up at once. */
		pthread_mutex_lock(&c->lock);
		bool more = c->q_head != NULL;
		pthread_mutex_unlock(&c->lock);
		if (!more)
			wait_io(c, 1000);
	}
	return NULL;
}

/* Drive the transport from this thread until *done (before the I/O thread runs). */
static int drive_until(struct sftp_client *c, volatile bool *done)
{
	while (!*done) {
		if (pump(c) < 0) {
			fail_all(c, NULL);
			return -1;
		}
		if (*done)
			break;
		pthread_mutex_lock(&c->lock);
		bool more = c->q_head != NULL;
		pthread_mutex_unlock(&c->lock);
		if (!more)
			wait_io(c, 1000);
	}
	return 0;
}

struct sync_wait {
	pthread_mutex_t m;
	pthread_cond_t cv;
	volatile bool done;
	uint8_t type;
	int err;
	uint8_t *body;
	size_t len;
};

static void sync_cb(void *arg, struct sftp_reply *r)
{
	struct sync_wait *w = arg;
	pthread_mutex_lock(&w->m);
	w->type = r->type;
	w->err = r->err;
	w->len = wire_remaining(&r->body);
	w->body = malloc(w->len + 1);
	if (w->body && w->len)
		memcpy(w->body, r->body.data + r->body.pos, w->len);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->m);
}

int sftp_call(struct sftp_client *c, struct sftp_msg *m, uint8_t *type, uint8_t **body,
	      size_t *body_len)
{
	struct sync_wait w = { .m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	sftp_submit(c, m, sync_cb, &w);
	if (!c->started) {
		drive_until(c, &w.done);
		if (!w.done) {
			*type = 0;
			if (body)
				*body = NULL;
			return EIO;
		}
	} else {
		pthread_mutex_lock(&w.m);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.m);
		pthread_mutex_unlock(&w.m);
	}
	*type = w.type;
	if (body) {
		*body = w.body;
		if (body_len)
			*body_len = w.len;
	} else {
		free(w.body);
	}
	if (w.err == 0 && !w.body)
		return ENOMEM;
	return w.err;
}

static void read_limits(struct sftp_client *c)
{
	c->max_read = c->max_write = DEFAULT_MAX_RW;
	if (!(c->exts & SFTP_HAS_LIMITS))
		return;
	uint8_t type, *body = NULL;
	size_t len = 0;
	int err = sftp_call(c, sftp_msg_new_ext(SFTP_EXT_LIMITS), &type, &body, &len);
	if (err == 0 && type == SSH_FXP_EXTENDED_REPLY) {
		struct wire_reader r;
		uint64_t maxpkt, maxr, maxw, maxh;
		wire_reader_init(&r, body, len);
		if (!wire_get_u64(&r, &maxpkt) && !wire_get_u64(&r, &maxr) && !wire_get_u64(&r, &maxw) &&
		    !wire_get_u64(&r, &maxh)) {
			/* Never more than our own bounds, and never less than the default. */
			if (maxr > 1024 * 1024)
				maxr = 1024 * 1024;
			if (maxw > 1024 * 1024)
				maxw = 1024 * 1024;
			if (maxpkt && maxw + 1024 > maxpkt)
				maxw = maxpkt > 1024 ? maxpkt - 1024 : maxw;
			if (maxr >= 1024)
				c->max_read = (uint32_t)maxr;
			if (maxw >= 1024)
				c->max_write = (uint32_t)maxw;
		}
	}
	free(body);
}

struct sftp_client *sftp_client_new(struct transport *t, char *err, size_t errlen)
{
	struct sftp_client *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		transport_destroy(t);
		return NULL;
	}
	c->t = t;
	pthread_mutex_init(&c->lock, NULL);
	c->pending = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
	c->next_id = 1;
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	wire_buf_init(&c->in, 0);
	if (c->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		sftp_client_free(c);
		return NULL;
	}
	/* INIT has no id: queue it by hand. */
	struct sftp_msg *m = calloc(1, sizeof(*m));
	size_t mark;
	wire_buf_init(&m->buf, 0);
	if (!m || wire_packet_begin(&m->buf, SSH_FXP_INIT, &mark) ||
	    wire_put_u32(&m->buf, SFTP_VERSION) || wire_packet_end(&m->buf, mark))
		abort();
	c->w_head = c->w_tail = m;
	if (drive_until(c, (volatile bool *)&c->got_version) < 0 || !c->got_version) {
		snprintf(err, errlen, "%s", c->error[0] ? c->error : "no SFTP VERSION from the server");
		sftp_client_free(c);
		return NULL;
	}
	read_limits(c);
	log_debug("server SFTP version %u, extensions 0x%x, max read %u, max write %u", c->version,
		  c->exts, c->max_read, c->max_write);
	return c;
}

int sftp_client_start(struct sftp_client *c)
{
	if (pthread_create(&c->thread, NULL, io_thread, c) != 0)
		return -1;
	c->started = true;
	return 0;
}

void sftp_client_free(struct sftp_client *c)
{
	if (!c)
		return;
	if (c->started) {
		c->stop = true;
		wake(c);
		pthread_join(c->thread, NULL);
		c->started = false;
	}
	fail_all(c, NULL);
	if (c->t)
		transport_destroy(c->t);
	g_hash_table_destroy(c->pending);
	wire_buf_free(&c->in);
	if (c->efd >= 0)
		close(c->efd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Typed helpers. */
static void put_or_die(int err)
{
	if (err)
		abort();
}

void sftp_path_req(struct sftp_client *c, uint8_t type, const char *path, sftp_cb cb, void *arg)
{
	struct sftp_msg *m = sftp_msg_new(type);
	put_or_die(wire_put_cstring(&m->buf, path));
	sftp_submit(c, m, cb, arg);
}

void sftp_path2_req(struct sftp_client *c, uint8_t type, const char *a, const char *b, sftp_cb cb,
		    void *arg)
{
	struct sftp_msg *m = sftp_msg_new(type);
	put_or_die(wire_put_cstring(&m->buf, a));
	put_or_die(wire_put_cstring(&m->buf, b));
	sftp_submit(c, m, cb, arg);
}

void sftp_ext_path2_req(struct sftp_client *c, const char *ext, const char *a, const char *b,
			sftp_cb cb, void *arg)
{
	struct sftp_msg *m = sftp_msg_new_ext(ext);
	put_or_die(wire_put_cstring(&m->buf, a));
	put_or_die(wire_put_cstring(&m->buf, b));
	sftp_submit(c, m, cb, arg);
}

void sftp_handle_req(struct sftp_client *c, uint8_t type, const uint8_t *h, uint32_t hlen,
		     sftp_cb cb, void *arg)
{
	struct sftp_msg *m = sftp_msg_new(type);
	put_or_die(wire_put_string(&m->buf, h, hlen));
	sftp_submit(c, m, cb, arg);
}

void sftp_read_req(struct sftp_client *c, const uint8_t *h, uint32_t hlen, uint64_t off,
		   uint32_t len, sftp_cb cb, void *arg)
{
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_READ);
	put_or_die(wire_put_string(&m->buf, h, hlen));
	put_or_die(wire_put_u64(&m->buf, off));
	put_or_die(wire_put_u32(&m->buf, len));
	sftp_submit(c, m, cb, arg);
}

void sftp_write_req(struct sftp_client *c, const uint8_t *h, uint32_t hlen, uint64_t off,
		    const void *data, uint32_t len, sftp_cb cb, void *arg)
{
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_WRITE);
	put_or_die(wire_put_string(&m->buf, h, hlen));
	put_or_die(wire_put_u64(&m->buf, off));
	put_or_die(wire_put_string(&m->buf, data, len));
	sftp_submit(c, m, cb, arg);
}

int sftp_reply_attrs(struct sftp_reply *r, struct sftp_attrs *a)
{
	if (r->type != SSH_FXP_ATTRS)
		return EIO;
	return attrs_get(&r->body, a) ? EIO : 0;
}

int sftp_reply_name1(struct sftp_reply *r, char **name)
{
	uint32_t count;
	if (r->type != SSH_FXP_NAME || wire_get_u32(&r->body, &count) || count < 1)
		return EIO;
	return wire_get_cstring(&r->body, name, 65536) ? EIO : 0;
}
