/* Unit tests for sftp-server/paths.c's PATHS_NODE (the name itself, for calls
 * with no *at() form) against the real kernel: with a root, a link that
 * points out is reached itself and never followed, and a path that leads
 * out fails; without one, the client's path is used as given. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "paths.h"

struct jail {
	char *base, *root, *secret;
};

static void jail_make(struct jail *j)
{
	j->base = g_dir_make_tmp("hashi-paths-XXXXXX", NULL);
	g_assert_nonnull(j->base);
	j->root = g_build_filename(j->base, "root", NULL);
	char *outside = g_build_filename(j->base, "outside", NULL);
	j->secret = g_build_filename(outside, "secret", NULL);
	g_assert_cmpint(g_mkdir(j->root, 0755), ==, 0);
	g_assert_cmpint(g_mkdir(outside, 0755), ==, 0);
	g_assert_true(g_file_set_contents(j->secret, "s", 1, NULL));
	char *p = g_build_filename(j->root, "d", NULL);
	g_assert_cmpint(g_mkdir(p, 0755), ==, 0);
	g_free(p);
	p = g_build_filename(j->root, "f", NULL);
	g_assert_true(g_file_set_contents(p, "f", 1, NULL));
	g_free(p);
	p = g_build_filename(j->root, "abs", NULL);
	g_assert_cmpint(symlink(j->secret, p), ==, 0);
	g_free(p);
	p = g_build_filename(j->root, "rel", NULL);
	g_assert_cmpint(symlink("../outside", p), ==, 0);
	g_free(p);
	g_free(outside);
}

static void jail_free(struct jail *j)
{
	char *argv[] = { "rm", "-rf", j->base, NULL };
	g_assert_true(g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
				   NULL, NULL));
	g_free(j->base);
	g_free(j->root);
	g_free(j->secret);
}

/* lstat(2) of a name under the root, from here. */
static ino_t ino_in(const struct jail *j, const char *name)
{
	char *p = g_build_filename(j->root, name, NULL);
	struct stat st;
	g_assert_cmpint(lstat(p, &st), ==, 0);
	g_free(p);
	return st.st_ino;
}

static void test_node_with_root(void)
{
	struct jail j;
	jail_make(&j);
	/* An attribute on what the link points to: it must never be seen. */
	bool have_user_xattr = setxattr(j.secret, "user.secret", "x", 1, 0) == 0;
	struct paths *p = paths_new_root(j.root, NULL);
	g_assert_nonnull(p);
	struct spath sp;
	struct stat st;

	g_assert_cmpint(paths_resolve(p, "abs", PATHS_NODE, &sp), ==, 0);
	g_assert_true(sp.follow);
	g_assert_cmpint(fstatat(sp.dirfd, sp.name, &st, 0), ==, 0);
	g_assert_true(S_ISLNK(st.st_mode));
	g_assert_cmpuint(st.st_ino, ==, ino_in(&j, "abs"));
	if (have_user_xattr) {
		char buf[256];
		g_assert_cmpint(listxattr(sp.name, buf, sizeof(buf)), ==, 0);
		errno = 0;
		g_assert_cmpint(getxattr(sp.name, "user.secret", buf, sizeof(buf)), <, 0);
		g_assert_cmpint(errno, ==, ENODATA);
		/* no user.* attributes on a symbolic link: this is the link */
		g_assert_cmpint(setxattr(sp.name, "user.x", "1", 1, 0), <, 0);
		g_assert_cmpint(errno, ==, EPERM);
	}
	spath_done(&sp);

	static const struct { const char *path, *is; } inside[] = {
		{ "f", "f" }, { "/f", "f" }, { "d/", "d" }, { "d/..", "." }, { ".", "." },
		{ "/../f", "f" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(inside); i++) {
		g_assert_cmpint(paths_resolve(p, inside[i].path, PATHS_NODE, &sp), ==, 0);
		g_assert_cmpint(fstatat(sp.dirfd, sp.name, &st, 0), ==, 0);
		g_assert_cmpuint(st.st_ino, ==, ino_in(&j, inside[i].is));
		spath_done(&sp);
	}

	static const char *const out[] = { "rel/secret", "d/../../outside/secret", "abs/",
					   "rel/", "/rel/secret" };
	for (size_t i = 0; i < G_N_ELEMENTS(out); i++) {
		errno = 0;
		g_assert_cmpint(paths_resolve(p, out[i], PATHS_NODE, &sp), <, 0);
		g_assert_cmpint(errno, ==, EACCES);
	}
	errno = 0;
	g_assert_cmpint(paths_resolve(p, "missing", PATHS_NODE, &sp), <, 0);
	g_assert_cmpint(errno, ==, ENOENT);
	paths_free(p);
	jail_free(&j);
}

static void test_node_without_root(void)
{
	struct spath sp;
	g_assert_cmpint(paths_resolve(NULL, "a/link", PATHS_NODE, &sp), ==, 0);
	g_assert_cmpint(sp.dirfd, ==, AT_FDCWD);
	g_assert_cmpstr(sp.name, ==, "a/link");
	g_assert_false(sp.follow); /* the l- variant */
	spath_done(&sp);
	g_assert_cmpint(paths_resolve(NULL, "a/link", PATHS_FOLLOW, &sp), ==, 0);
	g_assert_true(sp.follow);
	spath_done(&sp);
	g_assert_cmpint(paths_resolve(NULL, "a/link", PATHS_LAST, &sp), ==, 0);
	g_assert_false(sp.follow);
	spath_done(&sp);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/paths/node/with-root", test_node_with_root);
	g_test_add_func("/paths/node/without-root", test_node_without_root);
	return g_test_run();
}
