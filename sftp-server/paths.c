#include "paths.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

struct paths {
	int root;         /* O_PATH descriptor of the root directory */
	int start;        /* ... of the start directory */
	char *root_real;  /* the root's real path, "/..." */
	char *start_rel;  /* the start directory relative to the root: "" or "a/b" */
};

/* openat2(2) beneath the root. A path that would leave it fails with EACCES
 * (the kernel says EXDEV), and so does a magic link (/proc/self/fd/N). */
static int beneath(const struct paths *p, const char *rel, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd;
	/* EAGAIN: a rename raced with a ".." walk; the kernel asks us to retry. */
	for (int tries = 0; tries < 16; tries++) {
		fd = syscall(SYS_openat2, p->root, rel, &how, sizeof(how));
		if (fd >= 0 || errno != EAGAIN)
			break;
	}
	if (fd < 0 && errno == EXDEV) {
		log_verbose("\"%s\" leads outside the root: refused", rel);
		errno = EACCES;
	}
	return (int)fd;
}

/* The client's path relative to the root (malloc'd): an absolute path starts
 * at the root, a relative one at the start directory. */
static char *client_rel(const struct paths *p, const char *path)
{
	const char *base = p->start_rel;
	if (path[0] == '/')
		base = "";
	size_t bl = strlen(base), pl = strlen(path);
	if (bl + 1 + pl + 1 > PATH_MAX) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	char *rel = malloc(bl + 1 + pl + 2);
	if (!rel)
		return NULL;
	memcpy(rel, base, bl + 1);
	/* Leading "." and ".." walk the base, which is a real path without
	 * links, so this is exact; ".." at the root stays there, as "/.."
	 * does. The kernel resolves all the rest, beneath the root. */
	for (;;) {
		while (*path == '/')
			path++;
		size_t n = strcspn(path, "/");
		if (n == 1 && path[0] == '.') {
			path++;
		} else if (n == 2 && path[0] == '.' && path[1] == '.') {
			char *cut = strrchr(rel, '/');
			*(cut ? cut : rel) = '\0';
			path += 2;
		} else {
			break;
		}
	}
	bl = strlen(rel);
	if (bl == 0 && *path == '\0')
		strcpy(rel, ".");
	else
		snprintf(rel + bl, 1 + pl + 2, "%s%s", bl && *path ? "/" : "", path);
	return rel;
}

static int proc_fd_path(int fd, char *buf, size_t size)
{
	return snprintf(buf, size, "/proc/self/fd/%d", fd) < (int)size ? 0 : -1;
}

/* A real path as the client sees it, if it lies beneath the root. This only
 * renders a name the kernel already resolved (or one of ours): it decides
 * nothing about access. */
static bool show(const struct paths *p, const char *real, char *buf, size_t size)
{
	size_t rl = strlen(p->root_real);
	if (rl == 1)
		rl = 0; /* -r / */
	if (strncmp(real, p->root_real, rl) != 0 || (real[rl] != '/' && real[rl] != '\0'))
		return false;
	const char *rest = real[rl] ? real + rl : "/";
	if (strlen(rest) >= size)
		return false;
	strcpy(buf, rest);
	return true;
}

/* The client-visible real path of what fd is. */
static int fd_visible(const struct paths *p, int fd, char *out)
{
	char proc[40], real[PATH_MAX];
	proc_fd_path(fd, proc, sizeof(proc));
	ssize_t n = readlink(proc, real, sizeof(real) - 1);
	if (n < 0)
		return -1;
	real[n] = '\0';
	if (!show(p, real, out, PATH_MAX)) {
		errno = EACCES; /* the root itself moved away */
		return -1;
	}
	return 0;
}

static char *real_dir(const char *dir)
{
	char proc[40], real[PATH_MAX];
	int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	proc_fd_path(fd, proc, sizeof(proc));
	ssize_t n = readlink(proc, real, sizeof(real) - 1);
	int e = errno;
	close(fd);
	if (n < 0 || real[0] != '/') {
		errno = n < 0 ? e : ENOENT;
		return NULL;
	}
	real[n] = '\0';
	return strdup(real);
}

struct paths *paths_new_root(const char *dir, const char *start)
{
	struct paths *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->root = p->start = -1;
	p->start_rel = strdup("");
	/* The real path through /proc also proves /proc is there for later. */
	if (!p->start_rel || !(p->root_real = real_dir(dir)) ||
	    (p->root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		goto fail;
	if ((p->start = beneath(p, ".", O_PATH | O_DIRECTORY, 0)) < 0)
		goto fail; /* ENOSYS: no openat2 */
	if (start && *start) {
		char *rel = client_rel(p, start), vis[PATH_MAX];
		int fd = rel ? beneath(p, rel, O_PATH | O_DIRECTORY, 0) : -1;
		if (fd < 0 || fd_visible(p, fd, vis) < 0) {
			log_error("chdir to \"%s\" failed: %s", start, strerror(errno));
		} else {
			char *sr = strdup(vis + 1);
			if (!sr) {
				close(fd);
				free(rel);
				goto fail;
			}
			free(p->start_rel);
			p->start_rel = sr;
			close(p->start);
			p->start = fd;
			fd = -1;
		}
		if (fd >= 0)
			close(fd);
		free(rel);
	}
	return p;
fail:;
	int e = errno;
	paths_free(p);
	errno = e;
	return NULL;
}

void paths_free(struct paths *p)
{
	if (!p)
		return;
	if (p->root >= 0)
		close(p->root);
	if (p->start >= 0)
		close(p->start);
	free(p->root_real);
	free(p->start_rel);
	free(p);
}

const char *paths_root_dir(const struct paths *p) { return p ? p->root_real : NULL; }
int paths_start_fd(const struct paths *p) { return p ? p->start : -1; }

void spath_done(struct spath *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	free(sp->owned);
	sp->fd = -1;
	sp->owned = NULL;
}

/* sp names what fd is, from anywhere (the kernel's magic link). */
static void follow_fd(struct spath *sp, int fd)
{
	sp->fd = fd;
	proc_fd_path(fd, sp->proc, sizeof(sp->proc));
	sp->dirfd = AT_FDCWD;
	sp->name = sp->proc;
	sp->follow = true;
}

/* PATHS_NODE: from (directory, name) to the node itself, not following a
 * link; name is one component (or "."), so nothing leaves the directory. */
static int node_of(struct spath *sp)
{
	int fd = openat(sp->dirfd, sp->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	int e = errno;
	spath_done(sp);
	if (fd < 0) {
		errno = e;
		return -1;
	}
	follow_fd(sp, fd);
	return 0;
}

static int resolve_last(const struct paths *p, char *rel, struct spath *sp)
{
	size_t len = strlen(rel);
	bool trailing = false;
	while (len > 1 && rel[len - 1] == '/') {
		rel[--len] = '\0';
		trailing = true;
	}
	char *slash = strrchr(rel, '/');
	const char *last = slash ? slash + 1 : rel;
	if (strcmp(last, ".") == 0 || strcmp(last, "..") == 0) {
		/* The directory itself: act on it as "." (rmdir says EINVAL). */
		int fd = beneath(p, rel, O_PATH | O_DIRECTORY, 0);
		if (fd < 0)
			return -1;
		sp->fd = sp->dirfd = fd;
		sp->name = ".";
		return 0;
	}
	if (slash)
		*slash = '\0';
	int pfd = beneath(p, slash ? (rel[0] ? rel : "/") : ".", O_PATH | O_DIRECTORY, 0);
	if (slash)
		*slash = '/';
	if (pfd < 0)
		return -1;
	if (trailing) {
		/* "name/" means the directory it leads to: follow a link here,
		 * beneath the root, rather than letting the *at() call follow
		 * it unchecked. */
		struct stat st;
		if (fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISLNK(st.st_mode)) {
				close(pfd);
				int fd = beneath(p, rel, O_PATH | O_DIRECTORY, 0);
				if (fd < 0)
					return -1;
				sp->fd = sp->dirfd = fd;
				sp->name = ".";
				return 0;
			}
			if (!S_ISDIR(st.st_mode)) {
				close(pfd);
				errno = ENOTDIR;
				return -1;
			}
		}
	}
	if (!(sp->owned = strdup(last))) {
		close(pfd);
		return -1;
	}
	sp->fd = sp->dirfd = pfd;
	sp->name = sp->owned;
	return 0;
}

int paths_resolve(const struct paths *p, const char *path, enum paths_mode mode, struct spath *sp)
{
	sp->fd = -1;
	sp->owned = NULL;
	sp->dirfd = AT_FDCWD;
	sp->name = path;
	sp->follow = mode == PATHS_FOLLOW;
	if (!p)
		return 0;
	if (path[0] == '\0') {
		errno = ENOENT;
		return -1;
	}
	char *rel = client_rel(p, path);
	if (!rel)
		return -1;
	int ret = 0;
	if (mode == PATHS_FOLLOW) {
		int fd = beneath(p, rel, O_PATH, 0);
		if (fd < 0)
			ret = -1;
		else
			follow_fd(sp, fd);
	} else {
		ret = resolve_last(p, rel, sp);
		if (ret == 0 && mode == PATHS_NODE)
			ret = node_of(sp);
	}
	int e = errno;
	free(rel);
	errno = e;
	return ret;
}

int paths_open(const struct paths *p, const char *path, int flags, mode_t mode)
{
	if (!p)
		return open(path, flags, mode);
	if (path[0] == '\0') {
		errno = ENOENT;
		return -1;
	}
	char *rel = client_rel(p, path);
	if (!rel)
		return -1;
	int fd = beneath(p, rel, flags, mode);
	int e = errno;
	free(rel);
	errno = e;
	return fd;
}

/* realpath(3) of a path that must exist. */
static int real_of(const struct paths *p, const char *path, char *out)
{
	if (!p)
		return realpath(path, out) ? 0 : -1;
	struct spath sp;
	if (paths_resolve(p, path, PATHS_FOLLOW, &sp) < 0)
		return -1;
	int ret = fd_visible(p, sp.fd, out);
	int e = errno;
	spath_done(&sp);
	errno = e;
	return ret;
}

static int stat_of(const struct paths *p, const char *path, struct stat *st)
{
	struct spath sp;
	if (paths_resolve(p, path, PATHS_FOLLOW, &sp) < 0)
		return -1;
	int ret = fstatat(sp.dirfd, sp.name, st, 0);
	int e = errno;
	spath_done(&sp);
	errno = e;
	return ret;
}

int paths_realpath(const struct paths *p, const char *path, char *resolved)
{
	/* Trailing slashes name the same thing (even a file, as OpenSSH's
	 * realpath has it); but a missing last component followed by a slash
	 * is an error. */
	size_t len = strlen(path);
	bool trailing = false;
	while (len > 1 && path[len - 1] == '/') {
		len--;
		trailing = true;
	}
	char trimmed[PATH_MAX];
	if (len >= sizeof(trimmed)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(trimmed, path, len);
	trimmed[len] = '\0';
	if (real_of(p, trimmed, resolved) == 0)
		return 0;
	if (errno != ENOENT || trailing)
		return -1;
	/* The last component may be missing; everything before it may not. */
	const char *base = trimmed + len;
	while (base > trimmed && base[-1] != '/')
		base--;
	size_t blen = (size_t)(trimmed + len - base);
	if (blen == 0 || (blen == 1 && base[0] == '.') || (blen == 2 && base[0] == '.' && base[1] == '.')) {
		errno = ENOENT;
		return -1;
	}
	char dir[PATH_MAX];
	size_t dlen = (size_t)(base - trimmed);
	if (dlen == 0) {
		strcpy(dir, ".");
	} else {
		memcpy(dir, trimmed, dlen);
		dir[dlen] = '\0';
	}
	char rdir[PATH_MAX];
	struct stat st;
	if (real_of(p, dir, rdir) < 0)
		return -1;
	if (stat_of(p, rdir, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	size_t rl = strlen(rdir);
	bool root = rl == 1 && rdir[0] == '/';
	if (rl + 1 + blen + 1 > PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(resolved, rdir, rl);
	if (!root)
		resolved[rl++] = '/';
	memcpy(resolved + rl, base, blen);
	resolved[rl + blen] = '\0';
	return 0;
}

int paths_cwd(const struct paths *p, char *buf, size_t size)
{
	if (!p)
		return getcwd(buf, size) ? 0 : -1;
	if (snprintf(buf, size, "/%s", p->start_rel) >= (int)size) {
		errno = ERANGE;
		return -1;
	}
	return 0;
}

bool paths_visible(const struct paths *p, const char *real, char *buf, size_t size)
{
	if (!p) {
		if (strlen(real) >= size)
			return false;
		strcpy(buf, real);
		return true;
	}
	char canon[PATH_MAX];
	return realpath(real, canon) && show(p, canon, buf, size);
}
