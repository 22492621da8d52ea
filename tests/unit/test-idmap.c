/*
 * Unit tests for fuse/idmap.c: idmap=none|user|file|names, uidfile/gidfile
 * parsing and its errors, nomap=ignore|error in both directions, and a
 * two-thread smoke test of the lock.
 *
 * Local names used: users root(0) daemon(1) bin(2), groups root(0) daemon(1)
 * bin(2), present on every Debian-like system.
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "idmap.h"

static char *tmpdir;
static uint32_t overflow_uid = 65534, overflow_gid = 65534;

static uint32_t read_proc(const char *path)
{
	unsigned long v = 65534;
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 65534;
		fclose(f);
	}
	return (uint32_t)v;
}

/* Write a map file (mode 0600) in tmpdir; returns its path (free it). */
static char *map_file(const char *name, const char *text)
{
	char *path = g_build_filename(tmpdir, name, NULL);
	GError *error = NULL;
	g_assert_true(g_file_set_contents(path, text, -1, &error));
	g_assert_no_error(error);
	g_assert_cmpint(chmod(path, 0600), ==, 0);
	return path;
}

static struct idmap *new_ok(enum idmap_mode mode, const char *uidfile, const char *gidfile, bool nomap_error)
{
	char err[256] = "untouched";
	struct idmap *m = idmap_new(mode, uidfile, gidfile, nomap_error, err, sizeof(err));
	if (!m)
		g_error("idmap_new failed: %s", err);
	return m;
}

/* idmap_new must fail with a message containing each of the parts. */
static void new_fails(enum idmap_mode mode, const char *uidfile, const char *gidfile, const char *part1,
		      const char *part2)
{
	char err[256] = "";
	struct idmap *m = idmap_new(mode, uidfile, gidfile, true, err, sizeof(err));
	g_assert_null(m);
	g_assert_null(strchr(err, '\n'));
	if (part1 && !strstr(err, part1))
		g_error("error '%s' lacks '%s'", err, part1);
	if (part2 && !strstr(err, part2))
		g_error("error '%s' lacks '%s'", err, part2);
}

/* The same, for an error that must start with "FILE:LINE:". */
static void new_fails_at(enum idmap_mode mode, const char *uidfile, const char *gidfile, const char *file,
			 unsigned line, const char *part)
{
	char *where = g_strdup_printf("%s:%u:", file, line);
	char err[256] = "";
	g_assert_null(idmap_new(mode, uidfile, gidfile, true, err, sizeof(err)));
	if (!g_str_has_prefix(err, where))
		g_error("error '%s' does not start with '%s'", err, where);
	if (part && !strstr(err, part))
		g_error("error '%s' lacks '%s'", err, part);
	g_free(where);
}

static void test_mode_from_name(void)
{
	enum idmap_mode mode = IDMAP_FILE;
	g_assert_cmpint(idmap_mode_from_name("none", &mode), ==, 0);
	g_assert_cmpint(mode, ==, IDMAP_NONE);
	g_assert_cmpint(idmap_mode_from_name("user", &mode), ==, 0);
	g_assert_cmpint(mode, ==, IDMAP_USER);
	g_assert_cmpint(idmap_mode_from_name("file", &mode), ==, 0);
	g_assert_cmpint(mode, ==, IDMAP_FILE);
	g_assert_cmpint(idmap_mode_from_name("names", &mode), ==, 0);
	g_assert_cmpint(mode, ==, IDMAP_NAMES);
	mode = IDMAP_USER;
	g_assert_cmpint(idmap_mode_from_name("", &mode), ==, -1);
	g_assert_cmpint(idmap_mode_from_name("None", &mode), ==, -1);
	g_assert_cmpint(idmap_mode_from_name("name", &mode), ==, -1);
	g_assert_cmpint(idmap_mode_from_name("files", &mode), ==, -1);
	g_assert_cmpint(idmap_mode_from_name(NULL, &mode), ==, -1);
	g_assert_cmpint(mode, ==, IDMAP_USER);
}

static void test_none(void)
{
	for (int nomap_error = 0; nomap_error <= 1; nomap_error++) {
		struct idmap *m = new_ok(IDMAP_NONE, NULL, NULL, nomap_error);
		uint32_t r = 7;
		static const uint32_t ids[] = { 0, 1, 1000, 65534, 4000000000u, UINT32_MAX };
		for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
			g_assert_cmpuint(idmap_uid_to_local(m, ids[i]), ==, ids[i]);
			g_assert_cmpuint(idmap_gid_to_local(m, ids[i]), ==, ids[i]);
			g_assert_cmpint(idmap_uid_to_remote(m, ids[i], &r), ==, 0);
			g_assert_cmpuint(r, ==, ids[i]);
			g_assert_cmpint(idmap_gid_to_remote(m, ids[i], &r), ==, 0);
			g_assert_cmpuint(r, ==, ids[i]);
			g_assert_true(idmap_uid_known(m, ids[i]));
			g_assert_true(idmap_gid_known(m, ids[i]));
		}
		/* set_user and learn do nothing here */
		idmap_set_user(m, 1000, 1000, 0, 0);
		idmap_learn_uid(m, 5, "root");
		idmap_learn_gid(m, 5, "root");
		g_assert_cmpuint(idmap_uid_to_local(m, 1000), ==, 1000);
		g_assert_cmpuint(idmap_uid_to_local(m, 5), ==, 5);
		g_assert_cmpuint(idmap_gid_to_local(m, 5), ==, 5);
		idmap_free(m);
	}
	/* A NULL map is mode none. */
	uint32_t r = 0;
	g_assert_cmpuint(idmap_uid_to_local(NULL, 42), ==, 42);
	g_assert_cmpuint(idmap_gid_to_local(NULL, 43), ==, 43);
	g_assert_cmpint(idmap_uid_to_remote(NULL, 44, &r), ==, 0);
	g_assert_cmpuint(r, ==, 44);
	g_assert_cmpint(idmap_gid_to_remote(NULL, 45, &r), ==, 0);
	g_assert_cmpuint(r, ==, 45);
	g_assert_true(idmap_uid_known(NULL, 1));
	idmap_free(NULL);
}

static void test_user(void)
{
	for (int nomap_error = 0; nomap_error <= 1; nomap_error++) {
		struct idmap *m = new_ok(IDMAP_USER, NULL, NULL, nomap_error);
		uint32_t r;

		/* Before the remote user is known: everything unchanged. */
		g_assert_cmpuint(idmap_uid_to_local(m, 2000), ==, 2000);
		g_assert_cmpint(idmap_uid_to_remote(m, 1000, &r), ==, 0);
		g_assert_cmpuint(r, ==, 1000);

		idmap_set_user(m, 2000, 3000, 1000, 1001);
		g_assert_cmpuint(idmap_uid_to_local(m, 2000), ==, 1000);
		g_assert_cmpuint(idmap_gid_to_local(m, 3000), ==, 1001);
		g_assert_cmpint(idmap_uid_to_remote(m, 1000, &r), ==, 0);
		g_assert_cmpuint(r, ==, 2000);
		g_assert_cmpint(idmap_gid_to_remote(m, 1001, &r), ==, 0);
		g_assert_cmpuint(r, ==, 3000);
		/* uid and gid are separate: remote gid 2000 is not the user's */
		g_assert_cmpuint(idmap_gid_to_local(m, 2000), ==, 2000);
		g_assert_cmpuint(idmap_uid_to_local(m, 3000), ==, 3000);
		/* Every other id passes unchanged, whatever nomap says (sshfs). */
		g_assert_cmpuint(idmap_uid_to_local(m, 0), ==, 0);
		g_assert_cmpuint(idmap_gid_to_local(m, 77), ==, 77);
		g_assert_cmpint(idmap_uid_to_remote(m, 0, &r), ==, 0);
		g_assert_cmpuint(r, ==, 0);
		g_assert_cmpint(idmap_gid_to_remote(m, 77, &r), ==, 0);
		g_assert_cmpuint(r, ==, 77);
		/* "leave unchanged" stays so */
		g_assert_cmpint(idmap_uid_to_remote(m, (uid_t)-1, &r), ==, 0);
		g_assert_cmpuint(r, ==, UINT32_MAX);
		g_assert_true(idmap_uid_known(m, 12345));
		g_assert_true(idmap_gid_known(m, 12345));

		/* Called again (a reconnect found another owner). */
		idmap_set_user(m, 2500, 3500, 1000, 1001);
		g_assert_cmpuint(idmap_uid_to_local(m, 2000), ==, 2000);
		g_assert_cmpuint(idmap_uid_to_local(m, 2500), ==, 1000);
		g_assert_cmpint(idmap_gid_to_remote(m, 1001, &r), ==, 0);
		g_assert_cmpuint(r, ==, 3500);
		idmap_free(m);
	}
}

static void test_file(void)
{
	/* name:id lines, comments, blank lines, spaces and CRLF; a passwd-style
	 * gidfile; a name with no local user is skipped (as sshfs does). */
	char *uidfile = map_file("uid.map",
				 "# local-name:remote-uid\n"
				 "\n"
				 "root:1000\n"
				 "   # indented comment\n"
				 "daemon: 2000 \r\n"
				 "no-such-user-hashi-test:3000\n"
				 "\t\n"
				 "bin:4000"); /* no final newline */
	char *gidfile = map_file("gid.map",
				 "root:x:500:\n"
				 "daemon:x:600:alice,bob\n"
				 "bin:x:700:");
	uint32_t r;

	struct idmap *m = new_ok(IDMAP_FILE, uidfile, gidfile, true);
	g_assert_cmpuint(idmap_uid_to_local(m, 1000), ==, 0);
	g_assert_cmpuint(idmap_uid_to_local(m, 2000), ==, 1);
	g_assert_cmpuint(idmap_uid_to_local(m, 4000), ==, 2);
	g_assert_cmpuint(idmap_gid_to_local(m, 500), ==, 0);
	g_assert_cmpuint(idmap_gid_to_local(m, 600), ==, 1);
	g_assert_cmpuint(idmap_gid_to_local(m, 700), ==, 2);
	g_assert_cmpint(idmap_uid_to_remote(m, 0, &r), ==, 0);
	g_assert_cmpuint(r, ==, 1000);
	g_assert_cmpint(idmap_uid_to_remote(m, 1, &r), ==, 0);
	g_assert_cmpuint(r, ==, 2000);
	g_assert_cmpint(idmap_gid_to_remote(m, 2, &r), ==, 0);
	g_assert_cmpuint(r, ==, 700);
	/* nomap=error: unmapped remote ids show as the overflow id, chown to an
	 * unmapped local id is refused */
	g_assert_cmpuint(idmap_uid_to_local(m, 3000), ==, overflow_uid); /* skipped line */
	g_assert_cmpuint(idmap_uid_to_local(m, 0), ==, overflow_uid);
	g_assert_cmpuint(idmap_gid_to_local(m, 1000), ==, overflow_gid);
	g_assert_cmpint(idmap_uid_to_remote(m, 1000, &r), ==, -1);
	g_assert_cmpint(idmap_gid_to_remote(m, 1000, &r), ==, -1);
	g_assert_cmpint(idmap_uid_to_remote(m, 65534, &r), ==, -1);
	/* but "leave unchanged" is never refused */
	g_assert_cmpint(idmap_uid_to_remote(m, (uid_t)-1, &r), ==, 0);
	g_assert_cmpuint(r, ==, UINT32_MAX);
	g_assert_cmpint(idmap_gid_to_remote(m, (gid_t)-1, &r), ==, 0);
	g_assert_cmpuint(r, ==, UINT32_MAX);
	g_assert_true(idmap_uid_known(m, 3000));
	/* set_user and learn are ignored in this mode */
	idmap_set_user(m, 3000, 3000, 5, 5);
	idmap_learn_uid(m, 3000, "root");
	g_assert_cmpuint(idmap_uid_to_local(m, 3000), ==, overflow_uid);
	idmap_free(m);

	/* nomap=ignore: unmapped ids pass through both ways */
	m = new_ok(IDMAP_FILE, uidfile, gidfile, false);
	g_assert_cmpuint(idmap_uid_to_local(m, 1000), ==, 0);
	g_assert_cmpuint(idmap_uid_to_local(m, 3000), ==, 3000);
	g_assert_cmpuint(idmap_gid_to_local(m, 1000), ==, 1000);
	g_assert_cmpint(idmap_uid_to_remote(m, 1000, &r), ==, 0);
	g_assert_cmpuint(r, ==, 1000);
	g_assert_cmpint(idmap_gid_to_remote(m, 1234, &r), ==, 0);
	g_assert_cmpuint(r, ==, 1234);
	g_assert_cmpint(idmap_gid_to_remote(m, 1, &r), ==, 0);
	g_assert_cmpuint(r, ==, 600);
	idmap_free(m);

	/* Only a uidfile: gids are not mapped at all, even with nomap=error. */
	m = new_ok(IDMAP_FILE, uidfile, NULL, true);
	g_assert_cmpuint(idmap_uid_to_local(m, 1000), ==, 0);
	g_assert_cmpuint(idmap_uid_to_local(m, 9), ==, overflow_uid);
	g_assert_cmpuint(idmap_gid_to_local(m, 500), ==, 500);
	g_assert_cmpuint(idmap_gid_to_local(m, 9), ==, 9);
	g_assert_cmpint(idmap_gid_to_remote(m, 9, &r), ==, 0);
	g_assert_cmpuint(r, ==, 9);
	idmap_free(m);

	/* Only a gidfile: the other way round. */
	m = new_ok(IDMAP_FILE, NULL, gidfile, true);
	g_assert_cmpuint(idmap_uid_to_local(m, 9), ==, 9);
	g_assert_cmpint(idmap_uid_to_remote(m, 9, &r), ==, 0);
	g_assert_cmpuint(r, ==, 9);
	g_assert_cmpuint(idmap_gid_to_local(m, 9), ==, overflow_gid);
	idmap_free(m);

	/* A repeated name or id: the later line wins, both ways. */
	char *dup = map_file("dup.map", "root:10\nroot:11\ndaemon:12\nbin:12\n");
	m = new_ok(IDMAP_FILE, dup, NULL, true);
	g_assert_cmpint(idmap_uid_to_remote(m, 0, &r), ==, 0);
	g_assert_cmpuint(r, ==, 11);
	g_assert_cmpuint(idmap_uid_to_local(m, 10), ==, 0);
	g_assert_cmpuint(idmap_uid_to_local(m, 11), ==, 0);
	g_assert_cmpuint(idmap_uid_to_local(m, 12), ==, 2);
	idmap_free(m);

	/* An empty file is valid: nothing is mapped. */
	char *empty = map_file("empty.map", "# nothing\n\n");
	m = new_ok(IDMAP_FILE, empty, empty, false);
	g_assert_cmpuint(idmap_uid_to_local(m, 0), ==, 0);
	idmap_free(m);

	g_free(uidfile);
	g_free(gidfile);
	g_free(dup);
	g_free(empty);
}

static void test_file_errors(void)
{
	char *missing = g_build_filename(tmpdir, "does-not-exist.map", NULL);
	char *good = map_file("good.map", "root:1\n");
	char *p;

	new_fails(IDMAP_FILE, NULL, NULL, "need a uidfile or gidfile", NULL);
	new_fails(IDMAP_FILE, missing, NULL, missing, "No such file");
	new_fails(IDMAP_FILE, good, missing, missing, "No such file");

	p = map_file("noid.map", "root:1\n# c\njustaname\n");
	new_fails_at(IDMAP_FILE, p, NULL, p, 3, "bad line");
	new_fails_at(IDMAP_FILE, NULL, p, p, 3, "bad line");
	g_free(p);

	p = map_file("badid.map", "root:12x\n");
	new_fails_at(IDMAP_FILE, p, NULL, p, 1, "12x");
	g_free(p);
	p = map_file("negid.map", "\n\nroot:-1\n");
	new_fails_at(IDMAP_FILE, p, NULL, p, 3, "-1");
	g_free(p);
	p = map_file("bigid.map", "root:4294967296\n");
	new_fails_at(IDMAP_FILE, p, NULL, p, 1, "bad id");
	g_free(p);
	p = map_file("emptyid.map", "root:\n");
	new_fails_at(IDMAP_FILE, p, NULL, p, 1, "bad id");
	g_free(p);
	p = map_file("pwemptyid.map", "root:x::0\n");
	new_fails_at(IDMAP_FILE, p, NULL, p, 1, "bad id");
	g_free(p);
	p = map_file("noname.map", ":5\n");
	new_fails_at(IDMAP_FILE, p, NULL, p, 1, "name");
	g_free(p);

	/* sshfs's safety checks: writable by others, owned by someone else */
	p = map_file("groupw.map", "root:1\n");
	g_assert_cmpint(chmod(p, 0620), ==, 0);
	new_fails(IDMAP_FILE, p, NULL, p, "writable by other users");
	g_assert_cmpint(chmod(p, 0602), ==, 0);
	new_fails(IDMAP_FILE, NULL, p, p, "writable by other users");
	g_free(p);
	if (getuid() == 0) {
		p = map_file("other.map", "root:1\n");
		g_assert_cmpint(chown(p, 1, 1), ==, 0);
		new_fails(IDMAP_FILE, p, NULL, p, "not owned by uid 0");
		g_free(p);
	}
	new_fails(IDMAP_FILE, tmpdir, NULL, tmpdir, NULL); /* a directory */

	/* Files are read only in mode file. */
	struct idmap *m = new_ok(IDMAP_NONE, missing, missing, true);
	idmap_free(m);
	m = new_ok(IDMAP_NAMES, missing, NULL, true);
	idmap_free(m);

	/* An error buffer of size 0 is allowed. */
	g_assert_null(idmap_new(IDMAP_FILE, missing, NULL, true, NULL, 0));

	g_free(missing);
	g_free(good);
}

static void test_names(void)
{
	for (int nomap_error = 0; nomap_error <= 1; nomap_error++) {
		struct idmap *m = new_ok(IDMAP_NAMES, NULL, NULL, nomap_error);
#define UNMAPPED(id) (nomap_error ? overflow_uid : (id))
		uint32_t r;

		g_assert_false(idmap_uid_known(m, 5000));
		g_assert_false(idmap_gid_known(m, 5000));
		/* not learned yet: nomap */
		g_assert_cmpuint(idmap_uid_to_local(m, 5000), ==, UNMAPPED(5000));
		g_assert_cmpint(idmap_uid_to_remote(m, 1, &r), ==, nomap_error ? -1 : 0);

		idmap_learn_uid(m, 5000, "daemon");
		idmap_learn_uid(m, 5001, "");                        /* no such remote user */
		idmap_learn_uid(m, 5002, "no-such-user-hashi-test"); /* no local user */
		idmap_learn_uid(m, 5003, NULL);
		idmap_learn_uid(m, 0, "root");
		idmap_learn_gid(m, 5000, "bin");
		idmap_learn_gid(m, 7000, "no-such-group-hashi-test");

		for (uint32_t id = 5000; id <= 5003; id++)
			g_assert_true(idmap_uid_known(m, id));
		g_assert_true(idmap_uid_known(m, 0));
		g_assert_false(idmap_uid_known(m, 5004));
		g_assert_true(idmap_gid_known(m, 5000));
		g_assert_false(idmap_gid_known(m, 5001)); /* uids and gids are separate */

		g_assert_cmpuint(idmap_uid_to_local(m, 5000), ==, 1);
		g_assert_cmpuint(idmap_uid_to_local(m, 0), ==, 0);
		g_assert_cmpuint(idmap_uid_to_local(m, 5001), ==, UNMAPPED(5001));
		g_assert_cmpuint(idmap_uid_to_local(m, 5002), ==, UNMAPPED(5002));
		g_assert_cmpuint(idmap_uid_to_local(m, 5003), ==, UNMAPPED(5003));
		g_assert_cmpuint(idmap_gid_to_local(m, 5000), ==, 2);
		g_assert_cmpuint(idmap_gid_to_local(m, 7000), ==, nomap_error ? overflow_gid : 7000);

		/* local -> local name -> remote id learned with that name */
		g_assert_cmpint(idmap_uid_to_remote(m, 1, &r), ==, 0);
		g_assert_cmpuint(r, ==, 5000);
		g_assert_cmpint(idmap_uid_to_remote(m, 0, &r), ==, 0);
		g_assert_cmpuint(r, ==, 0);
		g_assert_cmpint(idmap_gid_to_remote(m, 2, &r), ==, 0);
		g_assert_cmpuint(r, ==, 5000);
		/* bin's remote uid has not been seen: nomap */
		g_assert_cmpint(idmap_uid_to_remote(m, 2, &r), ==, nomap_error ? -1 : 0);
		if (!nomap_error)
			g_assert_cmpuint(r, ==, 2);
		g_assert_cmpint(idmap_gid_to_remote(m, 1, &r), ==, nomap_error ? -1 : 0);
		g_assert_cmpint(idmap_uid_to_remote(m, (uid_t)-1, &r), ==, 0);
		g_assert_cmpuint(r, ==, UINT32_MAX);

		/* Learning an id again replaces what it was. */
		idmap_learn_uid(m, 5000, "bin");
		g_assert_cmpuint(idmap_uid_to_local(m, 5000), ==, 2);
		g_assert_cmpint(idmap_uid_to_remote(m, 2, &r), ==, 0);
		g_assert_cmpuint(r, ==, 5000);
		g_assert_cmpint(idmap_uid_to_remote(m, 1, &r), ==, nomap_error ? -1 : 0);
		idmap_learn_uid(m, 5000, "");
		g_assert_cmpuint(idmap_uid_to_local(m, 5000), ==, UNMAPPED(5000));
		g_assert_cmpint(idmap_uid_to_remote(m, 2, &r), ==, nomap_error ? -1 : 0);
		g_assert_true(idmap_uid_known(m, 5000));

		/* set_user is ignored in this mode */
		idmap_set_user(m, 5001, 5001, 3, 3);
		g_assert_cmpuint(idmap_uid_to_local(m, 5001), ==, UNMAPPED(5001));
		idmap_free(m);
#undef UNMAPPED
	}
}

/* Two threads: one learns and re-learns names, the other translates; every
 * answer must be one of the values the map could hold at that moment. */
struct hammer {
	struct idmap *m;
	int rounds;
	gboolean bad;
};

static void *hammer_learn(void *arg)
{
	struct hammer *h = arg;
	static const char *const names[] = { "root", "daemon", "bin", "", "no-such-user-hashi-test" };
	for (int i = 0; i < h->rounds; i++) {
		uint32_t remote = 10000 + (uint32_t)(i % 64);
		idmap_learn_uid(h->m, remote, names[i % G_N_ELEMENTS(names)]);
		idmap_learn_gid(h->m, remote, names[(i + 1) % G_N_ELEMENTS(names)]);
		(void)idmap_uid_to_local(h->m, remote);
	}
	return NULL;
}

static void *hammer_lookup(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < h->rounds; i++) {
		uint32_t remote = 10000 + (uint32_t)(i % 64), r;
		uid_t u = idmap_uid_to_local(h->m, remote);
		gid_t g = idmap_gid_to_local(h->m, remote);
		if (!(u <= 2 || u == overflow_uid) || !(g <= 2 || g == overflow_gid))
			h->bad = TRUE;
		if (idmap_uid_to_remote(h->m, (uid_t)(i % 3), &r) == 0 && (r < 10000 || r >= 10064))
			h->bad = TRUE;
		(void)idmap_gid_known(h->m, remote);
		(void)idmap_uid_known(h->m, remote);
	}
	return NULL;
}

static void test_threads(void)
{
	struct hammer h = { new_ok(IDMAP_NAMES, NULL, NULL, true), 20000, FALSE };
	pthread_t a, b, c;
	g_assert_cmpint(pthread_create(&a, NULL, hammer_learn, &h), ==, 0);
	g_assert_cmpint(pthread_create(&b, NULL, hammer_lookup, &h), ==, 0);
	g_assert_cmpint(pthread_create(&c, NULL, hammer_lookup, &h), ==, 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	pthread_join(c, NULL);
	g_assert_false(h.bad);
	idmap_free(h.m);

	/* and a file map read by two threads at once */
	char *f = map_file("threads.map", "root:10000\ndaemon:10001\nbin:10002\n");
	struct idmap *m = new_ok(IDMAP_FILE, f, f, true);
	struct hammer h2 = { m, 20000, FALSE };
	g_assert_cmpint(pthread_create(&a, NULL, hammer_lookup, &h2), ==, 0);
	g_assert_cmpint(pthread_create(&b, NULL, hammer_lookup, &h2), ==, 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	g_assert_false(h2.bad);
	idmap_free(m);
	g_free(f);
}

int main(int argc, char **argv)
{
	GError *error = NULL;
	int rc;

	g_test_init(&argc, &argv, NULL);
	tmpdir = g_dir_make_tmp("hashi-idmap-XXXXXX", &error);
	g_assert_no_error(error);
	overflow_uid = read_proc("/proc/sys/fs/overflowuid");
	overflow_gid = read_proc("/proc/sys/fs/overflowgid");

	g_test_add_func("/idmap/mode-from-name", test_mode_from_name);
	g_test_add_func("/idmap/none", test_none);
	g_test_add_func("/idmap/user", test_user);
	g_test_add_func("/idmap/file", test_file);
	g_test_add_func("/idmap/file-errors", test_file_errors);
	g_test_add_func("/idmap/names", test_names);
	g_test_add_func("/idmap/threads", test_threads);
	rc = g_test_run();

	char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		g_printerr("could not remove %s\n", tmpdir);
	g_free(cmd);
	g_free(tmpdir);
	return rc;
}
