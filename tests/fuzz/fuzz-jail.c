/* Confinement for fuzz-server: see fuzz-jail.h. */
#include "fuzz-jail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sanitizer/allocator_interface.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>

/* Size limits of the playground: writes past them fail with ENOSPC. */
#define JAIL_TMPFS_OPTS "size=32m,nr_inodes=8192,mode=0755"
#define SKEL_TMPFS_OPTS "size=1m,nr_inodes=1024,mode=0755"

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;
	int err = errno;
	fprintf(stderr, "\n==fuzz-jail== FATAL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (errno %d: %s)\n==fuzz-jail== refusing to run unconfined.\n",
		err, strerror(err));
	abort();
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		die("out of memory");
	return p;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	va_start(ap, fmt);
	int n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		die("out of memory");
	return p;
}

/* ------------------------------------------------------------------ */
/* Paths libFuzzer needs inside the jail                              */

struct exposure {
	char *path;     /* absolute, symlinks resolved */
	bool dir;
	bool writable;
};

static struct exposure expo[64];
static size_t nexpo;

static void expose(const char *path, bool writable)
{
	char *real = realpath(path, NULL);
	if (!real)
		die("%s: does not exist (it must, to be bound into the jail)", path);
	if (strcmp(real, "/") == 0)
		die("refusing to expose / inside the jail");
	if (strncmp(real, "/proc", 5) == 0 || strncmp(real, "/sys", 4) == 0 ||
	    strncmp(real, "/dev", 4) == 0)
		die("%s: refusing to expose a path under /proc, /sys or /dev", real);
	struct stat st;
	if (stat(real, &st) != 0)
		die("stat %s", real);
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		die("%s: not a directory or regular file", real);
	if (nexpo == sizeof(expo) / sizeof(expo[0]))
		die("too many paths to expose");
	expo[nexpo].path = real;
	expo[nexpo].dir = S_ISDIR(st.st_mode);
	expo[nexpo].writable = writable;
	nexpo++;
}

static char *absolute(const char *path)
{
	if (path[0] == '/')
		return xstrdup(path);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		die("getcwd");
	return xasprintf("%s/%s", strcmp(cwd, "/") ? cwd : "", path);
}

/* A prefix such as "out/crash-" or "out/": expose its directory, return the
 * absolute prefix with the directory's real path. */
static char *expose_prefix(const char *prefix)
{
	char *abs = absolute(prefix);
	char *slash = strrchr(abs, '/');
	char *base = xstrdup(slash + 1);
	*slash = '\0';
	const char *dir = abs[0] ? abs : "/";
	expose(dir, true);
	char *res = xasprintf("%s/%s", expo[nexpo - 1].path, base);
	free(base);
	free(abs);
	return res;
}

static bool flag_is(const char *arg, const char *name, const char **value)
{
	size_t n = strlen(name);
	if (arg[0] != '-' || strncmp(arg + 1, name, n) != 0 || arg[1 + n] != '=')
		return false;
	*value = arg + 2 + n;
	return true;
}

static void rewrite_args(int *argc, char ***argv)
{
	static const char *const refused[] = {
		"fork", "jobs", "workers", "merge", "set_cover_merge", "minimize_crash",
		"cleanse_crash", "merge_inner", "merge_control_file", "features_dir",
		"data_flow_trace", "collect_data_flow",
	};
	int n = *argc;
	char **in = *argv;
	/* argv[0], each argument, -artifact_prefix, -detect_leaks=0, NULL */
	char **out = calloc((size_t)n + 3, sizeof(char *));
	if (!out)
		die("out of memory");
	int k = 0;
	bool have_prefix = false;
	out[k++] = in[0];
	for (int i = 1; i < n; i++) {
		const char *a = in[i], *v;
		if (a[0] != '-') { /* a corpus directory or an input file */
			expose(a, true);
			struct exposure *e = &expo[nexpo - 1];
			e->writable = e->dir; /* libFuzzer adds new inputs to a corpus dir */
			out[k++] = xstrdup(e->path);
			continue;
		}
		for (size_t j = 0; j < sizeof(refused) / sizeof(refused[0]); j++)
			if (flag_is(a, refused[j], &v) && strcmp(v, "0") != 0)
				die("%s: not supported by this target (it would run the binary "
				    "again outside the jail, through a shell)", a);
		if (flag_is(a, "artifact_prefix", &v)) {
			have_prefix = true;
			char *p = expose_prefix(v);
			out[k++] = xasprintf("-artifact_prefix=%s", p);
			free(p);
		} else if (flag_is(a, "exact_artifact_path", &v)) {
			char *p = expose_prefix(v);
			out[k++] = xasprintf("-exact_artifact_path=%s", p);
			free(p);
		} else if (flag_is(a, "dict", &v)) {
			expose(v, false);
			out[k++] = xasprintf("-dict=%s", expo[nexpo - 1].path);
		} else if (flag_is(a, "seed_inputs", &v)) {
			if (v[0] == '@')
				die("%s: the @file form is not supported; list the files", a);
			char *list = xstrdup(v), *save = NULL, *res = xstrdup("");
			for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				expose(t, false);
				char *r2 = xasprintf("%s%s%s", res, res[0] ? "," : "",
						     expo[nexpo - 1].path);
				free(res);
				res = r2;
			}
			free(list);
			out[k++] = xasprintf("-seed_inputs=%s", res);
			free(res);
		} else {
			out[k++] = in[i];
		}
	}
	if (!have_prefix) {
		char *p = expose_prefix("./");
		out[k++] = xasprintf("-artifact_prefix=%s", p);
		free(p);
	}
	/* LeakSanitizer needs /proc; jail_leaks_* replace it. */
	out[k++] = "-detect_leaks=0";
	out[k] = NULL;
	*argc = k;
	*argv = out;
}

/* Drop exposures inside another one (the outer one carries them). */
static void merge_exposures(void)
{
	for (size_t i = 0; i < nexpo; i++) {
		for (size_t j = 0; j < nexpo; j++) {
			if (i == j || !expo[i].path || !expo[j].path)
				continue;
			size_t lj = strlen(expo[j].path);
			const char *p = expo[i].path;
			bool inside = strncmp(p, expo[j].path, lj) == 0 && (p[lj] == '/' || p[lj] == '\0');
			/* equal paths: keep the lower index */
			if (inside && (p[lj] == '/' || j < i)) {
				expo[j].writable |= expo[i].writable;
				free(expo[i].path);
				expo[i].path = NULL;
				break;
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* Namespaces and mounts                                              */

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die("open %s", path);
	size_t n = strlen(text);
	if (write(fd, text, n) != (ssize_t)n)
		die("write %s", path);
	close(fd);
}

static bool in_userns;

static void enter_namespaces(void)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (geteuid() == 0) {
		if (unshare(CLONE_NEWNS) != 0)
			die("unshare(CLONE_NEWNS)");
	} else {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			die("unshare(CLONE_NEWUSER|CLONE_NEWNS)");
		in_userns = true;
		char map[64];
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)uid);
		write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)gid);
		write_file("/proc/self/gid_map", map);
	}
	/* Nothing we mount from here on may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		die("making the mount tree private");
}

/* The flags a bind remount must keep (a user namespace may not clear them). */
static unsigned long locked_flags(const char *path)
{
	struct statvfs sv;
	if (statvfs(path, &sv) != 0)
		die("statvfs %s", path);
	unsigned long f = 0;
	if (sv.f_flag & ST_RDONLY) f |= MS_RDONLY;
	if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
	return f;
}

static void mkdir_p(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			die("mkdir %s", p);
		*s = '/';
	}
	if (mkdir(p, 0755) != 0 && errno != EEXIST)
		die("mkdir %s", p);
	free(p);
}

static char jail_dir[] = "/tmp/hashi-fuzz-XXXXXX";
static char *skel_tops[64];
static size_t nskel;
static dev_t jail_dev;
static ino_t jail_ino;

static bool is_skel_top(const char *name)
{
	for (size_t i = 0; i < nskel; i++)
		if (strcmp(skel_tops[i], name) == 0)
			return true;
	return false;
}

static void bind_exposure(const struct exposure *e)
{
	/* "/a/b/c" -> top "a"; a read-only tmpfs on <jail>/a holds b/ */
	const char *rest = strchr(e->path + 1, '/');
	char *inner = xasprintf("%s%s", jail_dir, e->path);
	if (rest) {
		char *top = strndup(e->path + 1, (size_t)(rest - e->path - 1));
		if (!top)
			die("out of memory");
		char *topdir = xasprintf("%s/%s", jail_dir, top);
		if (!is_skel_top(top)) {
			if (mkdir(topdir, 0755) != 0)
				die("mkdir %s", topdir);
			if (mount("hashi-fuzz-skel", topdir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
				  SKEL_TMPFS_OPTS) != 0)
				die("mounting a tmpfs on %s", topdir);
			skel_tops[nskel++] = top;
		} else {
			free(top);
		}
		free(topdir);
	} else if (is_skel_top(e->path + 1)) {
		die("%s: clashes with another exposed path", e->path);
	}
	if (e->dir) {
		mkdir_p(inner);
	} else {
		char *parent = xstrdup(inner);
		*strrchr(parent, '/') = '\0';
		mkdir_p(parent);
		free(parent);
		int fd = open(inner, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			die("creating %s", inner);
		close(fd);
	}
	if (mount(e->path, inner, NULL, MS_BIND, NULL) != 0)
		die("bind-mounting %s", e->path);
	unsigned long f = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC |
			  locked_flags(e->path) | (e->writable ? 0 : MS_RDONLY);
	if (mount(NULL, inner, NULL, f, NULL) != 0)
		die("remounting %s", inner);
	free(inner);
}

static void make_etc(void)
{
	if (is_skel_top("etc")) {
		fprintf(stderr, "==fuzz-jail== /etc is taken by an exposed path; no passwd/group\n");
		return;
	}
	char *etc = xasprintf("%s/etc", jail_dir);
	if (mkdir(etc, 0755) != 0)
		die("mkdir %s", etc);
	if (mount("hashi-fuzz-etc", etc, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  SKEL_TMPFS_OPTS) != 0)
		die("mounting a tmpfs on %s", etc);
	static const struct { const char *name, *text; } files[] = {
		{ "passwd", "root:x:0:0:root:/root:/bin/sh\n"
			    "fuzz:x:1000:1000:Fuzz User,,,:/home/fuzz:/bin/sh\n"
			    "nohome:x:1001:1001::/nonexistent:/usr/sbin/nologin\n" },
		{ "group", "root:x:0:\nfuzz:x:1000:\nnohome:x:1001:\n" },
		{ "nsswitch.conf", "passwd: files\ngroup: files\n" },
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *p = xasprintf("%s/%s", etc, files[i].name);
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, files[i].text, strlen(files[i].text)) < 0)
			die("writing %s", p);
		close(fd);
		free(p);
	}
	if (mount(NULL, etc, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL) != 0)
		die("remounting %s read-only", etc);
	skel_tops[nskel++] = xstrdup("etc");
	free(etc);
}

/* A process outside the namespace that removes the (then empty) directory
 * from /tmp once we are gone, however we end. */
static void start_cleaner(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		close(p[1]);
		char c;
		while (read(p[0], &c, 1) != 0 && errno == EINTR)
			;
		rmdir(jail_dir);
		_exit(0);
	}
	close(p[0]);
	/* p[1] stays open (close-on-exec) for as long as we live. */
}

static void prewarm(void)
{
	/* Things that read files once and keep them: do it while they exist. */
	tzset();
	time_t t = 0;
	struct tm tm;
	char buf[256];
	localtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%b %e %H:%M", &tm);
	/* Not NSS: its first use reads nsswitch.conf, and that must be the
	 * jail's ("files" only, built into glibc), not the host's (which may
	 * load modules that probe /run, /etc/userdb ... on every lookup). */
	/* Start the sanitizers' symbolizer now, with the real root, and let them
	 * cache the memory map (no /proc inside). */
	__sanitizer_symbolize_pc((void *)(uintptr_t)&prewarm, "%p %F %L", buf, sizeof(buf));
	__sanitizer_sandbox_arguments args;
	memset(&args, 0, sizeof(args));
	__sanitizer_sandbox_on_notify(&args);
}

static void install_leak_hooks(void);

void jail_enter(int *argc, char ***argv)
{
	rewrite_args(argc, argv);
	merge_exposures();
	prewarm();
	install_leak_hooks();

	if (!mkdtemp(jail_dir))
		die("mkdtemp %s", jail_dir);
	start_cleaner();
	enter_namespaces();
	if (mount("hashi-fuzz", jail_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  JAIL_TMPFS_OPTS) != 0)
		die("mounting a tmpfs on %s", jail_dir);
	struct stat st;
	if (stat(jail_dir, &st) != 0)
		die("stat %s", jail_dir);
	jail_dev = st.st_dev;
	jail_ino = st.st_ino;

	for (size_t i = 0; i < nexpo; i++)
		if (expo[i].path)
			bind_exposure(&expo[i]);
	for (size_t i = 0; i < nskel; i++) {
		char *top = xasprintf("%s/%s", jail_dir, skel_tops[i]);
		if (mount(NULL, top, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV |
			  MS_NOEXEC, NULL) != 0)
			die("remounting %s read-only", top);
		free(top);
	}
	make_etc();

	if (chroot(jail_dir) != 0)
		die("chroot %s", jail_dir);
	if (chdir("/") != 0)
		die("chdir /");

	/* Check: "/" is our tmpfs, and ".." does not lead out. */
	struct stat root, up;
	if (stat("/", &root) != 0 || stat("/..", &up) != 0)
		die("stat / in the jail");
	if (root.st_dev != jail_dev || root.st_ino != jail_ino ||
	    up.st_dev != jail_dev || up.st_ino != jail_ino) {
		errno = 0;
		die("the jail's root is not the tmpfs it should be");
	}
	if (access("/proc/self", F_OK) == 0 || access("/etc/shadow", F_OK) == 0) {
		errno = 0;
		die("/proc or /etc/shadow is visible inside the jail");
	}

	fprintf(stderr, "==fuzz-jail== confined: chroot %s (tmpfs %s), private mount namespace%s\n",
		jail_dir, JAIL_TMPFS_OPTS, in_userns ? " in a user namespace" : "");
	for (size_t i = 0; i < nexpo; i++)
		if (expo[i].path)
			fprintf(stderr, "==fuzz-jail== bound inside: %s (%s)\n", expo[i].path,
				expo[i].writable ? "read-write" : "read-only");
	/* NSS keeps what its first use allocates: do that now, in here. */
	(void)getpwuid(0);
	(void)getgrgid(0);
	(void)getpwnam("root");
	(void)getgrnam("root");
	(void)getpwnam("no-such-user-hashi-fuzz");
	(void)getgrgid(4242);
	jail_reset();
}

/* ------------------------------------------------------------------ */
/* The playground                                                     */

static void rm_tree_at(int dfd)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *de;
	/* Collect names first: removing while reading may skip entries. */
	char **names = NULL;
	size_t n = 0, cap = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			char **nn = realloc(names, cap * sizeof(*nn));
			if (!nn)
				die("out of memory");
			names = nn;
		}
		names[n++] = xstrdup(de->d_name);
	}
	int fd = dirfd(d);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == jail_dev) {
			if (S_ISDIR(st.st_mode)) {
				int sub = openat(fd, names[i],
						 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub >= 0)
					rm_tree_at(sub);
				unlinkat(fd, names[i], AT_REMOVEDIR);
			} else {
				unlinkat(fd, names[i], 0);
			}
		}
		free(names[i]);
	}
	free(names);
	closedir(d);
}

static void put_file(const char *path, mode_t mode, const char *text, size_t repeat)
{
	static char buf[128 * 1024];
	size_t n = strlen(text), len = 0;
	for (size_t i = 0; i < repeat && len + n <= sizeof(buf); i++, len += n)
		memcpy(buf + len, text, n);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (len && write(fd, buf, len) != (ssize_t)len) {
		/* not fatal: the playground just lacks it */
	}
	fchmod(fd, mode);
	close(fd);
}

static void rebuild(void)
{
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		die("open / in the jail");
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_dev != jail_dev || st.st_ino != jail_ino) {
		errno = 0;
		die("jail_reset: / is not the jail");
	}
	rm_tree_at(fd);
	chmod("/", 0755);
	chown("/", 0, 0);

	put_file("/file", 0644, "hello, world\n", 100);
	put_file("/empty", 0644, "", 0);
	put_file("/big", 0644, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?\n",
		 1100); /* 70 KiB */
	put_file("/ro", 0444, "read only\n", 1);
	put_file("/noperm", 0000, "secret\n", 1);
	put_file("/script", 04755, "#!/bin/sh\nexit 0\n", 1);
	int sp = open("/sparse", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (sp >= 0) {
		if (ftruncate(sp, (off_t)1 << 30) != 0) {
			/* not fatal: the playground just lacks it */
		}
		close(sp);
	}
	mkdir("/dir", 0755);
	put_file("/dir/a", 0644, "a\n", 1);
	put_file("/dir/b", 0600, "bb\n", 1);
	put_file("/dir/.hidden", 0644, "hidden\n", 1);
	mkdir("/dir/sub", 0750);
	put_file("/dir/sub/c", 0644, "ccc\n", 1);
	mkdir("/emptydir", 0755);
	mkdir("/sticky", 01777);
	mkdir("/home", 0755);
	mkdir("/home/fuzz", 0700);
	put_file("/home/fuzz/notes", 0600, "notes\n", 1);
	chown("/home/fuzz", 1000, 1000);
	symlink("file", "/link");
	symlink("dir", "/dirlink");
	symlink("/dir/a", "/abslink");
	symlink("../../../../etc/passwd", "/uplink");
	symlink("nowhere", "/dangling");
	symlink("loop", "/loop");
	link("/file", "/hardlink");
	mkfifo("/fifo", 0644);
	/* Old and foreign: another date format and owner in READDIR's longname. */
	struct timespec old[2] = { { .tv_sec = 1000000000 }, { .tv_sec = 1000000000 } };
	utimensat(AT_FDCWD, "/dir/b", old, 0);
	chown("/dir/b", 4242, 4242);
	/* A socket and device nodes, for their types; the tmpfs is nodev, so
	 * the devices cannot be opened (and mknod fails in a user namespace). */
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock >= 0) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = "/socket" };
		if (bind(sock, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			/* not fatal: the playground just lacks it */
		}
		close(sock);
	}
	mknod("/chardev", S_IFCHR | 0666, makedev(1, 3));
	mknod("/blockdev", S_IFBLK | 0600, makedev(7, 0));
}

/* Watching the playground: any change in it (the directories of the seed
 * tree and the entries in them) is an inotify event, so an input that
 * changed nothing costs one read() instead of a rebuild. */
static const char *const watched[] = {
	"/", "/dir", "/dir/sub", "/emptydir", "/sticky", "/home", "/home/fuzz",
};
static int inotify_fd = -1;

static void watch_tree(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (read(inotify_fd, buf, sizeof(buf)) > 0)
		; /* the rebuild's own events */
	for (size_t i = 0; i < sizeof(watched) / sizeof(watched[0]); i++)
		if (inotify_add_watch(inotify_fd, watched[i],
				      IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE |
				      IN_DELETE_SELF | IN_MOVE_SELF | IN_MOVED_FROM |
				      IN_MOVED_TO | IN_DONT_FOLLOW | IN_ONLYDIR) < 0)
			die("inotify_add_watch %s", watched[i]);
}

void jail_reset(void)
{
	if (inotify_fd < 0) {
		inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (inotify_fd < 0)
			die("inotify_init1");
	}
	rebuild();
	watch_tree();
}

bool jail_reset_if_changed(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n = read(inotify_fd, buf, sizeof(buf));
	if (n < 0 && errno == EAGAIN)
		return false;
	jail_reset();
	return true;
}

/* ------------------------------------------------------------------ */
/* Leak and descriptor tracking                                       */

#define LIVE_BITS 16
#define LIVE_CAP (1u << LIVE_BITS)
#define TOMB ((const void *)1)

static const void *live[LIVE_CAP];
static uint32_t touched[LIVE_CAP / 2];
static size_t ntouched, nlive;
static bool tracking, overflowed;

static uint32_t slot_of(const volatile void *p)
{
	return (uint32_t)((((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - LIVE_BITS));
}

static void hook_malloc(const volatile void *ptr, size_t size)
{
	(void)size;
	if (!tracking || !ptr)
		return;
	if (ntouched >= LIVE_CAP / 2) {
		overflowed = true; /* too many to track: give up on this input */
		return;
	}
	uint32_t i = slot_of(ptr);
	while (live[i] && live[i] != TOMB)
		i = (i + 1) & (LIVE_CAP - 1);
	if (!live[i])
		touched[ntouched++] = i;
	live[i] = (const void *)ptr;
	nlive++;
}

static void hook_free(const volatile void *ptr)
{
	if (!tracking || !ptr || nlive == 0)
		return;
	uint32_t i = slot_of(ptr);
	while (live[i]) {
		if (live[i] == ptr) {
			live[i] = TOMB;
			nlive--;
			return;
		}
		i = (i + 1) & (LIVE_CAP - 1);
	}
}

/* LeakSanitizer cannot run in the jail (no /proc): keep it off at exit too. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}

static void install_leak_hooks(void)
{
	if (!__sanitizer_install_malloc_and_free_hooks(hook_malloc, hook_free))
		die("installing malloc/free hooks");
}

void jail_leaks_begin(void)
{
	for (size_t i = 0; i < ntouched; i++)
		live[touched[i]] = NULL;
	ntouched = 0;
	nlive = 0;
	overflowed = false;
	tracking = true;
}

void jail_leaks_end(const char *what)
{
	tracking = false;
	if (nlive == 0 || overflowed)
		return;
	fprintf(stderr, "\n==fuzz-jail== ERROR: %zu allocation(s) made while serving this input "
		"are still live after %s:\n", nlive, what);
	size_t shown = 0;
	for (size_t i = 0; i < ntouched && shown < 8; i++) {
		const void *p = live[touched[i]];
		if (p && p != TOMB) {
			__asan_describe_address((void *)(uintptr_t)p);
			shown++;
		}
	}
	fprintf(stderr, "==fuzz-jail== SUMMARY: memory leak\n");
	abort();
}

/* Leaked descriptors would take the lowest free numbers: watch the first
 * FD_SCAN from the lowest free one at the start. */
#define FD_SCAN 64
static int fd_base;
static bool fd_was_open[FD_SCAN];

void jail_fds_begin(void)
{
	int base = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (base < 0)
		die("open /");
	close(base);
	/* Between inputs only libFuzzer opens (and closes) descriptors: rescan
	 * only when the lowest free one moved. */
	static bool scanned;
	if (scanned && base == fd_base)
		return;
	fd_base = base;
	for (int i = 0; i < FD_SCAN; i++)
		fd_was_open[i] = fcntl(fd_base + i, F_GETFD) != -1;
	scanned = true;
}

void jail_fds_end(const char *what)
{
	for (int i = 0; i < FD_SCAN; i++) {
		if (!fd_was_open[i] && fcntl(fd_base + i, F_GETFD) != -1) {
			fprintf(stderr, "\n==fuzz-jail== ERROR: file descriptor %d, opened while "
				"serving this input, is still open after %s\n", fd_base + i, what);
			abort();
		}
	}
}
