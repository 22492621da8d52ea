/*
 * libFuzzer target for hashi's command line (fuse/main.c): parse_args, the
 * -o list splitter with its backslash escapes, and every option's value
 * parser, as hashi and as mount(8)'s helper (mount.fuse.hashi, where -s is
 * sloppy and user= is mount's).
 *
 * main.c is compiled into this file with its main() renamed, so that its
 * static parsers can be called as they are.
 *
 * Input: the first byte picks the program name (even: hashi, odd:
 * mount.fuse.hashi); the rest is the arguments, separated by NUL bytes (at
 * most 64).
 *
 * Checked besides the sanitizers: parse_args returns 0 or -1; on 0, at most
 * two positional arguments were taken, every ssh option kept is
 * "Keyword=value" with a keyword target.c knows (in its own spelling) and
 * no more of them than the table holds, and the values kept are in range
 * (umask, timeout); options_free releases everything (LeakSanitizer).
 */
#include "fuzz-common.h"

#define main hashi_main
#include "../../fuse/main.c"
#undef main

#define MAX_ARGS 64

static void reset(void)
{
	memset(&o, 0, sizeof(o));
	o.fuse_opts = g_ptr_array_new_with_free_func(g_free);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4096)
		return 0;
	char *buf = malloc(size);
	CHECK(buf);
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	argv[argc++] = (data[0] & 1) ? "mount.fuse.hashi" : "hashi";
	for (char *p = buf; p < buf + size - 1 && argc <= MAX_ARGS; p += strlen(p) + 1)
		argv[argc++] = p;
	argv[argc] = NULL;

	reset();
	o.mount_helper = data[0] & 1;
	int ret = parse_args(&o, argc, argv);
	CHECK(ret == 0 || ret == -1);
	if (ret == 0) {
		CHECK(!o.mountpoint || o.source);
		CHECK(o.topts.n >= 0 &&
		      o.topts.n <= (int)(sizeof(o.topts.opts) / sizeof(o.topts.opts[0])));
		for (int i = 0; i < o.topts.n; i++) {
			const char *eq = strchr(o.topts.opts[i], '=');
			CHECK(eq && eq > o.topts.opts[i]);
			char *kw = g_strndup(o.topts.opts[i], (gsize)(eq - o.topts.opts[i]));
			const char *canon = target_canonical_keyword(kw);
			CHECK(canon && strcmp(canon, kw) == 0);
			g_free(kw);
		}
		CHECK(!o.fs.set_umask || o.fs.umask <= 0777);
		CHECK(o.timeout_s <= 86400 * 365);
		CHECK(!o.sloppy || o.mount_helper);
	}
	options_free(&o);
	free(buf);
	return 0;
}
