/*
 * libFuzzer target for the built-in ssh_config reader in fuse/target.c
 * (target_resolve with HASHI_NO_SSH_G=1), and for target_split and
 * target_canonical_keyword.
 *
 * SAFETY: a config file can name other files (Include, with globs, ~ and
 * absolute paths) and commands (Match exec, run through $SHELL). Left to
 * itself the reader would glob over the real filesystem as whoever runs the
 * fuzzer (often root), could open a FIFO and block, read /proc/kcore, or
 * include its own corpus recursively. So while target.c runs, it sees a small
 * made-up filesystem instead: the executable is linked with
 * -Wl,--wrap=fopen,fopen64,glob,glob64,globfree,globfree64,fork (see
 * meson.build), and
 *   - glob() matches the pattern (after ~ expansion, as GLOB_TILDE does,
 *     with HOME=/home/fuzz) against the fixed list of paths in vfs[] below,
 *     with fnmatch(FNM_PATHNAME | FNM_PERIOD), and never reads a directory;
 *   - fopen() opens only those paths, for reading only (a file is a memfd,
 *     opened again through /proc/self/fd: nothing on disk, nothing left
 *     behind however the process ends; a directory is "/", which opens and
 *     then cannot be read); anything else is ENOENT;
 *   - fork() fails with EAGAIN, so Match exec (SHELL=/bin/false) gets as far
 *     as forking and never runs anything.
 * Outside target.c's calls (armed == false) the wrappers pass everything on
 * to the C library, so libFuzzer itself is unaffected.
 *
 * Input format: leading directive lines, then the config file.
 *   -h HOST    the host to resolve (default "fuzzhost"), as hashi's main.c
 *              gets it: through target_split("HOST:"), whose host (and user,
 *              unless -u) is resolved; nothing is resolved if it refuses
 *   -u USER    the user (as -l; default none)
 *   -d DIR     the remote directory
 *   -o OPTION  a -o option ("Keyword=value", or hashi's sftp_server= and
 *              password_stdin), up to 16
 *   -F PATH    read PATH (one of vfs[], or "none") instead of the input; "-"
 *              for no -F: the user's ~/.ssh/config (from the password
 *              database: /root/.ssh/config in vfs[] when run as root), then
 *              /etc/ssh/ssh_config
 *   -s SPEC    the string for target_split (default: the first line of the
 *              file)
 * The rest is the file /fuzz/config (mode 0666, so that an Include of it is
 * refused as ssh refuses a writable file: no self-inclusion).
 *
 * Checked besides the sanitizers: target_resolve either fails with a message
 * and leaves the target zeroed, or fills hostname, user, a port of 1-65535,
 * the algorithm lists (which may be empty, as ssh -G prints them after
 * "Ciphers -*"), at most TARGET_MAX_LIST identity and known_hosts
 * files, values in range, no newline in any string; target_free zeroes it.
 * target_split either fails with a message and NULLs, or returns a host
 * that is not empty and has no blank, control character or bracket, a user
 * (when any) that is what came before the last '@', a dir that is what came
 * after the colon. target_canonical_keyword returns NULL or a name equal to
 * its argument but for case, and is idempotent.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"
#include "target.h"

#include "fuzz-common.h"


/* ------------------------------------------------------------------ */
/* The made-up filesystem                                             */

#define VHOME "/home/fuzz"
#define INPUT_PATH "/fuzz/config"

static const struct vfile {
	const char *path; /* what target.c names */
	mode_t mode;      /* 0: a directory */
	const char *text;
} vfs[] = {
	/* sorted, as glob() returns its matches */
	{ "/etc", 0, NULL },
	{ "/etc/ssh", 0, NULL },
	{ "/etc/ssh/ssh_config", 0644,
	  "Include /etc/ssh/ssh_config.d/*.conf\n"
	  "Host *\n"
	  "    SendEnv LANG LC_*\n"
	  "    HashKnownHosts yes\n"
	  "    GSSAPIAuthentication yes\n" },
	{ "/etc/ssh/ssh_config.d", 0, NULL },
	{ "/etc/ssh/ssh_config.d/10-fuzz.conf", 0644,
	  "Host *.example.com\n"
	  "    User exuser\n"
	  "    Port 2200\n"
	  "    IdentityFile ~/.ssh/id_ex\n" },
	{ "/etc/ssh/ssh_config.d/20-match.conf", 0644,
	  "Match host alias,*.internal !user root\n"
	  "    ProxyJump bastion.example.com:2222\n"
	  "    ControlPath ~/.ssh/cm-%C\n" },
	{ "/etc/ssh/ssh_config.d/README", 0644, "this is not a config file\n" },
	{ "/fuzz", 0, NULL },
	{ INPUT_PATH, 0666, NULL }, /* the input */
	{ "/home", 0, NULL },
	{ VHOME, 0, NULL },
	{ VHOME "/.ssh", 0, NULL },
	{ VHOME "/.ssh/badperm", 0666, "Port 1\n" },
	{ VHOME "/.ssh/config", 0600,
	  "Host fuzzhost alias\n"
	  "    HostName real.example.com\n"
	  "    User fuzzuser\n" },
	{ VHOME "/.ssh/config.d", 0, NULL },
	{ VHOME "/.ssh/config.d/a", 0644,
	  "Host fuzzhost\n"
	  "    HostName real.example.com\n"
	  "    UserKnownHostsFile ~/.ssh/kh_%h %d/kh2\n" },
	{ VHOME "/.ssh/config.d/b", 0644,
	  "Match final host real.example.com\n"
	  "    IdentitiesOnly yes\n"
	  "    IdentityFile %d/.ssh/id_%r@%h\n" },
	{ VHOME "/.ssh/nested", 0644,
	  "Include config.d/*\n"
	  "Host nested\n"
	  "    Port 2022\n" },
	{ "/root", 0, NULL },
	{ "/root/.ssh", 0, NULL },
	{ "/root/.ssh/config", 0600,
	  "Host *\n"
	  "    ServerAliveInterval 5\n"
	  "Host fuzzhost\n"
	  "    Include ~/.ssh/nested\n" },
};
#define NVFS (sizeof(vfs) / sizeof(vfs[0]))

static char realpaths[NVFS][40]; /* "/proc/self/fd/N", or "/" for a directory */
static int realfds[NVFS];
static bool armed; /* target.c is running: the wrappers fake the filesystem */

FILE *__real_fopen(const char *path, const char *mode);
FILE *__real_fopen64(const char *path, const char *mode);
int __real_glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g);
int __real_glob64(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g);
void __real_globfree(glob_t *g);
void __real_globfree64(glob_t *g);
pid_t __real_fork(void);
FILE *__wrap_fopen(const char *path, const char *mode);
FILE *__wrap_fopen64(const char *path, const char *mode);
int __wrap_glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g);
int __wrap_glob64(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g);
void __wrap_globfree(glob_t *g);
void __wrap_globfree64(glob_t *g);
pid_t __wrap_fork(void);

static FILE *vfopen(const char *path, const char *mode)
{
	if (mode[0] != 'r' || strchr(mode, '+') != NULL) {
		fprintf(stderr, "fuzz-sshconfig: target.c opened %s with mode \"%s\"\n", path, mode);
		abort();
	}
	for (size_t i = 0; i < NVFS; i++)
		if (strcmp(vfs[i].path, path) == 0)
			return __real_fopen64(realpaths[i], mode);
	errno = ENOENT;
	return NULL;
}

FILE *__wrap_fopen(const char *path, const char *mode)
{
	return armed ? vfopen(path, mode) : __real_fopen(path, mode);
}

FILE *__wrap_fopen64(const char *path, const char *mode)
{
	return armed ? vfopen(path, mode) : __real_fopen64(path, mode);
}

static int vglob(const char *pattern, int flags, glob_t *g)
{
	char pat[PATH_MAX];

	if ((flags & ~(GLOB_TILDE | GLOB_TILDE_CHECK | GLOB_ERR | GLOB_NOSORT)) != 0) {
		fprintf(stderr, "fuzz-sshconfig: glob flags 0x%x are not faked\n", flags);
		abort();
	}
	/* ~ and ~user, as GLOB_TILDE expands them (HOME first for ~). */
	if ((flags & (GLOB_TILDE | GLOB_TILDE_CHECK)) && pattern[0] == '~') {
		size_t n = strcspn(pattern + 1, "/");
		const char *rest = pattern + 1 + n, *home = NULL;
		if (n == 0)
			home = VHOME;
		else if (n == 4 && strncmp(pattern + 1, "fuzz", 4) == 0)
			home = VHOME;
		else if (n == 4 && strncmp(pattern + 1, "root", 4) == 0)
			home = "/root";
		if (home == NULL && (flags & GLOB_TILDE_CHECK))
			return GLOB_NOMATCH;
		if (home != NULL)
			snprintf(pat, sizeof(pat), "%s%s", home, rest);
		else
			snprintf(pat, sizeof(pat), "%s", pattern);
	} else {
		snprintf(pat, sizeof(pat), "%s", pattern);
	}

	g->gl_pathc = 0;
	g->gl_offs = 0;
	g->gl_pathv = calloc(NVFS + 1, sizeof(char *));
	CHECK(g->gl_pathv != NULL);
	for (size_t i = 0; i < NVFS; i++) {
		if (fnmatch(pat, vfs[i].path, FNM_PATHNAME | FNM_PERIOD) == 0) {
			g->gl_pathv[g->gl_pathc] = strdup(vfs[i].path);
			CHECK(g->gl_pathv[g->gl_pathc] != NULL);
			g->gl_pathc++;
		}
	}
	if (g->gl_pathc == 0) {
		free(g->gl_pathv);
		g->gl_pathv = NULL;
		return GLOB_NOMATCH;
	}
	return 0;
}

static void vglobfree(glob_t *g)
{
	if (g->gl_pathv != NULL) {
		for (size_t i = 0; i < g->gl_pathc; i++)
			free(g->gl_pathv[g->gl_offs + i]);
		free(g->gl_pathv);
		g->gl_pathv = NULL;
	}
}

int __wrap_glob(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g)
{
	return armed ? vglob(pattern, flags, g) : __real_glob(pattern, flags, errfunc, g);
}

int __wrap_glob64(const char *pattern, int flags, int (*errfunc)(const char *, int), glob_t *g)
{
	return armed ? vglob(pattern, flags, g) : __real_glob64(pattern, flags, errfunc, g);
}

void __wrap_globfree(glob_t *g)
{
	if (armed)
		vglobfree(g);
	else
		__real_globfree(g);
}

void __wrap_globfree64(glob_t *g)
{
	if (armed)
		vglobfree(g);
	else
		__real_globfree64(g);
}

static unsigned forks; /* Match exec reached fork() this many times */
static bool verbose;    /* HASHI_FUZZ_VERBOSE=1: say what each input resolved to */

pid_t __wrap_fork(void)
{
	if (!armed)
		return __real_fork();
	forks++;
	errno = EAGAIN;
	return -1;
}

/* Replace the contents of memfd fd. */
static void set_file(int fd, mode_t mode, const void *data, size_t len)
{
	CHECK(ftruncate(fd, 0) == 0);
	const char *p = data;
	off_t off = 0;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		CHECK(n > 0);
		p += n;
		off += n;
		len -= (size_t)n;
	}
	CHECK(fchmod(fd, mode) == 0);
}

static size_t input_slot = (size_t)-1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	CHECK(access("/proc/self/fd", F_OK) == 0);
	for (size_t i = 0; i < NVFS; i++) {
		realfds[i] = -1;
		if (vfs[i].mode == 0) {
			/* a directory: fopen() of it succeeds, reading it fails */
			snprintf(realpaths[i], sizeof(realpaths[i]), "/");
			continue;
		}
		realfds[i] = memfd_create("hashi-fuzz-sshconfig", MFD_CLOEXEC);
		CHECK(realfds[i] >= 0);
		snprintf(realpaths[i], sizeof(realpaths[i]), "/proc/self/fd/%d", realfds[i]);
		if (strcmp(vfs[i].path, INPUT_PATH) == 0)
			input_slot = i;
		set_file(realfds[i], vfs[i].mode, vfs[i].text ? vfs[i].text : "",
			 vfs[i].text ? strlen(vfs[i].text) : 0);
	}
	CHECK(input_slot != (size_t)-1);

	CHECK(setenv("HASHI_NO_SSH_G", "1", 1) == 0);
	CHECK(setenv("SHELL", "/bin/false", 1) == 0);
	CHECK(setenv("HOME", VHOME, 1) == 0);
	CHECK(setenv("SSH_AUTH_SOCK", "/run/fuzz-agent.sock", 1) == 0);
	CHECK(setenv("FUZZVAR", "value", 1) == 0);
	verbose = getenv("HASHI_FUZZ_VERBOSE") && strcmp(getenv("HASHI_FUZZ_VERBOSE"), "0") != 0;
	/* Everything logged, to syslog() above: formatted, then dropped.
	 * HASHI_FUZZ_LOG_LEVEL=QUIET (or INFO, ...) logs less. */
	const char *lv = getenv("HASHI_FUZZ_LOG_LEVEL");
	enum log_level level = lv ? log_level_from_name(lv) : LOGL_DEBUG3;
	log_init("fuzz-sshconfig", level == LOGL_NOT_SET ? LOGL_DEBUG3 : level, LOG_USER, false);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Checks                                                             */

static void check_str(const char *s, bool may_be_null)
{
	if (s == NULL) {
		CHECK(may_be_null);
		return;
	}
	CHECK(strchr(s, '\n') == NULL);
}

static void check_target(const struct ssh_target *t, const char *host, const char *dir,
			 const struct target_options *o)
{
	CHECK(t->host_arg != NULL && strcmp(t->host_arg, host) == 0);
	CHECK(t->dir != NULL && strcmp(t->dir, dir ? dir : "") == 0);
	check_str(t->hostname, false); /* (may be empty: HostName "\r", as ssh -G prints it) */
	check_str(t->user, false);
	check_str(t->port, false);
	char *end;
	errno = 0;
	long port = strtol(t->port, &end, 10);
	CHECK(*end == '\0' && errno == 0 && port >= 1 && port <= 65535);
	CHECK(t->n_identity_files >= 0 && t->n_identity_files <= TARGET_MAX_LIST);
	for (int i = 0; i < t->n_identity_files; i++) {
		check_str(t->identity_files[i], false);
		CHECK(t->identity_files[i][0] != '\0');
	}
	CHECK(t->n_known_hosts >= 0 && t->n_known_hosts <= TARGET_MAX_LIST);
	CHECK(t->n_user_known_hosts >= 0 && t->n_user_known_hosts <= t->n_known_hosts);
	for (int i = 0; i < t->n_known_hosts; i++) {
		check_str(t->known_hosts[i], false);
		CHECK(t->known_hosts[i][0] != '\0');
	}
	for (int i = t->n_identity_files; i < TARGET_MAX_LIST; i++)
		CHECK(t->identity_files[i] == NULL);
	for (int i = t->n_known_hosts; i < TARGET_MAX_LIST; i++)
		CHECK(t->known_hosts[i] == NULL);
	check_str(t->identity_agent, true);
	CHECK(t->strict >= SHKC_ASK && t->strict <= SHKC_NO);
	check_str(t->host_key_alias, true);
	CHECK(t->number_of_password_prompts >= 0);
	check_str(t->proxy_command, true);
	check_str(t->proxy_jump, true);
	CHECK(t->address_family == AF_UNSPEC || t->address_family == AF_INET ||
	      t->address_family == AF_INET6);
	CHECK(t->connect_timeout >= 0);
	CHECK(t->server_alive_interval >= 0 && t->server_alive_count_max >= 0);
	/* the built-in reader always prints ssh's final lists */
	check_str(t->ciphers, false);
	check_str(t->macs, false);
	check_str(t->kex_algorithms, false);
	check_str(t->host_key_algorithms, false);
	/* (empty when "-pattern" removed every default: ssh -G prints that too) */
	check_str(t->control_path, true);
	CHECK(t->control_persist >= -1);
	check_str(t->sftp_server, true);
	if (o->config_file)
		CHECK(t->config_file != NULL && strcmp(t->config_file, o->config_file) == 0);
	else
		CHECK(t->config_file == NULL);
	CHECK(t->password == NULL);
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void check_split(const char *spec)
{
	char *user = (char *)1, *host = (char *)1, *dir = (char *)1;
	char err[256] = "";
	int rc = target_split(spec, &user, &host, &dir, err, sizeof(err));
	if (rc != 0) {
		CHECK(rc == -1 && err[0] != '\0');
		CHECK(user == NULL && host == NULL && dir == NULL);
		return;
	}
	CHECK(host != NULL && dir != NULL && host[0] != '\0');
	for (const char *p = host; *p; p++)
		CHECK(!isspace((unsigned char)*p) && !iscntrl((unsigned char)*p) && *p != '[' &&
		      *p != ']');
	CHECK(host[0] != '-');
	/* user@host:dir: the user is what came before the last '@' (if it is
	 * there), and dir the rest after the colon. */
	size_t sl = strlen(spec), dl = strlen(dir);
	CHECK(dl < sl && strcmp(spec + sl - dl, dir) == 0 && spec[sl - dl - 1] == ':');
	if (user != NULL) {
		size_t ul = strlen(user);
		CHECK(ul > 0 && strncmp(spec, user, ul) == 0 && spec[ul] == '@');
	}
	CHECK(strstr(spec, host) != NULL);
	free(user);
	free(host);
	free(dir);
}

static void check_keyword(const char *w)
{
	const char *k = target_canonical_keyword(w);
	if (k == NULL)
		return;
	CHECK(strcasecmp(k, w) == 0);
	CHECK(target_canonical_keyword(k) == k);
}

/* ------------------------------------------------------------------ */

#define MAX_OPTS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A NUL-terminated copy, cut into lines. */
	char *text = malloc(size + 1);
	CHECK(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';

	const char *host = "fuzzhost", *user = NULL, *dir = NULL, *spec = NULL;
	bool host_given = false;
	struct target_options o;
	memset(&o, 0, sizeof(o));
	o.config_file = (char *)INPUT_PATH;

	char *p = text;
	while (p[0] == '-' && p[1] != '\0' && p[2] == ' ') {
		char *nl = strchr(p, '\n');
		char *next = nl ? nl + 1 : p + strlen(p);
		if (nl)
			*nl = '\0';
		char *arg = p + 3;
		switch (p[1]) {
		case 'h':
			host = arg;
			host_given = true;
			break;
		case 'u':
			user = arg;
			break;
		case 'd':
			dir = arg;
			break;
		case 'o':
			if (o.n < MAX_OPTS)
				o.opts[o.n++] = arg;
			break;
		case 'F':
			o.config_file = strcmp(arg, "-") == 0 ? NULL : arg;
			break;
		case 's':
			spec = arg;
			break;
		default:
			break;
		}
		p = next;
	}
	const char *rest = p;
	size_t rest_len = size - (size_t)(rest - text);
	set_file(realfds[input_slot], 0666, data + (rest - text), rest_len);

	/* target_split on -s, else on the first line */
	if (spec == NULL) {
		size_t fl = strcspn(rest, "\n");
		char *first = strndup(rest, fl);
		CHECK(first != NULL);
		check_split(first);
		free(first);
	} else {
		check_split(spec);
	}
	/* target_canonical_keyword on each line's first word */
	for (const char *l = rest; l < text + size;) {
		size_t n = strcspn(l, "\n");
		const char *w = l + strspn(l, " \t");
		size_t wl = strcspn(w, " \t=\n");
		if (w < l + n) {
			char *word = strndup(w, wl);
			CHECK(word != NULL);
			check_keyword(word);
			free(word);
		}
		l += n + 1;
	}
	check_keyword(rest);

	/* The host as main.c gets it: from target_split. */
	char *split_user = NULL, *split_host = NULL, *split_dir = NULL;
	if (host_given) {
		char *spec2 = malloc(strlen(host) + 2);
		CHECK(spec2 != NULL);
		strcpy(spec2, host);
		strcat(spec2, ":");
		char serr[256];
		int src = target_split(spec2, &split_user, &split_host, &split_dir, serr, sizeof(serr));
		free(spec2);
		if (src != 0)
			goto done;
		host = split_host;
		if (user == NULL)
			user = split_user;
	}

	struct ssh_target t;
	char err[512] = "";
	armed = true;
	int rc = target_resolve(&t, user, host, dir, &o, err, sizeof(err));
	armed = false;
	if (verbose) {
		if (rc == 0)
			fprintf(stderr, "resolved %s: user %s hostname %s port %s, %d identity files, "
				"%d known_hosts files, proxy %s, jump %s, fork() %u times\n", host,
				t.user, t.hostname, t.port, t.n_identity_files, t.n_known_hosts,
				t.proxy_command ? t.proxy_command : "-",
				t.proxy_jump ? t.proxy_jump : "-", forks);
		else
			fprintf(stderr, "failed: %s (fork() %u times)\n", err, forks);
	}
	if (rc == 0) {
		check_target(&t, host, dir, &o);
	} else {
		CHECK(rc == -1);
		if (err[0] == '\0')
			fprintf(stderr, "target_resolve failed without a message\n");
		CHECK(err[0] != '\0');
		CHECK(all_zero(&t, sizeof(t)));
	}
	target_free(&t);
	CHECK(all_zero(&t, sizeof(t)));
done:
	free(split_user);
	free(split_host);
	free(split_dir);
	free(text);
	return 0;
}
