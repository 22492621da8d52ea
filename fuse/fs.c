#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "log.h"
#include "sftp-proto.h"
#include "symlink.h"

/* ---- the inode table ---------------------------------------------------- */

struct file;

/* A file's identity on the server (full attributes give it). */
struct sid {
	uint64_t dev, ino;
};

struct node {
	fuse_ino_t ino;
	char *path;        /* remote path (the last one it had, once unlinked) */
	GSList *aliases;   /* char *: its other names (hard links), in by_path too */
	struct sid sid;    /* by_sid's key when has_sid */
	bool has_sid;
	uint64_t nlookup;
	bool unlinked;     /* its name is gone: reach it through an open handle */
	GSList *files;     /* struct file *: its open handles */
};

struct fs {
	struct sftp_client *c;
	struct fs_config cfg;
	struct files *files;        /* open files: write-behind, read-ahead */
	GHashTable *opened;         /* fuse_ino_t -> struct seen: auto_cache */
	pthread_mutex_t lock;       /* guards the inode table */
	GHashTable *by_ino;         /* fuse_ino_t -> struct node */
	GHashTable *by_path;        /* path -> struct node (live paths only) */
	GHashTable *by_sid;         /* struct sid -> struct node (live, not directories):
				     * two names of one file are one inode */
	fuse_ino_t next_ino;
	struct cache *cache;        /* attributes, listings, link targets */
	GHashTable *locks;          /* "ino:owner" -> struct lockh: POSIX lock handles */
	/* listings on their way (guarded by lock): */
	GHashTable *fetching;       /* path -> struct dir being read from the server */
	unsigned fetches;           /* ... of them in the background */
	GHashTable *misses;         /* dir path -> lookups missed in it */
	GHashTable *opens;          /* dir path -> its subdirectories opened */
	/* What the server does to a file it creates, learnt from a create
	 * that waited (guarded by lock): its owner, and the bits its umask
	 * clears from the mode asked for. Create behind needs them. */
	bool creator_known;
	uint32_t creator_uid, creator_gid, creator_umask;
};

static char *join_path(const char *dir, const char *name)
{
	size_t dl = strlen(dir);
	if (dl > 0 && dir[dl - 1] == '/')
		return g_strconcat(dir, name, NULL);
	return g_strconcat(dir, "/", name, NULL);
}

/* A name from the wire, fit for a log line: control bytes as \ooo, cut. */
static void printable(char *out, size_t outlen, const uint8_t *s, uint32_t len)
{
	size_t n = 0;
	for (uint32_t i = 0; i < len && n + 5 < outlen; i++) {
		if (s[i] < 0x20 || s[i] == 0x7f || s[i] == '\\')
			n += (size_t)snprintf(out + n, outlen - n, "\\%03o", s[i]);
		else
			out[n++] = (char)s[i];
	}
	out[n] = '\0';
}

/* The current path of ino (malloc'd), or NULL. */
static char *node_path(struct fs *fs, fuse_ino_t ino)
{
	char *p = NULL;
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_ino, &ino);
	if (n && n->path)
		p = g_strdup(n->path);
	pthread_mutex_unlock(&fs->lock);
	return p;
}

/* The path of ino if it still names it (not unlinked), malloc'd, or NULL. */
static char *node_live_path(struct fs *fs, fuse_ino_t ino)
{
	char *p = NULL;
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_ino, &ino);
	if (n && n->path && !n->unlinked)
		p = g_strdup(n->path);
	pthread_mutex_unlock(&fs->lock);
	return p;
}

/* A local change to ino's contents or attributes (a write, a truncate). */
static void cache_changed_ino(struct fs *fs, fuse_ino_t ino)
{
	if (!cache_enabled(fs->cache))
		return;
	char *p = node_path(fs, ino);
	if (p)
		cache_invalidate(fs->cache, p);
	g_free(p);
}

static char *child_path(struct fs *fs, fuse_ino_t parent, const char *name)
{
	if (strlen(name) > NAME_MAX) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	char *dir = node_path(fs, parent);
	errno = ESTALE;
	if (!dir)
		return NULL;
	char *p = join_path(dir, name);
	g_free(dir);
	return p;
}

static bool fattr_sid(const struct fattr *a, struct sid *sid)
{
	const uint32_t need = HATTR_INO | HATTR_DEV | HATTR_TYPE;
	if (!a || (a->x.mask & need) != need || S_ISDIR(a->x.mode))
		return false;
	sid->dev = ((uint64_t)a->x.dev_major << 32) | a->x.dev_minor;
	sid->ino = a->x.ino;
	return true;
}

static void sid_forget_locked(struct fs *fs, struct node *n)
{
	if (n->has_sid && g_hash_table_lookup(fs->by_sid, &n->sid) == n)
		g_hash_table_remove(fs->by_sid, &n->sid);
	n->has_sid = false;
}

/* Find or make the node for path (whose attributes are a, or NULL) and
 * count one more kernel reference. A new name of a file the table knows
 * by its server identity (a hard link) becomes that node's alias. */
static fuse_ino_t node_ref(struct fs *fs, const char *path, const struct fattr *a)
{
	struct sid sid;
	bool have_sid = fattr_sid(a, &sid);
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_path, path);
	if (!n && have_sid) {
		n = g_hash_table_lookup(fs->by_sid, &sid);
		if (n && !n->unlinked) {
			char *alias = g_strdup(path);
			n->aliases = g_slist_prepend(n->aliases, alias);
			g_hash_table_insert(fs->by_path, alias, n);
		} else {
			n = NULL;
		}
	}
	if (!n) {
		n = g_new0(struct node, 1);
		n->ino = fs->next_ino++;
		n->path = g_strdup(path);
		g_hash_table_insert(fs->by_ino, &n->ino, n);
		g_hash_table_insert(fs->by_path, n->path, n);
	}
	if (have_sid && (!n->has_sid || n->sid.dev != sid.dev || n->sid.ino != sid.ino)) {
		sid_forget_locked(fs, n);
		n->sid = sid;
		n->has_sid = true;
		g_hash_table_replace(fs->by_sid, &n->sid, n);
	}
	n->nlookup++;
	fuse_ino_t ino = n->ino;
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

static void node_drop_locked(struct fs *fs, struct node *n)
{
	g_slist_free(n->files);
	if (n->path && g_hash_table_lookup(fs->by_path, n->path) == n)
		g_hash_table_remove(fs->by_path, n->path);
	for (GSList *l = n->aliases; l; l = l->next)
		if (g_hash_table_lookup(fs->by_path, l->data) == n)
			g_hash_table_remove(fs->by_path, l->data);
	g_slist_free_full(n->aliases, g_free);
	sid_forget_locked(fs, n);
	g_hash_table_remove(fs->by_ino, &n->ino);
	g_free(n->path);
	g_free(n);
}

static void node_forget(struct fs *fs, fuse_ino_t ino, uint64_t count)
{
	if (ino == FUSE_ROOT_ID)
		return;
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_ino, &ino);
	if (n) {
		n->nlookup = n->nlookup > count ? n->nlookup - count : 0;
		if (n->nlookup == 0)
			node_drop_locked(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
}

/* The name path no longer names its node: one of its other names takes
 * over, or the node is unlinked. */
static void detach_locked(struct fs *fs, const char *path)
{
	struct node *n = g_hash_table_lookup(fs->by_path, path);
	if (!n)
		return;
	g_hash_table_remove(fs->by_path, path);
	if (strcmp(n->path, path) != 0) {
		GSList *l = g_slist_find_custom(n->aliases, path, (GCompareFunc)strcmp);
		if (l) {
			g_free(l->data);
			n->aliases = g_slist_delete_link(n->aliases, l);
		}
		return;
	}
	if (n->aliases) {
		g_free(n->path);
		n->path = n->aliases->data; /* (already by_path's key) */
		n->aliases = g_slist_delete_link(n->aliases, n->aliases);
		return;
	}
	n->unlinked = true;
	sid_forget_locked(fs, n);
}

static void node_detach(struct fs *fs, const char *path)
{
	pthread_mutex_lock(&fs->lock);
	detach_locked(fs, path);
	pthread_mutex_unlock(&fs->lock);
}

/* A rename: the node at newpath (if any) is replaced; old and everything
 * below it move (each name: a node's path or one of its aliases). */
static void node_rename(struct fs *fs, const char *oldpath, const char *newpath)
{
	size_t ol = strlen(oldpath);
	pthread_mutex_lock(&fs->lock);
	detach_locked(fs, newpath);
	GPtrArray *keys = g_ptr_array_new(), *nodes = g_ptr_array_new();
	GHashTableIter it;
	gpointer key, val;
	g_hash_table_iter_init(&it, fs->by_path);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		const char *k = key;
		if (strncmp(k, oldpath, ol) == 0 && (k[ol] == '\0' || k[ol] == '/')) {
			g_ptr_array_add(keys, key);
			g_ptr_array_add(nodes, val);
			g_hash_table_iter_steal(&it);
		}
	}
	for (guint i = 0; i < keys->len; i++) {
		struct node *n = nodes->pdata[i];
		char *old = keys->pdata[i];
		char *np = g_strconcat(newpath, old + ol, NULL);
		if (old == n->path) {
			n->path = np;
		} else {
			GSList *l = g_slist_find(n->aliases, old);
			if (l)
				l->data = np;
		}
		g_free(old);
		detach_locked(fs, np);
		g_hash_table_insert(fs->by_path, np, n);
	}
	g_ptr_array_free(keys, TRUE);
	g_ptr_array_free(nodes, TRUE);
	pthread_mutex_unlock(&fs->lock);
}

/* ---- attributes from the server: full ones where it has stat@hashi ---- */

static bool has(struct sftp_client *c, uint32_t ext)
{
	return (sftp_client_exts(c) & ext) != 0;
}

static void stat_send(struct sftp_client *c, const char *path, const uint8_t *h, uint32_t hlen,
		      uint32_t flags, uint8_t v3_type, sftp_cb cb, void *arg)
{
	if (!has(c, SFTP_HAS_HASHI_STAT)) {
		if (h)
			sftp_handle_req(c, v3_type, h, hlen, cb, arg);
		else
			sftp_path_req(c, v3_type, path, cb, arg);
		return;
	}
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_HASHI_STAT);
	sftp_target_put(sftp_msg_buf(m), path, h, hlen, flags);
	sftp_submit(c, m, cb, arg);
}

/* LSTAT */
static void stat_path(struct sftp_client *c, const char *path, sftp_cb cb, void *arg)
{
	stat_send(c, path, NULL, 0, HASHI_TARGET_NOFOLLOW, SSH_FXP_LSTAT, cb, arg);
}

/* STAT */
static void stat_path_follow(struct sftp_client *c, const char *path, sftp_cb cb, void *arg)
{
	stat_send(c, path, NULL, 0, 0, SSH_FXP_STAT, cb, arg);
}

/* FSTAT */
static void stat_handle(struct sftp_client *c, const uint8_t *h, uint32_t hlen, sftp_cb cb,
			void *arg)
{
	stat_send(c, NULL, h, hlen, 0, SSH_FXP_FSTAT, cb, arg);
}

/* The attributes of an ATTRS reply, or of a hashi reply whose (next) field
 * is a hattrs string. */
static int reply_fattr(struct sftp_reply *r, struct fattr *f)
{
	if (r->type == SSH_FXP_EXTENDED_REPLY) {
		struct hattrs h;
		if (hattrs_get(&r->body, &h)) {
			log_error("malformed attributes from the server");
			return -1;
		}
		fattr_from_hattrs(f, &h);
		return 0;
	}
	struct sftp_attrs a;
	if (sftp_reply_attrs(r, &a))
		return -1;
	fattr_from_v3(f, &a);
	return 0;
}

/* ---- attributes --------------------------------------------------------- */

/* Full attributes give the server's inode number, link count, devices,
 * nanosecond times and blocks; SFTP v3's leave them to be made up, as
 * sshfs does. */
static void fill_stat(struct fs *fs, const struct fattr *f, fuse_ino_t ino, struct stat *st)
{
	const struct sftp_attrs *a = &f->v3;
	memset(st, 0, sizeof(*st));
	if (f->x.mask) {
		hattrs_to_stat(&f->x, st);
		if (!(f->x.mask & HATTR_INO))
			st->st_ino = ino;
		if (!(f->x.mask & HATTR_NLINK))
			st->st_nlink = 1;
		if (!(f->x.mask & HATTR_BLKSIZE))
			st->st_blksize = 4096;
	} else {
		attrs_to_stat(a, st);
		st->st_ino = ino;
		st->st_nlink = 1;
		st->st_blksize = 4096;
		st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
		st->st_ctim = st->st_mtim;
	}
	if (fs->cfg.idmap) {
		st->st_uid = idmap_uid_to_local(fs->cfg.idmap, a->uid);
		st->st_gid = idmap_gid_to_local(fs->cfg.idmap, a->gid);
	}
	if (fs->cfg.set_uid)
		st->st_uid = fs->cfg.uid;
	if (fs->cfg.set_gid)
		st->st_gid = fs->cfg.gid;
	if (fs->cfg.set_umask)
		st->st_mode &= ~fs->cfg.umask | S_IFMT;
}

/* idmap=names: owners the map has not seen yet are looked up on the server
 * (users-groups-by-id@openssh.com) before their attributes reach the
 * kernel; then(arg) runs once they are known. */
#define IDS_PER_LOOKUP 256

struct ids_wait {
	struct fs *fs;
	void (*then)(void *arg);
	void *arg;
	uint32_t uids[IDS_PER_LOOKUP], gids[IDS_PER_LOOKUP];
	size_t nu, ng;
};

static void learn_names(struct ids_wait *w, struct wire_reader *names, bool users, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *name = NULL;
		if (names && wire_get_cstring(names, &name, 1024))
			name = NULL;
		if (users)
			idmap_learn_uid(w->fs->cfg.idmap, w->uids[i], name ? name : "");
		else
			idmap_learn_gid(w->fs->cfg.idmap, w->gids[i], name ? name : "");
		free(name);
	}
}

static void ids_cb(void *arg, struct sftp_reply *r)
{
	struct ids_wait *w = arg;
	struct wire_reader un, gn;
	bool ok = r->err == 0 && r->type == SSH_FXP_EXTENDED_REPLY &&
		  wire_get_sub(&r->body, &un) == 0 && wire_get_sub(&r->body, &gn) == 0;
	if (!ok && r->type != 0)
		log_error("users-groups-by-id: no usable answer from the server");
	learn_names(w, ok ? &un : NULL, true, w->nu);
	learn_names(w, ok ? &gn : NULL, false, w->ng);
	w->then(w->arg);
	g_free(w);
}

static void add_unknown(uint32_t *v, size_t *n, uint32_t id)
{
	for (size_t i = 0; i < *n; i++)
		if (v[i] == id)
			return;
	if (*n < IDS_PER_LOOKUP)
		v[(*n)++] = id;
}

static void ensure_ids(struct fs *fs, const struct fattr *a, size_t count, size_t stride,
		       void (*then)(void *), void *arg)
{
	struct idmap *m = fs->cfg.idmap;
	struct ids_wait *w = NULL;
	for (size_t i = 0; m && i < count; i++) {
		const struct sftp_attrs *x = &((const struct fattr *)(const void *)((const char *)a + i * stride))->v3;
		if (!(x->flags & SSH_FILEXFER_ATTR_UIDGID))
			continue;
		bool ku = idmap_uid_known(m, x->uid), kg = idmap_gid_known(m, x->gid);
		if (ku && kg)
			continue;
		if (!w)
			w = g_new0(struct ids_wait, 1);
		if (!ku)
			add_unknown(w->uids, &w->nu, x->uid);
		if (!kg)
			add_unknown(w->gids, &w->ng, x->gid);
	}
	if (!w) {
		then(arg);
		return;
	}
	w->fs = fs;
	w->then = then;
	w->arg = arg;
	struct sftp_msg *msg = sftp_msg_new_ext(SFTP_EXT_USERS_GROUPS);
	struct wire_buf *b = sftp_msg_buf(msg);
	wire_put_u32(b, (uint32_t)(w->nu * 4));
	for (size_t i = 0; i < w->nu; i++)
		wire_put_u32(b, w->uids[i]);
	wire_put_u32(b, (uint32_t)(w->ng * 4));
	for (size_t i = 0; i < w->ng; i++)
		wire_put_u32(b, w->gids[i]);
	sftp_submit(fs->c, msg, ids_cb, w);
}

/* ---- per-request context ------------------------------------------------ */

/* Open handles by inode, so that an unlinked file can still be reached. */
static void node_add_file(struct fs *fs, fuse_ino_t ino, struct file *f)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_ino, &ino);
	if (n)
		n->files = g_slist_prepend(n->files, f);
	pthread_mutex_unlock(&fs->lock);
}

static void node_remove_file(struct fs *fs, fuse_ino_t ino, struct file *f)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_ino, &ino);
	if (n)
		n->files = g_slist_remove(n->files, f);
	pthread_mutex_unlock(&fs->lock);
}

/* If ino's name is gone but it is open, copy one of its handles. */
static bool node_unlinked_handle(struct fs *fs, fuse_ino_t ino, struct file *out)
{
	bool found = false;
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_ino, &ino);
	if (n && n->unlinked && n->files) {
		*out = *(struct file *)n->files->data;
		found = true;
	}
	pthread_mutex_unlock(&fs->lock);
	return found;
}

/* A copy of a handle ino is open with, if any (a setattr on it then goes
 * by handle, behind the file's writes). */
static bool node_open_handle(struct fs *fs, fuse_ino_t ino, struct file *out)
{
	bool found = false;
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_ino, &ino);
	if (n && n->files) {
		*out = *(struct file *)n->files->data;
		found = true;
	}
	pthread_mutex_unlock(&fs->lock);
	return found;
}

static bool file_known_ok(struct file *f)
{
	return f->known_ok;
}

/* An open file of ino that which() picks, held, or NULL. */
static struct file *node_file_where(struct fs *fs, fuse_ino_t ino, bool (*which)(struct file *))
{
	struct file *f = NULL;
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_ino, &ino);
	for (GSList *l = n ? n->files : NULL; l && !f; l = l->next) {
		struct file *c = l->data;
		if (which(c))
			f = c;
	}
	if (f)
		file_hold(f);
	pthread_mutex_unlock(&fs->lock);
	return f;
}

/* An open file of ino still being created behind, held, or NULL. */
static struct file *node_pending_file(struct fs *fs, fuse_ino_t ino)
{
	return node_file_where(fs, ino, file_is_pending);
}

/* Wait until no open file of ino is still being created behind: an open
 * by name on another connection must find it made. */
static void node_wait_created(struct fs *fs, fuse_ino_t ino)
{
	struct file *f;
	while ((f = node_pending_file(fs, ino))) {
		file_wait_open(f);
		file_put(f);
	}
}

/* ino's attributes as an open file created behind believes them, while
 * its OPEN is on its way (the server has not got its writes yet). */
static bool node_pending_known(struct fs *fs, fuse_ino_t ino, struct fattr *a)
{
	struct file *f = node_pending_file(fs, ino);
	if (!f)
		return false;
	bool exact;
	bool ok = file_is_pending(f) && file_known(f, fs->cfg.cache.stat_timeout, a, &exact);
	file_put(f);
	return ok;
}

/* ino's open file that made it (known attributes), held, or NULL. */
static struct file *node_known_file(struct fs *fs, fuse_ino_t ino)
{
	return node_file_where(fs, ino, file_known_ok);
}

struct op {
	struct fs *fs;
	fuse_req_t req;
	struct file tmpfile;   /* a copy of a handle borrowed for this request */
	bool unlinked;         /* the node has no name any more (nlink 0) */
	char *path, *path2;
	fuse_ino_t ino;
	int flags;
	int step;
	struct fuse_file_info fi;
	struct file *file;
	struct fattr attrs;
	int to_set;
	mode_t mode;
	uint64_t gen;          /* cache generation when the request was sent */
	uint64_t off, len;     /* fallocate, lseek */
	double ttl;            /* attrs from our cache: seconds left; fresh: < 0 */
	struct fattr cur; /* setattr: the attributes before it */
	bool have_cur;
	bool lookup;           /* a LOOKUP: "no such file" is a negative entry */
};

static struct op *op_new(fuse_req_t req)
{
	struct op *o = g_new0(struct op, 1);
	o->fs = fuse_req_userdata(req);
	o->req = req;
	o->ttl = -1;
	return o;
}

/* What the kernel may keep: the configured time, but never longer than
 * what we answered from our cache stays valid there. */
static double kernel_timeout(double configured, double ttl)
{
	return ttl >= 0 && ttl < configured ? ttl : configured;
}

/* Send an LSTAT of o->path whose answer may go into the cache. */
static void lstat_req(struct op *o, sftp_cb cb)
{
	o->gen = cache_gen(o->fs->cache);
	stat_path(o->fs->c, o->path, cb, o);
}

static void op_free(struct op *o)
{
	g_free(o->path);
	g_free(o->path2);
	g_free(o);
}

static void reply_err_free(struct op *o, int err)
{
	fuse_reply_err(o->req, err);
	op_free(o);
}

static struct file *file_of(struct fuse_file_info *fi)
{
	return (struct file *)(uintptr_t)fi->fh;
}

/* Close a handle nobody waits for (an error path). */
static void file_close_quietly(struct fs *fs, struct file *f)
{
	(void)fs;
	file_discard(f);
}

/* An SFTP error as the errno a local filesystem would give. OpenSSH's server
 * collapses many errnos into SSH_FX_FAILURE; the caller refines where it can. */
static int reply_errno(struct sftp_reply *r)
{
	if (r->type == 0)
		return r->err ? r->err : EIO; /* EIO, or ETIMEDOUT after waiting for a reconnect */
	return r->err ? r->err : EIO;
}

/* ---- entry replies (lookup, mkdir, symlink, link, create) ---------------- */

static void reply_entry_from_attrs(struct op *o, const struct fattr *a, const char *path)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = node_ref(o->fs, path, a);
	e.generation = 1;
	fill_stat(o->fs, a, e.ino, &e.attr);
	e.attr_timeout = kernel_timeout(o->fs->cfg.attr_timeout, o->ttl);
	e.entry_timeout = kernel_timeout(o->fs->cfg.entry_timeout, o->ttl);
	if (fuse_reply_entry(o->req, &e) != 0)
		node_forget(o->fs, e.ino, 1);
}

/* A name that does not exist: a negative entry the kernel may keep. */
static void reply_noent_free(struct op *o)
{
	double t = kernel_timeout(o->fs->cfg.negative_timeout, o->ttl);
	if (t <= 0) {
		reply_err_free(o, ENOENT);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.entry_timeout = t;
	fuse_reply_entry(o->req, &e);
	op_free(o);
}

static void entry_finish(void *arg)
{
	struct op *o = arg;
	reply_entry_from_attrs(o, &o->attrs, o->path);
	op_free(o);
}

static void entry_lstat_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (r->err || reply_fattr(r, &o->attrs)) {
		int err = r->err ? reply_errno(r) : EIO;
		if (err == ENOENT && r->type == SSH_FXP_STATUS)
			cache_put_noent(o->fs->cache, o->path, o->gen);
		if (err == ENOENT && o->lookup)
			reply_noent_free(o);
		else
			reply_err_free(o, err);
		return;
	}
	cache_put_attrs(o->fs->cache, o->path, &o->attrs, o->gen);
	ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), entry_finish, o);
}

static bool dir_wait(struct fs *fs, const char *dir, struct op *o);
static void dir_note_miss(struct fs *fs, const char *path);

/* A lookup answered from our cache (true), or not known there. */
static bool lookup_cached(struct op *o)
{
	switch (cache_get_attrs(o->fs->cache, o->path, &o->attrs, &o->ttl)) {
	case CACHE_HIT:
		ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), entry_finish, o);
		return true;
	case CACHE_NOENT:
		reply_noent_free(o);
		return true;
	case CACHE_MISS:
		break;
	}
	o->ttl = -1;
	return false;
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct op *o = op_new(req);
	o->path = child_path(o->fs, parent, name);
	if (!o->path) {
		reply_err_free(o, errno);
		return;
	}
	o->lookup = true;
	if (lookup_cached(o))
		return;
	/* its directory is being listed: the listing answers sooner */
	char *dir = g_path_get_dirname(o->path);
	o->step = 1;
	bool waiting = dir_wait(o->fs, dir, o);
	g_free(dir);
	if (waiting)
		return;
	dir_note_miss(o->fs, o->path);
	lstat_req(o, entry_lstat_cb);
}

/* The listing a lookup waited for is in (or failed): the cache, or LSTAT. */
static void lookup_resume(struct op *o)
{
	if (lookup_cached(o))
		return;
	lstat_req(o, entry_lstat_cb);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	node_forget(fuse_req_userdata(req), ino, nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fuse_req_userdata(req);
	for (size_t i = 0; i < count; i++)
		node_forget(fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ---- getattr / setattr -------------------------------------------------- */

static void attr_finish(void *arg)
{
	struct op *o = arg;
	struct stat st;
	fill_stat(o->fs, &o->attrs, o->ino, &st);
	if (o->unlinked)
		st.st_nlink = 0;
	fuse_reply_attr(o->req, &st, kernel_timeout(o->fs->cfg.attr_timeout, o->ttl));
	op_free(o);
}

/* Attributes from LSTAT or FSTAT; o->path2, if set, is the live path they
 * may be cached under. */
static void attr_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (r->err || reply_fattr(r, &o->attrs)) {
		reply_err_free(o, r->err ? reply_errno(r) : EIO);
		return;
	}
	if (o->path2)
		cache_put_attrs(o->fs->cache, o->path2, &o->attrs, o->gen);
	ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), attr_finish, o);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct op *o = op_new(req);
	o->ino = ino;
	if (node_pending_known(o->fs, ino, &o->attrs)) {
		/* created behind: the server has not all of it yet */
		o->ttl = 0;
		ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), attr_finish, o);
		return;
	}
	o->path2 = node_live_path(o->fs, ino);
	if (o->path2 && cache_get_attrs(o->fs->cache, o->path2, &o->attrs, &o->ttl) == CACHE_HIT) {
		ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), attr_finish, o);
		return;
	}
	o->ttl = -1;
	o->gen = cache_gen(o->fs->cache);
	if (fi && fi->fh) {
		struct file *f = file_of(fi);
		stat_handle(o->fs->c, f->handle, f->hlen, attr_cb, o);
		return;
	}
	if (node_unlinked_handle(o->fs, ino, &o->tmpfile)) {
		o->unlinked = true;
		stat_handle(o->fs->c, o->tmpfile.handle, o->tmpfile.hlen, attr_cb, o);
		return;
	}
	o->path = node_path(o->fs, ino);
	if (!o->path) {
		reply_err_free(o, ESTALE);
		return;
	}
	stat_path(o->fs->c, o->path, attr_cb, o);
}

static void setattr_send(struct op *o);
static void setattr_with_current(struct op *o, const struct fattr *c, bool fresh);

/* Step 0 of a setattr that needs the current attributes (to complete a
 * half-given owner or time pair, and to know whether it is a symlink). */
static void setattr_stat_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	struct fattr cur;
	if (r->err || reply_fattr(r, &cur)) {
		reply_err_free(o, r->err ? reply_errno(r) : EIO);
		return;
	}
	setattr_with_current(o, &cur, true);
}

/* cur: the attributes before; fresh: from the server for this request
 * (then the answer can be made from them: a local change shows what the
 * server has, not what we cached). */
static void setattr_with_current(struct op *o, const struct fattr *c, bool fresh)
{
	struct fattr cur = *c;
	o->cur = cur;
	o->have_cur = fresh;
	struct sftp_attrs *a = &o->attrs.v3;
	if ((o->to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    !(o->to_set & FUSE_SET_ATTR_UID))
		a->uid = cur.v3.uid;
	if ((o->to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    !(o->to_set & FUSE_SET_ATTR_GID))
		a->gid = cur.v3.gid;
	if ((o->to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) &&
	    !(o->to_set & FUSE_SET_ATTR_ATIME))
		a->atime = cur.v3.atime;
	if ((o->to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) &&
	    !(o->to_set & FUSE_SET_ATTR_MTIME))
		a->mtime = cur.v3.mtime;
	o->mode = (mode_t)cur.v3.perm;
	setattr_send(o);
}

/* What a successful SETSTAT leaves, when it is certain from the attributes
 * the server gave just before it (o->have_cur): a mode without set-id bits, an owner of a file without them
 * (chown may clear them), times (sent as numbers, "now" included). Not a
 * size (the server sets the mtime), not a symlink (without lsetstat the
 * change went to its target). The result goes into o->attrs. */
static bool setattr_result(struct op *o)
{
	const uint32_t need = SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_UIDGID |
			      SSH_FILEXFER_ATTR_ACMODTIME;
	struct fattr n = o->cur;
	const struct sftp_attrs *a = &o->attrs.v3;
	if (!o->have_cur || (n.v3.flags & need) != need || S_ISLNK(n.v3.perm) ||
	    (a->flags & SSH_FILEXFER_ATTR_SIZE) || a->flags == 0)
		return false;
	if (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) {
		if (a->perm & (S_ISUID | S_ISGID))
			return false;
		n.v3.perm = (n.v3.perm & S_IFMT) | (a->perm & 07777);
	}
	if (a->flags & SSH_FILEXFER_ATTR_UIDGID) {
		if (n.v3.perm & (S_ISUID | S_ISGID))
			return false;
		n.v3.uid = a->uid;
		n.v3.gid = a->gid;
	}
	if (a->flags & SSH_FILEXFER_ATTR_ACMODTIME) {
		n.v3.atime = a->atime;
		n.v3.mtime = a->mtime;
	}
	o->attrs = n;
	return true;
}

static void setattr_done_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (o->path) /* (a failure may have changed a part) */
		cache_invalidate(o->fs->cache, o->path);
	if (r->err) {
		int err = reply_errno(r);
		/* The server's EPERM and EACCES both arrive as "permission
		 * denied". Changing mode, owner or explicit times is an owner's
		 * right (EPERM); a size or "now" needs write access (EACCES). */
		bool owner_only = (o->to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) ||
				  ((o->to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) &&
				   !(o->to_set & (FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)));
		if (err == EACCES && owner_only && !(o->to_set & FUSE_SET_ATTR_SIZE))
			err = EPERM;
		reply_err_free(o, err);
		return;
	}
	o->path2 = node_live_path(o->fs, o->ino);
	if (setattr_result(o)) {
		if (o->path2)
			cache_put_attrs(o->fs->cache, o->path2, &o->attrs, cache_gen(o->fs->cache));
		ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), attr_finish, o);
		return;
	}
	/* Answer with what the server has now. */
	o->gen = cache_gen(o->fs->cache);
	if (o->file)
		stat_handle(o->fs->c, o->file->handle, o->file->hlen, attr_cb, o);
	else
		stat_path(o->fs->c, o->path, attr_cb, o);
}

/* (F)SETSTAT and the (F/L)STAT for the answer, sent together: one round
 * trip (the server answers in order, so the attributes are those after). */
struct fset_join {
	struct op *o;
	int left;
	int set_err, stat_err;
};

static void fset_join_done(struct fset_join *j)
{
	struct op *o = j->o;
	int set_err = j->set_err, stat_err = j->stat_err;
	g_free(j);
	if (set_err) {
		setattr_done_cb(o, &(struct sftp_reply){ .type = SSH_FXP_STATUS, .err = set_err });
		return;
	}
	if (o->path)
		cache_invalidate(o->fs->cache, o->path);
	if (stat_err) {
		reply_err_free(o, stat_err);
		return;
	}
	o->path2 = node_live_path(o->fs, o->ino);
	if (o->path2)
		cache_put_attrs(o->fs->cache, o->path2, &o->attrs, cache_gen(o->fs->cache));
	ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), attr_finish, o);
}

static void fset_set_cb(void *arg, struct sftp_reply *r)
{
	struct fset_join *j = arg;
	j->set_err = r->err ? reply_errno(r) : 0;
	if (__atomic_sub_fetch(&j->left, 1, __ATOMIC_ACQ_REL) == 0)
		fset_join_done(j);
}

static void fset_stat_cb(void *arg, struct sftp_reply *r)
{
	struct fset_join *j = arg;
	j->stat_err = r->err ? reply_errno(r) : reply_fattr(r, &j->o->attrs);
	if (__atomic_sub_fetch(&j->left, 1, __ATOMIC_ACQ_REL) == 0)
		fset_join_done(j);
}

/* Send m (a set of o's attributes) with the stat of the same file behind
 * it, and answer from that stat. */
static void setattr_send_joined(struct op *o, struct sftp_msg *m)
{
	struct fset_join *j = g_new0(struct fset_join, 1);
	j->o = o;
	j->left = 2;
	sftp_submit(o->fs->c, m, fset_set_cb, j);
	if (o->file)
		stat_handle(o->fs->c, o->file->handle, o->file->hlen, fset_stat_cb, j);
	else
		stat_path(o->fs->c, o->path, fset_stat_cb, j);
}

/* LSETSTAT of o->path, with its LSTAT behind it: what is there need not be
 * known first (a symlink keeps its target's attributes untouched, anything
 * else is set as by SETSTAT). Times and owners only: a mode through
 * lsetstat (fchmodat AT_SYMLINK_NOFOLLOW) needs /proc on the server. */
static void setattr_lset(struct op *o)
{
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_LSETSTAT);
	wire_put_cstring(sftp_msg_buf(m), o->path);
	attrs_put(sftp_msg_buf(m), &o->attrs.v3);
	setattr_send_joined(o, m);
}

static void setattr_send(struct op *o)
{
	struct sftp_msg *m;
	if (o->file) {
		m = sftp_msg_new(SSH_FXP_FSETSTAT);
		wire_put_string(sftp_msg_buf(m), o->file->handle, o->file->hlen);
		attrs_put(sftp_msg_buf(m), &o->attrs.v3);
		setattr_send_joined(o, m);
		return;
	} else if (S_ISLNK(o->mode) && (sftp_client_exts(o->fs->c) & SFTP_HAS_LSETSTAT) &&
		   !(o->attrs.v3.flags & SSH_FILEXFER_ATTR_SIZE)) {
		/* A symlink's own attributes, not its target's. */
		m = sftp_msg_new_ext(SFTP_EXT_LSETSTAT);
		wire_put_cstring(sftp_msg_buf(m), o->path);
	} else {
		m = sftp_msg_new(SSH_FXP_SETSTAT);
		wire_put_cstring(sftp_msg_buf(m), o->path);
	}
	attrs_put(sftp_msg_buf(m), &o->attrs.v3);
	if (!o->have_cur) {
		/* the attributes before came from our cache: the answer is
		 * what an LSTAT right behind says (one round trip, not two) */
		setattr_send_joined(o, m);
		return;
	}
	sftp_submit(o->fs->c, m, setattr_done_cb, o);
}

static uint32_t now_or(const struct timespec *ts, bool now)
{
	if (now)
		return (uint32_t)time(NULL);
	return (uint32_t)ts->tv_sec;
}

/* setstat@hashi: nanosecond times, UTIME_NOW and UTIME_OMIT as asked, a
 * symlink's own owner and times; its reply is the attributes after. */
static void setattr_hashi_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (o->path)
		cache_invalidate(o->fs->cache, o->path);
	if (r->err || reply_fattr(r, &o->attrs)) {
		reply_err_free(o, r->err ? reply_errno(r) : EIO);
		return;
	}
	o->path2 = node_live_path(o->fs, o->ino);
	if (o->path2)
		cache_put_attrs(o->fs->cache, o->path2, &o->attrs, cache_gen(o->fs->cache));
	ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), attr_finish, o);
}

static void set_time(struct hsetattr *hs, bool now, const struct timespec *ts, uint32_t bit,
		     uint32_t now_bit, struct hattrs_time *t)
{
	if (now) {
		hs->valid |= now_bit;
		return;
	}
	hs->valid |= bit;
	t->sec = ts->tv_sec;
	t->nsec = (uint32_t)ts->tv_nsec;
}

static void setattr_hashi(struct op *o, const struct stat *attr, bool own_handle)
{
	int to_set = o->to_set;
	struct hsetattr hs;
	memset(&hs, 0, sizeof(hs));
	if (to_set & FUSE_SET_ATTR_SIZE) {
		hs.valid |= HSET_SIZE;
		hs.size = (uint64_t)attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		hs.valid |= HSET_MODE;
		hs.mode = attr->st_mode & 07777;
	}
	struct idmap *m = o->fs->cfg.idmap;
	if (to_set & FUSE_SET_ATTR_UID) {
		hs.valid |= HSET_UID;
		hs.uid = (uint32_t)attr->st_uid;
		if (m && idmap_uid_to_remote(m, attr->st_uid, &hs.uid) < 0) {
			reply_err_free(o, EPERM);
			return;
		}
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		hs.valid |= HSET_GID;
		hs.gid = (uint32_t)attr->st_gid;
		if (m && idmap_gid_to_remote(m, attr->st_gid, &hs.gid) < 0) {
			reply_err_free(o, EPERM);
			return;
		}
	}
	if (to_set & FUSE_SET_ATTR_ATIME)
		set_time(&hs, to_set & FUSE_SET_ATTR_ATIME_NOW, &attr->st_atim, HSET_ATIME,
			 HSET_ATIME_NOW, &hs.atime);
	if (to_set & FUSE_SET_ATTR_MTIME)
		set_time(&hs, to_set & FUSE_SET_ATTR_MTIME_NOW, &attr->st_mtim, HSET_MTIME,
			 HSET_MTIME_NOW, &hs.mtime);
	/* The caller's own handle (behind its writes), an unlinked file's, or
	 * another open handle unless it cannot truncate; else the path, the
	 * link itself. */
	bool by_handle = o->file && (own_handle || !o->path ||
				     !(hs.valid & HSET_SIZE) || (o->file->flags & O_ACCMODE) != O_RDONLY);
	struct sftp_msg *msg = sftp_msg_new_ext(SFTP_EXT_HASHI_SETSTAT);
	if (by_handle)
		sftp_target_put(sftp_msg_buf(msg), NULL, o->file->handle, o->file->hlen, 0);
	else
		sftp_target_put(sftp_msg_buf(msg), o->path, NULL, 0, HASHI_TARGET_NOFOLLOW);
	hsetattr_put(sftp_msg_buf(msg), &hs);
	sftp_submit(by_handle ? o->file->c : o->fs->c, msg, setattr_hashi_cb, o);
}

/* A change of times or mode of a file an open of ours has just made, with
 * nothing else changed since: the attributes after it are certain, so the
 * FSETSTAT goes behind the file's writes and the kernel is answered now; a
 * failure comes back at flush or close, as a write's does. (tar and cp -p
 * set times on each file they write: this saves a round trip per file.) */
static bool setattr_behind(struct op *o, fuse_ino_t ino, const struct stat *attr, int to_set,
			   struct fuse_file_info *fi)
{
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			  FUSE_SET_ATTR_MTIME_NOW;
	if ((to_set & ~(times | FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_CTIME)) ||
	    !(to_set & (times | FUSE_SET_ATTR_MODE)) || !cache_enabled(o->fs->cache) ||
	    ((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & (S_ISUID | S_ISGID))))
		return false;
	struct file *f;
	if (fi && fi->fh) {
		f = file_of(fi);
		file_hold(f);
	} else if (!(f = node_known_file(o->fs, ino))) {
		return false;
	}
	const uint32_t need = SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_UIDGID |
			      SSH_FILEXFER_ATTR_ACMODTIME | SSH_FILEXFER_ATTR_SIZE;
	struct fattr k;
	bool mtime_exact;
	if (!file_known(f, o->fs->cfg.cache.stat_timeout, &k, &mtime_exact) || k.x.mask ||
	    (k.v3.flags & need) != need || !S_ISREG(k.v3.perm) ||
	    (!mtime_exact && !(to_set & FUSE_SET_ATTR_MTIME))) {
		file_put(f);
		return false;
	}
	struct sftp_attrs set;
	attrs_clear(&set);
	if (to_set & FUSE_SET_ATTR_MODE) {
		set.flags |= SSH_FILEXFER_ATTR_PERMISSIONS;
		set.perm = attr->st_mode & 07777;
		k.v3.perm = (k.v3.perm & S_IFMT) | set.perm;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		/* SFTP sets both: the one not given is the one known */
		set.flags |= SSH_FILEXFER_ATTR_ACMODTIME;
		set.atime = (to_set & FUSE_SET_ATTR_ATIME) ?
				    now_or(&attr->st_atim, to_set & FUSE_SET_ATTR_ATIME_NOW) :
				    k.v3.atime;
		set.mtime = (to_set & FUSE_SET_ATTR_MTIME) ?
				    now_or(&attr->st_mtim, to_set & FUSE_SET_ATTR_MTIME_NOW) :
				    k.v3.mtime;
		k.v3.atime = set.atime;
		k.v3.mtime = set.mtime;
	}
	bool owner_only = (to_set & FUSE_SET_ATTR_MODE) ||
			  ((to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) &&
			   !(to_set & (FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)));
	if (set.flags)
		file_setstat_behind(f, &set, &k, owner_only);
	file_put(f);
	o->attrs = k;
	/* The kernel keeps none of it: should the FSETSTAT fail, stat shows the
	 * server's attributes once flush or close has dropped ours. */
	o->ttl = 0;
	o->path2 = node_live_path(o->fs, ino);
	if (o->path2)
		cache_put_attrs(o->fs->cache, o->path2, &o->attrs, cache_gen(o->fs->cache));
	log_debug("setattr of ino %llu sent behind its writes, answered from its known attributes",
		  (unsigned long long)ino);
	ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), attr_finish, o);
	return true;
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct op *o = op_new(req);
	struct sftp_attrs *a = &o->attrs.v3;
	o->ino = ino;
	o->to_set = to_set;
	if (!has(o->fs->c, SFTP_HAS_HASHI_SETSTAT) && setattr_behind(o, ino, attr, to_set, fi))
		return;
	/* what an open file knew of the attributes is stale from here on */
	files_changed(o->fs->files, ino);
	o->path = node_path(o->fs, ino);
	if (fi && fi->fh)
		o->file = file_of(fi);
	else if (node_unlinked_handle(o->fs, ino, &o->tmpfile) ||
		 node_open_handle(o->fs, ino, &o->tmpfile))
		o->file = &o->tmpfile;
	if (!o->path && !o->file) {
		reply_err_free(o, ESTALE);
		return;
	}
	if (has(o->fs->c, SFTP_HAS_HASHI_SETSTAT)) {
		setattr_hashi(o, attr, fi && fi->fh);
		return;
	}
	attrs_clear(a);
	if (to_set & FUSE_SET_ATTR_SIZE) {
		a->flags |= SSH_FILEXFER_ATTR_SIZE;
		a->size = (uint64_t)attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		a->flags |= SSH_FILEXFER_ATTR_PERMISSIONS;
		a->perm = attr->st_mode & 07777;
	}
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		a->flags |= SSH_FILEXFER_ATTR_UIDGID;
		a->uid = (uint32_t)attr->st_uid;
		a->gid = (uint32_t)attr->st_gid;
		struct idmap *m = o->fs->cfg.idmap;
		if (m && (((to_set & FUSE_SET_ATTR_UID) && idmap_uid_to_remote(m, attr->st_uid, &a->uid) < 0) ||
			  ((to_set & FUSE_SET_ATTR_GID) && idmap_gid_to_remote(m, attr->st_gid, &a->gid) < 0))) {
			/* nomap=error: no remote owner for that local one */
			reply_err_free(o, EPERM);
			return;
		}
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		a->flags |= SSH_FILEXFER_ATTR_ACMODTIME;
		a->atime = now_or(&attr->st_atim, to_set & FUSE_SET_ATTR_ATIME_NOW);
		a->mtime = now_or(&attr->st_mtim, to_set & FUSE_SET_ATTR_MTIME_NOW);
	}
	if (a->flags == 0) {
		/* ctime only: nothing SFTP can set. */
		setattr_done_cb(o, &(struct sftp_reply){ .type = SSH_FXP_STATUS });
		return;
	}
	bool half_owner = (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
			  (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) !=
				  (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID);
	bool half_time = (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) &&
			 (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) !=
				 (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME);
	bool may_be_link = !o->file && !(to_set & FUSE_SET_ATTR_SIZE);
	if (half_owner || half_time || may_be_link) {
		/* What the cache knows completes a pair and tells a symlink. */
		struct fattr cur;
		if (!o->file && cache_get_attrs(o->fs->cache, o->path, &cur, NULL) == CACHE_HIT) {
			setattr_with_current(o, &cur, false);
			return;
		}
		if (!o->file && !half_owner && !half_time && (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) == 0 &&
		    (sftp_client_exts(o->fs->c) & SFTP_HAS_LSETSTAT)) {
			/* tar setting a directory's times at the end */
			setattr_lset(o);
			return;
		}
		if (o->file)
			stat_handle(o->fs->c, o->file->handle, o->file->hlen,
					setattr_stat_cb, o);
		else
			stat_path(o->fs->c, o->path, setattr_stat_cb, o);
		return;
	}
	setattr_send(o);
}

/* ---- names: readlink, mkdir, symlink, link, unlink, rmdir, rename ------- */

/* Refusals of link targets are logged, but not without end. */
#define SYMLINK_LOG_MAX 20
static unsigned symlink_logged;

/* The target of the link at path as the server gave it: what readlink
 * shows (g_malloc'd), or NULL with *err set. */
static char *checked_target(struct fs *fs, const char *path, const uint8_t *s, uint32_t len,
			    int *err)
{
	char shown[300];
	const char *why = NULL;
	char *out = NULL;
	printable(shown, sizeof(shown), s, len > 200 ? 200 : len);
	*err = EIO;
	if (memchr(s, '\0', len)) {
		why = "its target holds a NUL byte";
	} else if (len >= PATH_MAX) {
		why = "its target is longer than PATH_MAX";
		*err = ENAMETOOLONG;
	} else if (len == 0) {
		why = "its target is empty";
	} else {
		char *target = g_strndup((const char *)s, len);
		if (fs->cfg.no_contain_symlinks)
			return target;
		*err = EPERM;
		if (symlink_contain(fs->cfg.root, path, target, &out, &why) == 0) {
			g_free(target);
			return out;
		}
		g_free(target);
	}
	if (__atomic_fetch_add(&symlink_logged, 1, __ATOMIC_RELAXED) < SYMLINK_LOG_MAX)
		log_error("symbolic link %s -> \"%s\" refused: %s%s", path, shown, why,
			  *err == EPERM ? " (-o no_contain_symlinks shows it)" : "");
	return NULL;
}

static void readlink_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	uint32_t count, len;
	const uint8_t *s;
	if (r->err || r->type != SSH_FXP_NAME || wire_get_u32(&r->body, &count) || count < 1 ||
	    wire_get_string(&r->body, &s, &len)) {
		reply_err_free(o, r->err ? reply_errno(r) : EIO);
		return;
	}
	int err;
	char *target = checked_target(o->fs, o->path, s, len, &err);
	if (!target) {
		reply_err_free(o, err);
		return;
	}
	cache_put_link(o->fs->cache, o->path, target, o->gen);
	fuse_reply_readlink(o->req, target);
	g_free(target);
	op_free(o);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct op *o = op_new(req);
	o->path = node_path(o->fs, ino);
	if (!o->path) {
		reply_err_free(o, ESTALE);
		return;
	}
	char *target;
	if (cache_get_link(o->fs->cache, o->path, &target)) {
		fuse_reply_readlink(req, target);
		g_free(target);
		op_free(o);
		return;
	}
	o->gen = cache_gen(o->fs->cache);
	sftp_path_req(o->fs->c, SSH_FXP_READLINK, o->path, readlink_cb, o);
}

/* After SSH_FX_FAILURE, look at the path to say what a local filesystem would. */
enum refine { REFINE_CREATE, REFINE_RMDIR, REFINE_UNLINK };

static void refine_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	struct fattr a;
	int err = EPERM;
	bool exists = r->err == 0 && reply_fattr(r, &a) == 0;
	switch (o->step) {
	case REFINE_CREATE:
		if (exists)
			err = EEXIST;
		break;
	case REFINE_RMDIR:
		if (exists)
			err = S_ISDIR(a.v3.perm) ? ENOTEMPTY : ENOTDIR;
		break;
	case REFINE_UNLINK:
		if (exists && S_ISDIR(a.v3.perm))
			err = EISDIR;
		break;
	}
	reply_err_free(o, err);
}

static bool failure_refined(struct op *o, struct sftp_reply *r, enum refine how, const char *path)
{
	if (r->type != SSH_FXP_STATUS || r->status != SSH_FX_FAILURE || r->sys_errno)
		return false;
	o->step = how;
	stat_path(o->fs->c, path, refine_cb, o);
	return true;
}

/* A request on o->path failed: what we had cached of the name may be why
 * it was asked, so it goes; the caller hears why (refined as how says when
 * the server only said "failure"). */
static void name_req_failed(struct op *o, struct sftp_reply *r, int how)
{
	cache_invalidate_entry(o->fs->cache, o->path);
	if (!failure_refined(o, r, how, o->path))
		reply_err_free(o, reply_errno(r));
}

/* A new name in the parent; a new directory is empty. */
static void entry_made(struct op *o)
{
	cache_entry_added(o->fs->cache, o->path);
	if (o->flags == O_DIRECTORY)
		cache_put_dir(o->fs->cache, o->path, NULL, 0, cache_gen(o->fs->cache));
}

static void make_entry_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (r->err) {
		name_req_failed(o, r, REFINE_CREATE);
		return;
	}
	entry_made(o);
	if (o->path2) /* a hard link's source has one more link */
		cache_invalidate(o->fs->cache, o->path2);
	lstat_req(o, entry_lstat_cb);
}

/* The owner a new file gets on a hashi server: the caller's, when the
 * caller is not the mount's owner (allow_other; only a root server can
 * give it), else the server's default (HASHI_ID_NONE). */
static void caller_owner(struct op *o, uint32_t *uid, uint32_t *gid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(o->req);
	*uid = *gid = HASHI_ID_NONE;
	if (ctx->uid == getuid() && ctx->gid == getgid())
		return;
	*uid = (uint32_t)ctx->uid;
	*gid = (uint32_t)ctx->gid;
	struct idmap *m = o->fs->cfg.idmap;
	if (m && idmap_uid_to_remote(m, ctx->uid, uid) < 0)
		*uid = HASHI_ID_NONE;
	if (m && idmap_gid_to_remote(m, ctx->gid, gid) < 0)
		*gid = HASHI_ID_NONE;
}

static void mknod_hashi_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (r->err) {
		name_req_failed(o, r, REFINE_CREATE);
		return;
	}
	entry_made(o);
	if (r->type == SSH_FXP_STATUS) { /* a repeat found it made: ask for its attributes */
		lstat_req(o, entry_lstat_cb);
		return;
	}
	if (reply_fattr(r, &o->attrs)) {
		reply_err_free(o, EIO);
		return;
	}
	cache_put_attrs(o->fs->cache, o->path, &o->attrs, cache_gen(o->fs->cache));
	ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), entry_finish, o);
}

/* mknod@hashi: any type, the exact mode (the caller's umask applied by
 * the caller), the caller's owner. */
static void mknod_hashi(struct op *o, mode_t mode, dev_t rdev, const char *target)
{
	uint32_t uid, gid;
	caller_owner(o, &uid, &gid);
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_HASHI_MKNOD);
	struct wire_buf *b = sftp_msg_buf(m);
	wire_put_cstring(b, o->path);
	wire_put_u32(b, (uint32_t)mode);
	wire_put_u32(b, major(rdev));
	wire_put_u32(b, minor(rdev));
	wire_put_u32(b, uid);
	wire_put_u32(b, gid);
	wire_put_cstring(b, target ? target : "");
	sftp_submit(o->fs->c, m, mknod_hashi_cb, o);
}

/* MKDIR with an LSTAT of the new path right behind it (the server answers
 * in order): the entry's attributes come in the same round trip, and after
 * a bare "failure" the LSTAT says whether the name exists. */
struct mkdir_join {
	struct op *o;
	int left;
	int mk_err;
	bool mk_failure;       /* SSH_FX_FAILURE without an errno */
	int stat_err;
};

static void mkdir_join_done(struct mkdir_join *j)
{
	if (__atomic_sub_fetch(&j->left, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	struct op *o = j->o;
	int mk_err = j->mk_err, stat_err = j->stat_err;
	bool failure = j->mk_failure;
	g_free(j);
	if (mk_err) {
		cache_invalidate_entry(o->fs->cache, o->path);
		reply_err_free(o, !failure ? mk_err : stat_err ? EPERM : EEXIST);
		return;
	}
	cache_entry_added(o->fs->cache, o->path);
	cache_put_dir(o->fs->cache, o->path, NULL, 0, cache_gen(o->fs->cache));
	if (stat_err) {
		reply_err_free(o, stat_err);
		return;
	}
	/* (the LSTAT was answered after the MKDIR: newer than that change) */
	cache_put_attrs(o->fs->cache, o->path, &o->attrs, cache_gen(o->fs->cache));
	ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), entry_finish, o);
}

static void mkdir_mk_cb(void *arg, struct sftp_reply *r)
{
	struct mkdir_join *j = arg;
	if (r->err) {
		j->mk_err = reply_errno(r);
		j->mk_failure = r->type == SSH_FXP_STATUS && r->status == SSH_FX_FAILURE &&
				!r->sys_errno;
	}
	mkdir_join_done(j);
}

static void mkdir_stat_cb(void *arg, struct sftp_reply *r)
{
	struct mkdir_join *j = arg;
	if (r->err || reply_fattr(r, &j->o->attrs))
		j->stat_err = r->err ? reply_errno(r) : EIO;
	mkdir_join_done(j);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct op *o = op_new(req);
	o->path = child_path(o->fs, parent, name);
	if (!o->path) {
		reply_err_free(o, errno);
		return;
	}
	if (has(o->fs->c, SFTP_HAS_HASHI_MKNOD)) {
		o->flags = O_DIRECTORY;
		mknod_hashi(o, S_IFDIR | (mode & 07777 & ~fuse_req_ctx(req)->umask), 0, NULL);
		return;
	}
	struct sftp_attrs a;
	attrs_clear(&a);
	a.flags = SSH_FILEXFER_ATTR_PERMISSIONS;
	a.perm = mode & 07777 & ~fuse_req_ctx(req)->umask;
	o->flags = O_DIRECTORY;
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_MKDIR);
	wire_put_cstring(sftp_msg_buf(m), o->path);
	attrs_put(sftp_msg_buf(m), &a);
	struct mkdir_join *j = g_new0(struct mkdir_join, 1);
	j->o = o;
	j->left = 2;
	sftp_submit(o->fs->c, m, mkdir_mk_cb, j);
	stat_path(o->fs->c, o->path, mkdir_stat_cb, j);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct op *o = op_new(req);
	o->path = child_path(o->fs, parent, name);
	if (!o->path) {
		reply_err_free(o, errno);
		return;
	}
	if (has(o->fs->c, SFTP_HAS_HASHI_MKNOD)) {
		mknod_hashi(o, S_IFLNK | 0777, 0, link);
		return;
	}
	/* OpenSSH's argument order: target first, then the new link. */
	sftp_path2_req(o->fs->c, SSH_FXP_SYMLINK, link, o->path, make_entry_cb, o);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct op *o = op_new(req);
	if (o->fs->cfg.disable_hardlink) {
		reply_err_free(o, ENOSYS);
		return;
	}
	if (!(sftp_client_exts(o->fs->c) & SFTP_HAS_HARDLINK)) {
		reply_err_free(o, EPERM);
		return;
	}
	o->path = child_path(o->fs, newparent, newname);
	int e = errno;
	o->path2 = node_path(o->fs, ino);
	if (!o->path || !o->path2) {
		reply_err_free(o, o->path ? ESTALE : e);
		return;
	}
	sftp_ext_path2_req(o->fs->c, SFTP_EXT_HARDLINK, o->path2, o->path, make_entry_cb, o);
}

static void unlink_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (r->err) {
		name_req_failed(o, r, o->step);
		return;
	}
	node_detach(o->fs, o->path);
	cache_entry_removed(o->fs->cache, o->path, o->step == REFINE_RMDIR);
	reply_err_free(o, 0);
}

static void remove_common(fuse_req_t req, fuse_ino_t parent, const char *name, uint8_t type)
{
	struct op *o = op_new(req);
	o->path = child_path(o->fs, parent, name);
	if (!o->path) {
		reply_err_free(o, errno);
		return;
	}
	o->step = type == SSH_FXP_RMDIR ? REFINE_RMDIR : REFINE_UNLINK;
	sftp_path_req(o->fs->c, type, o->path, unlink_cb, o);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, SSH_FXP_REMOVE);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, SSH_FXP_RMDIR);
}

static void rename_refine_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	struct fattr a;
	bool exists = r->err == 0 && reply_fattr(r, &a) == 0;
	/* The target exists: for a no-replace rename that is EEXIST; a
	 * directory over a non-empty one is ENOTEMPTY. */
	int err = EPERM;
	if (exists)
		err = (o->flags & RENAME_NOREPLACE) ? EEXIST : (S_ISDIR(a.v3.perm) ? ENOTEMPTY : EPERM);
	reply_err_free(o, err);
}

static void rename_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (r->err) {
		cache_invalidate_entry(o->fs->cache, o->path);
		cache_invalidate_entry(o->fs->cache, o->path2);
		if (r->type == SSH_FXP_STATUS && r->status == SSH_FX_FAILURE && !r->sys_errno) {
			stat_path(o->fs->c, o->path2, rename_refine_cb, o);
			return;
		}
		reply_err_free(o, reply_errno(r));
		return;
	}
	node_rename(o->fs, o->path, o->path2);
	cache_rename(o->fs->cache, o->path, o->path2);
	reply_err_free(o, 0);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct op *o = op_new(req);
	if (flags & RENAME_EXCHANGE) {
		reply_err_free(o, EINVAL);
		return;
	}
	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		reply_err_free(o, EINVAL);
		return;
	}
	o->flags = (int)flags;
	o->path = child_path(o->fs, parent, name);
	int e = errno;
	o->path2 = child_path(o->fs, newparent, newname);
	if (!o->path || !o->path2) {
		reply_err_free(o, o->path ? errno : e);
		return;
	}
	if (!(flags & RENAME_NOREPLACE) && (sftp_client_exts(o->fs->c) & SFTP_HAS_POSIX_RENAME))
		sftp_ext_path2_req(o->fs->c, SFTP_EXT_POSIX_RENAME, o->path, o->path2, rename_cb, o);
	else
		/* v3 RENAME: OpenSSH's server (and ours) never overwrite. */
		sftp_path2_req(o->fs->c, SSH_FXP_RENAME, o->path, o->path2, rename_cb, o);
}

/* ---- files -------------------------------------------------------------- */

static uint32_t pflags_from_open(int flags)
{
	uint32_t p = 0;
	switch (flags & O_ACCMODE) {
	case O_RDONLY: p = SSH_FXF_READ; break;
	case O_WRONLY: p = SSH_FXF_WRITE; break;
	default: p = SSH_FXF_READ | SSH_FXF_WRITE; break;
	}
	if (flags & O_APPEND)
		p |= SSH_FXF_APPEND;
	if (flags & O_CREAT)
		p |= SSH_FXF_CREAT;
	if (flags & O_TRUNC)
		p |= SSH_FXF_TRUNC;
	if (flags & O_EXCL)
		p |= SSH_FXF_EXCL;
	return p;
}

static void create_finish(void *arg);
static void learn_creator(struct op *o);

static void create_fstat_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (r->err || reply_fattr(r, &o->attrs)) {
		file_close_quietly(o->fs, o->file);
		reply_err_free(o, r->err ? reply_errno(r) : EIO);
		return;
	}
	cache_put_attrs(o->fs->cache, o->path, &o->attrs, o->gen);
	ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), create_finish, o);
}

static void create_finish(void *arg)
{
	struct op *o = arg;
	const struct fattr a = o->attrs;
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = node_ref(o->fs, o->path, &a);
	e.generation = 1;
	fill_stat(o->fs, &a, e.ino, &e.attr);
	e.attr_timeout = o->fs->cfg.attr_timeout;
	e.entry_timeout = o->fs->cfg.entry_timeout;
	file_set_ino(o->file, e.ino);
	if (o->flags & O_EXCL) /* it is new: these are its attributes */
		file_set_known(o->file, &a);
	o->fi.fh = (uint64_t)(uintptr_t)o->file;
	node_add_file(o->fs, e.ino, o->file);
	if (fuse_reply_create(o->req, &e, &o->fi) != 0) {
		node_remove_file(o->fs, e.ino, o->file);
		node_forget(o->fs, e.ino, 1);
		file_close_quietly(o->fs, o->file);
	}
	op_free(o);
}

/* -o auto_cache: what a file looked like when it was last opened. */
struct seen {
	uint64_t size;
	uint32_t mtime;
};

/* Whether the kernel may keep the pages it has of ino (a is its attributes
 * now, or NULL when unknown). */
static bool keep_cache(struct fs *fs, fuse_ino_t ino, const struct fattr *a)
{
	if (fs->cfg.kernel_cache)
		return true;
	if (!fs->cfg.auto_cache || !a)
		return false;
	struct seen now = { a->v3.size, a->v3.mtime };
	pthread_mutex_lock(&fs->lock);
	struct seen *old = g_hash_table_lookup(fs->opened, &ino);
	bool same = old && old->size == now.size && old->mtime == now.mtime;
	if (!old) {
		fuse_ino_t *k = g_new(fuse_ino_t, 1);
		*k = ino;
		old = g_new(struct seen, 1);
		g_hash_table_insert(fs->opened, k, old);
	}
	*old = now;
	pthread_mutex_unlock(&fs->lock);
	return same;
}

/* An OPEN with an LSTAT of its path sent right behind it (the server
 * answers in order): one round trip gives the handle and the attributes a
 * create must answer with (or auto_cache compares). */
struct open_join {
	struct op *o;
	struct sftp_client *conn; /* where the handle will live */
	int left;
	bool have_attrs;
	int open_err;
	uint8_t open_type;
	uint32_t open_status;
};

/* The size the cache knows (what the kernel was told too): a read that
 * reaches it is at EOF without asking the server (cat: one READ, not two). */
static void open_known_size(struct op *o, bool fresh)
{
	struct fattr a = o->attrs;
	double ttl = o->fs->cfg.cache.stat_timeout;
	if ((o->flags & O_TRUNC) || !cache_enabled(o->fs->cache) ||
	    (!fresh && cache_get_attrs(o->fs->cache, o->path, &a, &ttl) != CACHE_HIT) ||
	    !(a.v3.flags & SSH_FILEXFER_ATTR_SIZE) || !(a.v3.flags & SSH_FILEXFER_ATTR_PERMISSIONS) ||
	    !S_ISREG(a.v3.perm))
		return;
	file_set_size(o->file, a.v3.size, ttl);
}

static void open_done(struct open_join *j)
{
	struct op *o = j->o;
	if (o->file) {
		if (o->flags & O_CREAT)
			cache_entry_added(o->fs->cache, o->path);
		else if (o->flags & O_TRUNC)
			cache_invalidate(o->fs->cache, o->path);
	}
	if (o->step == 1) { /* create */
		if (!o->file) {
			int err = j->open_err;
			/* O_EXCL and a bare "failure": the LSTAT behind it says why */
			if ((o->flags & O_EXCL) && j->open_type == SSH_FXP_STATUS &&
			    j->open_status == SSH_FX_FAILURE)
				err = j->have_attrs ? EEXIST : EPERM;
			g_free(j);
			reply_err_free(o, err);
			return;
		}
		bool usable = j->have_attrs && (o->attrs.v3.flags & SSH_FILEXFER_ATTR_PERMISSIONS) &&
			      S_ISREG(o->attrs.v3.perm);
		g_free(j);
		if (usable && (o->flags & O_EXCL))
			learn_creator(o);
		if (usable) {
			cache_put_attrs(o->fs->cache, o->path, &o->attrs, o->gen);
			ensure_ids(o->fs, &o->attrs, 1, sizeof(o->attrs), create_finish, o);
		} else {
			stat_handle(o->file->c, o->file->handle,
					o->file->hlen, create_fstat_cb, o);
		}
		return;
	}
	if (!o->file) {
		int err = j->open_err;
		g_free(j);
		reply_err_free(o, err);
		return;
	}
	if (j->have_attrs) /* fresh from the server: what stat shows from now on */
		cache_put_attrs(o->fs->cache, o->path, &o->attrs, o->gen);
	o->fi.keep_cache = keep_cache(o->fs, o->ino, j->have_attrs ? &o->attrs : NULL);
	open_known_size(o, j->have_attrs);
	g_free(j);
	o->fi.fh = (uint64_t)(uintptr_t)o->file;
	node_add_file(o->fs, o->ino, o->file);
	if (fuse_reply_open(o->req, &o->fi) != 0) {
		node_remove_file(o->fs, o->ino, o->file);
		file_close_quietly(o->fs, o->file);
	}
	op_free(o);
}

static void join_open_cb(void *arg, struct sftp_reply *r)
{
	struct open_join *j = arg;
	struct op *o = j->o;
	if (r->err) {
		j->open_err = reply_errno(r);
		j->open_type = r->type;
		j->open_status = r->status;
	} else {
		o->file = file_from_handle(o->fs->files, j->conn, r, o->ino, o->flags);
		if (!o->file)
			j->open_err = EIO;
		else if (r->type == SSH_FXP_EXTENDED_REPLY) /* open@hashi: attributes too */
			j->have_attrs = reply_fattr(r, &o->attrs) == 0;
	}
	if (__atomic_sub_fetch(&j->left, 1, __ATOMIC_ACQ_REL) == 0)
		open_done(j);
}

static void join_lstat_cb(void *arg, struct sftp_reply *r)
{
	struct open_join *j = arg;
	j->have_attrs = r->err == 0 && reply_fattr(r, &j->o->attrs) == 0;
	if (__atomic_sub_fetch(&j->left, 1, __ATOMIC_ACQ_REL) == 0)
		open_done(j);
}

static void send_open(struct op *o, mode_t mode, bool with_mode)
{
	struct sftp_attrs a;
	attrs_clear(&a);
	if (with_mode) {
		a.flags = SSH_FILEXFER_ATTR_PERMISSIONS;
		a.perm = mode & 07777;
	}
	/* A file only read may go to the least busy connection; one written
	 * stays with the names (so that a stat after a write sees it). */
	bool reading = (o->flags & O_ACCMODE) == O_RDONLY && !(o->flags & (O_CREAT | O_TRUNC));
	struct sftp_client *conn = reading ? sftp_client_pick(o->fs->c) : o->fs->c;
	/* open@hashi: the exact mode and the caller's owner for a file it
	 * creates, and the attributes in its reply */
	bool hashi = o->step == 1 && has(conn, SFTP_HAS_HASHI_OPEN);
	struct sftp_msg *m;
	if (hashi) {
		uint32_t uid, gid;
		caller_owner(o, &uid, &gid);
		m = sftp_msg_new_ext(SFTP_EXT_HASHI_OPEN);
		wire_put_cstring(sftp_msg_buf(m), o->path);
		wire_put_u32(sftp_msg_buf(m), pflags_from_open(o->flags));
		wire_put_u32(sftp_msg_buf(m), mode & 07777);
		wire_put_u32(sftp_msg_buf(m), uid);
		wire_put_u32(sftp_msg_buf(m), gid);
	} else {
		m = sftp_msg_new(SSH_FXP_OPEN);
		wire_put_cstring(sftp_msg_buf(m), o->path);
		wire_put_u32(sftp_msg_buf(m), pflags_from_open(o->flags));
		attrs_put(sftp_msg_buf(m), &a);
	}
	struct open_join *j = g_new0(struct open_join, 1);
	j->o = o;
	j->conn = conn;
	bool with_lstat = !hashi &&
			  (o->step == 1 || (o->fs->cfg.auto_cache && !o->fs->cfg.kernel_cache));
	j->left = with_lstat ? 2 : 1;
	o->gen = cache_gen(o->fs->cache);
	sftp_submit(conn, m, join_open_cb, j);
	if (with_lstat)
		stat_path(conn, o->path, join_lstat_cb, j);
}

/* ---- create behind ------------------------------------------------------ */

/* A new file (O_EXCL) as the server made it: its owner, and what its umask
 * took from the mode asked for (o->mode), for files created behind. */
static void learn_creator(struct op *o)
{
	const struct sftp_attrs *a = &o->attrs.v3;
	uint32_t asked = o->mode & 07777, got = a->perm & 07777;
	if (!(a->flags & SSH_FILEXFER_ATTR_UIDGID) || (got & ~asked))
		return;
	/* the group is the creator's only where the parent does not set it */
	char *dir = g_path_get_dirname(o->path);
	uint32_t pu, pg, pp;
	bool plain = cache_get_owner(o->fs->cache, dir, &pu, &pg, &pp) && !(pp & S_ISGID);
	g_free(dir);
	if (!plain)
		return;
	pthread_mutex_lock(&o->fs->lock);
	o->fs->creator_known = true;
	o->fs->creator_uid = a->uid;
	o->fs->creator_gid = a->gid;
	o->fs->creator_umask = asked & ~got;
	pthread_mutex_unlock(&o->fs->lock);
}

/* The OPEN of a file created behind. */
struct behind {
	struct fs *fs;
	struct file *f;
	char *path;
	bool excl;
	int err;
};

static void behind_settled(struct behind *b, int err)
{
	if (err) {
		/* nothing is there of ours: stat asks the server again */
		cache_invalidate_entry(b->fs->cache, b->path);
		log_debug("create of %s behind the kernel's answer failed: %s (held for close)",
			  b->path, strerror(err));
	}
	file_open_settle(b->f, err);
	g_free(b->path);
	g_free(b);
}

static void behind_refine_cb(void *arg, struct sftp_reply *r)
{
	struct behind *b = arg;
	/* O_EXCL and a bare "failure": is the name taken? */
	behind_settled(b, r->err == 0 ? EEXIST : b->err);
}

static void behind_open_cb(void *arg, struct sftp_reply *r)
{
	struct behind *b = arg;
	if (!r->err) {
		behind_settled(b, 0);
		return;
	}
	b->err = reply_errno(r);
	if (b->excl && r->type == SSH_FXP_STATUS && r->status == SSH_FX_FAILURE && !r->sys_errno) {
		b->err = EPERM;
		stat_path(b->fs->c, b->path, behind_refine_cb, b);
		return;
	}
	behind_settled(b, b->err);
}

static void discard_later(void *arg)
{
	file_discard(arg);
}

static void create_behind_finish(void *arg)
{
	struct op *o = arg;
	struct fs *fs = o->fs;
	const struct fattr a = o->attrs;
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = node_ref(fs, o->path, &a);
	e.generation = 1;
	fill_stat(fs, &a, e.ino, &e.attr);
	e.attr_timeout = 0; /* believed, not known: the kernel asks us again */
	e.entry_timeout = fs->cfg.entry_timeout;
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_OPEN);
	uint8_t h[SFTP_VHANDLE_LEN];
	sftp_msg_early_handle(fs->c, m, h);
	struct file *f = file_new_pending(fs->files, fs->c, e.ino, o->flags, &a, h, sizeof(h));
	struct behind *b = g_new0(struct behind, 1);
	b->fs = fs;
	b->f = f;
	b->path = g_strdup(o->path);
	b->excl = (o->flags & O_EXCL) != 0;
	struct sftp_attrs sa;
	attrs_clear(&sa);
	sa.flags = SSH_FILEXFER_ATTR_PERMISSIONS;
	sa.perm = o->mode & 07777;
	wire_put_cstring(sftp_msg_buf(m), o->path);
	wire_put_u32(sftp_msg_buf(m), pflags_from_open(o->flags));
	attrs_put(sftp_msg_buf(m), &sa);
	/* sent before the kernel hears of the file: whatever it sends next
	 * for the name goes behind it, and requests on the handle may go
	 * before the server answers it */
	sftp_submit(fs->c, m, behind_open_cb, b);
	o->fi.fh = (uint64_t)(uintptr_t)f;
	node_add_file(fs, e.ino, f);
	if (fuse_reply_create(o->req, &e, &o->fi) != 0) {
		node_remove_file(fs, e.ino, f);
		node_forget(fs, e.ino, 1);
		file_after_writes(f, discard_later, f);
	}
	op_free(o);
}

/* Answer a create at once, the OPEN behind it, where success is certain
 * but for a race: a regular file, a name known absent (O_EXCL says so
 * itself), a parent our remote user may write to, with a fresh cache. */
static bool create_behind(struct op *o, fuse_ino_t parent, mode_t mode)
{
	struct fs *fs = o->fs;
	if (fs->cfg.sync_create || !cache_enabled(fs->cache) || (mode & S_IFMT) != S_IFREG ||
	    (o->mode & (S_ISUID | S_ISGID)) || has(fs->c, SFTP_HAS_HASHI_OPEN))
		return false;
	pthread_mutex_lock(&fs->lock);
	bool known = fs->creator_known;
	uint32_t uid = fs->creator_uid, gid = fs->creator_gid, um = fs->creator_umask;
	pthread_mutex_unlock(&fs->lock);
	if (!known)
		return false;
	struct fattr cur;
	enum cache_result there = cache_get_attrs(fs->cache, o->path, &cur, NULL);
	if (there == CACHE_HIT || (there == CACHE_MISS && !(o->flags & O_EXCL)))
		return false;
	/* (a name made in it drops its attributes, not its owner and mode) */
	char *dir = node_path(fs, parent);
	uint32_t pu, pg, pp;
	bool ok = dir && cache_get_owner(fs->cache, dir, &pu, &pg, &pp);
	g_free(dir);
	const uint32_t need = SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_UIDGID;
	if (!ok || !S_ISDIR(pp) ||
	    !(uid == 0 || (pu == uid && (pp & (S_IWUSR | S_IXUSR)) == (S_IWUSR | S_IXUSR))))
		return false;
	if (!files_behind_reserve(fs->files))
		return false; /* enough on their way: wait, as without */
	struct fattr a;
	memset(&a, 0, sizeof(a));
	a.v3.flags = SSH_FILEXFER_ATTR_SIZE | need | SSH_FILEXFER_ATTR_ACMODTIME;
	a.v3.size = 0;
	a.v3.uid = uid;
	a.v3.gid = (pp & S_ISGID) ? pg : gid;
	a.v3.perm = S_IFREG | (o->mode & 07777 & ~um);
	a.v3.atime = a.v3.mtime = (uint32_t)time(NULL);
	o->attrs = a;
	cache_entry_added(fs->cache, o->path);
	cache_put_attrs(fs->cache, o->path, &a, cache_gen(fs->cache));
	log_debug("create of %s answered at once, its OPEN behind", o->path);
	ensure_ids(fs, &o->attrs, 1, sizeof(o->attrs), create_behind_finish, o);
	return true;
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct op *o = op_new(req);
	o->path = child_path(o->fs, parent, name);
	if (!o->path) {
		reply_err_free(o, errno);
		return;
	}
	o->fi = *fi;
	o->flags = fi->flags | O_CREAT;
	o->step = 1;
	o->mode = mode & 07777 & ~fuse_req_ctx(req)->umask;
	if (create_behind(o, parent, mode))
		return;
	send_open(o, mode & ~fuse_req_ctx(req)->umask, true);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct op *o = op_new(req);
	o->ino = ino;
	o->path = node_path(o->fs, ino);
	if (!o->path) {
		reply_err_free(o, ESTALE);
		return;
	}
	o->fi = *fi;
	o->flags = fi->flags & ~(O_CREAT | O_EXCL);
	if (o->flags & O_TRUNC)
		files_changed(o->fs->files, ino);
	node_wait_created(o->fs, ino);
	send_open(o, 0, false);
}

static void ignore_cb(void *arg, struct sftp_reply *r)
{
	(void)arg;
	(void)r;
}

static void mknod_open_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (r->err) {
		if (!failure_refined(o, r, REFINE_CREATE, o->path))
			reply_err_free(o, reply_errno(r));
		return;
	}
	/* A file is made; no handle is wanted. */
	cache_entry_added(o->fs->cache, o->path);
	const uint8_t *h;
	uint32_t hlen;
	if (r->type == SSH_FXP_HANDLE && !wire_get_string(&r->body, &h, &hlen))
		sftp_handle_req(o->fs->c, SSH_FXP_CLOSE, h, hlen, ignore_cb, NULL);
	stat_path(o->fs->c, o->path, entry_lstat_cb, o);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	if (has(((struct fs *)fuse_req_userdata(req))->c, SFTP_HAS_HASHI_MKNOD)) {
		struct op *o = op_new(req);
		o->path = child_path(o->fs, parent, name);
		if (!o->path) {
			reply_err_free(o, errno);
			return;
		}
		mknod_hashi(o, (mode & S_IFMT) | (mode & 07777 & ~fuse_req_ctx(req)->umask), rdev, NULL);
		return;
	}
	if (!S_ISREG(mode)) {
		/* SFTP cannot make devices, FIFOs or sockets. */
		fuse_reply_err(req, EPERM);
		return;
	}
	struct op *o = op_new(req);
	o->path = child_path(o->fs, parent, name);
	if (!o->path) {
		reply_err_free(o, errno);
		return;
	}
	struct sftp_attrs a;
	attrs_clear(&a);
	a.flags = SSH_FILEXFER_ATTR_PERMISSIONS;
	a.perm = mode & 07777 & ~fuse_req_ctx(req)->umask;
	o->flags = O_WRONLY | O_CREAT | O_EXCL;
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_OPEN);
	wire_put_cstring(sftp_msg_buf(m), o->path);
	wire_put_u32(sftp_msg_buf(m), SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_EXCL);
	attrs_put(sftp_msg_buf(m), &a);
	sftp_submit(o->fs->c, m, mknod_open_cb, o);
}

/* Reads, writes, flush, fsync and release: file.c, per open file. */
static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	file_read(file_of(fi), req, size, off);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct file *f = file_of(fi);
	cache_changed_ino(fs, ino);
	file_write(f, req, buf, size, off);
	struct fattr k;
	bool exact;
	if (file_is_pending(f) && file_known(f, fs->cfg.cache.stat_timeout, &k, &exact)) {
		/* created behind: the server has none of it yet; a lookup
		 * sees the size written */
		char *p = node_live_path(fs, ino);
		if (p)
			cache_put_attrs(fs->cache, p, &k, cache_gen(fs->cache));
		g_free(p);
	}
}

static struct sftp_client *locks_flush(struct fs *fs, fuse_ino_t ino, uint64_t owner);

struct flush_wait {
	fuse_req_t req;
	struct file *f;
};

/* The server answers in order: once this reply is in, the CLOSE of the lock
 * handle sent before it is done, and the locks are gone as close(2) says. */
static void flush_barrier_cb(void *arg, struct sftp_reply *r)
{
	(void)r;
	struct flush_wait *w = arg;
	file_flush(w->f, w->req);
	g_free(w);
}

static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sftp_client *lock_conn = locks_flush(fuse_req_userdata(req), ino, fi->lock_owner);
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		cache_changed_ino(fuse_req_userdata(req), ino);
	if (lock_conn) {
		struct flush_wait *w = g_new(struct flush_wait, 1);
		*w = (struct flush_wait){ req, file_of(fi) };
		sftp_path_req(lock_conn, SSH_FXP_REALPATH, ".", flush_barrier_cb, w);
		return;
	}
	file_flush(file_of(fi), req);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		cache_changed_ino(fs, ino);
	struct file *f = file_of(fi);
	node_remove_file(fs, f->ino, f);
	file_release(f, req);
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	file_fsync(file_of(fi), req, datasync);
}

/* ---- directories -------------------------------------------------------- */

struct dirent_rec {
	char *name;
	struct fattr attrs;
	double ttl;           /* from our cache: seconds left; fresh: < 0 */
};

/* A listing being read from the server, or served from our cache. One is
 * made for each OPENDIR the kernel asks for, and in the background for a
 * directory whose names are about to be wanted (lookups in it, a traversal
 * of its parent). Once the handle comes back, READDIRs are kept in flight
 * (DIR_PIPELINE at a time) until EOF, whether or not the kernel asks, so
 * the end of a listing is known one round trip sooner; the handle is
 * closed at EOF, and nobody waits for the CLOSE. */
struct dir {
	struct fs *fs;
	fuse_ino_t ino;
	uint8_t handle[SFTP_MAX_HANDLE_LEN];
	uint32_t hlen;        /* 0: none (yet, or any more) */
	char *path;
	GArray *entries;      /* struct dirent_rec, in server order */
	size_t bytes;         /* what entries hold: records and names */
	bool eof;
	bool partial;         /* entries were dropped: do not cache the listing */
	uint64_t gen;         /* cache generation at OPENDIR */
	bool too_big;         /* the listing passed DIR_MAX_BYTES: EIO from now on */
	int err;              /* OPENDIR or READDIR failed: readers get it */
	bool finished;        /* nothing more will come */
	bool released;        /* the kernel let go of it: read no further */
	bool closing;         /* CLOSE sent */
	bool background;      /* no kernel handle: fetched for the cache */
	bool registered;      /* in fs->fetching (guarded by fs->lock) */
	unsigned inflight;    /* READDIRs sent, not yet applied */
	int refs;
	GQueue batches;       /* struct dbatch: replies, applied in order */
	GSList *readers;      /* struct readdir_op: kernel reads waiting for entries */
	struct op *opener;    /* the kernel's OPENDIR, answered at the HANDLE */
	GSList *waiters;      /* struct op: waiting for the whole listing (fs->lock) */
	pthread_mutex_t lock;
};

#define DIR_PIPELINE 3
/* Background listings in flight at most. */
#define DIR_FETCH_MAX 16
/* Lookups that miss in one directory before its listing is fetched. */
#define DIR_FETCH_MISSES 2

struct dbatch {
	struct dir *d;
	GArray *ents;         /* struct dirent_rec */
	bool done, eof;
	int err;
};

struct readdir_op {
	fuse_req_t req;
	struct fs *fs;
	struct dir *d;
	size_t size;
	off_t off;
	bool plus;
};

static void dir_free(struct dir *d)
{
	for (guint i = 0; i < d->entries->len; i++)
		free(g_array_index(d->entries, struct dirent_rec, i).name);
	g_array_free(d->entries, TRUE);
	pthread_mutex_destroy(&d->lock);
	g_free(d->path);
	g_free(d);
}

static struct dir *dir_alloc(struct fs *fs, char *path, fuse_ino_t ino)
{
	struct dir *d = g_new0(struct dir, 1);
	d->fs = fs;
	d->path = path;
	d->ino = ino;
	d->refs = 1;
	d->entries = g_array_new(FALSE, FALSE, sizeof(struct dirent_rec));
	g_queue_init(&d->batches);
	pthread_mutex_init(&d->lock, NULL);
	return d;
}

static void dir_unref(struct dir *d)
{
	pthread_mutex_lock(&d->lock);
	bool last = --d->refs == 0;
	pthread_mutex_unlock(&d->lock);
	if (last)
		dir_free(d);
}

static void dir_add(struct dir *d, const char *name, const struct fattr *a, double ttl)
{
	struct dirent_rec e = { .name = strdup(name), .attrs = *a, .ttl = ttl };
	g_array_append_val(d->entries, e);
}

static void dir_add_cached(void *arg, const char *name, const struct fattr *a, double ttl)
{
	dir_add(arg, name, a, ttl);
}

/* The whole listing from our cache: no handle on the server. */
static bool dir_from_cache(struct op *o)
{
	struct dir *d = dir_alloc(o->fs, o->path, o->ino);
	struct fattr dot;
	memset(&dot, 0, sizeof(dot));
	dot.v3.flags = SSH_FILEXFER_ATTR_PERMISSIONS;
	dot.v3.perm = S_IFDIR | 0755;
	dir_add(d, ".", &dot, -1);
	dir_add(d, "..", &dot, -1);
	if (!cache_get_dir(o->fs->cache, d->path, dir_add_cached, d)) {
		d->path = NULL;
		dir_free(d);
		return false;
	}
	o->path = NULL;
	d->eof = d->finished = true;
	o->fi.fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(o->req, &o->fi) != 0)
		dir_free(d);
	op_free(o);
	return true;
}

/* A listing name a server may send: see listing_name below. */
static char *listing_name(const char *dir, const uint8_t *s, uint32_t len);
static void readdir_fill(struct readdir_op *rd);
static void dir_batch_done(void *arg);

/* A listing that holds more than this (records and names) is a server
 * that never stops sending names: the directory gives EIO. */
#define DIR_MAX_BYTES (64u << 20)

static void dir_readdir_cb(void *arg, struct sftp_reply *r)
{
	struct dbatch *b = arg;
	struct dir *d = b->d;
	if (r->type == SSH_FXP_STATUS && r->status == SSH_FX_EOF) {
		b->eof = true;
		dir_batch_done(b);
		return;
	}
	if (r->err) {
		b->err = reply_errno(r);
		dir_batch_done(b);
		return;
	}
	uint32_t count;
	bool full = r->type == SSH_FXP_EXTENDED_REPLY; /* readdir@hashi */
	if ((r->type != SSH_FXP_NAME && !full) || wire_get_u32(&r->body, &count)) {
		log_error("malformed READDIR reply from the server");
		b->err = EIO;
		dir_batch_done(b);
		return;
	}
	if (count == 0)
		b->eof = true; /* nothing more would come of asking again */
	for (uint32_t i = 0; i < count; i++) {
		struct dirent_rec e = { .ttl = -1 };
		const uint8_t *name, *longname;
		uint32_t nlen, llen;
		struct sftp_attrs a;
		/* readdir@hashi: name, full attributes; READDIR: name, longname, ATTRS */
		if (wire_get_string(&r->body, &name, &nlen) ||
		    (full ? reply_fattr(r, &e.attrs) != 0
			  : wire_get_string(&r->body, &longname, &llen) != 0 ||
				    attrs_get(&r->body, &a) != 0)) {
			log_error("malformed READDIR reply from the server");
			d->partial = true; /* read only by this batch's turn, under no race */
			break;
		}
		if (!full)
			fattr_from_v3(&e.attrs, &a);
		e.name = listing_name(d->path, name, nlen);
		if (!e.name) {
			d->partial = true; /* what we hold is not the whole listing */
			continue;
		}
		g_array_append_val(b->ents, e);
	}
	if (b->ents->len)
		ensure_ids(d->fs, &g_array_index(b->ents, struct dirent_rec, 0).attrs, b->ents->len,
			   sizeof(struct dirent_rec), dir_batch_done, b);
	else
		dir_batch_done(b);
}

/* Under d->lock: a READDIR to send (its batch queued in order). */
static struct dbatch *dir_next_locked(struct dir *d)
{
	struct dbatch *b = g_new0(struct dbatch, 1);
	b->d = d;
	b->ents = g_array_new(FALSE, FALSE, sizeof(struct dirent_rec));
	g_queue_push_tail(&d->batches, b);
	d->inflight++;
	d->refs++;
	return b;
}

static void dir_send_readdir(struct dbatch *b)
{
	struct dir *d = b->d;
	struct sftp_client *c = d->fs->c;
	if (has(c, SFTP_HAS_HASHI_READDIR)) {
		struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_HASHI_READDIR);
		wire_put_string(sftp_msg_buf(m), d->handle, d->hlen);
		sftp_submit(c, m, dir_readdir_cb, b);
		return;
	}
	sftp_handle_req(c, SSH_FXP_READDIR, d->handle, d->hlen, dir_readdir_cb, b);
}

static void ignore_reply_cb(void *arg, struct sftp_reply *r)
{
	(void)arg;
	(void)r;
}

/* What a change of d's state asks for, decided under d->lock and done
 * after it. */
struct dir_todo {
	struct dbatch *send[DIR_PIPELINE];
	unsigned nsend;
	bool close;
	uint8_t handle[SFTP_MAX_HANDLE_LEN];
	uint32_t hlen;
	bool complete;        /* d has just finished: unregister, run waiters */
	GSList *readers;      /* kernel reads that can be answered now */
};

static void dir_step_locked(struct dir *d, struct dir_todo *t)
{
	memset(t, 0, sizeof(*t));
	bool more = !d->eof && !d->err && !d->too_big && !d->released && d->hlen;
	while (more && d->inflight < DIR_PIPELINE && t->nsend < DIR_PIPELINE)
		t->send[t->nsend++] = dir_next_locked(d);
	if (!more && d->inflight == 0 && !d->finished) {
		d->finished = true;
		t->complete = true;
		if (d->eof && !d->partial && !d->err && !d->too_big &&
		    cache_enabled(d->fs->cache)) {
			const char **names = g_new(const char *, d->entries->len + 1);
			for (guint i = 0; i < d->entries->len; i++)
				names[i] = g_array_index(d->entries, struct dirent_rec, i).name;
			(d->background ? cache_put_dir_ahead : cache_put_dir)(
				d->fs->cache, d->path, names, d->entries->len, d->gen);
			g_free(names);
		}
	}
	if (d->finished && d->hlen && !d->closing) {
		d->closing = true;
		t->close = true;
		memcpy(t->handle, d->handle, d->hlen);
		t->hlen = d->hlen;
		d->hlen = 0;
	}
	GSList *keep = NULL;
	for (GSList *l = d->readers; l; l = l->next) {
		struct readdir_op *rd = l->data;
		if (d->finished || d->entries->len > (size_t)rd->off || d->err || d->too_big)
			t->readers = g_slist_prepend(t->readers, rd);
		else
			keep = g_slist_prepend(keep, rd);
	}
	g_slist_free(d->readers);
	d->readers = g_slist_reverse(keep);
	t->readers = g_slist_reverse(t->readers);
}

static void dir_waiters_run(struct fs *fs, struct dir *d);

/* Answer a kernel read from what d holds (or its error). */
static void readdir_answer(struct readdir_op *rd)
{
	struct dir *d = rd->d;
	pthread_mutex_lock(&d->lock);
	int err = d->too_big ? EIO : 0;
	/* an error after some names: the names first, then the error */
	if (!err && d->err && d->entries->len <= (size_t)rd->off)
		err = d->err;
	pthread_mutex_unlock(&d->lock);
	if (err) {
		fuse_reply_err(rd->req, err);
		g_free(rd);
		return;
	}
	readdir_fill(rd);
}

/* Do what dir_step_locked decided (d->lock not held). */
static void dir_todo_run(struct dir *d, struct dir_todo *t)
{
	for (unsigned i = 0; i < t->nsend; i++)
		dir_send_readdir(t->send[i]);
	if (t->close)
		sftp_handle_req(d->fs->c, SSH_FXP_CLOSE, t->handle, t->hlen, ignore_reply_cb, NULL);
	for (GSList *l = t->readers; l; l = l->next)
		readdir_answer(l->data);
	g_slist_free(t->readers);
	if (t->complete)
		dir_waiters_run(d->fs, d);
}

static void dbatch_free(struct dbatch *b)
{
	for (guint i = 0; i < b->ents->len; i++)
		free(g_array_index(b->ents, struct dirent_rec, i).name);
	g_array_free(b->ents, TRUE);
	g_free(b);
}

/* A READDIR's answer is ready (its owners known): apply the batches that
 * are ready, in the order they were sent. */
static void dir_batch_done(void *arg)
{
	struct dbatch *b = arg;
	struct dir *d = b->d;
	struct fs *fs = d->fs;
	pthread_mutex_lock(&d->lock);
	b->done = true;
	unsigned applied = 0;
	while ((b = g_queue_peek_head(&d->batches)) && b->done) {
		g_queue_pop_head(&d->batches);
		applied++;
		d->inflight--;
		bool ignore = d->eof || d->err || d->too_big;
		for (guint i = 0; i < b->ents->len && !ignore; i++) {
			struct dirent_rec *e = &g_array_index(b->ents, struct dirent_rec, i);
			g_array_append_val(d->entries, *e);
			e->name = NULL; /* d owns it now */
			struct dirent_rec *de =
				&g_array_index(d->entries, struct dirent_rec, d->entries->len - 1);
			if (cache_enabled(fs->cache) && strcmp(de->name, ".") != 0 &&
			    strcmp(de->name, "..") != 0) {
				char *path = join_path(d->path, de->name);
				cache_put_attrs(fs->cache, path, &de->attrs, d->gen);
				g_free(path);
			}
			d->bytes += sizeof(*de) + strlen(de->name) + 1;
			if (d->bytes > DIR_MAX_BYTES) {
				log_error("the listing of %s is over %u MiB (%u entries): the server "
					  "never ends it; giving up", d->path, DIR_MAX_BYTES >> 20,
					  d->entries->len);
				d->too_big = true;
			}
		}
		if (!ignore && b->err)
			d->err = b->err;
		if (!ignore && b->eof)
			d->eof = true;
		dbatch_free(b);
	}
	struct dir_todo t;
	dir_step_locked(d, &t);
	d->refs -= (int)applied; /* never the last: the caller of dir_todo_run holds one */
	d->refs++;
	pthread_mutex_unlock(&d->lock);
	dir_todo_run(d, &t);
	dir_unref(d);
}

/* ---- listings fetched ahead (fs->fetching: path -> struct dir) ---------- */

/* Run (or drop) what waited for d's whole listing. */
static void lookup_resume(struct op *o);
static void opendir_resume(struct op *o);

static void dir_waiters_run(struct fs *fs, struct dir *d)
{
	pthread_mutex_lock(&fs->lock);
	if (d->registered) {
		g_hash_table_remove(fs->fetching, d->path);
		d->registered = false;
		if (d->background)
			fs->fetches--;
	}
	GSList *w = g_slist_reverse(d->waiters);
	d->waiters = NULL;
	pthread_mutex_unlock(&fs->lock);
	for (GSList *l = w; l; l = l->next) {
		struct op *o = l->data;
		if (o->step == 1)
			lookup_resume(o);
		else
			opendir_resume(o);
	}
	g_slist_free(w);
}

/* o (a lookup: step 1; an opendir: step 2) waits for the listing of dir
 * fetched now; false if none is. */
static bool dir_wait(struct fs *fs, const char *dir, struct op *o)
{
	pthread_mutex_lock(&fs->lock);
	struct dir *d = g_hash_table_lookup(fs->fetching, dir);
	if (d)
		d->waiters = g_slist_prepend(d->waiters, o);
	pthread_mutex_unlock(&fs->lock);
	return d != NULL;
}

static void dir_opendir_cb(void *arg, struct sftp_reply *r)
{
	struct dir *d = arg;
	const uint8_t *h = NULL;
	uint32_t hlen = 0;
	int err = 0;
	if (r->err) {
		err = reply_errno(r);
	} else if (r->type != SSH_FXP_HANDLE || wire_get_string(&r->body, &h, &hlen) ||
		   hlen == 0 || hlen > SFTP_MAX_HANDLE_LEN) {
		log_error("malformed HANDLE reply from the server");
		err = EIO;
	}
	pthread_mutex_lock(&d->lock);
	struct op *o = d->opener;
	d->opener = NULL;
	if (err) {
		d->err = err;
	} else {
		memcpy(d->handle, h, hlen);
		d->hlen = hlen;
	}
	struct dir_todo t;
	dir_step_locked(d, &t);
	pthread_mutex_unlock(&d->lock);
	if (o) {
		if (err) {
			/* no handle for the kernel: its reference goes (never
			 * the last: the OPENDIR's is ours until below) */
			pthread_mutex_lock(&d->lock);
			d->released = true;
			d->refs--;
			pthread_mutex_unlock(&d->lock);
			reply_err_free(o, err);
		} else {
			o->fi.fh = (uint64_t)(uintptr_t)d;
			if (fuse_reply_open(o->req, &o->fi) != 0) {
				pthread_mutex_lock(&d->lock);
				d->released = true;
				d->refs--; /* the kernel's, never the last (ours) */
				pthread_mutex_unlock(&d->lock);
			}
			op_free(o);
		}
	}
	dir_todo_run(d, &t);
	dir_unref(d); /* the OPENDIR's */
}

/* Read the listing of path into the cache in the background, unless it is
 * held or on its way. Returns false when DIR_FETCH_MAX are on their way
 * already (path is not fetched). */
static bool dir_fetch(struct fs *fs, const char *path)
{
	if (!cache_enabled(fs->cache))
		return false;
	pthread_mutex_lock(&fs->lock);
	bool room = fs->fetches < DIR_FETCH_MAX;
	bool go = room && !g_hash_table_contains(fs->fetching, path);
	struct dir *d = NULL;
	if (go) {
		d = dir_alloc(fs, g_strdup(path), 0);
		d->background = true;
		d->released = false;
		d->registered = true;
		d->refs = 1; /* the OPENDIR's */
		d->gen = cache_gen(fs->cache);
		g_hash_table_insert(fs->fetching, d->path, d);
		fs->fetches++;
	}
	pthread_mutex_unlock(&fs->lock);
	if (!d)
		return room;
	if (cache_has_dir(fs->cache, path)) {
		/* held after all: nothing to fetch */
		pthread_mutex_lock(&d->lock);
		d->finished = true;
		pthread_mutex_unlock(&d->lock);
		dir_waiters_run(fs, d);
		dir_unref(d);
		return true;
	}
	sftp_path_req(fs->c, SSH_FXP_OPENDIR, path, dir_opendir_cb, d);
	return true;
}

/* A lookup missed in dir: after a few, its listing is fetched, so that the
 * names after them come from it (git status stats every tracked file). */
static void dir_note_miss(struct fs *fs, const char *path)
{
	if (!cache_enabled(fs->cache))
		return;
	const char *slash = strrchr(path, '/');
	if (!slash)
		return;
	char *dir = slash == path ? g_strdup("/") : g_strndup(path, (gsize)(slash - path));
	pthread_mutex_lock(&fs->lock);
	if (g_hash_table_size(fs->misses) > 1024)
		g_hash_table_remove_all(fs->misses);
	guint n = GPOINTER_TO_UINT(g_hash_table_lookup(fs->misses, dir)) + 1;
	bool go = n >= DIR_FETCH_MISSES;
	if (go)
		g_hash_table_remove(fs->misses, dir);
	else
		g_hash_table_replace(fs->misses, g_strdup(dir), GUINT_TO_POINTER(n));
	pthread_mutex_unlock(&fs->lock);
	if (go)
		dir_fetch(fs, dir);
	g_free(dir);
}

struct sibs {
	const char *dir;
	GPtrArray *paths;
};

#define SIBS_MAX 4096

static void sib_add(void *arg, const char *name, const struct fattr *a, double ttl)
{
	(void)ttl;
	struct sibs *s = arg;
	if ((a->v3.flags & SSH_FILEXFER_ATTR_PERMISSIONS) && S_ISDIR(a->v3.perm) &&
	    s->paths->len < SIBS_MAX)
		g_ptr_array_add(s->paths, join_path(s->dir, name));
}

/* The kernel opens path: once a second subdirectory of one parent is
 * opened (find, ls -R, rm -r, du), the listings of its other subdirectories
 * are fetched ahead, side by side, instead of one after the other: at each
 * open as many as there is room for (DIR_FETCH_MAX on their way), those
 * after path in the listing's order (a traversal's) first. */
static void dir_note_open(struct fs *fs, const char *path)
{
	if (!cache_enabled(fs->cache))
		return;
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return;
	char *parent = g_strndup(path, (gsize)(slash - path));
	pthread_mutex_lock(&fs->lock);
	if (g_hash_table_size(fs->opens) > 1024)
		g_hash_table_remove_all(fs->opens);
	guint n = GPOINTER_TO_UINT(g_hash_table_lookup(fs->opens, parent)) + 1;
	g_hash_table_replace(fs->opens, g_strdup(parent), GUINT_TO_POINTER(n));
	pthread_mutex_unlock(&fs->lock);
	if (n >= 2) {
		struct sibs s = { .dir = parent, .paths = g_ptr_array_new_with_free_func(g_free) };
		if (cache_peek_dir(fs->cache, parent, sib_add, &s)) {
			guint at = 0;
			while (at < s.paths->len && strcmp(s.paths->pdata[at], path) != 0)
				at++;
			guint start = at < s.paths->len ? at + 1 : 0;
			for (guint k = 0; k < s.paths->len; k++) {
				const char *p = s.paths->pdata[(start + k) % s.paths->len];
				if (strcmp(p, path) != 0 && !cache_has_dir(fs->cache, p) &&
				    !dir_fetch(fs, p))
					break; /* no room: the next open goes on */
			}
		}
		g_ptr_array_free(s.paths, TRUE);
	}
	g_free(parent);
}

/* ---- opendir, readdir, releasedir --------------------------------------- */

static void opendir_send(struct op *o)
{
	struct fs *fs = o->fs;
	struct dir *d = dir_alloc(fs, o->path, o->ino);
	o->path = NULL;
	d->refs = 2; /* the OPENDIR's, and the kernel's handle */
	d->opener = o;
	d->gen = cache_gen(fs->cache);
	/* lookups in it wait for it rather than ask one by one */
	pthread_mutex_lock(&fs->lock);
	if (cache_enabled(fs->cache) && !g_hash_table_contains(fs->fetching, d->path)) {
		g_hash_table_insert(fs->fetching, d->path, d);
		d->registered = true;
	}
	pthread_mutex_unlock(&fs->lock);
	sftp_path_req(fs->c, SSH_FXP_OPENDIR, d->path, dir_opendir_cb, d);
}

/* A listing fetched ahead has arrived (or failed): from the cache if it is
 * there now, else the server. */
static void opendir_resume(struct op *o)
{
	if (dir_from_cache(o))
		return;
	opendir_send(o);
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct op *o = op_new(req);
	o->path = node_path(o->fs, ino);
	if (!o->path) {
		reply_err_free(o, ESTALE);
		return;
	}
	o->fi = *fi;
	o->ino = ino;
	dir_note_open(o->fs, o->path);
	if (dir_from_cache(o))
		return;
	o->step = 2;
	if (dir_wait(o->fs, o->path, o))
		return;
	opendir_send(o);
}

/* A name a server may send in a listing, as a new string; NULL (logged)
 * for one that is empty, holds a '/' or a NUL, or is too long for a name.
 * "." and ".." pass: the kernel knows them and never looks them up. */
static char *listing_name(const char *dir, const uint8_t *s, uint32_t len)
{
	char shown[300];
	printable(shown, sizeof(shown), s, len > 64 ? 64 : len);
	if (len > NAME_MAX) {
		log_error("server sent a name of %u bytes in a directory listing of %s (the limit is "
			  "%d): \"%s...\" left out", len, dir, NAME_MAX, shown);
		return NULL;
	}
	if (len == 0 || memchr(s, '/', len) || memchr(s, '\0', len)) {
		log_error("server sent an invalid name in a directory listing of %s: \"%s\" left out",
			  dir, shown);
		return NULL;
	}
	return strndup((const char *)s, len); /* freed with free(), as the cache's */
}

static fuse_ino_t dir_entry_ino(struct fs *fs, struct dir *d, const char *name)
{
	if (strcmp(name, ".") == 0)
		return d->ino;
	if (strcmp(name, "..") == 0)
		return FUSE_ROOT_ID;
	char *path = join_path(d->path, name);
	fuse_ino_t ino = 0;
	pthread_mutex_lock(&fs->lock);
	struct node *n = g_hash_table_lookup(fs->by_path, path);
	if (n)
		ino = n->ino;
	pthread_mutex_unlock(&fs->lock);
	if (!ino)
		ino = ((fuse_ino_t)g_str_hash(path) << 20) | 0x8000000000000000ULL;
	g_free(path);
	return ino;
}

static void readdir_fill(struct readdir_op *rd)
{
	struct fs *fs = rd->fs;
	struct dir *d = rd->d;
	char *buf = g_malloc(rd->size);
	size_t used = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t i = (size_t)rd->off; i < d->entries->len; i++) {
		struct dirent_rec *e = &g_array_index(d->entries, struct dirent_rec, i);
		size_t n;
		bool dots = strcmp(e->name, ".") == 0 || strcmp(e->name, "..") == 0;
		if (rd->plus) {
			struct fuse_entry_param ep;
			memset(&ep, 0, sizeof(ep));
			char *path = NULL;
			if (!dots) {
				path = join_path(d->path, e->name);
				ep.ino = node_ref(fs, path, &e->attrs);
				ep.generation = 1;
				ep.attr_timeout = kernel_timeout(fs->cfg.attr_timeout, e->ttl);
				ep.entry_timeout = kernel_timeout(fs->cfg.entry_timeout, e->ttl);
			}
			fill_stat(fs, &e->attrs, ep.ino, &ep.attr);
			if (dots) /* no lookup is made, but readdir(3) skips inode 0 */
				ep.attr.st_ino = e->name[1] ? FUSE_ROOT_ID : d->ino;
			n = fuse_add_direntry_plus(rd->req, buf + used, rd->size - used, e->name,
						   &ep, (off_t)(i + 1));
			if (n > rd->size - used) {
				if (ep.ino)
					node_forget(fs, ep.ino, 1);
				g_free(path);
				break;
			}
			g_free(path);
		} else {
			struct stat st;
			fill_stat(fs, &e->attrs, 0, &st);
			st.st_ino = dir_entry_ino(fs, d, e->name);
			n = fuse_add_direntry(rd->req, buf + used, rd->size - used, e->name, &st,
					      (off_t)(i + 1));
			if (n > rd->size - used)
				break;
		}
		used += n;
	}
	pthread_mutex_unlock(&d->lock);
	fuse_reply_buf(rd->req, buf, used);
	g_free(buf);
	g_free(rd);
}


static void readdir_common(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi,
			   bool plus)
{
	struct readdir_op *rd = g_new0(struct readdir_op, 1);
	rd->req = req;
	rd->fs = fuse_req_userdata(req);
	rd->d = (struct dir *)(uintptr_t)fi->fh;
	rd->size = size;
	rd->off = off;
	rd->plus = plus;
	struct dir *d = rd->d;
	pthread_mutex_lock(&d->lock);
	bool now = d->entries->len > (size_t)off || d->finished || d->err || d->too_big;
	if (!now)
		d->readers = g_slist_append(d->readers, rd);
	pthread_mutex_unlock(&d->lock);
	if (now)
		readdir_answer(rd);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	readdir_common(req, size, off, fi, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)ino;
	readdir_common(req, size, off, fi, true);
}

/* The kernel is done with it: no more READDIRs; the handle is closed (if
 * the listing has not closed it already), and nobody waits for that. */
static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dir *d = (struct dir *)(uintptr_t)fi->fh;
	pthread_mutex_lock(&d->lock);
	d->released = true;
	struct dir_todo t;
	dir_step_locked(d, &t);
	pthread_mutex_unlock(&d->lock);
	dir_todo_run(d, &t);
	fuse_reply_err(req, 0);
	dir_unref(d);
}

static void fs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* ---- extended attributes, locks, fallocate, SEEK_DATA (hashi servers) -- */

/* A file's target for a hashi request: its name (the link itself), or,
 * once unlinked, one of its open handles. false: stale. */
static bool op_target(struct op *o, fuse_ino_t ino)
{
	o->ino = ino;
	if (node_unlinked_handle(o->fs, ino, &o->tmpfile)) {
		o->file = &o->tmpfile;
		return true;
	}
	o->path = node_path(o->fs, ino);
	return o->path != NULL;
}

static struct sftp_msg *target_msg(struct op *o, const char *ext)
{
	struct sftp_msg *m = sftp_msg_new_ext(ext);
	if (o->file)
		sftp_target_put(sftp_msg_buf(m), NULL, o->file->handle, o->file->hlen, 0);
	else
		sftp_target_put(sftp_msg_buf(m), o->path, NULL, 0, HASHI_TARGET_NOFOLLOW);
	return m;
}

/* getxattr and listxattr: a value, or its size when size is 0. */
static void xattr_value_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	const uint8_t *v;
	uint32_t len;
	if (r->err) {
		reply_err_free(o, reply_errno(r));
		return;
	}
	if (r->type != SSH_FXP_EXTENDED_REPLY || wire_get_string(&r->body, &v, &len)) {
		log_error("malformed xattr reply from the server");
		reply_err_free(o, EIO);
		return;
	}
	size_t size = (size_t)o->flags;
	if (size == 0)
		fuse_reply_xattr(o->req, len);
	else if (len > size)
		fuse_reply_err(o->req, ERANGE);
	else
		fuse_reply_buf(o->req, (const char *)v, len);
	op_free(o);
}

static struct op *xattr_op(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fuse_req_userdata(req);
	if (!has(fs->c, SFTP_HAS_HASHI_XATTR)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return NULL;
	}
	struct op *o = op_new(req);
	if (!op_target(o, ino)) {
		reply_err_free(o, ESTALE);
		return NULL;
	}
	return o;
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct op *o = xattr_op(req, ino);
	if (!o)
		return;
	o->flags = (int)(size > HASHI_XATTR_MAX ? HASHI_XATTR_MAX : size);
	struct sftp_msg *m = target_msg(o, SFTP_EXT_HASHI_GETXATTR);
	wire_put_cstring(sftp_msg_buf(m), name);
	sftp_submit(o->fs->c, m, xattr_value_cb, o);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct op *o = xattr_op(req, ino);
	if (!o)
		return;
	o->flags = (int)(size > HASHI_XATTR_MAX ? HASHI_XATTR_MAX : size);
	sftp_submit(o->fs->c, target_msg(o, SFTP_EXT_HASHI_LISTXATTR), xattr_value_cb, o);
}

static void xattr_status_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	if (o->path) /* ctime */
		cache_invalidate(o->fs->cache, o->path);
	reply_err_free(o, r->err ? reply_errno(r) : 0);
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct op *o = xattr_op(req, ino);
	if (!o)
		return;
	if (size > HASHI_XATTR_MAX) {
		reply_err_free(o, E2BIG);
		return;
	}
	struct sftp_msg *m = target_msg(o, SFTP_EXT_HASHI_SETXATTR);
	wire_put_cstring(sftp_msg_buf(m), name);
	wire_put_string(sftp_msg_buf(m), (const uint8_t *)value, (uint32_t)size);
	wire_put_u32(sftp_msg_buf(m), (uint32_t)flags & (HASHI_XATTR_CREATE | HASHI_XATTR_REPLACE));
	sftp_submit(o->fs->c, m, xattr_status_cb, o);
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct op *o = xattr_op(req, ino);
	if (!o)
		return;
	struct sftp_msg *m = target_msg(o, SFTP_EXT_HASHI_REMOVEXATTR);
	wire_put_cstring(sftp_msg_buf(m), name);
	sftp_submit(o->fs->c, m, xattr_status_cb, o);
}

static void fallocate_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	cache_changed_ino(o->fs, o->ino);
	reply_err_free(o, r->err ? reply_errno(r) : 0);
}

static void fallocate_send(void *arg)
{
	struct op *o = arg;
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_HASHI_FALLOCATE);
	struct wire_buf *b = sftp_msg_buf(m);
	wire_put_string(b, o->file->handle, o->file->hlen);
	wire_put_u32(b, (uint32_t)o->flags);
	wire_put_u64(b, o->off);
	wire_put_u64(b, o->len);
	sftp_submit(o->file->c, m, fallocate_cb, o);
}

/* fallocate@hashi on the open file's handle, behind its writes. */
static void fs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	if (!has(fs->c, SFTP_HAS_HASHI_FALLOCATE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	const int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
	if (mode & ~known) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	struct op *o = op_new(req);
	o->ino = ino;
	o->file = file_of(fi);
	o->flags = mode;
	o->off = (uint64_t)offset;
	o->len = (uint64_t)length;
	cache_changed_ino(fs, ino);
	files_changed(fs->files, ino);
	file_after_writes(o->file, fallocate_send, o);
}

static void lseek_cb(void *arg, struct sftp_reply *r);

static void lseek_send(void *arg)
{
	struct op *o = arg;
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_HASHI_LSEEK);
	struct wire_buf *b = sftp_msg_buf(m);
	wire_put_string(b, o->file->handle, o->file->hlen);
	wire_put_u64(b, o->off);
	wire_put_u32(b, (uint32_t)o->flags);
	sftp_submit(o->file->c, m, lseek_cb, o);
}

static void lseek_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	uint64_t off;
	if (r->err) {
		reply_err_free(o, reply_errno(r));
		return;
	}
	if (r->type != SSH_FXP_EXTENDED_REPLY || wire_get_u64(&r->body, &off) || off > INT64_MAX) {
		log_error("malformed lseek@hashi reply from the server");
		reply_err_free(o, EIO);
		return;
	}
	fuse_reply_lseek(o->req, (off_t)off);
	op_free(o);
}

static void fs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	(void)ino;
	struct fs *fs = fuse_req_userdata(req);
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (!has(fs->c, SFTP_HAS_HASHI_LSEEK)) {
		fuse_reply_err(req, ENOSYS); /* the kernel's answer: all data */
		return;
	}
	struct op *o = op_new(req);
	o->file = file_of(fi);
	/* after the writes still on their way, which may fill a hole */
	o->off = (uint64_t)off;
	o->flags = whence;
	file_after_writes(o->file, lseek_send, o);
}

/* Locks (lock@hashi). The server's locks belong to a handle. flock(2)
 * locks belong to an open file: its own handle carries them. POSIX locks
 * belong to a process (the kernel's lock owner): each (inode, owner) gets
 * a handle of its own, opened on the first lock and closed at the owner's
 * flush (close(2) of any of its descriptors of the file drops its locks,
 * as POSIX says). Limits: an unlinked file cannot be opened again, so its
 * POSIX locks go on the caller's handle (shared by every owner of that
 * open file); a lock handle is reopened by path after a reconnect, but
 * its locks are not taken again. */
struct lockh {
	fuse_ino_t ino;
	uint64_t owner;
	struct file *f;        /* NULL while being opened */
};

struct lock_op {
	struct fs *fs;
	fuse_req_t req;
	struct lockh *lh;      /* the owner's lock handle, or NULL: the open file's */
	uint8_t handle[SFTP_MAX_HANDLE_LEN];
	uint32_t hlen;
	struct sftp_client *c;
	uint32_t op, flags, type;
	uint64_t start, len;
	bool getlk;
	struct flock lk;
	int refs;              /* the request, an interrupt callback */
};

static char *lockh_key(fuse_ino_t ino, uint64_t owner)
{
	return g_strdup_printf("%" PRIu64 ":%" PRIx64, (uint64_t)ino, owner);
}

static void lock_op_unref(struct lock_op *lo)
{
	if (__atomic_sub_fetch(&lo->refs, 1, __ATOMIC_ACQ_REL) == 0)
		g_free(lo);
}

static void lock_interrupted(fuse_req_t req, void *arg)
{
	(void)req;
	struct lock_op *lo = arg;
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_HASHI_LOCK);
	struct wire_buf *b = sftp_msg_buf(m);
	wire_put_string(b, lo->handle, lo->hlen);
	wire_put_u32(b, HASHI_LOCK_CANCEL);
	wire_put_u32(b, 0);
	wire_put_u32(b, HASHI_LOCK_UNLCK);
	wire_put_u64(b, 0);
	wire_put_u64(b, 0);
	sftp_submit(lo->c, m, ignore_cb, NULL);
}

static void lock_cb(void *arg, struct sftp_reply *r)
{
	struct lock_op *lo = arg;
	if (lo->flags & HASHI_LOCK_WAIT) {
		/* No interrupt callback from now on: this returns once one
		 * running (it holds the request's lock) is done, so its
		 * reference can go. */
		fuse_req_interrupt_func(lo->req, NULL, NULL);
		lock_op_unref(lo);
	}
	if (r->err) {
		fuse_reply_err(lo->req, reply_errno(r));
	} else if (lo->getlk) {
		uint32_t type, pid;
		uint64_t start, len;
		if (r->type != SSH_FXP_EXTENDED_REPLY || wire_get_u32(&r->body, &type) ||
		    wire_get_u64(&r->body, &start) || wire_get_u64(&r->body, &len) ||
		    wire_get_u32(&r->body, &pid)) {
			log_error("malformed lock@hashi reply from the server");
			fuse_reply_err(lo->req, EIO);
		} else {
			struct flock fl = lo->lk;
			fl.l_type = type == HASHI_LOCK_RDLCK ? F_RDLCK :
				    type == HASHI_LOCK_WRLCK ? F_WRLCK : F_UNLCK;
			fl.l_whence = SEEK_SET;
			fl.l_start = (off_t)start;
			fl.l_len = (off_t)len;
			fl.l_pid = pid == 0xffffffffu ? 0 : (pid_t)pid;
			fuse_reply_lock(lo->req, &fl);
		}
	} else {
		fuse_reply_err(lo->req, 0);
	}
	lock_op_unref(lo);
}

static void lock_send(struct lock_op *lo)
{
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_HASHI_LOCK);
	struct wire_buf *b = sftp_msg_buf(m);
	wire_put_string(b, lo->handle, lo->hlen);
	wire_put_u32(b, lo->op);
	wire_put_u32(b, lo->flags);
	wire_put_u32(b, lo->type);
	wire_put_u64(b, lo->start);
	wire_put_u64(b, lo->len);
	if (lo->flags & HASHI_LOCK_WAIT) {
		lo->refs++;
		fuse_req_interrupt_func(lo->req, lock_interrupted, lo);
	}
	sftp_submit(lo->c, m, lock_cb, lo);
}

static void lock_use_file(struct lock_op *lo, struct file *f)
{
	memcpy(lo->handle, f->handle, f->hlen);
	lo->hlen = f->hlen;
	lo->c = f->c;
}

static void lockh_open_cb(void *arg, struct sftp_reply *r)
{
	struct lock_op *lo = arg;
	struct fs *fs = lo->fs;
	struct file *f = r->err ? NULL : file_from_handle(fs->files, fs->c, r, lo->lh->ino, O_RDWR);
	if (!f) {
		pthread_mutex_lock(&fs->lock);
		char *k = lockh_key(lo->lh->ino, lo->lh->owner);
		g_hash_table_remove(fs->locks, k);
		g_free(k);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(lo->req, r->err ? reply_errno(r) : EIO);
		lock_op_unref(lo);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	lo->lh->f = f;
	pthread_mutex_unlock(&fs->lock);
	lock_use_file(lo, f);
	lock_send(lo);
}

/* A POSIX lock request: on the owner's own handle (opened now if need be). */
static void posix_lock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		       struct flock *lock, bool get, bool sleep)
{
	struct fs *fs = fuse_req_userdata(req);
	struct lock_op *lo = g_new0(struct lock_op, 1);
	lo->fs = fs;
	lo->req = req;
	lo->refs = 1;
	lo->getlk = get;
	lo->lk = *lock;
	lo->op = get ? HASHI_LOCK_GET : HASHI_LOCK_SET;
	lo->flags = sleep ? HASHI_LOCK_WAIT : 0;
	lo->type = lock->l_type == F_RDLCK ? HASHI_LOCK_RDLCK :
		   lock->l_type == F_WRLCK ? HASHI_LOCK_WRLCK : HASHI_LOCK_UNLCK;
	/* the kernel gives start and end (OFFSET_MAX: to the end) */
	lo->start = (uint64_t)lock->l_start;
	lo->len = lock->l_len == 0 || (uint64_t)lock->l_len >= (uint64_t)INT64_MAX - lo->start ?
			  0 : (uint64_t)lock->l_len;
	char *path = node_live_path(fs, ino);
	if (!path) { /* unlinked: the open file's handle */
		lock_use_file(lo, file_of(fi));
		lock_send(lo);
		return;
	}
	char *k = lockh_key(ino, fi->lock_owner);
	pthread_mutex_lock(&fs->lock);
	struct lockh *lh = g_hash_table_lookup(fs->locks, k);
	bool opening = lh && !lh->f;
	if (lh && lh->f)
		lock_use_file(lo, lh->f);
	if (!lh) {
		if (lo->type == HASHI_LOCK_UNLCK || get) {
			/* no lock held by this owner: nothing to release; a
			 * test goes on the open file's handle */
			pthread_mutex_unlock(&fs->lock);
			g_free(k);
			g_free(path);
			lock_use_file(lo, file_of(fi));
			if (lo->type == HASHI_LOCK_UNLCK && !get) {
				fuse_reply_err(req, 0);
				lock_op_unref(lo);
			} else {
				lock_send(lo);
			}
			return;
		}
		lh = g_new0(struct lockh, 1);
		lh->ino = ino;
		lh->owner = fi->lock_owner;
		g_hash_table_insert(fs->locks, k, lh);
		k = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	g_free(k);
	if (opening) { /* (two threads of one owner at once: rare) */
		g_free(path);
		fuse_reply_err(req, EAGAIN);
		lock_op_unref(lo);
		return;
	}
	if (lo->hlen) {
		g_free(path);
		lock_send(lo);
		return;
	}
	lo->lh = lh;
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_OPEN);
	int acc = file_of(fi)->flags & O_ACCMODE; /* (fi->flags is not set for locks) */
	struct sftp_attrs a;
	attrs_clear(&a);
	wire_put_cstring(sftp_msg_buf(m), path);
	wire_put_u32(sftp_msg_buf(m), acc == O_RDONLY ? SSH_FXF_READ :
				      acc == O_WRONLY ? SSH_FXF_WRITE : SSH_FXF_READ | SSH_FXF_WRITE);
	attrs_put(sftp_msg_buf(m), &a);
	g_free(path);
	sftp_submit(fs->c, m, lockh_open_cb, lo);
}

static void fs_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock)
{
	posix_lock(req, ino, fi, lock, true, false);
}

static void fs_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock,
		     int sleep)
{
	posix_lock(req, ino, fi, lock, false, sleep != 0);
}

static void fs_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	(void)ino;
	struct lock_op *lo = g_new0(struct lock_op, 1);
	lo->fs = fuse_req_userdata(req);
	lo->req = req;
	lo->refs = 1;
	lo->op = HASHI_LOCK_FLOCK;
	lo->flags = (op & LOCK_NB) ? 0 : HASHI_LOCK_WAIT;
	int kind = op & ~LOCK_NB;
	lo->type = kind == LOCK_SH ? HASHI_LOCK_RDLCK : kind == LOCK_EX ? HASHI_LOCK_WRLCK :
								      HASHI_LOCK_UNLCK;
	if (lo->type == HASHI_LOCK_UNLCK)
		lo->flags = 0;
	lock_use_file(lo, file_of(fi));
	lock_send(lo);
}

/* The owner closed a descriptor of ino: its POSIX locks on it go (their
 * handle is closed). */
static struct sftp_client *locks_flush(struct fs *fs, fuse_ino_t ino, uint64_t owner)
{
	char *k = lockh_key(ino, owner);
	pthread_mutex_lock(&fs->lock);
	struct lockh *lh = g_hash_table_lookup(fs->locks, k);
	struct file *f = NULL;
	if (lh && lh->f) {
		f = lh->f;
		g_hash_table_remove(fs->locks, k);
	}
	pthread_mutex_unlock(&fs->lock);
	g_free(k);
	if (!f)
		return NULL;
	struct sftp_client *conn = f->c;
	file_discard(f);
	return conn;
}

/* ---- filesystem-wide ---------------------------------------------------- */

static void statfs_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	struct statvfs st;
	uint64_t v[11];
	if (r->err || r->type != SSH_FXP_EXTENDED_REPLY) {
		reply_err_free(o, r->err ? reply_errno(r) : EIO);
		return;
	}
	for (int i = 0; i < 11; i++) {
		if (wire_get_u64(&r->body, &v[i])) {
			log_error("malformed statvfs reply from the server");
			reply_err_free(o, EIO);
			return;
		}
	}
	memset(&st, 0, sizeof(st));
	st.f_bsize = v[0];
	st.f_frsize = v[1];
	st.f_blocks = v[2];
	st.f_bfree = v[3];
	st.f_bavail = v[4];
	st.f_files = v[5];
	st.f_ffree = v[6];
	st.f_favail = v[7];
	st.f_fsid = v[8];
	st.f_flag = (v[9] & SSH_FXE_STATVFS_ST_RDONLY ? ST_RDONLY : 0) |
		    (v[9] & SSH_FXE_STATVFS_ST_NOSUID ? ST_NOSUID : 0);
	st.f_namemax = v[10];
	fuse_reply_statfs(o->req, &st);
	op_free(o);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct op *o = op_new(req);
	if (!(sftp_client_exts(o->fs->c) & SFTP_HAS_STATVFS)) {
		/* No way to know: say "large and empty", as sshfs does. */
		struct statvfs st;
		memset(&st, 0, sizeof(st));
		st.f_bsize = st.f_frsize = 512;
		st.f_blocks = st.f_bfree = st.f_bavail = 1000ULL * 1000 * 1000 * 2;
		st.f_files = st.f_ffree = st.f_favail = 1000ULL * 1000 * 1000;
		st.f_namemax = 255;
		fuse_reply_statfs(req, &st);
		op_free(o);
		return;
	}
	o->path = node_path(o->fs, ino);
	if (!o->path)
		o->path = g_strdup(o->fs->cfg.root);
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_STATVFS);
	wire_put_cstring(sftp_msg_buf(m), o->path);
	sftp_submit(o->fs->c, m, statfs_cb, o);
}

static void access_check(struct op *o, const struct fattr *a);

static void access_cb(void *arg, struct sftp_reply *r)
{
	struct op *o = arg;
	struct fattr a;
	if (r->err || reply_fattr(r, &a)) {
		reply_err_free(o, r->err ? reply_errno(r) : EIO);
		return;
	}
	access_check(o, &a);
}

static void access_check(struct op *o, const struct fattr *a)
{
	struct stat st;
	fill_stat(o->fs, a, o->ino, &st);
	int mask = o->flags;
	const struct fuse_ctx *ctx = fuse_req_ctx(o->req);
	int err = 0;
	if (mask != F_OK) {
		mode_t m = st.st_mode;
		if (ctx->uid == 0) {
			if ((mask & X_OK) && !(m & 0111) && !S_ISDIR(m))
				err = EACCES;
		} else {
			mode_t bits = ctx->uid == st.st_uid ? (m >> 6) : ctx->gid == st.st_gid ? (m >> 3) : m;
			if (((mask & R_OK) && !(bits & 4)) || ((mask & W_OK) && !(bits & 2)) ||
			    ((mask & X_OK) && !(bits & 1)))
				err = EACCES;
		}
		if (!err && (mask & W_OK) && o->fs->cfg.readonly)
			err = EROFS;
	}
	reply_err_free(o, err);
}

static void fs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct op *o = op_new(req);
	o->ino = ino;
	o->flags = mask;
	o->path = node_path(o->fs, ino);
	if (!o->path) {
		reply_err_free(o, ESTALE);
		return;
	}
	/* access(2) has followed symlinks already: lstat's answer is stat's. */
	struct fattr a;
	if (cache_get_attrs(o->fs->cache, o->path, &a, NULL) == CACHE_HIT &&
	    (a.v3.flags & SSH_FILEXFER_ATTR_PERMISSIONS) && !S_ISLNK(a.v3.perm)) {
		access_check(o, &a);
		return;
	}
	stat_path_follow(o->fs->c, o->path, access_cb, o);
}

/* copy_file_range through copy-data: an FSTAT of the source and the copy
 * (of as much as is asked: the server stops at EOF) go together, one round
 * trip; the server answers in order, so the size the FSTAT gives is what
 * the copy met, and the count returned is exact. */
struct copy_op {
	fuse_req_t req;
	struct fs *fs;
	struct file *in, *out;
	uint64_t off_in, off_out, len;
	int left;
	int stat_err, copy_err;
	uint64_t size;
};

static void copy_join(struct copy_op *co)
{
	if (__atomic_sub_fetch(&co->left, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	files_changed(co->fs->files, co->out->ino);
	int err = co->copy_err ? co->copy_err : co->stat_err;
	if (err)
		fuse_reply_err(co->req, err);
	else
		fuse_reply_write(co->req, co->off_in >= co->size ? 0 :
					  co->len < co->size - co->off_in ? co->len :
					  co->size - co->off_in);
	g_free(co);
}

static void copy_done_cb(void *arg, struct sftp_reply *r)
{
	struct copy_op *co = arg;
	/* EOF: the source ended before the length asked, as expected */
	if (r->err && !(r->type == SSH_FXP_STATUS && r->status == SSH_FX_EOF))
		co->copy_err = reply_errno(r);
	copy_join(co);
}

static void copy_fstat_cb(void *arg, struct sftp_reply *r)
{
	struct copy_op *co = arg;
	struct fattr a;
	if (r->err || reply_fattr(r, &a) || !(a.v3.flags & SSH_FILEXFER_ATTR_SIZE))
		co->stat_err = r->err ? reply_errno(r) : EIO;
	else
		co->size = a.v3.size;
	copy_join(co);
}

static void fs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in;
	struct fs *fs = fuse_req_userdata(req);
	cache_changed_ino(fs, ino_out);
	if (flags != 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (len == 0) { /* (a length of 0 asks copy-data for everything) */
		fuse_reply_write(req, 0);
		return;
	}
	/* copy-data needs both handles on one connection; else the kernel
	 * copies through us */
	if (!(sftp_client_exts(fs->c) & SFTP_HAS_COPY_DATA) ||
	    file_of(fi_in)->c != file_of(fi_out)->c) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	struct copy_op *co = g_new0(struct copy_op, 1);
	co->req = req;
	co->fs = fs;
	co->in = file_of(fi_in);
	co->out = file_of(fi_out);
	co->off_in = (uint64_t)off_in;
	co->off_out = (uint64_t)off_out;
	co->len = len;
	co->left = 2;
	files_changed(fs->files, co->out->ino);
	stat_handle(co->in->c, co->in->handle, co->in->hlen, copy_fstat_cb, co);
	struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_COPY_DATA);
	struct wire_buf *b = sftp_msg_buf(m);
	wire_put_string(b, co->in->handle, co->in->hlen);
	wire_put_u64(b, co->off_in);
	wire_put_u64(b, co->len);
	wire_put_string(b, co->out->handle, co->out->hlen);
	wire_put_u64(b, co->off_out);
	sftp_submit(co->out->c, m, copy_done_cb, co);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* READDIR carries every entry's attributes: always hand them to the
	 * kernel (readdirplus), not only on the first call for a directory. */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	/* No writeback cache: with it the kernel would pick O_APPEND offsets
	 * from a size it caches, write pages back after close (where errors
	 * cannot reach anyone) and keep its own mtime. Our write-behind gives
	 * the speed without that: a write returns once queued. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* The kernel's writes as big as it sends them (we split them into the
	 * server's maximum); its reads are 128 KiB, our read-ahead does the rest. */
	conn->max_write = 1024 * 1024;
	conn->max_readahead = 1024 * 1024;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want &= ~FUSE_CAP_SPLICE_WRITE;
	/* Locks go to the server only when it can hold them (lock@hashi);
	 * else the kernel keeps them locally, as with sshfs. */
	if (has(fs->c, SFTP_HAS_HASHI_LOCK))
		conn->want |= conn->capable & (FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	else
		conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	log_debug("kernel: max_write %u, max_readahead %u, server max read %u, max write %u",
		  conn->max_write, conn->max_readahead, sftp_client_max_read(fs->c),
		  sftp_client_max_write(fs->c));
}

/* A size change makes what was read ahead stale. */
static void fs_setattr_data(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			    struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	if (to_set & FUSE_SET_ATTR_SIZE)
		files_changed(fs->files, ino);
	fs_setattr(req, ino, attr, to_set, fi);
}

static const struct fuse_lowlevel_ops ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr_data,
	.readlink = fs_readlink,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.release = fs_release,
	.fsync = fs_fsync,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.fsyncdir = fs_fsyncdir,
	.statfs = fs_statfs,
	.access = fs_access,
	.create = fs_create,
	.copy_file_range = fs_copy_file_range,
	.getxattr = fs_getxattr,
	.setxattr = fs_setxattr,
	.listxattr = fs_listxattr,
	.removexattr = fs_removexattr,
	.getlk = fs_getlk,
	.setlk = fs_setlk,
	.flock = fs_flock,
	.fallocate = fs_fallocate,
	.lseek = fs_lseek,
};

const struct fuse_lowlevel_ops *fs_ops(void)
{
	return &ops;
}

struct cache *fs_cache(struct fs *fs)
{
	return fs->cache;
}

static guint ino_hash(gconstpointer p)
{
	fuse_ino_t v = *(const fuse_ino_t *)p;
	return (guint)(v ^ (v >> 32));
}

static gboolean ino_equal(gconstpointer a, gconstpointer b)
{
	return *(const fuse_ino_t *)a == *(const fuse_ino_t *)b;
}

static guint sid_hash(gconstpointer p)
{
	const struct sid *s = p;
	return (guint)(s->ino ^ (s->ino >> 32) ^ (s->dev * 31));
}

static gboolean sid_equal(gconstpointer a, gconstpointer b)
{
	const struct sid *x = a, *y = b;
	return x->dev == y->dev && x->ino == y->ino;
}

struct fs *fs_new(struct sftp_client *c, const struct fs_config *cfg)
{
	struct fs *fs = g_new0(struct fs, 1);
	fs->c = c;
	fs->cfg = *cfg;
	fs->cfg.root = g_strdup(cfg->root);
	pthread_mutex_init(&fs->lock, NULL);
	struct files_config fc = {
		.sync_writes = cfg->sync_writes,
		.no_readahead = cfg->no_readahead,
	};
	fs->files = files_new(&fc);
	fs->opened = g_hash_table_new_full(ino_hash, ino_equal, g_free, g_free);
	fs->by_ino = g_hash_table_new(ino_hash, ino_equal);
	fs->by_path = g_hash_table_new(g_str_hash, g_str_equal);
	fs->by_sid = g_hash_table_new(sid_hash, sid_equal);
	fs->locks = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	fs->fetching = g_hash_table_new(g_str_hash, g_str_equal);
	fs->misses = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	fs->opens = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	fs->next_ino = FUSE_ROOT_ID + 1;
	fs->cache = cache_new(&cfg->cache);
	struct node *root = g_new0(struct node, 1);
	root->ino = FUSE_ROOT_ID;
	root->path = g_strdup(cfg->root);
	root->nlookup = 1;
	g_hash_table_insert(fs->by_ino, &root->ino, root);
	g_hash_table_insert(fs->by_path, root->path, root);
	return fs;
}

static void forget_file(gpointer f)
{
	file_forget(f);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	GHashTableIter it;
	gpointer key, val;
	g_hash_table_iter_init(&it, fs->locks);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		struct lockh *lh = val;
		if (lh->f)
			file_forget(lh->f);
	}
	g_hash_table_iter_init(&it, fs->by_ino);
	while (g_hash_table_iter_next(&it, &key, &val)) {
		struct node *n = val;
		/* files the kernel never released (its RELEASE came too late) */
		g_slist_free_full(n->files, forget_file);
		g_slist_free_full(n->aliases, g_free);
		g_free(n->path);
		g_free(n);
	}
	g_hash_table_destroy(fs->by_ino);
	g_hash_table_destroy(fs->by_path);
	g_hash_table_destroy(fs->by_sid);
	g_hash_table_destroy(fs->locks);
	g_hash_table_destroy(fs->fetching);
	g_hash_table_destroy(fs->misses);
	g_hash_table_destroy(fs->opens);
	cache_free(fs->cache);
	g_hash_table_destroy(fs->opened);
	files_free(fs->files);
	pthread_mutex_destroy(&fs->lock);
	g_free(fs->cfg.root);
	g_free(fs);
}
