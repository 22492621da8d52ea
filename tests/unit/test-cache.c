/* fuse/cache.c: timeouts, invalidation, generations, listings, renames. */
#include <glib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache.h"
#include "sftp-proto.h"

static struct cache *mk(double timeout, unsigned max)
{
	struct cache_config cfg = {
		.enabled = true,
		.stat_timeout = timeout,
		.dir_timeout = timeout,
		.link_timeout = timeout,
		.max_size = max,
	};
	return cache_new(&cfg);
}

static struct fattr file_attrs(uint64_t size)
{
	struct sftp_attrs a;
	attrs_clear(&a);
	a.flags = SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_PERMISSIONS;
	a.size = size;
	a.perm = S_IFREG | 0644;
	struct fattr f;
	fattr_from_v3(&f, &a);
	return f;
}

static void put_file(struct cache *c, const char *path, uint64_t size)
{
	struct fattr a = file_attrs(size);
	cache_put_attrs(c, path, &a, cache_gen(c));
}

static enum cache_result get(struct cache *c, const char *path, uint64_t *size)
{
	struct fattr a;
	enum cache_result r = cache_get_attrs(c, path, &a, NULL);
	if (r == CACHE_HIT && size)
		*size = a.v3.size;
	return r;
}

static void test_attrs(void)
{
	struct cache *c = mk(100, 100);
	uint64_t sz = 0;
	double ttl = -1;
	struct fattr a;
	g_assert_cmpint(get(c, "/d/f", NULL), ==, CACHE_MISS);
	put_file(c, "/d/f", 7);
	g_assert_cmpint(cache_get_attrs(c, "/d/f", &a, &ttl), ==, CACHE_HIT);
	g_assert_cmpuint(a.v3.size, ==, 7);
	g_assert_true(ttl > 99 && ttl <= 100);
	cache_put_noent(c, "/d/g", cache_gen(c));
	g_assert_cmpint(get(c, "/d/g", NULL), ==, CACHE_NOENT);
	cache_invalidate(c, "/d/f");
	g_assert_cmpint(get(c, "/d/f", &sz), ==, CACHE_MISS);
	struct cache_stats st;
	cache_stats(c, &st);
	g_assert_cmpuint(st.attr_hits, ==, 1);
	g_assert_cmpuint(st.negative_hits, ==, 1);
	g_assert_cmpuint(st.attr_misses, ==, 2);
	cache_free(c);
}

static void test_expiry_and_disabled(void)
{
	struct cache *c = mk(0, 100); /* everything expires at once */
	put_file(c, "/f", 1);
	g_assert_cmpint(get(c, "/f", NULL), ==, CACHE_MISS);
	cache_free(c);
	struct cache_config off = { .enabled = false, .stat_timeout = 100, .dir_timeout = 100,
				    .link_timeout = 100, .max_size = 100 };
	c = cache_new(&off);
	put_file(c, "/f", 1);
	g_assert_cmpint(get(c, "/f", NULL), ==, CACHE_MISS);
	g_assert_false(cache_enabled(c));
	cache_free(c);
}

/* A reply asked for before a change is not cached after it. */
static void test_generations(void)
{
	struct cache *c = mk(100, 100);
	uint64_t before = cache_gen(c);
	cache_invalidate(c, "/a");
	struct fattr a = file_attrs(1);
	cache_put_attrs(c, "/a", &a, before);
	g_assert_cmpint(get(c, "/a", NULL), ==, CACHE_MISS);
	cache_put_attrs(c, "/a", &a, cache_gen(c));
	g_assert_cmpint(get(c, "/a", NULL), ==, CACHE_HIT);
	/* Another path is not affected by /a's change... */
	uint64_t g = cache_gen(c);
	cache_invalidate(c, "/a");
	cache_put_attrs(c, "/b", &a, g);
	g_assert_cmpint(get(c, "/b", NULL), ==, CACHE_HIT);
	/* ...but everything below a removed tree is. */
	g = cache_gen(c);
	cache_entry_removed(c, "/t", true);
	cache_put_attrs(c, "/t/x/y", &a, g);
	g_assert_cmpint(get(c, "/t/x/y", NULL), ==, CACHE_MISS);
	cache_free(c);
}

struct names {
	GString *s;
};

static void collect(void *arg, const char *name, const struct fattr *a, double ttl)
{
	struct names *n = arg;
	g_assert_true(ttl > 0);
	g_string_append_printf(n->s, "%s:%u ", name, (unsigned)a->v3.size);
}

static bool listing(struct cache *c, const char *dir, char **out)
{
	struct names n = { g_string_new(NULL) };
	bool hit = cache_get_dir(c, dir, collect, &n);
	*out = g_string_free(n.s, FALSE);
	return hit;
}

static void test_listing(void)
{
	struct cache *c = mk(100, 100);
	const char *names[] = { ".", "..", "b", "a" };
	char *out;
	uint64_t g = cache_gen(c);
	put_file(c, "/d/a", 1);
	put_file(c, "/d/b", 2);
	cache_put_dir(c, "/d", names, 4, g);
	g_assert_true(listing(c, "/d", &out));
	g_assert_cmpstr(out, ==, "b:2 a:1 ");
	g_free(out);
	/* A name not in the listing is missing; the root has no parent. */
	g_assert_cmpint(get(c, "/d/zz", NULL), ==, CACHE_NOENT);
	g_assert_cmpint(get(c, "/", NULL), ==, CACHE_MISS);
	/* A child's attributes gone: the listing is not served. */
	cache_invalidate(c, "/d/a");
	g_assert_false(listing(c, "/d", &out));
	g_free(out);
	put_file(c, "/d/a", 5);
	g_assert_true(listing(c, "/d", &out));
	g_assert_cmpstr(out, ==, "b:2 a:5 ");
	g_free(out);
	/* A name we add goes into the listing; the directory's attributes
	 * (its mtime) are dropped. */
	put_file(c, "/d", 4096);
	cache_entry_added(c, "/d/new");
	g_assert_cmpint(get(c, "/d", NULL), ==, CACHE_MISS);
	g_assert_cmpint(get(c, "/d/new", NULL), ==, CACHE_MISS);  /* in it, attributes unknown */
	g_assert_cmpint(get(c, "/d/zz", NULL), ==, CACHE_NOENT);
	g_assert_false(listing(c, "/d", &out));
	g_free(out);
	put_file(c, "/d/new", 6);
	g_assert_true(listing(c, "/d", &out));
	g_assert_cmpstr(out, ==, "b:2 a:5 new:6 ");
	g_free(out);
	/* A name we remove is missing, and out of the listing. */
	uint64_t before = cache_gen(c);
	cache_entry_removed(c, "/d/b", false);
	put_file(c, "/d/b", 99); /* (a reply from before cannot bring it back) */
	g_assert_cmpint(get(c, "/d/b", NULL), ==, CACHE_HIT);
	cache_entry_removed(c, "/d/b", false);
	struct fattr stale = file_attrs(2);
	cache_put_attrs(c, "/d/b", &stale, before);
	g_assert_cmpint(get(c, "/d/b", NULL), ==, CACHE_NOENT);
	g_assert_true(listing(c, "/d", &out));
	g_assert_cmpstr(out, ==, "a:5 new:6 ");
	g_free(out);
	/* Anything else that may have changed the directory drops its listing. */
	cache_invalidate_entry(c, "/d/new");
	g_assert_false(listing(c, "/d", &out));
	g_free(out);
	g_assert_cmpint(get(c, "/d/zz", NULL), ==, CACHE_MISS);
	/* An empty listing is a listing. */
	cache_put_dir(c, "/e", names, 2, cache_gen(c));
	g_assert_true(listing(c, "/e", &out));
	g_assert_cmpstr(out, ==, "");
	g_free(out);
	cache_free(c);
}

static void test_links(void)
{
	struct cache *c = mk(100, 100);
	char *t = NULL;
	g_assert_false(cache_get_link(c, "/l", &t));
	cache_put_link(c, "/l", "target", cache_gen(c));
	g_assert_true(cache_get_link(c, "/l", &t));
	g_assert_cmpstr(t, ==, "target");
	g_free(t);
	cache_entry_removed(c, "/l", false);
	g_assert_false(cache_get_link(c, "/l", &t));
	cache_free(c);
}

static void test_rename(void)
{
	struct cache *c = mk(100, 100);
	const char *names[] = { "f", "sub" };
	const char *sub[] = { "x" };
	uint64_t sz = 0;
	char *out;
	put_file(c, "/p/d/f", 1);
	put_file(c, "/p/d/sub", 2);
	put_file(c, "/p/d/sub/x", 3);
	put_file(c, "/p/dz", 9);          /* a sibling whose name starts the same */
	put_file(c, "/q/old/gone", 4);    /* below the target: replaced */
	cache_put_dir(c, "/p/d", names, 2, cache_gen(c));
	cache_put_dir(c, "/p/d/sub", sub, 1, cache_gen(c));
	put_file(c, "/p", 10);
	put_file(c, "/q", 11);
	cache_rename(c, "/p/d", "/q/old");
	g_assert_cmpint(get(c, "/q/old/sub/x", &sz), ==, CACHE_HIT);
	g_assert_cmpuint(sz, ==, 3);
	g_assert_true(listing(c, "/q/old/sub", &out));
	g_assert_cmpstr(out, ==, "x:3 ");
	g_free(out);
	g_assert_true(listing(c, "/q/old", &out));
	g_assert_cmpstr(out, ==, "f:1 sub:2 ");
	g_free(out);
	g_assert_cmpint(get(c, "/q/old/gone", NULL), ==, CACHE_NOENT); /* not in the listing */
	g_assert_cmpint(get(c, "/p/d", NULL), ==, CACHE_NOENT);
	const char *pnames[] = { "dz" };
	cache_put_dir(c, "/p", pnames, 1, cache_gen(c));
	put_file(c, "/p/dz", 9);
	put_file(c, "/q/old", 1);
	cache_rename(c, "/q/old", "/p/back");
	g_assert_true(listing(c, "/p", &out));
	g_assert_cmpstr(out, ==, "dz:9 back:1 ");
	g_free(out);
	g_assert_cmpint(get(c, "/p/back/sub/x", &sz), ==, CACHE_HIT);
	g_assert_cmpint(get(c, "/p/d/f", NULL), ==, CACHE_MISS);
	g_assert_cmpint(get(c, "/p/dz", &sz), ==, CACHE_HIT);
	g_assert_cmpint(get(c, "/p", NULL), ==, CACHE_MISS);  /* both parents changed */
	g_assert_cmpint(get(c, "/q", NULL), ==, CACHE_MISS);
	cache_free(c);
}

static void test_bounded(void)
{
	struct cache *c = mk(100, 50);
	for (int i = 0; i < 1000; i++) {
		char p[32];
		g_snprintf(p, sizeof(p), "/f%d", i);
		put_file(c, p, (uint64_t)i);
		struct cache_stats st;
		cache_stats(c, &st);
		g_assert_cmpuint(st.entries, <=, 50);
	}
	g_assert_cmpint(get(c, "/f999", NULL), ==, CACHE_HIT);
	cache_free(c);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/cache/attrs", test_attrs);
	g_test_add_func("/cache/expiry-and-disabled", test_expiry_and_disabled);
	g_test_add_func("/cache/generations", test_generations);
	g_test_add_func("/cache/listing", test_listing);
	g_test_add_func("/cache/links", test_links);
	g_test_add_func("/cache/rename", test_rename);
	g_test_add_func("/cache/bounded", test_bounded);
	return g_test_run();
}
