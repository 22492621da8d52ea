/*
 * Unit tests for fuse/symlink.c (contain_symlinks): which link targets are
 * shown, how absolute targets beneath the mount are made relative, and
 * which are refused.
 */
#include <glib.h>

#include "symlink.h"

struct tcase {
	const char *root, *link, *target;
	const char *want; /* NULL: refused */
};

static const struct tcase cases[] = {
	/* relative, staying beneath the root */
	{ "/srv/x", "/srv/x/l", "f", "f" },
	{ "/srv/x", "/srv/x/l", "a/b/c", "a/b/c" },
	{ "/srv/x", "/srv/x/d/l", "../f", "../f" },
	{ "/srv/x", "/srv/x/d/e/l", "../../f", "../../f" },
	{ "/srv/x", "/srv/x/d/l", "./../f", "./../f" },
	{ "/srv/x", "/srv/x/l", ".", "." },
	{ "/srv/x", "/srv/x//d//l", "..//f", "..//f" },
	/* relative, climbing out */
	{ "/srv/x", "/srv/x/l", "..", NULL },
	{ "/srv/x", "/srv/x/l", "../x/f", NULL },
	{ "/srv/x", "/srv/x/d/l", "../../etc/passwd", NULL },
	{ "/srv/x", "/srv/x/d/l", "../../../../../../etc", NULL },
	/* ".." after a name: the name may be a link to the root itself */
	{ "/srv/x", "/srv/x/d/l", "up/../f", NULL },
	{ "/srv/x", "/srv/x/d/l", "a/..", NULL },
	/* absolute, beneath the root: shown relative */
	{ "/srv/x", "/srv/x/l", "/srv/x/f", "f" },
	{ "/srv/x", "/srv/x/d/e/l", "/srv/x/f/g", "../../f/g" },
	{ "/srv/x", "/srv/x/d/l", "/srv/x", ".." },
	{ "/srv/x", "/srv/x/l", "/srv/x/", "." },
	{ "/srv/x", "/srv/x/l", "//srv//x//f", "f" },
	{ "/", "/d/l", "/etc/passwd", "../etc/passwd" },
	{ "/", "/l", "/", "." },
	/* absolute, elsewhere */
	{ "/srv/x", "/srv/x/l", "/etc/passwd", NULL },
	{ "/srv/x", "/srv/x/l", "/srv/xy/f", NULL },
	{ "/srv/x", "/srv/x/l", "/srv", NULL },
	{ "/srv/x", "/srv/x/l", "/srv/x/../y", NULL },
	{ "/srv/x", "/srv/x/l", "/srv/x/a/../../y", NULL },
	/* nonsense */
	{ "/srv/x", "/srv/x/l", "", NULL },
	{ "/srv/x", "/elsewhere/l", "f", NULL },
	{ "/srv/x", "/srv/x", "f", NULL },
	{ "/srv/x", "/srv/x/../l", "f", NULL },
};

static void test_cases(void)
{
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		const struct tcase *c = &cases[i];
		char *out = (char *)0x1;
		const char *why = NULL;
		int ret = symlink_contain(c->root, c->link, c->target, &out, &why);
		if (c->want) {
			if (ret != 0)
				g_error("%s in %s -> '%s': refused (%s), want '%s'", c->link, c->root,
					c->target, why, c->want);
			g_assert_cmpstr(out, ==, c->want);
			g_assert_null(why);
		} else {
			if (ret == 0)
				g_error("%s in %s -> '%s': shown as '%s', want refused", c->link, c->root,
					c->target, out);
			g_assert_null(out);
			g_assert_nonnull(why);
		}
		g_free(out);
	}
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/symlink/contain", test_cases);
	return g_test_run();
}
