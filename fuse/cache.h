/*
 * hashi's metadata cache: attributes by path (and "no such file" answers),
 * directory listings, symlink targets, each with its own timeout, as
 * sshfs's dir_cache. Thread-safe (one mutex; nothing here touches the
 * network).
 *
 * Staleness: a reply that was asked for before a local change to its path
 * must not be cached after that change. The caller takes cache_gen() before
 * sending a request and passes it to the put; a put older than the last
 * invalidation of its path (or of a subtree above it) is dropped.
 *
 * A listing holds names; their attributes live in the attribute cache, so
 * a listing is served only while every one of its names still has valid
 * attributes there (a change to one file cannot leave stale attributes in
 * its directory's listing).
 */
#ifndef HASHI_CACHE_H
#define HASHI_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "attrs.h"
#include "hattrs.h"

/* A file's attributes as the client knows them: SFTP v3's (always filled),
 * and, from a server with stat@hashi, the full set (x.mask != 0) from which
 * v3 is derived. */
struct fattr {
	struct sftp_attrs v3;
	struct hattrs x;
};

/* Only v3's (x.mask 0). */
void fattr_from_v3(struct fattr *f, const struct sftp_attrs *a);
/* Full attributes, and v3's made from them. */
void fattr_from_hattrs(struct fattr *f, const struct hattrs *h);

struct cache_config {
	bool enabled;
	double stat_timeout;   /* attributes and negative entries, seconds */
	double dir_timeout;    /* listings */
	double link_timeout;   /* symlink targets */
	unsigned max_size;     /* paths kept at most */
};

struct cache_stats {
	uint64_t attr_hits, attr_misses, negative_hits;
	uint64_t dir_hits, dir_misses;
	uint64_t link_hits, link_misses;
	uint64_t entries;      /* paths held now */
};

enum cache_result {
	CACHE_MISS = 0,
	CACHE_HIT,             /* attributes known */
	CACHE_NOENT,           /* known not to exist */
};

struct cache;

struct cache *cache_new(const struct cache_config *cfg);
void cache_free(struct cache *c);
bool cache_enabled(const struct cache *c);

/* The generation to pass to a put for a request sent from now on. */
uint64_t cache_gen(struct cache *c);

/* Attributes of path (lstat). On CACHE_HIT *a is filled; *ttl (if not NULL)
 * is how many seconds the answer stays valid. A name missing from a valid
 * listing of its parent is CACHE_NOENT. */
enum cache_result cache_get_attrs(struct cache *c, const char *path, struct fattr *a,
				  double *ttl);
/* The owner and mode (with type) of path, from attributes put while they
 * are valid, still known after a name came or went in it (which drops a
 * directory's attributes for its times): false when unknown. */
bool cache_get_owner(struct cache *c, const char *path, uint32_t *uid, uint32_t *gid,
		     uint32_t *perm);
/* (Not kept for a file known to have several names: hard links.) */
void cache_put_attrs(struct cache *c, const char *path, const struct fattr *a, uint64_t gen);
void cache_put_noent(struct cache *c, const char *path, uint64_t gen);

/* A symlink's target (malloc'd into *target), or false. */
bool cache_get_link(struct cache *c, const char *path, char **target);
void cache_put_link(struct cache *c, const char *path, const char *target, uint64_t gen);

/* A listing of dir: each(arg, name, attrs, ttl) for every name (without "."
 * and ".."), in the server's order, under the cache's lock (each must not
 * call the cache); false (and no call) on a miss. The names are put with
 * their attributes first (cache_put_attrs). */
bool cache_get_dir(struct cache *c, const char *dir,
		   void (*each)(void *arg, const char *name, const struct fattr *a, double ttl),
		   void *arg);
/* The same, for a look that is not a reader's: a listing read ahead
 * stays one (see cache_put_dir_ahead). */
bool cache_peek_dir(struct cache *c, const char *dir,
		    void (*each)(void *arg, const char *name, const struct fattr *a, double ttl),
		    void *arg);
/* A listing read ahead, before anyone asked for it: its names and their
 * attributes answer as any listing's, but a name missing from it is not
 * known missing (the server is asked) until a reader has been given it
 * (cache_get_dir): then it is an ordinary listing. */
void cache_put_dir_ahead(struct cache *c, const char *dir, const char *const *names, unsigned n,
			 uint64_t gen);
/* Is a listing of dir held (its names' attributes may have expired)? */
bool cache_has_dir(struct cache *c, const char *dir);
void cache_put_dir(struct cache *c, const char *dir, const char *const *names, unsigned n,
		   uint64_t gen);

/* Invalidation after a local change. */
/* path's own attributes, target and listing. */
void cache_invalidate(struct cache *c, const char *path);
/* Something may have changed at path and in its parent (a failed request):
 * path and the parent's listing and attributes. */
void cache_invalidate_entry(struct cache *c, const char *path);
/* We made path (create, mkdir, symlink, link): path's old data is dropped,
 * the parent's attributes (mtime) too, and the name is added to the
 * parent's listing if we hold one, which so stays complete. */
void cache_entry_added(struct cache *c, const char *path);
/* We removed path (and with tree, everything below it: rmdir): it is
 * known missing; the parent's attributes are dropped and the name taken
 * out of its listing. */
void cache_entry_removed(struct cache *c, const char *path, bool tree);
/* A rename: what was cached under from (the path and below) moves to to;
 * what was at to and below is dropped; from is known missing; both
 * parents' attributes are dropped and their listings edited. */
void cache_rename(struct cache *c, const char *from, const char *to);
/* Everything. */
void cache_clear(struct cache *c);

void cache_stats(struct cache *c, struct cache_stats *st);

#endif
