#include "sftp-client.h"

#include <errno.h>
#include <glib.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sftp-proto.h"

/* A reply longer than the larger of 256 KiB (OpenSSH's own client refuses
 * more) and our read size plus its header is malformed. */
#define REPLY_SLACK 1024
/* Bytes of one unfinished reply that count as the server still talking to
 * the dead-peer check: a reply that trickles slower than that is dead. */
#define RX_PROGRESS 4096
/* Requests sent on this many connections that each broke the protocol fail
 * with EIO instead of being sent again. */
#define PROTO_STRIKES 2
#define IN_CHUNK (256 * 1024)
#define DEFAULT_MAX_RW 32768

/* Handles given to callers are ours: 8 bytes, a magic word and a number.
 * The server's handle behind one can change (a reconnect reopens the file)
 * without the caller knowing. */
#define VH_LEN SFTP_VHANDLE_LEN
#define VH_MAGIC 0x68736856u /* "hshV" */

struct sftp_msg {
	struct wire_buf buf;  /* as the caller built it (our handles) */
	struct wire_buf out;  /* as it goes on the wire (the server's handles) */
	size_t tail_len;      /* then the last tail_len bytes of buf, not copied (a WRITE's data) */
	size_t sent;          /* bytes of out and the tail already written (I/O thread) */
	struct sftp_msg *next;
	bool in_w;            /* in the write list */
	uint32_t early_vid;   /* an OPEN whose handle of ours was given at once */
};

struct pending {
	sftp_cb cb;
	void *arg;
	uint8_t type;
	struct timespec t0;
	struct sftp_msg *msg; /* the request, kept until answered (to resend it) */
	uint64_t deadline;    /* ms (monotonic) by which an outage must be over; 0: none */
	bool sent;            /* (partly) written on some connection */
	bool replayed;        /* written again after a reconnect */
	bool internal;        /* ours (reopening after a reconnect): handles are the server's */
	uint8_t strikes;      /* connections that broke the protocol while it was sent */
	bool guessed;         /* sent with a guess of its handle (see hmodel) */
};

struct vhandle {
	uint32_t vid;
	uint8_t real[SFTP_MAX_HANDLE_LEN];
	uint32_t real_len;
	bool valid;            /* real is a handle on the current connection */
	bool dir;
	char *path;
	uint32_t pflags;
	uint64_t entries;      /* directory entries handed out so far */
	struct wire_buf leftover; /* entries read again after a reopen, not yet handed out */
	uint32_t leftover_count;
	/* Given before its OPEN was answered (sftp_msg_early_handle). */
	bool opening;          /* the OPEN is not answered yet */
	bool guessed;          /* ... and requests on it go out with guess */
	bool guess_bad;        /* the server gave another handle than guess */
	uint32_t guess;        /* the slot guessed (OpenSSH's 4-byte handle) */
	int open_err;          /* the OPEN failed: so does every request on it */
	GQueue parked;         /* ids of requests waiting for the server's handle */
	bool closing;          /* its CLOSE is written */
};

/* Guessing the server's handles. OpenSSH's sftp-server names a handle by
 * its slot in a table (4 bytes, big-endian), gives an OPEN the slot freed
 * last (or a new one at the end), and does each request in turn. As its only
 * client we can follow its table: a request written on a handle not yet
 * answered (a file created behind) then need not wait for the HANDLE. The
 * model guesses only once its predictions have come true several times from
 * the start of the session, freed slots given again among them; only when
 * no other OPEN is unanswered (so the slot is certain unless the model is
 * wrong); only where the rule of older versions (the lowest free slot)
 * would give the same, until the server has shown it follows the newer;
 * and never a slot we hold open: a wrong
 * guess names no open handle, and its requests fail (EIO). One wrong
 * prediction, a reconnect, or a server of other handles turns it off. */
#define HM_LEARN 4
#define HM_REUSED 2
struct hm_event {
	bool open;
	uint32_t v;            /* open: the request id; close: the slot */
};
struct hmodel {
	bool off;
	unsigned learned;      /* predictions come true */
	unsigned reused;       /* ... of a freed slot given again */
	bool lifo;             /* ... of the slot freed last where it was not the lowest */
	uint32_t count;        /* slots the server has made */
	GArray *free;          /* free slots (uint32_t), the last freed last */
	GQueue events;         /* written behind an unanswered OPEN, in order */
	unsigned opens;        /* unanswered OPENs among them */
};

/* Several connections to one server (max_conns): a handle names the
 * connection it lives on, and a request that carries one goes there. */
#define GROUP_MAX 16
struct sftp_group {
	pthread_mutex_t lock;
	struct sftp_client *conns[GROUP_MAX];
	unsigned n;
};

struct sftp_client {
	struct transport *t;
	struct sftp_group *group;       /* NULL: alone */
	uint32_t vh_magic;              /* VH_MAGIC + our place in the group */

	pthread_mutex_t lock;           /* guards: queue, pending, next_id, dead, new_t */
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
	GHashTable *vhandles;           /* vid -> struct vhandle */
	uint32_t next_vid;              /* (atomic: sftp_msg_early_handle takes one) */
	struct hmodel hm;
	bool reiniting;                 /* only internal requests go out */
	uint64_t last_rx;               /* ms: when the server last made progress */
	size_t rx_partial;              /* bytes read since then, no reply whole yet */
	bool proto_error;               /* the connection is dropped for breaking SFTP */
	bool ka_outstanding;

	/* reconnecting */
	sftp_reconnect_fn reconnect;
	void *reconnect_arg;
	unsigned timeout_s;
	unsigned alive_interval_s, alive_count_max;
	bool outage;
	bool outage_expired;            /* waited timeout_s already: new requests fail at once */
	volatile bool retry_now;        /* a request arrived: cut the back-off short */
	uint64_t outage_since;
	pthread_t rthread;
	bool rthread_running;
	struct transport *new_t;        /* from the reconnect thread */
	unsigned reconnects;
	uint64_t bytes_sent, bytes_received; /* SFTP bytes, for hashi -O status */

	uint32_t exts;
	bool errno_on;                  /* errno@hashi is on: STATUS may carry the errno */
	uint32_t max_read, max_write;
	char error[600];
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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
	{ SFTP_EXT_HASHI_ERRNO, SFTP_HAS_HASHI_ERRNO },   { SFTP_EXT_HASHI_STAT, SFTP_HAS_HASHI_STAT },
	{ SFTP_EXT_HASHI_READDIR, SFTP_HAS_HASHI_READDIR },
	{ SFTP_EXT_HASHI_SETSTAT, SFTP_HAS_HASHI_SETSTAT },
	{ SFTP_EXT_HASHI_OPEN, SFTP_HAS_HASHI_OPEN },     { SFTP_EXT_HASHI_MKNOD, SFTP_HAS_HASHI_MKNOD },
	{ SFTP_EXT_HASHI_LOCK, SFTP_HAS_HASHI_LOCK },
	{ SFTP_EXT_HASHI_FALLOCATE, SFTP_HAS_HASHI_FALLOCATE },
	{ SFTP_EXT_HASHI_LSEEK, SFTP_HAS_HASHI_LSEEK },
};

/* Used only when the server has all four. */
static const char *const xattr_exts[] = { SFTP_EXT_HASHI_GETXATTR, SFTP_EXT_HASHI_SETXATTR,
					  SFTP_EXT_HASHI_LISTXATTR, SFTP_EXT_HASHI_REMOVEXATTR };

uint32_t sftp_client_exts(const struct sftp_client *c) { return c->exts; }
uint32_t sftp_client_max_read(const struct sftp_client *c) { return c->max_read; }
uint32_t sftp_client_max_write(const struct sftp_client *c) { return c->max_write; }

bool sftp_client_alive(const struct sftp_client *c)
{
	return !__atomic_load_n(&c->dead, __ATOMIC_ACQUIRE);
}

/* Freed buffers of big messages (WRITEs), kept for the next ones: fresh
 * memory of that size is fresh pages, which the kernel faults in and zeroes
 * at a cost above that of the copy into them. A few suffice: in a stream of
 * writes, each reply frees one as the next write takes one. */
#define POOL_MIN (64 * 1024)
#define POOL_MAX 16
#define POOL_BYTES (4u << 20)
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { uint8_t *data; size_t cap; } pool[POOL_MAX];
static unsigned pool_n;
static size_t pool_bytes;

/* A buffer of at least size bytes (but not wastefully more), or NULL. */
static uint8_t *pool_take(size_t size, size_t *cap)
{
	uint8_t *p = NULL;
	pthread_mutex_lock(&pool_lock);
	for (unsigned i = pool_n; i-- > 0;) {
		if (pool[i].cap >= size && pool[i].cap / 2 < size) {
			p = pool[i].data;
			*cap = pool[i].cap;
			pool_bytes -= pool[i].cap;
			pool[i] = pool[--pool_n];
			break;
		}
	}
	pthread_mutex_unlock(&pool_lock);
	return p;
}

static void pool_give(struct wire_buf *b)
{
	size_t cap;
	uint8_t *p = wire_buf_steal(b, &cap);
	if (p && cap >= POOL_MIN) {
		pthread_mutex_lock(&pool_lock);
		if (pool_n < POOL_MAX && pool_bytes + cap <= POOL_BYTES) {
			pool[pool_n].data = p;
			pool[pool_n].cap = cap;
			pool_n++;
			pool_bytes += cap;
			p = NULL;
		}
		pthread_mutex_unlock(&pool_lock);
	}
	free(p);
}

/* A message whose body will be about size bytes. */
static struct sftp_msg *msg_new_sized(uint8_t type, size_t size)
{
	struct sftp_msg *m = calloc(1, sizeof(*m));
	size_t mark;
	if (!m)
		abort();
	wire_buf_init(&m->buf, 0);
	if (size >= POOL_MIN) {
		size_t cap = size;
		uint8_t *p = pool_take(size, &cap);
		if (!p && !(p = malloc(size)))
			abort();
		wire_buf_init_mem(&m->buf, p, cap, 0);
	}
	wire_buf_init(&m->out, 0);
	if (wire_packet_begin(&m->buf, type, &mark) || wire_put_u32(&m->buf, 0))
		abort();
	return m;
}

struct sftp_msg *sftp_msg_new(uint8_t type)
{
	return msg_new_sized(type, 0);
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
	pool_give(&m->buf);
	wire_buf_free(&m->out);
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

static int parse_version(struct sftp_client *c, struct wire_reader *r)
{
	if (wire_get_u32(r, &c->version))
		return -1;
	unsigned xattrs = 0;
	while (wire_remaining(r) > 0) {
		const uint8_t *name, *data;
		uint32_t nlen, dlen;
		if (wire_get_string(r, &name, &nlen) || wire_get_string(r, &data, &dlen))
			return -1;
		for (size_t i = 0; i < sizeof(known_exts) / sizeof(known_exts[0]); i++)
			if (strlen(known_exts[i].name) == nlen &&
			    memcmp(known_exts[i].name, name, nlen) == 0)
				c->exts |= known_exts[i].bit;
		for (size_t i = 0; i < sizeof(xattr_exts) / sizeof(xattr_exts[0]); i++)
			if (strlen(xattr_exts[i]) == nlen && memcmp(xattr_exts[i], name, nlen) == 0)
				xattrs |= 1u << i;
	}
	if (xattrs == 0xf)
		c->exts |= SFTP_HAS_HASHI_XATTR;
	c->got_version = true;
	return 0;
}

/* errno@hashi: a failure STATUS may end with the server's errno (Linux's
 * numbers, which are ours) after the message and language tag. */
static void status_errno(struct sftp_reply *rep)
{
	struct wire_reader r = rep->body;
	const uint8_t *s;
	uint32_t len, e;
	if (wire_get_string(&r, &s, &len) || wire_get_string(&r, &s, &len) || wire_get_u32(&r, &e))
		return;
	if (e > 0 && e < 4096) {
		rep->sys_errno = (int)e;
		rep->err = (int)e;
	}
}

void sftp_target_put(struct wire_buf *b, const char *path, const uint8_t *h, uint32_t hlen,
		     uint32_t flags)
{
	if (h)
		wire_put_string(b, h, hlen);
	else
		wire_put_cstring(b, path);
	wire_put_u32(b, flags | (h ? HASHI_TARGET_HANDLE : 0));
}

static void wake(struct sftp_client *c)
{
	uint64_t one = 1;
	ssize_t n = write(c->efd, &one, sizeof(one));
	(void)n;
}

static void call_err(sftp_cb cb, void *arg, uint32_t status, int err)
{
	struct sftp_reply r = { .type = 0, .status = status, .err = err };
	wire_reader_init(&r.body, NULL, 0);
	cb(arg, &r);
}

static void call_lost(sftp_cb cb, void *arg)
{
	call_err(cb, arg, SSH_FX_CONNECTION_LOST, EIO);
}

static void pending_free(struct pending *p)
{
	if (p->msg)
		sftp_msg_free(p->msg);
	g_free(p);
}

static int handle_offsets(const struct wire_buf *b, size_t *off, int max);

/* The connection a request belongs on: the one its handle lives on. */
static struct sftp_client *route(struct sftp_client *c, const struct sftp_msg *m)
{
	struct sftp_group *g = __atomic_load_n(&c->group, __ATOMIC_ACQUIRE);
	size_t offs[1];
	if (!g || handle_offsets(&m->buf, offs, 1) != 1)
		return c;
	const uint8_t *b = wire_buf_ptr(&m->buf);
	if (offs[0] + 4 + VH_LEN > wire_buf_len(&m->buf) || wire_load_u32(b + offs[0]) != VH_LEN)
		return c;
	uint32_t magic = wire_load_u32(b + offs[0] + 4);
	unsigned idx = (magic & 0xffu) - (VH_MAGIC & 0xffu);
	if ((magic & ~0xffu) != (VH_MAGIC & ~0xffu) ||
	    idx >= __atomic_load_n(&g->n, __ATOMIC_ACQUIRE))
		return c;
	return g->conns[idx];
}

int sftp_client_add_peer(struct sftp_client *first, struct sftp_client *peer)
{
	struct sftp_group *g = first->group;
	if (!g) {
		g = g_new0(struct sftp_group, 1);
		pthread_mutex_init(&g->lock, NULL);
		g->conns[0] = first;
		g->n = 1;
		__atomic_store_n(&first->group, g, __ATOMIC_RELEASE);
	}
	pthread_mutex_lock(&g->lock);
	if (g->n >= GROUP_MAX || g_hash_table_size(peer->vhandles) > 0) {
		pthread_mutex_unlock(&g->lock);
		return -1;
	}
	peer->vh_magic = VH_MAGIC + g->n;
	peer->group = g;
	g->conns[g->n] = peer;
	__atomic_store_n(&g->n, g->n + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

unsigned sftp_client_conns(const struct sftp_client *c)
{
	struct sftp_group *g = __atomic_load_n(&c->group, __ATOMIC_ACQUIRE);
	return g ? __atomic_load_n(&g->n, __ATOMIC_ACQUIRE) : 1;
}

struct sftp_client *sftp_client_pick(struct sftp_client *c)
{
	struct sftp_group *g = __atomic_load_n(&c->group, __ATOMIC_ACQUIRE);
	if (!g)
		return c;
	unsigned n = __atomic_load_n(&g->n, __ATOMIC_ACQUIRE);
	struct sftp_client *best = c;
	guint best_load = G_MAXUINT;
	/* the least busy live one; on a tie the last, leaving the first to names */
	for (unsigned i = 0; i < n; i++) {
		struct sftp_client *x = g->conns[i];
		pthread_mutex_lock(&x->lock);
		guint load = g_hash_table_size(x->pending);
		bool ok = !x->dead && !x->outage;
		pthread_mutex_unlock(&x->lock);
		if (ok && load <= best_load) {
			best = x;
			best_load = load;
		}
	}
	return best;
}

void sftp_submit(struct sftp_client *c, struct sftp_msg *m, sftp_cb cb, void *arg)
{
	/* Fill in the length now that the arguments are there. */
	if (wire_packet_end(&m->buf, 0))
		abort();
	c = route(c, m);
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		sftp_msg_free(m);
		call_lost(cb, arg);
		return;
	}
	if (c->outage && c->outage_expired) {
		/* The server has been away longer than we wait: say so now, and
		 * let the reconnect thread try again at once. */
		c->retry_now = true;
		pthread_mutex_unlock(&c->lock);
		sftp_msg_free(m);
		call_err(cb, arg, SSH_FX_CONNECTION_LOST, ETIMEDOUT);
		return;
	}
	if (c->outage)
		c->retry_now = true;
	uint32_t id = c->next_id++;
	while (id == 0 || g_hash_table_contains(c->pending, GUINT_TO_POINTER(id)))
		id = c->next_id++;
	wire_poke_u32(&m->buf, 5, id);
	struct pending *p = g_new0(struct pending, 1);
	p->cb = cb;
	p->arg = arg;
	p->type = wire_buf_ptr(&m->buf)[4];
	p->msg = m;
	if (c->outage && c->timeout_s)
		p->deadline = now_ms() + (uint64_t)c->timeout_s * 1000;
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

void sftp_msg_early_handle(struct sftp_client *c, struct sftp_msg *m,
			   uint8_t handle[SFTP_VHANDLE_LEN])
{
	uint32_t vid = __atomic_fetch_add(&c->next_vid, 1, __ATOMIC_RELAXED);
	m->early_vid = vid;
	wire_store_u32(handle, c->vh_magic);
	wire_store_u32(handle + 4, vid);
}

/* The connection is gone for good: every request waiting fails. */
static void fail_all(struct sftp_client *c, const char *why)
{
	pthread_mutex_lock(&c->lock);
	bool was_dead = c->dead;
	__atomic_store_n(&c->dead, true, __ATOMIC_RELEASE);
	GHashTable *pending = c->pending;
	c->pending = g_hash_table_new(g_direct_hash, g_direct_equal);
	c->q_head = c->q_tail = NULL;
	pthread_mutex_unlock(&c->lock);

	if (!was_dead && why)
		log_error("connection to the server lost: %s", why);
	/* The lists only point at messages the pending table owns. */
	c->w_head = c->w_tail = NULL;
	GHashTableIter it;
	gpointer key, val;
	g_hash_table_iter_init(&it, pending);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		struct pending *p = val;
		call_lost(p->cb, p->arg);
		pending_free(p);
	}
	g_hash_table_destroy(pending);
}

/* ---- our handles -------------------------------------------------------- */

static struct vhandle *vh_lookup(struct sftp_client *c, const uint8_t *s, uint32_t len)
{
	if (len != VH_LEN || wire_load_u32(s) != c->vh_magic)
		return NULL;
	return g_hash_table_lookup(c->vhandles, GUINT_TO_POINTER(wire_load_u32(s + 4)));
}

static void vh_free(gpointer p)
{
	struct vhandle *vh = p;
	g_free(vh->path);
	wire_buf_free(&vh->leftover);
	g_queue_clear(&vh->parked);
	g_free(vh);
}

/* A handle of ours for the open request m (OPEN, OPENDIR, open@hashi),
 * with what a reopen needs: its path and flags. */
static struct vhandle *vh_for_request(struct sftp_client *c, const struct sftp_msg *m, uint32_t vid)
{
	struct vhandle *vh = g_new0(struct vhandle, 1);
	vh->vid = vid;
	wire_buf_init(&vh->leftover, 0);
	g_queue_init(&vh->parked);
	struct wire_reader q;
	uint32_t u32;
	uint8_t type = wire_buf_len(&m->buf) > 4 ? wire_buf_ptr(&m->buf)[4] : 0;
	char *path = NULL;
	const uint8_t *ext;
	wire_reader_init(&q, wire_buf_ptr(&m->buf), wire_buf_len(&m->buf));
	if (wire_get_u32(&q, &u32) || wire_get_u8(&q, &type) || wire_get_u32(&q, &u32) ||
	    (type == SSH_FXP_EXTENDED && wire_get_string(&q, &ext, &u32)) ||
	    wire_get_cstring(&q, &path, SFTP_MAX_MSG_LENGTH))
		path = NULL;
	vh->dir = type == SSH_FXP_OPENDIR;
	vh->path = path ? g_strdup(path) : NULL;
	free(path);
	if (!vh->dir && wire_get_u32(&q, &vh->pflags))
		vh->pflags = SSH_FXF_READ;
	vh->pflags &= SSH_FXF_READ | SSH_FXF_WRITE | SSH_FXF_APPEND; /* what a reopen asks */
	g_hash_table_insert(c->vhandles, GUINT_TO_POINTER(vh->vid), vh);
	return vh;
}

/* ---- the server's handle table (struct hmodel) --------------------------- */

static void hm_init(struct hmodel *hm)
{
	memset(hm, 0, sizeof(*hm));
	hm->free = g_array_new(FALSE, FALSE, sizeof(uint32_t));
	g_queue_init(&hm->events);
}

static void hm_off(struct sftp_client *c, const char *why)
{
	struct hmodel *hm = &c->hm;
	if (!hm->off && hm->learned >= HM_LEARN)
		log_debug("no more guessing the server's handles: %s", why);
	hm->off = true;
	g_queue_clear_full(&hm->events, g_free);
	hm->opens = 0;
	g_array_set_size(hm->free, 0);
}

static void hm_free(struct hmodel *hm)
{
	g_queue_clear_full(&hm->events, g_free);
	g_array_free(hm->free, TRUE);
}

static void hm_apply_close(struct sftp_client *c, uint32_t slot)
{
	struct hmodel *hm = &c->hm;
	for (guint i = 0; i < hm->free->len; i++)
		if (g_array_index(hm->free, uint32_t, i) == slot) {
			hm_off(c, "a slot closed twice");
			return;
		}
	if (slot >= hm->count)
		hm_off(c, "a slot closed that was never given");
	else
		g_array_append_val(hm->free, slot);
}

/* The slot the next OPEN gets, if the table is as we think. */
static uint32_t hm_next(const struct hmodel *hm)
{
	return hm->free->len ? g_array_index(hm->free, uint32_t, hm->free->len - 1) : hm->count;
}

/* A CLOSE of the server's handle h is written. */
static void hm_close_written(struct sftp_client *c, const uint8_t *h, uint32_t hlen)
{
	struct hmodel *hm = &c->hm;
	if (hm->off)
		return;
	if (hlen != 4) {
		hm_off(c, "handles of another form");
		return;
	}
	uint32_t slot = wire_load_u32(h);
	if (!hm->opens) {
		hm_apply_close(c, slot);
		return;
	}
	struct hm_event *e = g_new(struct hm_event, 1);
	e->open = false;
	e->v = slot;
	g_queue_push_tail(&hm->events, e);
}

/* Whether slot is the server's handle of one of ours still open. */
static bool slot_held(struct sftp_client *c, uint32_t slot)
{
	GHashTableIter it;
	gpointer key, val;
	g_hash_table_iter_init(&it, c->vhandles);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		const struct vhandle *vh = val;
		if ((vh->valid && !vh->closing && vh->real_len == 4 && wire_load_u32(vh->real) == slot) ||
		    (vh->opening && vh->guessed && vh->guess == slot))
			return true;
	}
	return false;
}

/* An OPEN (or OPENDIR) with request id is written. Returns whether its
 * handle is known already, in *slot. */
static bool hm_open_written(struct sftp_client *c, uint32_t id, uint32_t *slot)
{
	struct hmodel *hm = &c->hm;
	if (hm->off)
		return false;
	bool sure = hm->learned >= HM_LEARN && hm->reused >= HM_REUSED && !hm->opens;
	if (sure) {
		*slot = hm_next(hm);
		for (guint i = 0; i < hm->free->len && !hm->lifo; i++)
			if (g_array_index(hm->free, uint32_t, i) < *slot)
				sure = false; /* the lowest free slot is another */
		sure = sure && !slot_held(c, *slot);
	}
	struct hm_event *e = g_new(struct hm_event, 1);
	e->open = true;
	e->v = id;
	g_queue_push_tail(&hm->events, e);
	hm->opens++;
	return sure;
}

/* Apply the CLOSEs written before the next unanswered OPEN. */
static void hm_settle(struct sftp_client *c)
{
	struct hmodel *hm = &c->hm;
	struct hm_event *e;
	while (!hm->off && (e = g_queue_peek_head(&hm->events)) && !e->open) {
		g_queue_pop_head(&hm->events);
		hm_apply_close(c, e->v);
		g_free(e);
	}
}

/* The OPEN with request id is answered: with the server's handle h, or
 * failed (h NULL). */
static void hm_open_answered(struct sftp_client *c, uint32_t id, const uint8_t *h, uint32_t hlen)
{
	struct hmodel *hm = &c->hm;
	hm_settle(c);
	struct hm_event *e = g_queue_peek_head(&hm->events);
	if (hm->off)
		return;
	if (!e || e->v != id) {
		hm_off(c, "an OPEN answered out of turn");
		return;
	}
	g_queue_pop_head(&hm->events);
	g_free(e);
	hm->opens--;
	if (h) {
		uint32_t want = hm_next(hm);
		if (hlen != 4 || wire_load_u32(h) != want) {
			hm_off(c, "the server's handle was not the one foreseen");
			return;
		}
		if (hm->free->len) {
			g_array_set_size(hm->free, hm->free->len - 1);
			hm->reused++;
			for (guint i = 0; i < hm->free->len; i++)
				if (g_array_index(hm->free, uint32_t, i) < want)
					hm->lifo = true; /* not the lowest: not the older rule */
		} else {
			hm->count++;
		}
		hm->learned++;
	}
	hm_settle(c);
}

/* Where the handle strings of a request are (offsets into its buffer). */
static bool name_in(const uint8_t *s, uint32_t len, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
			return true;
	return false;
}

/* hashi requests whose first argument is a handle ... */
static bool hashi_handle_ext(const uint8_t *s, uint32_t len)
{
	static const char *const names[] = { SFTP_EXT_HASHI_READDIR, SFTP_EXT_HASHI_LOCK,
					     SFTP_EXT_HASHI_FALLOCATE, SFTP_EXT_HASHI_LSEEK };
	return name_in(s, len, names, sizeof(names) / sizeof(names[0]));
}

/* ... and those whose first is a target (a handle with HASHI_TARGET_HANDLE). */
static bool hashi_target_ext(const uint8_t *s, uint32_t len)
{
	static const char *const names[] = { SFTP_EXT_HASHI_STAT, SFTP_EXT_HASHI_SETSTAT,
					     SFTP_EXT_HASHI_GETXATTR, SFTP_EXT_HASHI_SETXATTR,
					     SFTP_EXT_HASHI_LISTXATTR, SFTP_EXT_HASHI_REMOVEXATTR };
	return name_in(s, len, names, sizeof(names) / sizeof(names[0]));
}

/* Whether m is the extended request ext. */
static bool msg_is_ext(const struct sftp_msg *m, const char *ext)
{
	struct wire_reader r;
	uint32_t u32;
	uint8_t type;
	const uint8_t *s;
	uint32_t slen;
	wire_reader_init(&r, wire_buf_ptr(&m->buf), wire_buf_len(&m->buf));
	return !wire_get_u32(&r, &u32) && !wire_get_u8(&r, &type) && type == SSH_FXP_EXTENDED &&
	       !wire_get_u32(&r, &u32) && !wire_get_string(&r, &s, &slen) &&
	       name_in(s, slen, &ext, 1);
}

static int handle_offsets(const struct wire_buf *b, size_t *off, int max)
{
	struct wire_reader r;
	uint32_t u32;
	uint8_t type;
	const uint8_t *s;
	uint32_t slen;
	uint64_t u64;
	int n = 0;

	wire_reader_init(&r, wire_buf_ptr(b), wire_buf_len(b));
	if (wire_get_u32(&r, &u32) || wire_get_u8(&r, &type) || wire_get_u32(&r, &u32))
		return 0;
	switch (type) {
	case SSH_FXP_CLOSE: case SSH_FXP_READ: case SSH_FXP_WRITE: case SSH_FXP_FSTAT:
	case SSH_FXP_FSETSTAT: case SSH_FXP_READDIR:
		off[n++] = r.pos;
		return n;
	case SSH_FXP_EXTENDED:
		if (wire_get_string(&r, &s, &slen))
			return 0;
		if ((slen == strlen(SFTP_EXT_FSYNC) && !memcmp(s, SFTP_EXT_FSYNC, slen)) ||
		    (slen == strlen(SFTP_EXT_FSTATVFS) && !memcmp(s, SFTP_EXT_FSTATVFS, slen))) {
			off[n++] = r.pos;
		} else if (hashi_handle_ext(s, slen)) {
			off[n++] = r.pos;
		} else if (hashi_target_ext(s, slen)) {
			size_t at = r.pos;
			if (wire_get_string(&r, &s, &slen) || wire_get_u32(&r, &u32))
				return n;
			if (u32 & HASHI_TARGET_HANDLE)
				off[n++] = at;
		} else if (slen == strlen(SFTP_EXT_COPY_DATA) && !memcmp(s, SFTP_EXT_COPY_DATA, slen)) {
			off[n++] = r.pos;
			if (wire_get_string(&r, &s, &slen) || wire_get_u64(&r, &u64) ||
			    wire_get_u64(&r, &u64))
				return n;
			if (n < max)
				off[n++] = r.pos;
		}
		return n;
	}
	return 0;
}

/* A rest of buf longer than this goes on the wire from buf itself, not
 * copied into out (a WRITE's data)... */
#define TAIL_MIN 4096
/* ...but for what fills out to this: the first write to the transport is
 * as big as an SSH channel packet of libssh2's (32700 bytes), so the few
 * bytes before the data do not go in a packet of their own. */
#define OUT_FIRST 32700

/* Build m->out from m->buf with the server's handles in place of ours: out,
 * then buf's last tail_len bytes, are the packet. Returns 0, or an errno when
 * one of our handles has no server handle now. */
static int translate(struct sftp_client *c, struct sftp_msg *m, struct vhandle **wait,
		     bool *guessed)
{
	size_t offs[2];
	int n = handle_offsets(&m->buf, offs, 2);
	const uint8_t *src = wire_buf_ptr(&m->buf);
	size_t len = wire_buf_len(&m->buf), pos = 0;

	wire_buf_reset(&m->out);
	m->sent = 0;
	m->tail_len = 0;
	for (int i = 0; i < n; i++) {
		if (offs[i] + 4 > len)
			break;
		uint32_t hl = wire_load_u32(src + offs[i]);
		if (hl > len - offs[i] - 4)
			break;
		struct vhandle *vh = vh_lookup(c, src + offs[i] + 4, hl);
		if (!vh) {
			if (hl == VH_LEN && wire_load_u32(src + offs[i] + 4) == c->vh_magic)
				return EBADF; /* ours, closed */
			continue; /* not ours (already the server's) */
		}
		if (vh->open_err)
			return vh->open_err;
		const uint8_t *real = vh->real;
		uint32_t rlen = vh->real_len;
		uint8_t g[4];
		if (vh->opening) {
			if (!vh->guessed || vh->guess_bad) {
				*wait = vh; /* until the HANDLE comes */
				return 0;
			}
			wire_store_u32(g, vh->guess);
			real = g;
			rlen = 4;
			*guessed = true;
		} else if (!vh->valid) {
			return ESTALE;
		}
		if (wire_put_bytes(&m->out, src + pos, offs[i] - pos) ||
		    wire_put_string(&m->out, real, rlen))
			abort();
		pos = offs[i] + 4 + hl;
	}
	if (len - pos > TAIL_MIN) {
		size_t head = 0;
		if (wire_buf_len(&m->out) < OUT_FIRST)
			head = OUT_FIRST - wire_buf_len(&m->out);
		if (head > len - pos - TAIL_MIN)
			head = len - pos - TAIL_MIN;
		if (wire_put_bytes(&m->out, src + pos, head))
			abort();
		pos += head;
		m->tail_len = len - pos;
		size_t total = wire_buf_len(&m->out) + m->tail_len - 4;
		if (wire_buf_len(&m->out) < 4 || total > UINT32_MAX)
			abort();
		wire_poke_u32(&m->out, 0, (uint32_t)total);
		return 0;
	}
	if (wire_put_bytes(&m->out, src + pos, len - pos) || wire_packet_end(&m->out, 0))
		abort();
	return 0;
}

/* The packet's bytes from m->sent on that are in one piece, and how many. */
static const uint8_t *msg_unsent(const struct sftp_msg *m, size_t *n)
{
	size_t olen = wire_buf_len(&m->out);
	if (m->sent < olen) {
		*n = olen - m->sent;
		return wire_buf_ptr(&m->out) + m->sent;
	}
	size_t tsent = m->sent - olen;
	*n = m->tail_len - tsent;
	return wire_buf_ptr(&m->buf) + wire_buf_len(&m->buf) - m->tail_len + tsent;
}

static void w_append(struct sftp_client *c, struct sftp_msg *m)
{
	m->next = NULL;
	m->in_w = true;
	if (c->w_tail)
		c->w_tail->next = m;
	else
		c->w_head = m;
	c->w_tail = m;
}

/* Take pending request id out of the table and answer it with an error. */
static void complete_err(struct sftp_client *c, uint32_t id, uint32_t status, int err)
{
	pthread_mutex_lock(&c->lock);
	struct pending *p = g_hash_table_lookup(c->pending, GUINT_TO_POINTER(id));
	if (p)
		g_hash_table_remove(c->pending, GUINT_TO_POINTER(id));
	pthread_mutex_unlock(&c->lock);
	if (!p)
		return;
	call_err(p->cb, p->arg, status, err);
	pending_free(p);
}

static uint32_t msg_id(const struct sftp_msg *m)
{
	/* INIT (built straight into out) has no id */
	return wire_buf_len(&m->buf) >= 9 ? wire_load_u32(wire_buf_ptr(&m->buf) + 5) : 0;
}

/* A READDIR of a reopened directory first hands out what repositioning read. */
static bool answer_from_leftover(struct sftp_client *c, struct sftp_msg *m)
{
	size_t offs[1];
	if (wire_buf_ptr(&m->buf)[4] != SSH_FXP_READDIR || handle_offsets(&m->buf, offs, 1) != 1)
		return false;
	const uint8_t *src = wire_buf_ptr(&m->buf);
	struct vhandle *vh = vh_lookup(c, src + offs[0] + 4, wire_load_u32(src + offs[0]));
	if (!vh || vh->leftover_count == 0)
		return false;
	uint32_t id = msg_id(m);
	pthread_mutex_lock(&c->lock);
	struct pending *p = g_hash_table_lookup(c->pending, GUINT_TO_POINTER(id));
	if (p)
		g_hash_table_remove(c->pending, GUINT_TO_POINTER(id));
	pthread_mutex_unlock(&c->lock);
	if (!p)
		return true;
	struct wire_buf body;
	wire_buf_init(&body, 0);
	if (wire_put_u32(&body, vh->leftover_count) ||
	    wire_put_bytes(&body, wire_buf_ptr(&vh->leftover), wire_buf_len(&vh->leftover)))
		abort();
	vh->entries += vh->leftover_count;
	vh->leftover_count = 0;
	wire_buf_reset(&vh->leftover);
	struct sftp_reply r = { .type = SSH_FXP_NAME, .status = SSH_FX_OK, .err = 0 };
	wire_reader_init(&r.body, wire_buf_ptr(&body), wire_buf_len(&body));
	p->cb(p->arg, &r);
	pending_free(p);
	wire_buf_free(&body);
	return true;
}

static struct vhandle *msg_vhandle(struct sftp_client *c, const struct sftp_msg *m)
{
	size_t offs[1];
	if (!m || handle_offsets(&m->buf, offs, 1) != 1)
		return NULL;
	const uint8_t *b = wire_buf_ptr(&m->buf);
	return vh_lookup(c, b + offs[0] + 4, wire_load_u32(b + offs[0]));
}

static void w_send(struct sftp_client *c, struct sftp_msg *m);

/* Requests that waited for vh's OPEN go out now (or fail with it). */
static void vh_unpark(struct sftp_client *c, struct vhandle *vh)
{
	GQueue q = vh->parked; /* (vh may go: a CLOSE failing with the OPEN) */
	g_queue_init(&vh->parked);
	while (!g_queue_is_empty(&q)) {
		uint32_t id = GPOINTER_TO_UINT(g_queue_pop_head(&q));
		pthread_mutex_lock(&c->lock);
		struct pending *p = g_hash_table_lookup(c->pending, GUINT_TO_POINTER(id));
		struct sftp_msg *m = p && !p->sent && p->msg && !p->msg->in_w ? p->msg : NULL;
		pthread_mutex_unlock(&c->lock);
		if (m)
			w_send(c, m);
	}
}

/* The OPEN behind vh failed: so does every request on it. */
static void vh_open_failed(struct sftp_client *c, struct vhandle *vh, int err)
{
	vh->opening = false;
	vh->open_err = err ? err : EIO;
	vh->valid = false;
	g_free(vh->path);
	vh->path = NULL; /* nothing to reopen */
	vh_unpark(c, vh);
}

/* An OPEN given a handle of ours at once (sftp_open_early) failed. */
static void early_failed(struct sftp_client *c, const struct pending *p, int err)
{
	if (!p->msg || !p->msg->early_vid)
		return;
	struct vhandle *vh = g_hash_table_lookup(c->vhandles, GUINT_TO_POINTER(p->msg->early_vid));
	if (vh && vh->opening)
		vh_open_failed(c, vh, err);
}

/* Put a request on the write list (the order it goes on the wire), or let
 * it wait for the server's handle it names, or fail it. */
static void w_send(struct sftp_client *c, struct sftp_msg *m)
{
	uint8_t type = wire_buf_ptr(&m->buf)[4];
	uint32_t id = msg_id(m);
	struct vhandle *ovh = NULL;
	if (m->early_vid) {
		ovh = g_hash_table_lookup(c->vhandles, GUINT_TO_POINTER(m->early_vid));
		if (!ovh) {
			ovh = vh_for_request(c, m, m->early_vid);
			ovh->opening = true;
		}
	}
	uint32_t slot;
	if ((type == SSH_FXP_OPEN || type == SSH_FXP_OPENDIR) && hm_open_written(c, id, &slot) &&
	    ovh && ovh->opening) {
		ovh->guessed = true;
		ovh->guess = slot;
	}
	struct vhandle *wait = NULL;
	bool guessed = false;
	int e = translate(c, m, &wait, &guessed);
	if (wait) {
		g_queue_push_tail(&wait->parked, GUINT_TO_POINTER(id));
		return;
	}
	if (e) {
		struct vhandle *vh = type == SSH_FXP_CLOSE ? msg_vhandle(c, m) : NULL;
		if (vh)
			g_hash_table_remove(c->vhandles, GUINT_TO_POINTER(vh->vid));
		complete_err(c, id, SSH_FX_FAILURE, e);
		return;
	}
	if (guessed) {
		log_debug("request %u goes out on the handle foreseen for its OPEN", id);
		pthread_mutex_lock(&c->lock);
		struct pending *p = g_hash_table_lookup(c->pending, GUINT_TO_POINTER(id));
		if (p)
			p->guessed = true;
		pthread_mutex_unlock(&c->lock);
	}
	if (type == SSH_FXP_CLOSE) {
		struct vhandle *vh = msg_vhandle(c, m);
		if (vh)
			vh->closing = true;
		struct wire_reader r;
		const uint8_t *h;
		uint32_t hl;
		wire_reader_init(&r, wire_buf_ptr(&m->out), wire_buf_len(&m->out));
		if (!wire_skip(&r, 9) && !wire_get_string(&r, &h, &hl))
			hm_close_written(c, h, hl);
	}
	w_append(c, m);
}

/* Move what callers submitted to the write list (not while reconnecting). */
static void take_queue(struct sftp_client *c)
{
	pthread_mutex_lock(&c->lock);
	struct sftp_msg *q = c->q_head;
	c->q_head = c->q_tail = NULL;
	pthread_mutex_unlock(&c->lock);
	while (q) {
		struct sftp_msg *next = q->next;
		if (!answer_from_leftover(c, q))
			w_send(c, q);
		q = next;
	}
}

/* ---- replies ------------------------------------------------------------ */

/* After a reconnect, a request sent twice may find its own first attempt
 * done: that is not a failure. */
static void forgive_replay(const struct pending *p, struct sftp_reply *rep)
{
	if (!p->replayed || rep->type != SSH_FXP_STATUS)
		return;
	const uint8_t *b = wire_buf_ptr(&p->msg->buf);
	uint8_t type = b[4];
	bool done = false;
	switch (type) {
	case SSH_FXP_MKDIR:
	case SSH_FXP_SYMLINK:
		done = rep->status == SSH_FX_FAILURE;
		break;
	case SSH_FXP_REMOVE:
	case SSH_FXP_RMDIR:
	case SSH_FXP_RENAME:
		done = rep->status == SSH_FX_NO_SUCH_FILE;
		break;
	case SSH_FXP_EXTENDED: {
		uint32_t nl = wire_load_u32(b + 9);
		const char *name = (const char *)b + 13;
		if (nl == strlen(SFTP_EXT_POSIX_RENAME) && !memcmp(name, SFTP_EXT_POSIX_RENAME, nl))
			done = rep->status == SSH_FX_NO_SUCH_FILE;
		else if ((nl == strlen(SFTP_EXT_HARDLINK) && !memcmp(name, SFTP_EXT_HARDLINK, nl)) ||
			 (nl == strlen(SFTP_EXT_HASHI_MKNOD) && !memcmp(name, SFTP_EXT_HASHI_MKNOD, nl)))
			done = rep->status == SSH_FX_FAILURE; /* (mknod@hashi: OK with no attributes) */
		break;
	}
	}
	if (done) {
		log_info("a request repeated after reconnecting found its first attempt done");
		rep->status = SSH_FX_OK;
		rep->err = 0;
	}
}

/* A HANDLE reply to OPEN/OPENDIR: remember the server's handle, give ours. */
/* The reply's handle is the server's: keep it, and give the caller ours in
 * its place (the reply body moves into vbuf, with what followed the handle:
 * open@hashi's attributes). */
static int adopt_handle(struct sftp_client *c, struct pending *p, struct sftp_reply *rep,
			struct wire_buf *vbuf)
{
	const uint8_t *h;
	uint32_t hlen;
	struct wire_reader r = rep->body;
	if (wire_get_string(&r, &h, &hlen) || hlen == 0 || hlen > SFTP_MAX_HANDLE_LEN)
		return -1;
	struct vhandle *vh = NULL;
	if (p->msg->early_vid)
		vh = g_hash_table_lookup(c->vhandles, GUINT_TO_POINTER(p->msg->early_vid));
	bool early = vh && vh->opening;
	if (!vh)
		vh = vh_for_request(c, p->msg, __atomic_fetch_add(&c->next_vid, 1, __ATOMIC_RELAXED));
	memcpy(vh->real, h, hlen);
	vh->real_len = hlen;
	vh->valid = true;
	vh->opening = false;
	if (early && vh->guessed && (hlen != 4 || wire_load_u32(h) != vh->guess)) {
		/* (never seen: a server that seemed OpenSSH's and was not) */
		log_error("the server's handle for \"%s\" was not the one foreseen: what was sent on "
			  "it ahead fails", vh->path ? vh->path : "?");
		vh->guess_bad = true;
		hm_off(c, "a wrong guess");
	}
	if (wire_put_u32(vbuf, VH_LEN) || wire_put_u32(vbuf, c->vh_magic) ||
	    wire_put_u32(vbuf, vh->vid) || wire_put_bytes(vbuf, r.data + r.pos, wire_remaining(&r)))
		abort();
	wire_reader_init(&rep->body, wire_buf_ptr(vbuf), wire_buf_len(vbuf));
	if (early)
		vh_unpark(c, vh);
	return 0;
}

static struct vhandle *request_vhandle(struct sftp_client *c, const struct pending *p)
{
	return msg_vhandle(c, p->msg);
}

/* ---- checking replies --------------------------------------------------- */

/* The length a READ asked for (0 if m is no READ). */
static uint32_t read_request_len(const struct sftp_msg *m)
{
	struct wire_reader r;
	const uint8_t *s;
	uint32_t slen, len;
	uint64_t off;
	wire_reader_init(&r, wire_buf_ptr(&m->buf), wire_buf_len(&m->buf));
	if (wire_skip(&r, 9) || wire_get_string(&r, &s, &slen) || wire_get_u64(&r, &off) ||
	    wire_get_u32(&r, &len))
		return 0;
	return len;
}

/* Whether a reply type may answer a request type. */
static bool reply_fits(uint8_t req, uint8_t type)
{
	if (type == SSH_FXP_STATUS || req == SSH_FXP_EXTENDED)
		return type != SSH_FXP_VERSION;
	switch (type) {
	case SSH_FXP_HANDLE: return req == SSH_FXP_OPEN || req == SSH_FXP_OPENDIR;
	case SSH_FXP_DATA: return req == SSH_FXP_READ;
	case SSH_FXP_NAME:
		return req == SSH_FXP_READDIR || req == SSH_FXP_REALPATH || req == SSH_FXP_READLINK;
	case SSH_FXP_ATTRS:
		return req == SSH_FXP_STAT || req == SSH_FXP_LSTAT || req == SSH_FXP_FSTAT;
	}
	return false;
}

/* Whether a reply (framed well, its id one we sent) has the fields its type
 * needs and answers its request. Returns 0, or -1 with what is wrong in why. */
static int check_reply(const struct pending *p, uint8_t type, struct wire_reader body, char *why,
		       size_t whylen)
{
	const uint8_t *s;
	uint32_t u, n;
	struct sftp_attrs a;

	if (type < SSH_FXP_STATUS || (type > SSH_FXP_ATTRS && type != SSH_FXP_EXTENDED_REPLY)) {
		snprintf(why, whylen, "unknown reply type %u", type);
		return -1;
	}
	if (!reply_fits(p->type, type)) {
		snprintf(why, whylen, "%s reply to a %s request", type_name(type), type_name(p->type));
		return -1;
	}
	int bad = 0;
	switch (type) {
	case SSH_FXP_STATUS:
		bad = wire_get_u32(&body, &u);
		break;
	case SSH_FXP_HANDLE:
		bad = wire_get_string(&body, &s, &n) || n == 0;
		if (!bad && n > SFTP_MAX_HANDLE_LEN) {
			snprintf(why, whylen, "handle of %u bytes from the server (the limit is %u)", n,
				 SFTP_MAX_HANDLE_LEN);
			return -1;
		}
		break;
	case SSH_FXP_DATA:
		bad = wire_get_string(&body, &s, &n);
		if (!bad && p->type == SSH_FXP_READ && p->msg && n > read_request_len(p->msg)) {
			snprintf(why, whylen, "DATA reply of %u bytes, more than the %u asked for", n,
				 read_request_len(p->msg));
			return -1;
		}
		break;
	case SSH_FXP_NAME:
		bad = wire_get_u32(&body, &n);
		for (uint32_t i = 0; !bad && i < n; i++) {
			if (wire_get_string(&body, &s, &u) || wire_get_string(&body, &s, &u) ||
			    attrs_get(&body, &a)) {
				snprintf(why, whylen, "malformed NAME reply (count %u, entry %u cut short)",
					 n, i);
				return -1;
			}
		}
		break;
	case SSH_FXP_ATTRS:
		bad = attrs_get(&body, &a);
		break;
	}
	if (bad) {
		snprintf(why, whylen, "malformed %s reply", type_name(type));
		return -1;
	}
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
	bool early = p && p->msg && (p->msg->in_w || !p->sent);
	if (p && !early)
		g_hash_table_steal(c->pending, GUINT_TO_POINTER(id));
	pthread_mutex_unlock(&c->lock);
	if (!p || early) {
		snprintf(c->error, sizeof(c->error), "reply to request id %u that was never sent", id);
		return -1;
	}
	struct sftp_reply rep = { .type = type, .status = SSH_FX_OK, .err = 0, .body = r };
	char why[200];
	if (check_reply(p, type, r, why, sizeof(why)) < 0) {
		/* The packet's framing holds: only this request fails. */
		log_error("%s (request %u, %s): the request fails", why, id, type_name(p->type));
		if (!p->internal && (p->type == SSH_FXP_OPEN || p->type == SSH_FXP_OPENDIR))
			hm_open_answered(c, id, NULL, 0);
		early_failed(c, p, EIO);
		call_err(p->cb, p->arg, SSH_FX_BAD_MESSAGE, EIO);
		pending_free(p);
		return 0;
	}
	if (!p->internal && (p->type == SSH_FXP_OPEN || p->type == SSH_FXP_OPENDIR)) {
		const uint8_t *h = NULL;
		uint32_t hl = 0;
		struct wire_reader hr = r;
		if (type != SSH_FXP_HANDLE || wire_get_string(&hr, &h, &hl))
			h = NULL;
		hm_open_answered(c, id, h, hl);
	}
	struct wire_buf vbuf;
	wire_buf_init(&vbuf, 0);
	int ret = 0;
	switch (type) {
	case SSH_FXP_STATUS:
		if (wire_get_u32(&rep.body, &rep.status))
			abort(); /* check_reply saw it */
		forgive_replay(p, &rep);
		rep.err = attrs_status_to_errno(rep.status);
		if (c->errno_on && rep.status != SSH_FX_OK)
			status_errno(&rep);
		if (rep.status != SSH_FX_OK)
			early_failed(c, p, rep.err);
		if (p->guessed && rep.status != SSH_FX_OK) {
			/* sent on a handle guessed: its OPEN's error, if it failed */
			struct vhandle *vh = request_vhandle(c, p);
			if (vh && vh->open_err)
				rep.err = vh->open_err;
			else if (vh && vh->guess_bad)
				rep.err = EIO;
		}
		if (p->type == SSH_FXP_CLOSE && !p->internal) {
			struct vhandle *vh = request_vhandle(c, p);
			if (vh)
				g_hash_table_remove(c->vhandles, GUINT_TO_POINTER(vh->vid));
		}
		break;
	case SSH_FXP_HANDLE:
		if ((p->type == SSH_FXP_OPEN || p->type == SSH_FXP_OPENDIR) && p->msg && !p->internal &&
		    adopt_handle(c, p, &rep, &vbuf) < 0) {
			snprintf(c->error, sizeof(c->error), "malformed HANDLE reply");
			ret = -1;
		}
		break;
	case SSH_FXP_NAME:
		if (p->type == SSH_FXP_READDIR && !p->internal) {
			struct vhandle *vh = request_vhandle(c, p);
			struct wire_reader cr = rep.body;
			uint32_t count;
			if (vh && !wire_get_u32(&cr, &count))
				vh->entries += count;
		}
		break;
	case SSH_FXP_EXTENDED_REPLY:
		if (p->msg && !p->internal && msg_is_ext(p->msg, SFTP_EXT_HASHI_OPEN) &&
		    adopt_handle(c, p, &rep, &vbuf) < 0) {
			snprintf(c->error, sizeof(c->error), "malformed open@hashi reply");
			ret = -1;
		}
		break;
	case SSH_FXP_DATA:
	case SSH_FXP_ATTRS:
		break;
	}
	if (ret < 0) {
		rep.type = 0;
		rep.err = EIO;
		wire_reader_init(&rep.body, NULL, 0);
		early_failed(c, p, EIO);
	} else if (log_enabled(LOGL_DEBUG1)) {
		log_reply(id, p, &rep);
	}
	p->cb(p->arg, &rep);
	pending_free(p);
	wire_buf_free(&vbuf);
	return ret;
}

/* ---- moving bytes ------------------------------------------------------- */

static size_t max_reply_packet(const struct sftp_client *c)
{
	size_t data = (size_t)c->max_read + REPLY_SLACK;
	return data > SFTP_MAX_MSG_LENGTH ? data : SFTP_MAX_MSG_LENGTH;
}

/* Move bytes both ways as far as the transport allows, then dispatch whole
 * replies. Returns -1 when the connection is lost. */
static int pump(struct sftp_client *c)
{
	struct transport *t = c->t;

	if (!c->reiniting)
		take_queue(c);

	while (c->w_head) {
		struct sftp_msg *m = c->w_head;
		size_t left;
		const uint8_t *from = msg_unsent(m, &left);
		ssize_t n = t->ops->write(t, from, left);
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			snprintf(c->error, sizeof(c->error), "%s",
				 transport_error(t)[0] ? transport_error(t) : strerror((int)-n));
			return -1;
		}
		if (n > 0 && m->sent == 0) {
			pthread_mutex_lock(&c->lock);
			struct pending *p = g_hash_table_lookup(c->pending, GUINT_TO_POINTER(msg_id(m)));
			if (p && p->msg == m)
				p->sent = true;
			pthread_mutex_unlock(&c->lock);
		}
		m->sent += (size_t)n;
		c->bytes_sent += (uint64_t)n;
		if (m->sent == wire_buf_len(&m->out) + m->tail_len) {
			c->w_head = m->next;
			if (!c->w_head)
				c->w_tail = NULL;
			m->in_w = false;
			m->next = NULL;
			/* The pending table keeps it until the reply (to resend it). */
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
		c->bytes_received += (uint64_t)n;
		wire_buf_commit(&c->in, (size_t)n);
		c->rx_partial += (size_t)n;
		if (c->rx_partial >= RX_PROGRESS) {
			c->last_rx = now_ms();
			c->rx_partial = 0;
		}
		/* Dispatch as we go so the input buffer stays small. */
		for (;;) {
			uint32_t plen;
			size_t max = max_reply_packet(c);
			int ret = wire_peek_packet(wire_buf_ptr(&c->in), wire_buf_len(&c->in), max, &plen);
			if (ret == WIRE_ETOOLONG) {
				snprintf(c->error, sizeof(c->error),
					 "malformed reply from the server (packet length %u, the limit is %zu)",
					 wire_load_u32(wire_buf_ptr(&c->in)), max);
				c->proto_error = true;
				return -1;
			}
			if (ret == 0)
				break;
			c->last_rx = now_ms();
			c->rx_partial = 0;
			ret = dispatch(c, wire_buf_ptr(&c->in) + 4, plen);
			wire_buf_consume(&c->in, (size_t)plen + 4);
			if (ret < 0) {
				c->proto_error = true;
				return -1;
			}
		}
	}
	return 0;
}

/* Wait for the transport or a wake-up, for at most timeout_ms. */
static int wait_io(struct sftp_client *c, int timeout_ms)
{
	struct pollfd pfd[TRANSPORT_MAX_POLLFDS + 1];
	int n = 0;
	if (c->t)
		n = c->t->ops->pollfds(c->t, c->w_head != NULL, pfd, TRANSPORT_MAX_POLLFDS);
	pfd[n].fd = c->efd;
	pfd[n].events = POLLIN;
	pfd[n].revents = 0;
	int ret = poll(pfd, (nfds_t)n + 1, timeout_ms);
	if (ret < 0 && errno != EINTR)
		return -1;
	if (ret > 0 && c->t && c->t->ops->after_poll)
		c->t->ops->after_poll(c->t, pfd, n);
	if (ret > 0 && (pfd[n].revents & POLLIN)) {
		uint64_t v;
		ssize_t r = read(c->efd, &v, sizeof(v));
		(void)r;
	}
	return 0;
}

/* A handshake (INIT, the mount's first requests, reopening after a
 * reconnect) the server leaves unanswered this long has failed: the
 * dead-peer check's time if it is on, else HANDSHAKE_SILENCE_S. */
#define HANDSHAKE_SILENCE_S 30

static bool handshake_stalled(struct sftp_client *c)
{
	unsigned limit = c->alive_interval_s ? c->alive_interval_s * c->alive_count_max
					     : HANDSHAKE_SILENCE_S;
	if (now_ms() - c->last_rx < (uint64_t)limit * 1000)
		return false;
	snprintf(c->error, sizeof(c->error), "no answer from the server for %u s", limit);
	return true;
}

/* Drive the transport from this thread until *done. */
static int drive_until(struct sftp_client *c, volatile bool *done)
{
	while (!*done) {
		if (pump(c) < 0 || (!*done && handshake_stalled(c)))
			return -1;
		if (*done)
			break;
		pthread_mutex_lock(&c->lock);
		bool more = c->q_head != NULL && !c->reiniting;
		pthread_mutex_unlock(&c->lock);
		if (!more)
			wait_io(c, 1000);
	}
	return 0;
}

/* Internal requests (reinitialising a session): sent at the head of the
 * write list, answered into a struct. */
struct internal {
	volatile bool done;
	int err;
	uint8_t type;
	struct wire_buf body;
};

static void internal_cb(void *arg, struct sftp_reply *r)
{
	struct internal *in = arg;
	in->type = r->type;
	in->err = r->err;
	if (wire_remaining(&r->body) > 0 &&
	    wire_put_bytes(&in->body, r->body.data + r->body.pos, wire_remaining(&r->body)))
		abort();
	in->done = true;
}

/* Send m (built with the server's handles) now, ahead of everything else,
 * and wait for its answer on the current connection. */
static int internal_call(struct sftp_client *c, struct sftp_msg *m, struct internal *in)
{
	if (wire_packet_end(&m->buf, 0))
		abort();
	memset(in, 0, sizeof(*in));
	wire_buf_init(&in->body, 0);
	pthread_mutex_lock(&c->lock);
	uint32_t id = c->next_id++;
	while (id == 0 || g_hash_table_contains(c->pending, GUINT_TO_POINTER(id)))
		id = c->next_id++;
	wire_poke_u32(&m->buf, 5, id);
	struct pending *p = g_new0(struct pending, 1);
	p->cb = internal_cb;
	p->arg = in;
	p->internal = true;
	clock_gettime(CLOCK_MONOTONIC, &p->t0);
	p->type = wire_buf_ptr(&m->buf)[4];
	p->msg = m;
	g_hash_table_insert(c->pending, GUINT_TO_POINTER(id), p);
	pthread_mutex_unlock(&c->lock);
	if (wire_put_bytes(&m->out, wire_buf_ptr(&m->buf), wire_buf_len(&m->buf)))
		abort();
	w_append(c, m);
	if (drive_until(c, &in->done) < 0) {
		/* in is on the caller's stack: nothing may answer into it later */
		pthread_mutex_lock(&c->lock);
		p = g_hash_table_lookup(c->pending, GUINT_TO_POINTER(id));
		if (p)
			g_hash_table_remove(c->pending, GUINT_TO_POINTER(id));
		pthread_mutex_unlock(&c->lock);
		c->w_head = c->w_tail = NULL;
		if (p)
			pending_free(p);
		return -1;
	}
	return 0;
}

/* ---- reconnecting ------------------------------------------------------- */

/* Our threads leave SIGINT, SIGTERM and SIGHUP to the FUSE loop's thread
 * (a signal taken by another thread would not wake its read of /dev/fuse). */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGQUIT);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int ret = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

static void *reconnect_thread(void *arg)
{
	struct sftp_client *c = arg;
	unsigned backoff = 1;
	char err[512];
	while (!c->stop) {
		log_progress("reconnecting");
		struct transport *t = c->reconnect(c->reconnect_arg, err, sizeof(err));
		if (t) {
			pthread_mutex_lock(&c->lock);
			c->new_t = t;
			pthread_mutex_unlock(&c->lock);
			wake(c);
			return NULL;
		}
		log_error("reconnect failed: %s (next attempt in %u s)", err, backoff);
		c->retry_now = false;
		for (unsigned i = 0; i < backoff * 10 && !c->stop && !c->retry_now; i++)
			usleep(100 * 1000);
		c->retry_now = false;
		backoff = backoff < 16 ? backoff * 2 : 30;
	}
	return NULL;
}

static void start_outage(struct sftp_client *c, const char *why)
{
	log_error("connection to the server lost: %s; reconnecting", why);
	if (c->t) {
		transport_abandon(c->t);
		c->t = NULL;
	}
	pthread_mutex_lock(&c->lock);
	c->outage = true;
	c->outage_expired = false;
	c->outage_since = now_ms();
	pthread_mutex_unlock(&c->lock);
	c->w_head = c->w_tail = NULL;
	wire_buf_reset(&c->in);
	c->got_version = false;
	c->ka_outstanding = false;
	c->rx_partial = 0;
	GHashTableIter it;
	gpointer key, val;
	hm_off(c, "reconnecting");
	g_hash_table_iter_init(&it, c->vhandles);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		struct vhandle *vh = val;
		vh->valid = false;
		vh->guessed = false; /* a new server: what waits for an OPEN waits */
		g_queue_clear(&vh->parked); /* (resent from the pending table) */
	}
	pthread_mutex_lock(&c->lock);
	c->q_head = c->q_tail = NULL; /* all in the pending table, resent from there */
	uint64_t deadline = c->timeout_s ? c->outage_since + (uint64_t)c->timeout_s * 1000 : 0;
	g_hash_table_iter_init(&it, c->pending);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		struct pending *p = val;
		p->deadline = deadline;
		if (p->msg) {
			p->msg->in_w = false;
			p->msg->next = NULL;
		}
		/* remember it was sent (a retry may find it done), but accept no
		 * answer to it before it is sent again on the new connection */
		if (c->proto_error && p->sent && p->strikes < 255)
			p->strikes++;
		p->replayed = p->replayed || p->sent;
		p->sent = false;
		p->guessed = false;
	}
	pthread_mutex_unlock(&c->lock);
	c->proto_error = false;
	c->rthread_running = start_thread(&c->rthread, reconnect_thread, c) == 0;
	if (!c->rthread_running)
		fail_all(c, "cannot start reconnecting");
}

/* Requests whose wait through the outage is over fail with ETIMEDOUT. */
static void expire(struct sftp_client *c)
{
	uint64_t now = now_ms();
	GSList *gone = NULL;
	pthread_mutex_lock(&c->lock);
	if (c->timeout_s && now >= c->outage_since + (uint64_t)c->timeout_s * 1000)
		c->outage_expired = true;
	c->q_head = c->q_tail = NULL;
	GHashTableIter it;
	gpointer key, val;
	g_hash_table_iter_init(&it, c->pending);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		struct pending *p = val;
		if (!p->deadline && c->timeout_s)
			p->deadline = now + (uint64_t)c->timeout_s * 1000;
		if (p->deadline && now >= p->deadline) {
			g_hash_table_iter_steal(&it);
			gone = g_slist_prepend(gone, p);
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (GSList *l = gone; l; l = l->next) {
		struct pending *p = l->data;
		early_failed(c, p, ETIMEDOUT);
		if (p->type == SSH_FXP_CLOSE) {
			struct vhandle *vh = request_vhandle(c, p);
			if (vh)
				g_hash_table_remove(c->vhandles, GUINT_TO_POINTER(vh->vid));
		}
		call_err(p->cb, p->arg, SSH_FX_CONNECTION_LOST, ETIMEDOUT);
		pending_free(p);
	}
	if (gone)
		log_error("%u request(s) gave up waiting for the server", g_slist_length(gone));
	g_slist_free(gone);
}

/* Reopen one handle on the new connection (never truncating or creating).
 * Returns -1 when the connection broke meanwhile. */
static int reopen(struct sftp_client *c, struct vhandle *vh)
{
	struct internal in;
	if (!vh->path || vh->opening)
		return 0; /* (an OPEN not answered yet is sent again) */
	struct sftp_msg *m = sftp_msg_new(vh->dir ? SSH_FXP_OPENDIR : SSH_FXP_OPEN);
	if (wire_put_cstring(&m->buf, vh->path))
		abort();
	if (!vh->dir) {
		struct sftp_attrs a;
		attrs_clear(&a);
		if (wire_put_u32(&m->buf, vh->pflags & ~(uint32_t)(SSH_FXF_TRUNC | SSH_FXF_EXCL | SSH_FXF_CREAT)) ||
		    attrs_put(&m->buf, &a))
			abort();
	}
	if (internal_call(c, m, &in) < 0) {
		wire_buf_free(&in.body);
		return -1;
	}
	struct wire_reader r;
	const uint8_t *h;
	uint32_t hlen;
	wire_reader_init(&r, wire_buf_ptr(&in.body), wire_buf_len(&in.body));
	if (in.type == SSH_FXP_HANDLE && !wire_get_string(&r, &h, &hlen) && hlen > 0 &&
	    hlen <= SFTP_MAX_HANDLE_LEN) {
		memcpy(vh->real, h, hlen);
		vh->real_len = hlen;
		vh->valid = true;
	} else {
		log_error("cannot reopen \"%s\" after reconnecting", vh->path);
	}
	wire_buf_free(&in.body);
	/* A directory: read past what was handed out already; keep the rest. */
	uint64_t skip = vh->dir && vh->valid ? vh->entries : 0;
	wire_buf_reset(&vh->leftover);
	vh->leftover_count = 0;
	uint64_t seen = 0;
	while (vh->valid && seen < skip) {
		m = sftp_msg_new(SSH_FXP_READDIR);
		if (wire_put_string(&m->buf, vh->real, vh->real_len))
			abort();
		if (internal_call(c, m, &in) < 0) {
			wire_buf_free(&in.body);
			return -1;
		}
		if (in.type != SSH_FXP_NAME) {
			wire_buf_free(&in.body);
			break;
		}
		uint32_t count;
		wire_reader_init(&r, wire_buf_ptr(&in.body), wire_buf_len(&in.body));
		if (wire_get_u32(&r, &count) || count == 0) {
			/* a server that gives nothing more cannot reposition us */
			wire_buf_free(&in.body);
			break;
		}
		uint64_t before = seen + vh->leftover_count;
		for (uint32_t i = 0; i < count; i++) {
			size_t start = r.pos;
			const uint8_t *s;
			uint32_t sl;
			struct sftp_attrs a;
			if (wire_get_string(&r, &s, &sl) || wire_get_string(&r, &s, &sl) ||
			    attrs_get(&r, &a))
				break;
			if (seen < skip) {
				seen++;
				continue;
			}
			if (wire_put_bytes(&vh->leftover, r.data + start, r.pos - start))
				abort();
			vh->leftover_count++;
		}
		wire_buf_free(&in.body);
		if (seen + vh->leftover_count == before)
			break; /* no usable entry in that reply */
	}
	if (vh->dir)
		vh->entries = seen;
	return 0;
}

static int pending_cmp(gconstpointer a, gconstpointer b)
{
	uint32_t x = msg_id(((const struct pending *)a)->msg), y = msg_id(((const struct pending *)b)->msg);
	return x < y ? -1 : x > y;
}

/* A new connection: SFTP again, handles reopened, requests resent in order. */
static int reinit(struct sftp_client *c, struct transport *t)
{
	c->t = t;
	c->reiniting = true;
	c->last_rx = now_ms();
	c->rx_partial = 0;
	struct sftp_msg *m = calloc(1, sizeof(*m));
	size_t mark;
	if (!m)
		abort();
	wire_buf_init(&m->buf, 0);
	if (wire_packet_begin(&m->out, SSH_FXP_INIT, &mark) || wire_put_u32(&m->out, SFTP_VERSION) ||
	    wire_packet_end(&m->out, mark))
		abort();
	w_append(c, m);
	uint32_t exts_before = c->exts;
	c->exts = 0;
	int ret = drive_until(c, (volatile bool *)&c->got_version);
	sftp_msg_free(m); /* INIT has no pending entry: written or not, drop it */
	c->w_head = c->w_tail = NULL;
	if (ret < 0 || !c->got_version) {
		c->exts = exts_before;
		c->reiniting = false;
		return -1;
	}
	if (c->exts != exts_before)
		log_info("the server's extensions changed after reconnecting");
	c->errno_on = false;
	if (c->exts & SFTP_HAS_HASHI_ERRNO) {
		struct internal in;
		m = sftp_msg_new_ext(SFTP_EXT_HASHI_ERRNO);
		if (wire_put_u32(&m->buf, 1))
			abort();
		ret = internal_call(c, m, &in);
		wire_buf_free(&in.body);
		if (ret < 0) {
			c->reiniting = false;
			return -1;
		}
		c->errno_on = in.type == SSH_FXP_STATUS && in.err == 0;
	}
	GHashTableIter it;
	gpointer key, val;
	g_hash_table_iter_init(&it, c->vhandles);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		if (reopen(c, val) < 0) {
			c->reiniting = false;
			return -1;
		}
	}

	/* Resend, in their original order. A CLOSE of a handle the server
	 * forgot with the old connection is done already. */
	pthread_mutex_lock(&c->lock);
	c->q_head = c->q_tail = NULL;
	GList *list = g_hash_table_get_values(c->pending);
	pthread_mutex_unlock(&c->lock);
	list = g_list_sort(list, pending_cmp);
	unsigned struck = 0;
	for (GList *l = list; l; l = l->next) {
		struct pending *p = l->data;
		uint32_t id = msg_id(p->msg);
		if (p->type == SSH_FXP_CLOSE) {
			struct vhandle *vh = request_vhandle(c, p);
			if (vh)
				g_hash_table_remove(c->vhandles, GUINT_TO_POINTER(vh->vid));
			pthread_mutex_lock(&c->lock);
			g_hash_table_remove(c->pending, GUINT_TO_POINTER(id));
			pthread_mutex_unlock(&c->lock);
			call_err(p->cb, p->arg, SSH_FX_OK, 0);
			pending_free(p);
			continue;
		}
		if (p->strikes >= PROTO_STRIKES) {
			/* The server broke the protocol each time it had it. */
			complete_err(c, id, SSH_FX_BAD_MESSAGE, EIO);
			struck++;
			continue;
		}
		if (p->replayed) {
			if (p->type == SSH_FXP_OPEN) {
				/* If the first OPEN made the file, EXCL would now fail. */
				struct wire_reader r;
				const uint8_t *s;
				uint32_t sl;
				wire_reader_init(&r, wire_buf_ptr(&p->msg->buf), wire_buf_len(&p->msg->buf));
				if (!wire_skip(&r, 9) && !wire_get_string(&r, &s, &sl) && wire_remaining(&r) >= 4) {
					uint32_t fl = wire_load_u32(r.data + r.pos);
					wire_store_u32((uint8_t *)r.data + r.pos, fl & ~(uint32_t)SSH_FXF_EXCL);
				}
			}
		}
		p->deadline = 0;
		if (!answer_from_leftover(c, p->msg))
			w_send(c, p->msg);
	}
	g_list_free(list);
	if (struck)
		log_error("failing %u request(s) that the server answered against the protocol on "
			  "%d connections", struck, PROTO_STRIKES);
	c->reiniting = false;
	pthread_mutex_lock(&c->lock);
	c->outage = false;
	c->outage_expired = false;
	pthread_mutex_unlock(&c->lock);
	c->reconnects++;
	log_info("reconnected to the server after %.1f s", (double)(now_ms() - c->outage_since) / 1000);
	return 0;
}

void sftp_client_set_reconnect(struct sftp_client *c, sftp_reconnect_fn fn, void *arg,
			       unsigned timeout_s)
{
	c->reconnect = fn;
	c->reconnect_arg = arg;
	c->timeout_s = timeout_s;
}

void sftp_client_set_keepalive(struct sftp_client *c, unsigned interval_s, unsigned count_max)
{
	c->alive_interval_s = interval_s;
	c->alive_count_max = count_max ? count_max : 1;
}

static void keepalive_cb(void *arg, struct sftp_reply *r)
{
	struct sftp_client *c = arg;
	(void)r;
	c->ka_outstanding = false;
}

/* A dead peer is one that says nothing for interval * count seconds while we
 * keep asking. Returns true when that is so. */
static bool keepalive(struct sftp_client *c)
{
	if (!c->alive_interval_s || c->outage)
		return false;
	uint64_t now = now_ms(), quiet = now - c->last_rx;
	uint64_t interval = (uint64_t)c->alive_interval_s * 1000;
	if (quiet >= interval * c->alive_count_max) {
		snprintf(c->error, sizeof(c->error), "no answer from the server for %u s",
			 c->alive_interval_s * c->alive_count_max);
		return true;
	}
	if (quiet >= interval && !c->ka_outstanding) {
		c->ka_outstanding = true;
		struct sftp_msg *m = sftp_msg_new(SSH_FXP_REALPATH);
		if (wire_put_cstring(&m->buf, "."))
			abort();
		sftp_submit(c, m, keepalive_cb, c);
	}
	return false;
}

static void *io_thread(void *arg)
{
	struct sftp_client *c = arg;
	c->last_rx = now_ms();
	while (!c->stop) {
		if (c->outage) {
			pthread_mutex_lock(&c->lock);
			struct transport *t = c->new_t;
			c->new_t = NULL;
			pthread_mutex_unlock(&c->lock);
			if (t) {
				pthread_join(c->rthread, NULL);
				c->rthread_running = false;
				if (reinit(c, t) < 0) {
					log_error("reconnecting: %s", c->error[0] ? c->error : "the new session failed");
					if (c->t) {
						transport_abandon(c->t);
						c->t = NULL;
					}
					c->reiniting = false;
					c->w_head = c->w_tail = NULL;
					wire_buf_reset(&c->in);
					c->got_version = false;
					GHashTableIter vit;
					gpointer vk, vv;
					g_hash_table_iter_init(&vit, c->vhandles);
					while (g_hash_table_iter_next(&vit, &vk, &vv))
						((struct vhandle *)vv)->valid = false;
					if (!c->stop)
						c->rthread_running = start_thread(&c->rthread,
										  reconnect_thread, c) == 0;
				}
				continue;
			}
			expire(c);
			wait_io(c, 200);
			continue;
		}
		if (pump(c) < 0 || keepalive(c)) {
			if (c->reconnect && !c->stop) {
				start_outage(c, c->error);
				continue;
			}
			fail_all(c, c->error);
			break;
		}
		if (c->stop)
			break;
		/* Anything submitted while we pumped is picked up at once. */
		pthread_mutex_lock(&c->lock);
		bool more = c->q_head != NULL;
		pthread_mutex_unlock(&c->lock);
		if (!more) {
			int ms = 1000;
			if (c->alive_interval_s && c->alive_interval_s * 1000 < (unsigned)ms)
				ms = (int)c->alive_interval_s * 1000;
			wait_io(c, ms);
		}
	}
	return NULL;
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
		if (!w.done && drive_until(c, &w.done) < 0)
			fail_all(c, NULL);
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

/* errno@hashi: failures then carry the server's errno. */
static void errno_opt_in(struct sftp_client *c)
{
	if (!(c->exts & SFTP_HAS_HASHI_ERRNO))
		return;
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_HASHI_ERRNO);
	wire_put_u32(&m->buf, 1);
	uint8_t type;
	c->errno_on = sftp_call(c, m, &type, NULL, NULL) == 0;
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
				maxw = maxpkt > 2048 ? maxpkt - 1024 : 1024;
			if (maxr >= 1024)
				c->max_read = (uint32_t)maxr;
			if (maxw >= 1024 || (maxpkt && maxpkt <= 2048))
				c->max_write = (uint32_t)(maxw >= 1024 ? maxw : 1024);
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
	c->pending = g_hash_table_new(g_direct_hash, g_direct_equal);
	c->vhandles = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, vh_free);
	c->next_id = 1;
	c->next_vid = 1;
	hm_init(&c->hm);
	c->vh_magic = VH_MAGIC;
	c->last_rx = now_ms();
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
	if (!m)
		abort();
	wire_buf_init(&m->buf, 0);
	if (wire_packet_begin(&m->out, SSH_FXP_INIT, &mark) || wire_put_u32(&m->out, SFTP_VERSION) ||
	    wire_packet_end(&m->out, mark))
		abort();
	w_append(c, m);
	int ret = drive_until(c, (volatile bool *)&c->got_version);
	if (c->w_head == m)
		c->w_head = c->w_tail = NULL;
	sftp_msg_free(m);
	if (ret < 0 || !c->got_version) {
		snprintf(err, errlen, "%s", c->error[0] ? c->error : "no SFTP VERSION from the server");
		sftp_client_free(c);
		return NULL;
	}
	read_limits(c);
	errno_opt_in(c);
	log_debug("server SFTP version %u, extensions 0x%x, max read %u, max write %u", c->version,
		  c->exts, c->max_read, c->max_write);
	return c;
}

int sftp_client_start(struct sftp_client *c)
{
	if (start_thread(&c->thread, io_thread, c) != 0)
		return -1;
	c->started = true;
	return 0;
}

/* A reconnect thread may be inside a blocking connect: it is left to finish
 * on its own, and what it uses is kept (reachable from here) until exit. */
static GPtrArray *orphaned;

bool sftp_client_orphans(void)
{
	return orphaned != NULL;
}

void sftp_client_free(struct sftp_client *c)
{
	if (!c)
		return;
	c->stop = true;
	if (c->started) {
		wake(c);
		pthread_join(c->thread, NULL);
		c->started = false;
	}
	fail_all(c, NULL);
	if (c->t) {
		transport_destroy(c->t);
		c->t = NULL;
	}
	if (c->rthread_running) {
		pthread_detach(c->rthread);
		if (!orphaned)
			orphaned = g_ptr_array_new();
		g_ptr_array_add(orphaned, c);
		return;
	}
	if (c->new_t)
		transport_destroy(c->new_t);
	g_hash_table_destroy(c->pending);
	g_hash_table_destroy(c->vhandles);
	hm_free(&c->hm);
	wire_buf_free(&c->in);
	if (c->efd >= 0)
		close(c->efd);
	pthread_mutex_destroy(&c->lock);
	if (c->group && c->group->conns[0] == c) {
		pthread_mutex_destroy(&c->group->lock);
		g_free(c->group);
	}
	free(c);
}

unsigned sftp_client_reconnects(const struct sftp_client *c)
{
	return c->reconnects;
}

void sftp_client_get_stats(struct sftp_client *c, struct sftp_client_stats *s)
{
	pthread_mutex_lock(&c->lock);
	s->connected = !c->outage && !c->dead;
	s->in_flight = g_hash_table_size(c->pending);
	pthread_mutex_unlock(&c->lock);
	s->bytes_sent = c->bytes_sent;
	s->bytes_received = c->bytes_received;
	s->reconnects = c->reconnects;
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
	sftp_submit(c, sftp_write_msg(h, hlen, off, data, len), cb, arg);
}

struct sftp_msg *sftp_write_msg(const uint8_t *h, uint32_t hlen, uint64_t off, const void *data,
				uint32_t len)
{
	/* length, type, id, handle, offset, data */
	struct sftp_msg *m = msg_new_sized(SSH_FXP_WRITE, 4 + 1 + 4 + 4 + (size_t)hlen + 8 + 4 + len);
	put_or_die(wire_put_string(&m->buf, h, hlen));
	put_or_die(wire_put_u64(&m->buf, off));
	put_or_die(wire_put_string(&m->buf, data, len));
	return m;
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
