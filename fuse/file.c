#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Something to run once the writes it waits for are answered. */
struct waiter {
	void (*fn)(void *arg);
	void *arg;
};

/* Per inode, shared by its open files: the writes in flight (a read waits
 * for them, so that it sees them) and a generation that every change of the
 * bytes moves on (what was read ahead before it is stale). */
struct fnode {
	fuse_ino_t ino;
	int refs;              /* open files */
	unsigned reqs;         /* WRITE requests in flight */
	size_t bytes;
	GQueue parked;         /* struct wop waiting for room, oldest first */
	GSList *waiters;       /* run when reqs is 0 and nothing is parked */
	unsigned gen;
	bool blocked;          /* in fl->blocked */
};

struct files {
	struct files_config cfg;
	/* One lock for the counters of every file and inode, the parked
	 * writes and the read-ahead buffers; never held while sending. */
	pthread_mutex_t lock;
	GHashTable *nodes;     /* fuse_ino_t -> struct fnode */
	unsigned reqs;         /* WRITE requests in flight, all files */
	size_t bytes;
	size_t ra_bytes;       /* read ahead, all files */
	GQueue blocked;        /* struct fnode with parked writes, oldest first */
	unsigned behind;       /* files created behind whose OPEN is not answered */
	pthread_cond_t opened; /* one of them is answered */
};

/* One write(2) as the kernel gave it, split into the server's sizes. */
struct wop {
	struct file *f;
	fuse_req_t req;        /* answered when the server has it all (sync), else NULL */
	fuse_req_t parked_req; /* a parked write-behind: answered when it is sent */
	uint64_t off;
	size_t size;
	struct sftp_msg **msgs; /* a parked write's requests, built (the bytes copied) */
	uint32_t chunk;        /* bytes per request (the last one: the rest) */
	unsigned nparts;       /* requests it is sent as */
	unsigned parts;        /* requests not yet answered */
	int err;
};

struct wpart {
	struct wop *w;
	size_t len;
};

/* Read-ahead: a run of READ requests ahead of a sequential reader. All
 * files together hold at most this much read ahead. */
#define RA_TOTAL_MAX (64u << 20)

struct rchunk {
	uint64_t off;
	uint32_t len;          /* asked for (cut to what came when a reply is short) */
	uint32_t got;
	uint8_t *data;
	bool done, eof, dropped;
	bool spent;            /* its EOF or error was given to a reader: ask again next time */
	bool at_size;          /* it ends at the size the file had at open: EOF once all came */
	int err;
	struct file *f;
};

struct rreq {
	struct file *f;
	fuse_req_t req;
	uint64_t off;
	size_t size;
};

struct ra {
	uint64_t next;         /* where a sequential reader reads next */
	size_t window;         /* how far ahead of it to read */
	unsigned gen;          /* the inode's generation the chunks were read at */
	GQueue chunks;         /* struct rchunk, contiguous, in offset order */
	GQueue readers;        /* struct rreq waiting for chunks */
};

/* ---- the set ------------------------------------------------------------ */

static guint ino_hash(gconstpointer p)
{
	fuse_ino_t v = *(const fuse_ino_t *)p;
	return (guint)(v ^ (v >> 32));
}

static gboolean ino_equal(gconstpointer a, gconstpointer b)
{
	return *(const fuse_ino_t *)a == *(const fuse_ino_t *)b;
}

struct files *files_new(const struct files_config *cfg)
{
	struct files *fl = g_new0(struct files, 1);
	fl->cfg = *cfg;
	if (!fl->cfg.wb_file_reqs)
		fl->cfg.wb_file_reqs = 64;
	if (!fl->cfg.wb_file_bytes)
		fl->cfg.wb_file_bytes = 8 << 20;
	if (!fl->cfg.wb_total_reqs)
		fl->cfg.wb_total_reqs = 256;
	if (!fl->cfg.wb_total_bytes)
		fl->cfg.wb_total_bytes = 32 << 20;
	if (!fl->cfg.ra_min)
		fl->cfg.ra_min = 256 << 10;
	if (fl->cfg.ra_max < fl->cfg.ra_min)
		fl->cfg.ra_max = 16 << 20;
	pthread_mutex_init(&fl->lock, NULL);
	pthread_cond_init(&fl->opened, NULL);
	fl->nodes = g_hash_table_new_full(ino_hash, ino_equal, NULL, g_free);
	g_queue_init(&fl->blocked);
	return fl;
}

void files_free(struct files *fl)
{
	if (!fl)
		return;
	g_hash_table_destroy(fl->nodes);
	pthread_mutex_destroy(&fl->lock);
	pthread_cond_destroy(&fl->opened);
	g_free(fl);
}

static struct fnode *fnode_get_locked(struct files *fl, fuse_ino_t ino)
{
	struct fnode *fn = g_hash_table_lookup(fl->nodes, &ino);
	if (!fn) {
		fn = g_new0(struct fnode, 1);
		fn->ino = ino;
		g_queue_init(&fn->parked);
		g_hash_table_insert(fl->nodes, &fn->ino, fn);
	}
	fn->refs++;
	return fn;
}

static void fnode_put_locked(struct files *fl, struct fnode *fn)
{
	if (fn && --fn->refs == 0)
		g_hash_table_remove(fl->nodes, &fn->ino);
}

void files_changed(struct files *fl, fuse_ino_t ino)
{
	pthread_mutex_lock(&fl->lock);
	struct fnode *fn = g_hash_table_lookup(fl->nodes, &ino);
	if (fn)
		fn->gen++;
	pthread_mutex_unlock(&fl->lock);
}

/* ---- open files --------------------------------------------------------- */

/* An open file of handle h (one reference: the open file's own). */
static struct file *file_new(struct files *fl, struct sftp_client *c, fuse_ino_t ino, int flags,
			     const uint8_t *h, uint32_t hlen)
{
	struct file *f = g_new0(struct file, 1);
	memcpy(f->handle, h, hlen);
	f->hlen = hlen;
	f->c = c;
	f->fl = fl;
	f->flags = flags;
	f->refs = 1;
	f->ra = g_new0(struct ra, 1);
	g_queue_init(&f->ra->chunks);
	g_queue_init(&f->ra->readers);
	f->ra->window = fl->cfg.ra_min;
	file_set_ino(f, ino);
	return f;
}

struct file *file_from_handle(struct files *fl, struct sftp_client *c, struct sftp_reply *r,
			      fuse_ino_t ino, int flags)
{
	const uint8_t *h;
	uint32_t hlen;
	if ((r->type != SSH_FXP_HANDLE && r->type != SSH_FXP_EXTENDED_REPLY) || wire_get_string(&r->body, &h, &hlen) || hlen == 0 ||
	    hlen > SFTP_MAX_HANDLE_LEN) {
		log_error("malformed HANDLE reply from the server");
		return NULL;
	}
	return file_new(fl, c, ino, flags, h, hlen);
}

void file_set_ino(struct file *f, fuse_ino_t ino)
{
	pthread_mutex_lock(&f->fl->lock);
	fnode_put_locked(f->fl, f->fn);
	f->fn = ino ? fnode_get_locked(f->fl, ino) : NULL;
	f->ino = ino;
	pthread_mutex_unlock(&f->fl->lock);
}

static void chunk_free_locked(struct rchunk *c)
{
	c->f->fl->ra_bytes -= c->len;
	g_free(c->data);
	g_free(c);
}

/* Forget what was read ahead; chunks still in flight are freed when they
 * come back. Readers waiting for them go to *redo (to be read again). */
static void ra_drop_locked(struct ra *ra, GSList **redo)
{
	struct rchunk *c;
	while ((c = g_queue_pop_head(&ra->chunks))) {
		if (c->done)
			chunk_free_locked(c);
		else
			c->dropped = true;
	}
	void *rr;
	while ((rr = g_queue_pop_head(&ra->readers)))
		*redo = g_slist_append(*redo, rr);
}

static void file_unref(struct file *f)
{
	struct files *fl = f->fl;
	pthread_mutex_lock(&fl->lock);
	bool last = --f->refs == 0;
	if (last) {
		GSList *none = NULL;
		ra_drop_locked(f->ra, &none); /* nobody reads a file nobody holds */
		fnode_put_locked(fl, f->fn);
		f->fn = NULL;
	}
	pthread_mutex_unlock(&fl->lock);
	if (!last)
		return;
	g_free(f->ra);
	g_free(f);
}

void file_hold(struct file *f)
{
	pthread_mutex_lock(&f->fl->lock);
	f->refs++;
	pthread_mutex_unlock(&f->fl->lock);
}

void file_put(struct file *f)
{
	file_unref(f);
}

static void discard_cb(void *arg, struct sftp_reply *r)
{
	(void)r;
	file_unref(arg);
}

void file_forget(struct file *f)
{
	file_unref(f);
}

void file_discard(struct file *f)
{
	sftp_handle_req(f->c, SSH_FXP_CLOSE, f->handle, f->hlen, discard_cb, f);
}

static int reply_err(const struct sftp_reply *r)
{
	return r->err ? r->err : EIO;
}

/* ---- waiting for writes ------------------------------------------------- */

static GSList *add_waiter(GSList *list, void (*fn)(void *), void *arg)
{
	struct waiter *w = g_new(struct waiter, 1);
	w->fn = fn;
	w->arg = arg;
	return g_slist_prepend(list, w);
}

static void run_waiters(GSList *list)
{
	list = g_slist_reverse(list);
	for (GSList *l = list; l; l = l->next) {
		struct waiter *w = l->data;
		w->fn(w->arg);
		g_free(w);
	}
	g_slist_free(list);
}

static bool file_idle_locked(const struct file *f)
{
	return f->reqs == 0 && f->parked == 0;
}

static bool node_idle_locked(const struct fnode *fn)
{
	return !fn || (fn->reqs == 0 && fn->parked.length == 0);
}

void file_after_writes(struct file *f, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&f->fl->lock);
	if (file_idle_locked(f)) {
		pthread_mutex_unlock(&f->fl->lock);
		fn(arg);
		return;
	}
	f->waiters = add_waiter(f->waiters, fn, arg);
	pthread_mutex_unlock(&f->fl->lock);
}

/* The waiters whose writes are all answered now (taken off their lists). */
static GSList *idle_waiters_locked(struct file *f)
{
	GSList *run = NULL;
	if (file_idle_locked(f)) {
		run = f->waiters;
		f->waiters = NULL;
	}
	if (f->fn && node_idle_locked(f->fn)) {
		/* both lists are newest first: the older (file) ones run first */
		run = g_slist_concat(f->fn->waiters, run);
		f->fn->waiters = NULL;
	}
	return run;
}

/* ---- write-behind ------------------------------------------------------- */

static bool room_locked(struct files *fl, struct fnode *fn, unsigned parts, size_t size)
{
	bool node_ok = fn->reqs == 0 || (fn->reqs + parts <= fl->cfg.wb_file_reqs &&
					 fn->bytes + size <= fl->cfg.wb_file_bytes);
	bool all_ok = fl->reqs == 0 || (fl->reqs + parts <= fl->cfg.wb_total_reqs &&
					fl->bytes + size <= fl->cfg.wb_total_bytes);
	return node_ok && all_ok;
}

static void account_locked(struct wop *w, unsigned parts)
{
	struct file *f = w->f;
	w->parts = parts;
	f->reqs += parts;
	f->fn->reqs += parts;
	f->fn->bytes += w->size;
	f->fl->reqs += parts;
	f->fl->bytes += w->size;
}

/* Parked writes that fit now, accounted and taken off their queues. */
static GSList *unpark_locked(struct files *fl)
{
	GSList *go = NULL;
	GList *l = fl->blocked.head;
	while (l) {
		GList *next = l->next;
		struct fnode *fn = l->data;
		struct wop *w;
		while ((w = g_queue_peek_head(&fn->parked)) &&
		       room_locked(fl, fn, w->nparts, w->size)) {
			g_queue_pop_head(&fn->parked);
			w->f->parked--;
			account_locked(w, w->nparts);
			go = g_slist_prepend(go, w);
		}
		if (fn->parked.length == 0) {
			g_queue_delete_link(&fl->blocked, l);
			fn->blocked = false;
		}
		l = next;
	}
	return g_slist_reverse(go);
}

static void wpart_cb(void *arg, struct sftp_reply *r);

/* w's w->nparts requests, built from buf (copied into them), not sent. */
static struct sftp_msg **wop_build(const struct wop *w, const char *buf)
{
	const struct file *f = w->f;
	uint32_t chunk = w->chunk;
	struct sftp_msg **m = g_new(struct sftp_msg *, w->nparts);
	size_t start = 0;
	for (unsigned i = 0; i < w->nparts; i++, start += chunk) {
		uint32_t len = w->size - start < chunk ? (uint32_t)(w->size - start) : chunk;
		m[i] = sftp_write_msg(f->handle, f->hlen, w->off + start, buf + start, len);
	}
	return m;
}

/* Send w's requests (w is accounted; m from wop_build, freed here). The
 * kernel's answer for a write-behind goes after them, so that nothing the
 * kernel sends next can overtake them. */
static void wop_submit(struct wop *w, struct sftp_msg **m)
{
	struct file *f = w->f;
	size_t size = w->size;
	unsigned n = w->nparts;
	uint32_t chunk = w->chunk;
	fuse_req_t answer = w->parked_req;
	w->parked_req = NULL;
	size_t start = 0;
	for (unsigned i = 0; i < n; i++, start += chunk) {
		struct wpart *p = g_new(struct wpart, 1);
		p->w = w;
		p->len = size - start < chunk ? size - start : chunk;
		/* w may be freed once its last part is answered: only locals here */
		sftp_submit(f->c, m[i], wpart_cb, p);
	}
	g_free(m);
	if (answer)
		fuse_reply_write(answer, size);
}

static void send_unparked(GSList *go)
{
	for (GSList *l = go; l; l = l->next) {
		struct wop *w = l->data;
		struct sftp_msg **m = w->msgs;
		w->msgs = NULL;
		wop_submit(w, m);
	}
	g_slist_free(go);
}

static void wpart_cb(void *arg, struct sftp_reply *r)
{
	struct wpart *p = arg;
	struct wop *w = p->w;
	struct file *f = w->f;
	struct files *fl = f->fl;

	pthread_mutex_lock(&fl->lock);
	f->reqs--;
	f->fn->reqs--;
	f->fn->bytes -= p->len;
	fl->reqs--;
	fl->bytes -= p->len;
	if (r->err && !w->err)
		w->err = reply_err(r);
	bool last = --w->parts == 0;
	if (last && w->err && !w->req && !f->err)
		f->err = w->err; /* for flush, fsync or close to return */
	GSList *go = unpark_locked(fl);
	GSList *run = idle_waiters_locked(f);
	pthread_mutex_unlock(&fl->lock);
	g_free(p);

	if (last && w->err && !w->req)
		log_debug("write-behind of %zu bytes at %llu failed: %s (held for close)", w->size,
			  (unsigned long long)w->off, strerror(w->err));
	send_unparked(go);
	run_waiters(run);
	if (!last)
		return;
	if (w->req) {
		if (w->err)
			fuse_reply_err(w->req, w->err);
		else
			fuse_reply_write(w->req, w->size);
	}
	g_free(w);
	file_unref(f);
}

void file_write(struct file *f, fuse_req_t req, const char *buf, size_t size, off_t off)
{
	struct files *fl = f->fl;
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	bool sync = fl->cfg.sync_writes || (f->flags & (O_SYNC | O_DSYNC));
	struct wop *w = g_new0(struct wop, 1);
	w->f = f;
	w->off = (uint64_t)off;
	w->size = size;
	w->chunk = sftp_client_max_write(f->c);
	unsigned parts = (unsigned)((size + w->chunk - 1) / w->chunk);
	w->nparts = parts;

	pthread_mutex_lock(&fl->lock);
	struct fnode *fn = f->fn;
	bool mine = f->known_ok && f->known_gen == fn->gen && !(f->flags & O_APPEND);
	fn->gen++; /* what was read ahead is stale */
	f->known_ok = mine;
	if (mine) {
		/* the size this write leaves; the server sets the mtime */
		if (w->off + size > f->known.v3.size)
			f->known.v3.size = w->off + size;
		f->known_mtime = false;
		f->known_gen = fn->gen;
	}
	if ((f->err && !sync) || f->open_err) {
		/* an earlier write failed: say so now (and again at close) */
		int err = f->err ? f->err : f->open_err;
		pthread_mutex_unlock(&fl->lock);
		g_free(w);
		fuse_reply_err(req, err);
		return;
	}
	f->refs++;
	if (sync)
		w->req = req;
	else
		w->parked_req = req;
	if (fn->parked.length || !room_locked(fl, fn, parts, size)) {
		/* over the bound: answered when acknowledgements make room */
		w->msgs = wop_build(w, buf);
		g_queue_push_tail(&fn->parked, w);
		f->parked++;
		if (!fn->blocked) {
			fn->blocked = true;
			g_queue_push_tail(&fl->blocked, fn);
		}
		pthread_mutex_unlock(&fl->lock);
		return;
	}
	account_locked(w, parts);
	pthread_mutex_unlock(&fl->lock);
	wop_submit(w, wop_build(w, buf));
}

/* ---- attributes this open knows ----------------------------------------- */

void file_set_known(struct file *f, const struct fattr *a)
{
	pthread_mutex_lock(&f->fl->lock);
	if (f->fn) {
		f->known = *a;
		f->known_ok = true;
		f->known_mtime = true;
		f->known_gen = f->fn->gen;
		f->known_at = g_get_monotonic_time();
	}
	pthread_mutex_unlock(&f->fl->lock);
}

bool file_known(struct file *f, double max_age, struct fattr *a, bool *mtime_exact)
{
	int64_t now = g_get_monotonic_time();
	pthread_mutex_lock(&f->fl->lock);
	bool ok = f->known_ok && f->fn && f->known_gen == f->fn->gen && !f->err && !f->open_err &&
		  (double)(now - f->known_at) < max_age * G_USEC_PER_SEC;
	if (ok) {
		*a = f->known;
		*mtime_exact = f->known_mtime;
	}
	pthread_mutex_unlock(&f->fl->lock);
	return ok;
}

struct setstat_behind {
	struct file *f;
	bool owner_only;
};

static void setstat_behind_cb(void *arg, struct sftp_reply *r)
{
	struct setstat_behind *sb = arg;
	struct file *f = sb->f;
	int err = r->err ? reply_err(r) : 0;
	if (err == EACCES && sb->owner_only)
		err = EPERM; /* the server says "permission denied" for both */
	g_free(sb);
	pthread_mutex_lock(&f->fl->lock);
	f->reqs--;
	if (err) {
		f->known_ok = false;
		if (!f->err)
			f->err = err; /* for flush, fsync or close to return */
	}
	GSList *run = idle_waiters_locked(f);
	pthread_mutex_unlock(&f->fl->lock);
	if (err)
		log_debug("FSETSTAT behind the writes failed: %s (held for close)", strerror(err));
	run_waiters(run);
	file_unref(f);
}

void file_setstat_behind(struct file *f, const struct sftp_attrs *set, const struct fattr *after,
			 bool owner_only)
{
	struct setstat_behind *sb = g_new(struct setstat_behind, 1);
	sb->f = f;
	sb->owner_only = owner_only;
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_FSETSTAT);
	wire_put_string(sftp_msg_buf(m), f->handle, f->hlen);
	attrs_put(sftp_msg_buf(m), set);
	pthread_mutex_lock(&f->fl->lock);
	f->refs++;
	f->reqs++; /* flush and close wait for it as for a write */
	if (f->known_ok) {
		f->known = *after;
		if (set->flags & SSH_FILEXFER_ATTR_ACMODTIME)
			f->known_mtime = true;
	}
	pthread_mutex_unlock(&f->fl->lock);
	/* on f's connection (the handle's), after everything sent on it */
	sftp_submit(f->c, m, setstat_behind_cb, sb);
}

/* ---- create behind ------------------------------------------------------ */

bool files_behind_reserve(struct files *fl)
{
	pthread_mutex_lock(&fl->lock);
	bool ok = fl->behind < FILES_BEHIND_MAX;
	if (ok)
		fl->behind++;
	pthread_mutex_unlock(&fl->lock);
	return ok;
}

struct file *file_new_pending(struct files *fl, struct sftp_client *c, fuse_ino_t ino, int flags,
			      const struct fattr *a, const uint8_t *handle, uint32_t hlen)
{
	struct file *f = file_new(fl, c, ino, flags, handle, hlen);
	pthread_mutex_lock(&fl->lock);
	f->refs = 2; /* the open file, and its OPEN */
	f->pending = true;
	f->reqs = 1; /* the OPEN: flush, fsync and close wait for it */
	f->fn->reqs++;
	f->known = *a;
	f->known_ok = true;
	f->known_mtime = false;
	f->known_gen = f->fn->gen;
	f->known_at = g_get_monotonic_time();
	pthread_mutex_unlock(&fl->lock);
	return f;
}

void file_open_settle(struct file *f, int err)
{
	struct files *fl = f->fl;
	pthread_mutex_lock(&fl->lock);
	if (err) {
		f->open_err = err;
		f->known_ok = false;
		f->err = err; /* (over what its requests got: the cause) */
	}
	f->pending = false;
	f->reqs--;
	f->fn->reqs--;
	fl->behind--;
	GSList *go = unpark_locked(fl);
	GSList *run = idle_waiters_locked(f);
	pthread_cond_broadcast(&fl->opened);
	pthread_mutex_unlock(&fl->lock);
	send_unparked(go);
	run_waiters(run);
	file_unref(f);
}

int file_wait_open(struct file *f)
{
	pthread_mutex_lock(&f->fl->lock);
	while (f->pending)
		pthread_cond_wait(&f->fl->opened, &f->fl->lock);
	int err = f->open_err;
	pthread_mutex_unlock(&f->fl->lock);
	return err;
}

bool file_is_pending(struct file *f)
{
	pthread_mutex_lock(&f->fl->lock);
	bool p = f->pending;
	pthread_mutex_unlock(&f->fl->lock);
	return p;
}

/* flush, fsync, release: once the file's writes are answered. */
struct fwait {
	struct file *f;
	fuse_req_t req;
};

static int take_err(struct file *f)
{
	pthread_mutex_lock(&f->fl->lock);
	int err = f->err ? f->err : f->open_err; /* (a failed OPEN: every time) */
	f->err = 0;
	pthread_mutex_unlock(&f->fl->lock);
	return err;
}

static void flush_go(void *arg)
{
	struct fwait *fw = arg;
	fuse_reply_err(fw->req, take_err(fw->f));
	g_free(fw);
}

void file_flush(struct file *f, fuse_req_t req)
{
	struct fwait *fw = g_new0(struct fwait, 1);
	fw->f = f;
	fw->req = req;
	file_after_writes(f, flush_go, fw);
}

static void fsync_cb(void *arg, struct sftp_reply *r)
{
	struct fwait *fw = arg;
	fuse_reply_err(fw->req, r->err ? reply_err(r) : 0);
	g_free(fw);
}

static void fsync_go(void *arg)
{
	struct fwait *fw = arg;
	int err = take_err(fw->f);
	if (err || !(sftp_client_exts(fw->f->c) & SFTP_HAS_FSYNC)) {
		fuse_reply_err(fw->req, err);
		g_free(fw);
		return;
	}
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_FSYNC);
	wire_put_string(sftp_msg_buf(m), fw->f->handle, fw->f->hlen);
	sftp_submit(fw->f->c, m, fsync_cb, fw);
}

void file_fsync(struct file *f, fuse_req_t req, int datasync)
{
	(void)datasync;
	struct fwait *fw = g_new0(struct fwait, 1);
	fw->f = f;
	fw->req = req;
	file_after_writes(f, fsync_go, fw);
}

static void release_go(void *arg)
{
	struct fwait *fw = arg;
	struct file *f = fw->f;
	int err = take_err(f);
	if (err)
		log_error("a write to a file closed since failed: %s", strerror(err));
	GSList *none = NULL;
	pthread_mutex_lock(&f->fl->lock);
	ra_drop_locked(f->ra, &none); /* the kernel reads nothing after release */
	pthread_mutex_unlock(&f->fl->lock);
	/* CLOSE goes behind everything sent on the handle; nobody waits for it */
	file_discard(f);
	fuse_reply_err(fw->req, 0);
	g_free(fw);
}

void file_release(struct file *f, fuse_req_t req)
{
	struct fwait *fw = g_new0(struct fwait, 1);
	fw->f = f;
	fw->req = req;
	file_after_writes(f, release_go, fw);
}

/* ---- reads -------------------------------------------------------------- */

void file_set_size(struct file *f, uint64_t size, double ttl)
{
	pthread_mutex_lock(&f->fl->lock);
	if (f->fn && ttl > 0) {
		f->size = size;
		f->size_until = g_get_monotonic_time() + (int64_t)(ttl * G_USEC_PER_SEC);
		f->size_gen = f->fn->gen;
		f->size_ok = true;
	}
	pthread_mutex_unlock(&f->fl->lock);
}

/* Where the file ends, if the size from its open still holds. */
static bool size_known_locked(const struct file *f, uint64_t *size)
{
	if (!f->size_ok || !f->fn || f->size_gen != f->fn->gen ||
	    g_get_monotonic_time() >= f->size_until)
		return false;
	*size = f->size;
	return true;
}

/* A read outside any stream: split into the server's maximum, all sent at
 * once; a short reply asks again for the rest; the kernel gets the bytes up
 * to the first EOF. */
struct read_op {
	fuse_req_t req;
	struct file *f;
	uint64_t off;
	size_t size;
	char *buf;
	size_t eof_at;        /* bytes valid before EOF (size if none seen) */
	int err;
	int outstanding;
};

struct read_part {
	struct read_op *ro;
	size_t start, len;    /* within the read */
};

static void read_part_cb(void *arg, struct sftp_reply *r)
{
	struct read_part *p = arg;
	struct read_op *ro = p->ro;
	struct files *fl = ro->f->fl;
	bool again = false;

	pthread_mutex_lock(&fl->lock);
	if (r->type == SSH_FXP_DATA) {
		const uint8_t *data;
		uint32_t n;
		if (wire_get_string(&r->body, &data, &n) || n > p->len) {
			log_error("malformed DATA reply from the server");
			ro->err = EIO;
		} else if (n == 0) {
			if (p->start < ro->eof_at)
				ro->eof_at = p->start;
		} else {
			uint64_t known;
			memcpy(ro->buf + p->start, data, n);
			if (n < p->len && size_known_locked(ro->f, &known) &&
			    ro->off + p->start + n == known) {
				/* it ends where the file does: no READ to hear EOF */
				if (p->start + n < ro->eof_at)
					ro->eof_at = p->start + n;
			} else if (n < p->len) {
				/* A short read is not EOF: ask for the rest. */
				p->start += n;
				p->len -= n;
				again = true;
			}
		}
	} else if (r->type == SSH_FXP_STATUS && r->status == SSH_FX_EOF) {
		if (p->start < ro->eof_at)
			ro->eof_at = p->start;
	} else {
		ro->err = reply_err(r);
	}
	if (again && !ro->err && p->start < ro->eof_at) {
		pthread_mutex_unlock(&fl->lock);
		sftp_read_req(ro->f->c, ro->f->handle, ro->f->hlen, ro->off + p->start,
			      (uint32_t)p->len, read_part_cb, p);
		return;
	}
	bool last = --ro->outstanding == 0;
	pthread_mutex_unlock(&fl->lock);
	g_free(p);
	if (!last)
		return;
	if (ro->err)
		fuse_reply_err(ro->req, ro->err);
	else
		fuse_reply_buf(ro->req, ro->buf, ro->eof_at);
	file_unref(ro->f);
	g_free(ro->buf);
	g_free(ro);
}

/* f->refs counts this read (taken by the caller). */
static void read_direct(struct file *f, fuse_req_t req, size_t size, uint64_t off)
{
	struct read_op *ro = g_new0(struct read_op, 1);
	ro->req = req;
	ro->f = f;
	ro->off = off;
	ro->size = size;
	ro->eof_at = size;
	ro->buf = g_malloc(size);
	uint32_t chunk = sftp_client_max_read(f->c);
	size_t nparts = (size + chunk - 1) / chunk;
	ro->outstanding = (int)nparts;
	for (size_t i = 0; i < nparts; i++) {
		struct read_part *p = g_new0(struct read_part, 1);
		p->ro = ro;
		p->start = i * chunk;
		p->len = size - p->start < chunk ? size - p->start : chunk;
		sftp_read_req(f->c, f->handle, f->hlen, off + p->start, (uint32_t)p->len,
			      read_part_cb, p);
	}
}

/* An answer for the kernel, made under the lock, sent after it. */
struct answer {
	fuse_req_t req;
	int err;
	char *buf;
	size_t len;
	struct file *f;
};

enum { RR_WAIT, RR_ANSWER };

/* Can the chunks answer rr? If so, fill a (copying the bytes). An answer
 * that met EOF drops the chunks: the file may grow, the next read asks. */
static int rreq_try_locked(struct ra *ra, const struct rreq *rr, struct answer *a)
{
	uint64_t pos = rr->off, end = rr->off + rr->size;
	bool eof = false;
	int err = 0;
	for (GList *l = ra->chunks.head; l && pos < end; l = l->next) {
		struct rchunk *c = l->data;
		if (c->off + c->len <= pos)
			continue;
		if (c->off > pos || !c->done)
			return RR_WAIT;
		if (c->err) {
			err = c->err;
			c->spent = true;
			break;
		}
		pos = c->off + c->got;
		if (c->eof) {
			eof = true;
			c->spent = true;
			break;
		}
	}
	if (pos < end && !eof && !err)
		return RR_WAIT;
	if (pos > end)
		pos = end;
	memset(a, 0, sizeof(*a));
	a->req = rr->req;
	a->f = rr->f;
	if (err && pos == rr->off) {
		a->err = err;
	} else {
		a->len = (size_t)(pos - rr->off);
		a->buf = g_malloc(a->len ? a->len : 1);
		for (GList *l = ra->chunks.head; l; l = l->next) {
			struct rchunk *c = l->data;
			uint64_t s = c->off > rr->off ? c->off : rr->off;
			uint64_t e = c->off + c->got < pos ? c->off + c->got : pos;
			if (s < e)
				memcpy(a->buf + (s - rr->off), c->data + (s - c->off), (size_t)(e - s));
		}
	}
	if (!eof && !err) {
		/* what is behind the reader (and every reader waiting) goes */
		uint64_t keep = pos;
		for (GList *l = ra->readers.head; l; l = l->next) {
			const struct rreq *o = l->data;
			if (o != rr && o->off < keep)
				keep = o->off;
		}
		struct rchunk *c;
		while ((c = g_queue_peek_head(&ra->chunks)) && c->done && c->off + c->len <= keep)
			chunk_free_locked(g_queue_pop_head(&ra->chunks));
	}
	return RR_ANSWER;
}

/* Answer every waiting reader the chunks can answer now. */
static GSList *ra_answers_locked(struct ra *ra)
{
	GSList *out = NULL;
	GList *l = ra->readers.head;
	while (l) {
		GList *next = l->next;
		struct rreq *rr = l->data;
		struct answer a;
		if (rreq_try_locked(ra, rr, &a) == RR_ANSWER) {
			out = g_slist_prepend(out, g_memdup2(&a, sizeof(a)));
			g_queue_delete_link(&ra->readers, l);
			g_free(rr);
			next = ra->readers.head; /* the chunks may have changed */
		}
		l = next;
	}
	return g_slist_reverse(out);
}

static void send_answers(GSList *list)
{
	for (GSList *l = list; l; l = l->next) {
		struct answer *a = l->data;
		if (a->err)
			fuse_reply_err(a->req, a->err);
		else
			fuse_reply_buf(a->req, a->buf, a->len);
		g_free(a->buf);
		file_unref(a->f);
		g_free(a);
	}
	g_slist_free(list);
}

static void chunk_cb(void *arg, struct sftp_reply *r);

static void send_chunks(GSList *list)
{
	for (GSList *l = list; l; l = l->next) {
		struct rchunk *c = l->data;
		sftp_read_req(c->f->c, c->f->handle, c->f->hlen, c->off, c->len, chunk_cb, c);
	}
	g_slist_free(list);
}

static struct rchunk *chunk_new_locked(struct file *f, uint64_t off, uint32_t len)
{
	struct rchunk *c = g_new0(struct rchunk, 1);
	c->off = off;
	c->len = len;
	c->data = g_malloc(len);
	c->f = f;
	f->refs++;
	f->fl->ra_bytes += len;
	return c;
}

static void chunk_cb(void *arg, struct sftp_reply *r)
{
	struct rchunk *c = arg;
	struct file *f = c->f;
	struct files *fl = f->fl;
	GSList *more = NULL, *answers = NULL;

	pthread_mutex_lock(&fl->lock);
	if (r->type == SSH_FXP_DATA) {
		const uint8_t *data;
		uint32_t n;
		if (wire_get_string(&r->body, &data, &n) || n > c->len) {
			log_error("malformed DATA reply from the server");
			c->err = EIO;
		} else if (n == 0) {
			c->eof = true;
		} else {
			memcpy(c->data, data, n);
			c->got = n;
			if (n == c->len && c->at_size) {
				c->eof = true; /* the rest of the file, as known at open */
			} else if (n < c->len && !c->dropped) {
				/* short, not EOF: the rest is a chunk of its own */
				GList *link = g_queue_find(&f->ra->chunks, c);
				struct rchunk *rest = chunk_new_locked(f, c->off + n, c->len - n);
				rest->at_size = c->at_size;
				if (link)
					g_queue_insert_after(&f->ra->chunks, link, rest);
				else
					rest->dropped = true;
				more = g_slist_prepend(more, rest);
			}
			c->len = n;
		}
	} else if (r->type == SSH_FXP_STATUS && r->status == SSH_FX_EOF) {
		c->eof = true;
	} else {
		c->err = reply_err(r);
	}
	c->done = true;
	if (c->dropped)
		chunk_free_locked(c);
	else
		answers = ra_answers_locked(f->ra);
	pthread_mutex_unlock(&fl->lock);
	send_chunks(more);
	send_answers(answers);
	file_unref(f);
}

static void read_again(void *arg)
{
	struct rreq *rr = arg;
	file_read(rr->f, rr->req, rr->size, (off_t)rr->off);
	file_unref(rr->f);
	g_free(rr);
}

static void redo_reads(GSList *list)
{
	for (GSList *l = list; l; l = l->next)
		read_again(l->data);
	g_slist_free(list);
}

void file_read(struct file *f, fuse_req_t req, size_t size, off_t off)
{
	struct files *fl = f->fl;
	uint64_t o = (uint64_t)off;
	if (size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	pthread_mutex_lock(&fl->lock);
	f->refs++; /* for this read */
	struct fnode *fn = f->fn;
	if (!node_idle_locked(fn)) {
		/* writes to this inode are on their way: read after them */
		struct rreq *rr = g_new0(struct rreq, 1);
		rr->f = f;
		rr->req = req;
		rr->off = o;
		rr->size = size;
		fn->waiters = add_waiter(fn->waiters, read_again, rr);
		pthread_mutex_unlock(&fl->lock);
		return;
	}
	uint64_t known = 0;
	bool sized = size_known_locked(f, &known);
	if (sized && o >= known) {
		/* at or past the end the file had at open: EOF, no READ */
		f->refs--;
		pthread_mutex_unlock(&fl->lock);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	struct ra *ra = f->ra;
	GSList *redo = NULL;
	bool stale = fn && ra->gen != fn->gen;
	for (GList *l = ra->chunks.head; l && !stale; l = l->next)
		stale = ((struct rchunk *)l->data)->spent;
	if (stale) {
		ra_drop_locked(ra, &redo);
		ra->gen = fn ? fn->gen : 0;
	}
	struct rchunk *first = g_queue_peek_head(&ra->chunks), *last = g_queue_peek_tail(&ra->chunks);
	bool in_stream = first && o >= first->off && o <= last->off + last->len;
	bool sequential = o == ra->next;
	ra->next = o + size;
	if (fl->cfg.no_readahead || (!in_stream && !sequential)) {
		ra_drop_locked(ra, &redo);
		ra->window = fl->cfg.ra_min;
		pthread_mutex_unlock(&fl->lock);
		read_direct(f, req, size, o);
		redo_reads(redo);
		return;
	}
	if (!in_stream)
		ra_drop_locked(ra, &redo);
	/* Read ahead to window past this read, unless EOF is in sight. */
	GSList *more = NULL;
	uint32_t chunk = sftp_client_max_read(f->c);
	uint64_t want = o + size + ra->window;
	last = g_queue_peek_tail(&ra->chunks);
	uint64_t end = last ? last->off + last->len : o;
	bool eof_seen = last && last->done && last->eof;
	while (end < want && !eof_seen && !(sized && end >= known) &&
	       (end < o + size || fl->ra_bytes + chunk <= RA_TOTAL_MAX)) {
		uint32_t len = sized && known - end <= chunk ? (uint32_t)(known - end) : chunk;
		struct rchunk *c = chunk_new_locked(f, end, len);
		c->at_size = sized && end + len == known;
		g_queue_push_tail(&ra->chunks, c);
		more = g_slist_prepend(more, c);
		end += len;
	}
	struct rreq *rr = g_new0(struct rreq, 1);
	rr->f = f;
	rr->req = req;
	rr->off = o;
	rr->size = size;
	struct answer a;
	GSList *answers = NULL;
	if (rreq_try_locked(ra, rr, &a) == RR_ANSWER) {
		answers = g_slist_prepend(NULL, g_memdup2(&a, sizeof(a)));
		g_free(rr);
	} else {
		/* the reader waits: the link holds more than we ask for */
		g_queue_push_tail(&ra->readers, rr);
		ra->window = ra->window * 2 > fl->cfg.ra_max ? fl->cfg.ra_max : ra->window * 2;
	}
	pthread_mutex_unlock(&fl->lock);
	send_chunks(g_slist_reverse(more));
	send_answers(answers);
	redo_reads(redo);
}
