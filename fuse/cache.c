#include "cache.h"

#include <glib.h>
#include <pthread.h>
#include <string.h>

#include "sftp-proto.h"

/* One path. Each kind of data has its own deadline (0: not held). An entry
 * with no data left is a tombstone: it remembers when its path was last
 * changed, so that an older reply is not cached over the change. */
struct centry {
	char *path;
	uint64_t inval_gen;      /* the generation of the path's last change */
	double attrs_until;      /* attributes, or "no such file" */
	bool noent;
	struct fattr attrs;
	double link_until;
	char *link;
	double dir_until;
	GPtrArray *names;        /* char *, the server's order */
	GHashTable *nameset;     /* the same names, for "is it there" */
	bool dir_ahead;          /* read ahead for us, not by a reader: a name
				  * missing from it is still asked for */
	double owner_until;      /* the owner and mode of the attributes, kept
				  * when a name comes or goes in a directory */
	uint32_t o_uid, o_gid, o_perm;
};

struct cache {
	struct cache_config cfg;
	pthread_mutex_t lock;
	GHashTable *by_path;     /* path -> struct centry (owns it) */
	uint64_t gen;            /* bumped by every invalidation */
	uint64_t floor_gen;      /* puts older than this are dropped (subtrees,
				  * forgotten tombstones) */
	double last_clean;
	struct cache_stats st;
};

#define CLEAN_INTERVAL 60.0

void fattr_from_v3(struct fattr *f, const struct sftp_attrs *a)
{
	memset(f, 0, sizeof(*f));
	f->v3 = *a;
}

void fattr_from_hattrs(struct fattr *f, const struct hattrs *h)
{
	memset(f, 0, sizeof(*f));
	f->x = *h;
	struct sftp_attrs *a = &f->v3;
	if (h->mask & HATTR_SIZE) {
		a->flags |= SSH_FILEXFER_ATTR_SIZE;
		a->size = h->size;
	}
	if ((h->mask & (HATTR_UID | HATTR_GID)) == (HATTR_UID | HATTR_GID)) {
		a->flags |= SSH_FILEXFER_ATTR_UIDGID;
		a->uid = h->uid;
		a->gid = h->gid;
	}
	if ((h->mask & (HATTR_TYPE | HATTR_MODE)) == (HATTR_TYPE | HATTR_MODE)) {
		a->flags |= SSH_FILEXFER_ATTR_PERMISSIONS;
		a->perm = h->mode;
	}
	if ((h->mask & (HATTR_ATIME | HATTR_MTIME)) == (HATTR_ATIME | HATTR_MTIME)) {
		a->flags |= SSH_FILEXFER_ATTR_ACMODTIME;
		a->atime = (uint32_t)h->atime.sec;
		a->mtime = (uint32_t)h->mtime.sec;
	}
}

static double now_s(void)
{
	return (double)g_get_monotonic_time() / 1e6;
}

static void dir_drop(struct centry *e)
{
	if (e->names)
		g_ptr_array_free(e->names, TRUE);
	if (e->nameset)
		g_hash_table_destroy(e->nameset);
	e->names = NULL;
	e->nameset = NULL;
	e->dir_until = 0;
}

static void link_drop(struct centry *e)
{
	g_free(e->link);
	e->link = NULL;
	e->link_until = 0;
}

static void centry_free(gpointer p)
{
	struct centry *e = p;
	dir_drop(e);
	link_drop(e);
	g_free(e->path);
	g_free(e);
}

struct cache *cache_new(const struct cache_config *cfg)
{
	struct cache *c = g_new0(struct cache, 1);
	c->cfg = *cfg;
	if (c->cfg.max_size == 0)
		c->cfg.max_size = 1;
	pthread_mutex_init(&c->lock, NULL);
	c->by_path = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, centry_free);
	c->gen = 1;
	c->last_clean = now_s();
	return c;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	g_hash_table_destroy(c->by_path);
	pthread_mutex_destroy(&c->lock);
	g_free(c);
}

bool cache_enabled(const struct cache *c)
{
	return c && c->cfg.enabled;
}

uint64_t cache_gen(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	uint64_t g = c->gen;
	pthread_mutex_unlock(&c->lock);
	return g;
}

static bool centry_live(const struct centry *e, double now)
{
	return e->attrs_until > now || e->link_until > now || e->dir_until > now;
}

/* Drop expired data and entries with nothing left; the tombstones forgotten
 * raise the floor, so that no reply older than them is cached. */
static void clean_locked(struct cache *c, double now)
{
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, c->by_path);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		struct centry *e = v;
		if (e->dir_until && e->dir_until <= now)
			dir_drop(e);
		if (e->link_until && e->link_until <= now)
			link_drop(e);
		if (!centry_live(e, now)) {
			if (e->inval_gen > c->floor_gen)
				c->floor_gen = e->inval_gen;
			g_hash_table_iter_remove(&it);
		}
	}
	c->last_clean = now;
}

static void clear_locked(struct cache *c)
{
	g_hash_table_remove_all(c->by_path);
	c->floor_gen = ++c->gen;
}

/* The entry for path, made if need be (within max_size). */
static struct centry *centry_get(struct cache *c, const char *path, double now)
{
	struct centry *e = g_hash_table_lookup(c->by_path, path);
	if (e)
		return e;
	guint n = g_hash_table_size(c->by_path);
	if (n >= c->cfg.max_size || now - c->last_clean > CLEAN_INTERVAL) {
		clean_locked(c, now);
		/* Still full of live entries: start again rather than clean
		 * on every insertion. */
		if (g_hash_table_size(c->by_path) >= c->cfg.max_size - c->cfg.max_size / 10)
			clear_locked(c);
	}
	e = g_new0(struct centry, 1);
	e->path = g_strdup(path);
	g_hash_table_insert(c->by_path, e->path, e);
	return e;
}

/* May a reply asked for at generation gen be cached for path? */
static bool put_allowed(struct cache *c, const char *path, uint64_t gen)
{
	if (!c->cfg.enabled || gen < c->floor_gen)
		return false;
	struct centry *e = g_hash_table_lookup(c->by_path, path);
	return !e || e->inval_gen <= gen;
}

static char *parent_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash || slash[1] == '\0' || (slash == path && path[1] == '\0'))
		return NULL; /* the root (or not a path) has no parent here */
	if (slash == path)
		return g_strdup("/");
	return g_strndup(path, (gsize)(slash - path));
}

static char *child_of(const char *dir, const char *name)
{
	size_t dl = strlen(dir);
	if (dl > 0 && dir[dl - 1] == '/')
		return g_strconcat(dir, name, NULL);
	return g_strconcat(dir, "/", name, NULL);
}

/* The listing of dir, if valid now. */
static struct centry *listing_locked(struct cache *c, const char *dir, double now)
{
	struct centry *e = g_hash_table_lookup(c->by_path, dir);
	if (e && e->names && e->dir_until > now)
		return e;
	return NULL;
}

/* path exists (the server says so now): a listing of its parent we hold
 * (read before it came) gets its name. */
static void listing_add_locked(struct cache *c, const char *path, double now)
{
	char *dir = parent_of(path);
	struct centry *d = dir ? listing_locked(c, dir, now) : NULL;
	g_free(dir);
	const char *name = strrchr(path, '/') + 1;
	if (d && !g_hash_table_contains(d->nameset, name)) {
		char *s = g_strdup(name);
		g_ptr_array_add(d->names, s);
		g_hash_table_add(d->nameset, s);
	}
}

enum cache_result cache_get_attrs(struct cache *c, const char *path, struct fattr *a,
				  double *ttl)
{
	if (!cache_enabled(c))
		return CACHE_MISS;
	enum cache_result res = CACHE_MISS;
	double now = now_s();
	pthread_mutex_lock(&c->lock);
	struct centry *e = g_hash_table_lookup(c->by_path, path);
	if (e && e->attrs_until > now) {
		res = e->noent ? CACHE_NOENT : CACHE_HIT;
		if (res == CACHE_HIT)
			*a = e->attrs;
		if (ttl)
			*ttl = e->attrs_until - now;
	} else {
		char *dir = parent_of(path);
		struct centry *d = dir ? listing_locked(c, dir, now) : NULL;
		if (d && !d->dir_ahead && !g_hash_table_contains(d->nameset, strrchr(path, '/') + 1)) {
			res = CACHE_NOENT;
			if (ttl)
				*ttl = d->dir_until - now;
		}
		g_free(dir);
	}
	if (res == CACHE_HIT)
		c->st.attr_hits++;
	else if (res == CACHE_NOENT)
		c->st.negative_hits++;
	else
		c->st.attr_misses++;
	pthread_mutex_unlock(&c->lock);
	return res;
}

static void put_attrs_common(struct cache *c, const char *path, const struct fattr *a,
			     uint64_t gen)
{
	double now = now_s();
	pthread_mutex_lock(&c->lock);
	if (put_allowed(c, path, gen)) {
		struct centry *e = centry_get(c, path, now);
		e->noent = a == NULL;
		if (a)
			e->attrs = *a;
		else
			memset(&e->attrs, 0, sizeof(e->attrs));
		e->attrs_until = now + c->cfg.stat_timeout;
		const uint32_t own = SSH_FILEXFER_ATTR_UIDGID | SSH_FILEXFER_ATTR_PERMISSIONS;
		e->owner_until = a && (a->v3.flags & own) == own ? e->attrs_until : 0;
		if (a) {
			e->o_uid = a->v3.uid;
			e->o_gid = a->v3.gid;
			e->o_perm = a->v3.perm;
		}
		if (!a) {
			link_drop(e);
			dir_drop(e);
		} else {
			listing_add_locked(c, path, now);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

void cache_put_attrs(struct cache *c, const char *path, const struct fattr *a, uint64_t gen)
{
	/* A file with several names (full attributes tell) changes under
	 * all of them at once: its attributes are not kept by name. */
	if ((a->x.mask & (HATTR_NLINK | HATTR_TYPE)) == (HATTR_NLINK | HATTR_TYPE) &&
	    a->x.nlink > 1 && !S_ISDIR(a->x.mode)) {
		pthread_mutex_lock(&c->lock);
		struct centry *e = g_hash_table_lookup(c->by_path, path);
		if (e)
			e->attrs_until = 0;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	put_attrs_common(c, path, a, gen);
}

void cache_put_noent(struct cache *c, const char *path, uint64_t gen)
{
	put_attrs_common(c, path, NULL, gen);
}

bool cache_get_link(struct cache *c, const char *path, char **target)
{
	if (!cache_enabled(c))
		return false;
	bool hit = false;
	double now = now_s();
	pthread_mutex_lock(&c->lock);
	struct centry *e = g_hash_table_lookup(c->by_path, path);
	if (e && e->link && e->link_until > now) {
		*target = g_strdup(e->link);
		hit = true;
		c->st.link_hits++;
	} else {
		c->st.link_misses++;
	}
	pthread_mutex_unlock(&c->lock);
	return hit;
}

void cache_put_link(struct cache *c, const char *path, const char *target, uint64_t gen)
{
	double now = now_s();
	pthread_mutex_lock(&c->lock);
	if (put_allowed(c, path, gen)) {
		struct centry *e = centry_get(c, path, now);
		g_free(e->link);
		e->link = g_strdup(target);
		e->link_until = now + c->cfg.link_timeout;
	}
	pthread_mutex_unlock(&c->lock);
}

static bool get_dir(struct cache *c, const char *dir,
		    void (*each)(void *arg, const char *name, const struct fattr *a, double ttl),
		    void *arg, bool promote)
{
	if (!cache_enabled(c))
		return false;
	double now = now_s();
	pthread_mutex_lock(&c->lock);
	struct centry *d = listing_locked(c, dir, now);
	GPtrArray *kids = NULL;
	if (d && d->dir_ahead && promote)
		d->dir_ahead = false; /* read now: what it lacks is known missing */
	if (d) {
		/* Every name must still have its attributes. */
		kids = g_ptr_array_sized_new(d->names->len);
		for (guint i = 0; i < d->names->len; i++) {
			char *p = child_of(dir, d->names->pdata[i]);
			struct centry *k = g_hash_table_lookup(c->by_path, p);
			g_free(p);
			if (!k || k->noent || k->attrs_until <= now) {
				g_ptr_array_free(kids, TRUE);
				kids = NULL;
				break;
			}
			g_ptr_array_add(kids, k);
		}
	}
	if (kids) {
		for (guint i = 0; i < d->names->len; i++) {
			struct centry *k = kids->pdata[i];
			double ttl = k->attrs_until < d->dir_until ? k->attrs_until : d->dir_until;
			each(arg, d->names->pdata[i], &k->attrs, ttl - now);
		}
		g_ptr_array_free(kids, TRUE);
		c->st.dir_hits++;
	} else {
		c->st.dir_misses++;
	}
	pthread_mutex_unlock(&c->lock);
	return kids != NULL;
}

bool cache_has_dir(struct cache *c, const char *dir)
{
	if (!cache_enabled(c))
		return false;
	pthread_mutex_lock(&c->lock);
	bool has = listing_locked(c, dir, now_s()) != NULL;
	pthread_mutex_unlock(&c->lock);
	return has;
}

static void put_dir(struct cache *c, const char *dir, const char *const *names, unsigned n,
		    uint64_t gen, bool ahead)
{
	double now = now_s();
	pthread_mutex_lock(&c->lock);
	if (put_allowed(c, dir, gen)) {
		struct centry *e = centry_get(c, dir, now);
		dir_drop(e);
		e->names = g_ptr_array_new_full(n, g_free);
		e->nameset = g_hash_table_new(g_str_hash, g_str_equal);
		for (unsigned i = 0; i < n; i++) {
			if (strcmp(names[i], ".") == 0 || strcmp(names[i], "..") == 0 ||
			    g_hash_table_contains(e->nameset, names[i]))
				continue;
			char *s = g_strdup(names[i]);
			g_ptr_array_add(e->names, s);
			g_hash_table_add(e->nameset, s);
		}
		e->dir_until = now + c->cfg.dir_timeout;
		e->dir_ahead = ahead;
	}
	pthread_mutex_unlock(&c->lock);
}

bool cache_get_dir(struct cache *c, const char *dir,
		   void (*each)(void *arg, const char *name, const struct fattr *a, double ttl),
		   void *arg)
{
	return get_dir(c, dir, each, arg, true);
}

bool cache_peek_dir(struct cache *c, const char *dir,
		    void (*each)(void *arg, const char *name, const struct fattr *a, double ttl),
		    void *arg)
{
	return get_dir(c, dir, each, arg, false);
}

void cache_put_dir(struct cache *c, const char *dir, const char *const *names, unsigned n,
		   uint64_t gen)
{
	put_dir(c, dir, names, n, gen, false);
}

void cache_put_dir_ahead(struct cache *c, const char *dir, const char *const *names, unsigned n,
			 uint64_t gen)
{
	put_dir(c, dir, names, n, gen, true);
}

/* path changed now: drop its data, and remember the change. */
static void drop_tree_locked(struct cache *c, const char *top);

static void invalidate_locked(struct cache *c, const char *path)
{
	struct centry *e = g_hash_table_lookup(c->by_path, path);
	if (!e) {
		if (!c->cfg.enabled)
			return;
		e = centry_get(c, path, now_s());
	}
	e->attrs_until = 0;
	e->owner_until = 0;
	e->noent = false;
	link_drop(e);
	dir_drop(e);
	e->inval_gen = ++c->gen;
}

bool cache_get_owner(struct cache *c, const char *path, uint32_t *uid, uint32_t *gid,
		     uint32_t *perm)
{
	if (!cache_enabled(c))
		return false;
	pthread_mutex_lock(&c->lock);
	struct centry *e = g_hash_table_lookup(c->by_path, path);
	bool ok = e && !e->noent && e->owner_until > now_s();
	if (ok) {
		*uid = e->o_uid;
		*gid = e->o_gid;
		*perm = e->o_perm;
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static void invalidate_parent_locked(struct cache *c, const char *path)
{
	char *dir = parent_of(path);
	if (dir)
		invalidate_locked(c, dir);
	g_free(dir);
}

/* A name came or went in path's parent: the parent's attributes (mtime)
 * are dropped, and its listing, if we hold one, is edited to match. */
static void parent_edit_locked(struct cache *c, const char *path, bool add)
{
	char *dir = parent_of(path);
	if (!dir)
		return;
	struct centry *d = g_hash_table_lookup(c->by_path, dir);
	g_free(dir);
	if (!d)
		return;
	d->attrs_until = 0;
	d->noent = false;
	d->inval_gen = ++c->gen; /* a listing read before this is stale */
	if (!d->names)
		return;
	const char *name = strrchr(path, '/') + 1;
	if (add && !g_hash_table_contains(d->nameset, name)) {
		char *s = g_strdup(name);
		g_ptr_array_add(d->names, s);
		g_hash_table_add(d->nameset, s);
	} else if (!add && g_hash_table_contains(d->nameset, name)) {
		g_hash_table_remove(d->nameset, name);
		for (guint i = 0; i < d->names->len; i++) {
			if (strcmp(d->names->pdata[i], name) == 0) {
				g_ptr_array_remove_index(d->names, i);
				break;
			}
		}
	}
}

void cache_entry_added(struct cache *c, const char *path)
{
	pthread_mutex_lock(&c->lock);
	invalidate_locked(c, path);
	parent_edit_locked(c, path, true);
	pthread_mutex_unlock(&c->lock);
}

void cache_entry_removed(struct cache *c, const char *path, bool tree)
{
	pthread_mutex_lock(&c->lock);
	if (tree)
		drop_tree_locked(c, path);
	invalidate_locked(c, path);
	parent_edit_locked(c, path, false);
	pthread_mutex_unlock(&c->lock);
	cache_put_noent(c, path, cache_gen(c));
}

void cache_invalidate(struct cache *c, const char *path)
{
	pthread_mutex_lock(&c->lock);
	invalidate_locked(c, path);
	pthread_mutex_unlock(&c->lock);
}

void cache_invalidate_entry(struct cache *c, const char *path)
{
	pthread_mutex_lock(&c->lock);
	invalidate_locked(c, path);
	invalidate_parent_locked(c, path);
	pthread_mutex_unlock(&c->lock);
}

static bool under(const char *path, const char *top, size_t tl)
{
	if (strncmp(path, top, tl) != 0)
		return false;
	if (path[tl] == '\0')
		return true;
	/* "/" is a prefix of everything; "/a" of "/a/b" but not of "/ab" */
	return path[tl] == '/' || (tl > 0 && top[tl - 1] == '/');
}

/* Take out (steal) path and everything below it. */
static GPtrArray *steal_tree_locked(struct cache *c, const char *top)
{
	size_t tl = strlen(top);
	GPtrArray *out = g_ptr_array_new();
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, c->by_path);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		if (under(k, top, tl)) {
			g_ptr_array_add(out, v);
			g_hash_table_iter_steal(&it);
		}
	}
	return out;
}

static void drop_tree_locked(struct cache *c, const char *top)
{
	GPtrArray *gone = steal_tree_locked(c, top);
	for (guint i = 0; i < gone->len; i++)
		centry_free(gone->pdata[i]);
	g_ptr_array_free(gone, TRUE);
	/* Replies in flight for anything below are stale now. */
	c->floor_gen = ++c->gen;
}

void cache_rename(struct cache *c, const char *from, const char *to)
{
	size_t fl = strlen(from);
	pthread_mutex_lock(&c->lock);
	GPtrArray *moved = steal_tree_locked(c, from);
	drop_tree_locked(c, to);
	for (guint i = 0; i < moved->len; i++) {
		struct centry *e = moved->pdata[i];
		char *np = g_strconcat(to, e->path + fl, NULL);
		g_free(e->path);
		e->path = np;
		g_hash_table_replace(c->by_path, e->path, e);
	}
	g_ptr_array_free(moved, TRUE);
	parent_edit_locked(c, from, false);
	parent_edit_locked(c, to, true);
	pthread_mutex_unlock(&c->lock);
	/* The old name is known to be gone. */
	cache_put_noent(c, from, cache_gen(c));
}

void cache_clear(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	clear_locked(c);
	pthread_mutex_unlock(&c->lock);
}

void cache_stats(struct cache *c, struct cache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->st;
	st->entries = g_hash_table_size(c->by_path);
	pthread_mutex_unlock(&c->lock);
}
