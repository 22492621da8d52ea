/*
 * hashi's own SFTP extensions (man/PROTOCOL.hashi), one function each: what
 * a POSIX filesystem needs and SFTP v3 cannot say. Full attributes with
 * nanoseconds, setting them without following symlinks, creating with an
 * exact mode and owner, device nodes, extended attributes, byte-range locks,
 * fallocate, SEEK_DATA/SEEK_HOLE and real errnos.
 *
 * A lock request that must wait is not answered at once: it joins a list of
 * waiters that the packet loop retries (hashi_ext_retry) with a growing
 * delay, so one waiting lock never holds up the session's other requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "attrs.h"
#include "hattrs.h"
#include "log.h"
#include "server.h"
#include "sftp-proto.h"

#define STATX_WANT (STATX_BASIC_STATS | STATX_BTIME)

/* readdir@hashi: entries per reply, and stop adding past this many bytes. */
#define HX_READDIR_MAX_ENTRIES 256
#define HX_READDIR_MAX_BYTES (128 * 1024)

/* Waiting locks: at most this many per session; retried first after
 * HX_WAIT_FIRST_MS, the delay doubling up to HX_WAIT_MAX_MS. */
#define HX_MAX_WAITERS 1024
#define HX_WAIT_FIRST_MS 1
#define HX_WAIT_MAX_MS 50

struct lock_wait {
	uint32_t id;
	uint32_t index, gen; /* the handle */
	uint32_t op;         /* HASHI_LOCK_SET or HASHI_LOCK_FLOCK */
	struct flock fl;     /* SET */
	int flock_op;        /* FLOCK: LOCK_SH or LOCK_EX */
	int delay_ms;
	struct timespec due;
	struct lock_wait *next;
};

struct hashi_ext {
	struct lock_wait *head;
	unsigned count;
};

/* ------------------------------------------------------------ helpers */

static void put_or_die(int err)
{
	if (err)
		log_fatal("internal error: reply queue: %s", wire_strerror(err));
}

/* A file named by "string target, uint32 flags": a path, or a handle. */
struct target {
	char *path;        /* by path (NULL for a handle) */
	struct handle *h;  /* by handle: NULL when it names no open handle */
	uint32_t flags;    /* HASHI_TARGET_* */
	const char *name;  /* for logs */
	struct spath sp;   /* by path: where it leads (paths.h), once target_ready() said 0 */
	bool resolved;
};

static int get_target(struct server *s, struct wire_reader *r, struct target *t)
{
	struct wire_reader save = *r;
	const uint8_t *str;
	uint32_t len;
	int err;

	memset(t, 0, sizeof(*t));
	if ((err = wire_get_string(r, &str, &len)) || (err = wire_get_u32(r, &t->flags)))
		return err;
	if (t->flags & HASHI_TARGET_HANDLE) {
		t->h = handles_lookup(server_handles(s), str, len, HANDLE_ANY);
		t->name = t->h ? t->h->name : "(invalid)";
		return WIRE_OK;
	}
	/* A path: read it again, as a C string this time. */
	*r = save;
	if ((err = wire_get_cstring(r, &t->path, SFTP_MAX_MSG_LENGTH)))
		return err;
	wire_skip(r, 4); /* the flags, read above */
	t->name = t->path;
	return WIRE_OK;
}

static void target_free(struct target *t)
{
	if (t->resolved)
		spath_done(&t->sp);
	t->resolved = false;
	free(t->path);
	t->path = NULL;
}

/* 0 when the target can be used; otherwise the errno to answer with. A path
 * is resolved (beneath -r's root) with PATHS_FOLLOW, or with last when the
 * request says not to follow a symbolic link. */
static int target_ready(struct server *s, struct target *t, enum paths_mode last)
{
	if (t->flags & ~(uint32_t)(HASHI_TARGET_HANDLE | HASHI_TARGET_NOFOLLOW))
		return EINVAL;
	if (t->flags & HASHI_TARGET_HANDLE)
		return t->h ? 0 : EBADF;
	enum paths_mode mode = (t->flags & HASHI_TARGET_NOFOLLOW) ? last : PATHS_FOLLOW;
	if (paths_resolve(server_paths(s), t->path, mode, &t->sp) < 0)
		return errno;
	t->resolved = true;
	return 0;
}

/* The *at() flag for a target resolved with PATHS_LAST or PATHS_FOLLOW. */
static int target_at(const struct target *t)
{
	return (t->flags & HASHI_TARGET_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW : 0;
}

static int target_statx(const struct target *t, struct statx *sx)
{
	if (t->h)
		return statx(t->h->fd, "", AT_EMPTY_PATH, STATX_WANT, sx);
	return statx(t->sp.dirfd, t->sp.name, target_at(t), STATX_WANT, sx);
}

static void send_hattrs(struct server *s, uint32_t id, const struct statx *sx)
{
	struct hattrs a;
	hattrs_from_statx(sx, &a);
	size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
	put_or_die(hattrs_put(server_out(s), &a));
	server_reply_end(s, mark);
}

/* Reply with the target's attributes now, or with why not. */
static void reply_target_attrs(struct server *s, uint32_t id, const struct target *t)
{
	struct statx sx;
	if (target_statx(t, &sx) < 0)
		server_send_errno(s, id, errno);
	else
		send_hattrs(s, id, &sx);
}

/* A handle that must name an open file or directory; *e is the errno
 * to answer with when it does not. */
static int get_handle(struct server *s, struct wire_reader *r, int kind, struct handle **h, int *e)
{
	int err = server_get_handle(s, r, kind, h);
	*e = (!err && !*h) ? EBADF : 0;
	return err;
}

/* ------------------------------------------------------------ errno@hashi */

static int hx_errno(struct server *s, uint32_t id, struct wire_reader *r)
{
	uint32_t on;
	int err = wire_get_u32(r, &on);
	if (err)
		return err;
	log_debug("request %u: errno@hashi %u", id, on);
	server_set_errno_ext(s, on != 0);
	server_send_status(s, id, SSH_FX_OK);
	return 0;
}

/* ------------------------------------------------------------ stat, readdir */

static int hx_stat(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct target t;
	int err = get_target(s, r, &t);
	if (err)
		return err;
	log_verbose("%sstat@hashi \"%s\"", (t.flags & HASHI_TARGET_NOFOLLOW) ? "l" : "", t.name);
	int e = target_ready(s, &t, PATHS_LAST);
	if (e)
		server_send_errno(s, id, e);
	else
		reply_target_attrs(s, id, &t);
	target_free(&t);
	return 0;
}

static int hx_readdir(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	int e, err = get_handle(s, r, HANDLE_DIR, &h, &e);
	if (err)
		return err;
	log_debug("request %u: readdir@hashi \"%s\"", id, h ? h->name : "(invalid)");
	if (e) {
		server_send_errno(s, id, e);
		return 0;
	}
	struct wire_buf *out = server_out(s);
	size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
	size_t count_at = wire_buf_mark(out);
	uint32_t count = 0;
	put_or_die(wire_put_u32(out, 0));
	struct dirent *dp;
	while (count < HX_READDIR_MAX_ENTRIES && wire_buf_mark(out) - mark < HX_READDIR_MAX_BYTES &&
	       (errno = 0, dp = readdir(h->dir)) != NULL) {
		struct statx sx;
		struct hattrs a;
		if (statx(h->fd, dp->d_name, AT_SYMLINK_NOFOLLOW, STATX_WANT, &sx) < 0)
			continue; /* gone since readdir saw it */
		hattrs_from_statx(&sx, &a);
		put_or_die(wire_put_cstring(out, dp->d_name));
		put_or_die(hattrs_put(out, &a));
		count++;
	}
	if (count == 0) {
		int rd_err = errno;
		wire_buf_truncate(out, mark);
		if (rd_err)
			server_send_errno(s, id, rd_err);
		else
			server_send_status(s, id, SSH_FX_EOF);
		return 0;
	}
	wire_poke_u32(out, count_at, count);
	server_reply_end(s, mark);
	log_debug("request %u: sent %u entries", id, count);
	return 0;
}

/* ------------------------------------------------------------ setstat */

static struct timespec set_time(uint32_t valid, uint32_t bit, uint32_t now_bit,
				const struct hattrs_time *t)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = UTIME_OMIT };
	if (valid & now_bit)
		ts.tv_nsec = UTIME_NOW;
	else if (valid & bit) {
		ts.tv_sec = (time_t)t->sec;
		ts.tv_nsec = (long)t->nsec;
	}
	return ts;
}

/* truncate(2) that, with nofollow, refuses a symlink (ELOOP). */
static int truncate_nofollow(const struct spath *sp, off_t size)
{
	int fd = openat(sp->dirfd, sp->name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int ret = ftruncate(fd, size);
	int e = errno;
	close(fd);
	errno = e;
	return ret;
}

/* Owner, mode, size, times, in that order (a chown clears set-id bits that
 * the mode may set again); the first failure stops and is the answer. By
 * path, the target is resolved (PATHS_LAST or PATHS_FOLLOW). */
static int apply_hsetattr(const struct target *t, const struct hsetattr *a)
{
	int fd = t->h ? t->h->fd : -1;
	int at = target_at(t);
	const struct spath *sp = &t->sp;

	if (a->valid & (HSET_UID | HSET_GID)) {
		uid_t uid = (a->valid & HSET_UID) ? (uid_t)a->uid : (uid_t)-1;
		gid_t gid = (a->valid & HSET_GID) ? (gid_t)a->gid : (gid_t)-1;
		log_info("set \"%s\" owner %ld group %ld", t->name, (long)(int)uid, (long)(int)gid);
		if ((fd >= 0 ? fchown(fd, uid, gid) : fchownat(sp->dirfd, sp->name, uid, gid, at)) < 0)
			return errno;
	}
	if (a->valid & HSET_MODE) {
		log_info("set \"%s\" mode %04o", t->name, a->mode & 07777);
		if ((fd >= 0 ? fchmod(fd, a->mode & 07777)
			     : fchmodat(sp->dirfd, sp->name, a->mode & 07777, at)) < 0)
			return errno;
	}
	if (a->valid & HSET_SIZE) {
		log_info("set \"%s\" size %llu", t->name, (unsigned long long)a->size);
		if (a->size > (uint64_t)INT64_MAX)
			return EINVAL;
		int ret = fd >= 0 ? ftruncate(fd, (off_t)a->size)
			  : at ? truncate_nofollow(sp, (off_t)a->size)
			       : truncate(sp->name, (off_t)a->size); /* PATHS_FOLLOW: from AT_FDCWD */
		if (ret < 0)
			return errno;
	}
	if (a->valid & (HSET_ATIME | HSET_MTIME | HSET_ATIME_NOW | HSET_MTIME_NOW)) {
		struct timespec ts[2] = {
			set_time(a->valid, HSET_ATIME, HSET_ATIME_NOW, &a->atime),
			set_time(a->valid, HSET_MTIME, HSET_MTIME_NOW, &a->mtime),
		};
		log_info("set \"%s\" times", t->name);
		if ((fd >= 0 ? futimens(fd, ts) : utimensat(sp->dirfd, sp->name, ts, at)) < 0)
			return errno;
	}
	return 0;
}

static int hx_setstat(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct target t;
	struct hsetattr a;
	int err = get_target(s, r, &t);
	if (err)
		return err;
	if ((err = hsetattr_get(r, &a))) {
		target_free(&t);
		return err;
	}
	log_debug("request %u: setstat@hashi \"%s\" valid 0x%x", id, t.name, a.valid);
	int e = target_ready(s, &t, PATHS_LAST);
	if (!e && (a.valid & ~(uint32_t)(HSET_MODE | HSET_UID | HSET_GID | HSET_SIZE | HSET_ATIME |
					 HSET_MTIME | HSET_ATIME_NOW | HSET_MTIME_NOW)))
		e = EINVAL;
	if (!e)
		e = apply_hsetattr(&t, &a);
	if (e)
		server_send_errno(s, id, e);
	else
		reply_target_attrs(s, id, &t);
	target_free(&t);
	return 0;
}

/* ------------------------------------------------------------ creating */

/* The creation mask is the caller's business: it sends the mode it means. */
static mode_t umask_off(void)
{
	return umask(0);
}

/* Whether the directory that path is in has the set-group-ID bit. */
static bool dir_setgid(const struct paths *p, const char *path)
{
	char *dir = strdup(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	struct spath sp;
	struct stat dst;
	bool sgid = false;
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	if (dir && paths_resolve(p, slash ? dir : ".", PATHS_FOLLOW, &sp) == 0) {
		sgid = fstatat(sp.dirfd, sp.name, &dst, 0) == 0 && (dst.st_mode & S_ISGID);
		spath_done(&sp);
	}
	free(dir);
	return sgid;
}

/* Give a node just made the owner the caller asked for, where the server may
 * (as root): uid and gid HASHI_ID_NONE leave that one alone, and in a
 * set-group-ID directory the group stays the directory's. The node is fd,
 * or (fd < 0) sp, resolved with PATHS_LAST. A refusal is not an error: the
 * reply's attributes show the owner the node has. */
static void apply_owner(const struct paths *p, const char *path, int fd, const struct spath *sp,
			uint32_t uid, uint32_t gid, mode_t mode)
{
	if (uid == HASHI_ID_NONE && gid == HASHI_ID_NONE)
		return;
	if (gid != HASHI_ID_NONE && dir_setgid(p, path))
		gid = HASHI_ID_NONE;
	uid_t u = uid == HASHI_ID_NONE ? (uid_t)-1 : (uid_t)uid;
	gid_t g = gid == HASHI_ID_NONE ? (gid_t)-1 : (gid_t)gid;
	int ret = fd >= 0 ? fchown(fd, u, g) : fchownat(sp->dirfd, sp->name, u, g, AT_SYMLINK_NOFOLLOW);
	if (ret < 0) {
		log_debug("owner of \"%s\" not set: %s", path, strerror(errno));
		return;
	}
	/* chown cleared the set-ID bits of a non-directory: put back what was
	 * asked (of the node made, never what a link in its place leads to). */
	if ((mode & (S_ISUID | S_ISGID)) && !S_ISDIR(mode) && !S_ISLNK(mode)) {
		if (fd >= 0)
			fchmod(fd, mode & 07777);
		else
			fchmodat(sp->dirfd, sp->name, mode & 07777, AT_SYMLINK_NOFOLLOW);
	}
}

static int open_flags(uint32_t pflags, int *flags)
{
	static const struct { uint32_t bit; int flag; } map[] = {
		{ SSH_FXF_APPEND, O_APPEND }, { SSH_FXF_CREAT, O_CREAT }, { SSH_FXF_TRUNC, O_TRUNC },
		{ SSH_FXF_EXCL, O_EXCL }, { HASHI_O_NOFOLLOW, O_NOFOLLOW }, { HASHI_O_SYNC, O_SYNC },
		{ HASHI_O_DSYNC, O_DSYNC }, { HASHI_O_NOATIME, O_NOATIME },
	};
	uint32_t known = SSH_FXF_READ | SSH_FXF_WRITE;
	int f = 0;
	switch (pflags & (SSH_FXF_READ | SSH_FXF_WRITE)) {
	case SSH_FXF_READ | SSH_FXF_WRITE: f = O_RDWR; break;
	case SSH_FXF_WRITE: f = O_WRONLY; break;
	default: f = O_RDONLY; break;
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		known |= map[i].bit;
		if (pflags & map[i].bit)
			f |= map[i].flag;
	}
	*flags = f;
	return (pflags & ~known) ? EINVAL : 0;
}

/* open(2) that, when asked (*created true on entry), says whether it made
 * the file. O_NONBLOCK so that a FIFO or a device cannot stall the session
 * in open(). */
static int open_created(const struct paths *p, const char *path, int flags, mode_t mode,
			bool *created)
{
	int extra = O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
	bool ask = *created;
	*created = false;
	if (!(flags & O_CREAT) || !ask)
		return paths_open(p, path, flags | extra, mode);
	if (flags & O_EXCL) {
		int fd = paths_open(p, path, flags | extra, mode);
		*created = fd >= 0;
		return fd;
	}
	/* Without O_EXCL: an existing file, or one made here. Someone else may
	 * make or remove it between the two tries; go round again then. */
	for (int tries = 0; tries < 100; tries++) {
		int fd = paths_open(p, path, (flags & ~O_CREAT) | extra, 0);
		if (fd >= 0 || errno != ENOENT)
			return fd;
		fd = paths_open(p, path, flags | O_EXCL | extra, mode);
		if (fd >= 0) {
			*created = true;
			return fd;
		}
		if (errno != EEXIST)
			return -1;
	}
	errno = EAGAIN;
	return -1;
}

static int hx_open(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *path;
	uint32_t pflags, mode, uid, gid;
	int err = wire_get_cstring(r, &path, SFTP_MAX_MSG_LENGTH);
	if (err)
		return err;
	if ((err = wire_get_u32(r, &pflags)) || (err = wire_get_u32(r, &mode)) ||
	    (err = wire_get_u32(r, &uid)) || (err = wire_get_u32(r, &gid))) {
		free(path);
		return err;
	}
	int flags;
	int e = open_flags(pflags, &flags);
	log_info("open@hashi \"%s\" flags 0x%x mode 0%o", path, pflags, mode & 07777);
	if (!e && server_opts(s)->readonly &&
	    ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0)) {
		log_verbose("Refusing open@hashi request in read-only mode");
		server_send_status(s, id, SSH_FX_PERMISSION_DENIED);
		free(path);
		return 0;
	}
	if (e) {
		server_send_errno(s, id, e);
		free(path);
		return 0;
	}
	bool created = uid != HASHI_ID_NONE || gid != HASHI_ID_NONE; /* worth knowing */
	mode_t old = umask_off();
	int fd = open_created(server_paths(s), path, flags, (mode_t)(mode & 07777), &created);
	e = errno;
	umask(old);
	if (fd < 0) {
		server_send_errno(s, id, e);
		free(path);
		return 0;
	}
	if (created)
		apply_owner(server_paths(s), path, fd, NULL, uid, gid, S_IFREG | (mode & 07777));
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_WANT, &sx) < 0) {
		e = errno;
		close(fd);
		server_send_errno(s, id, e);
		free(path);
		return 0;
	}
	struct handle *h = server_add_file_handle(s, path, fd, flags);
	if (!h) {
		server_send_errno(s, id, EMFILE);
	} else {
		uint8_t str[HANDLE_STRING_LEN];
		struct hattrs a;
		handles_encode(h, str);
		hattrs_from_statx(&sx, &a);
		size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
		put_or_die(wire_put_string(server_out(s), str, sizeof(str)));
		put_or_die(hattrs_put(server_out(s), &a));
		server_reply_end(s, mark);
	}
	free(path);
	return 0;
}

/* sp: resolved with PATHS_LAST. A symbolic link's target is stored as given. */
static int make_node(const struct spath *sp, uint32_t mode, dev_t rdev, const char *target)
{
	mode_t perm = (mode_t)(mode & 07777);
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return mkdirat(sp->dirfd, sp->name, perm);
	case S_IFLNK:
		return symlinkat(target, sp->dirfd, sp->name);
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		return mknodat(sp->dirfd, sp->name, (mode_t)(mode & (S_IFMT | 07777)), rdev);
	default:
		errno = EINVAL;
		return -1;
	}
}

static int hx_mknod(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *path, *target = NULL;
	uint32_t mode, maj, min, uid, gid;
	int err = wire_get_cstring(r, &path, SFTP_MAX_MSG_LENGTH);
	if (err)
		return err;
	if ((err = wire_get_u32(r, &mode)) || (err = wire_get_u32(r, &maj)) ||
	    (err = wire_get_u32(r, &min)) || (err = wire_get_u32(r, &uid)) ||
	    (err = wire_get_u32(r, &gid)) ||
	    (err = wire_get_cstring(r, &target, SFTP_MAX_MSG_LENGTH))) {
		free(path);
		return err;
	}
	log_info("mknod@hashi \"%s\" mode 0%o", path, mode);
	struct target t = { .path = path, .flags = HASHI_TARGET_NOFOLLOW, .name = path };
	int e = target_ready(s, &t, PATHS_LAST);
	if (!e) {
		mode_t old = umask_off();
		if (make_node(&t.sp, mode, makedev(maj, min), target) < 0)
			e = errno;
		umask(old);
	}
	if (e) {
		server_send_errno(s, id, e);
	} else {
		apply_owner(server_paths(s), path, -1, &t.sp, uid, gid, (mode_t)mode);
		reply_target_attrs(s, id, &t);
	}
	free(target);
	target_free(&t); /* and path */
	return 0;
}

/* ------------------------------------------------------------ xattrs */

enum xattr_op { XATTR_GET, XATTR_LIST, XATTR_SET, XATTR_REMOVE };

/* The f-, l- or plain variant of op's system call, by the target (resolved
 * with PATHS_NODE or PATHS_FOLLOW: sp.follow says which variant). */
static ssize_t xattr_call(enum xattr_op op, const struct target *t, const char *name,
			  const void *value, size_t vlen, int xflags, char *buf, size_t size)
{
	int fd = t->h ? t->h->fd : -1;
	bool nofollow = !t->h && !t->sp.follow;
	const char *p = t->h ? NULL : t->sp.name;
	switch (op) {
	case XATTR_GET:
		return fd >= 0 ? fgetxattr(fd, name, buf, size)
		       : nofollow ? lgetxattr(p, name, buf, size) : getxattr(p, name, buf, size);
	case XATTR_LIST:
		return fd >= 0 ? flistxattr(fd, buf, size)
		       : nofollow ? llistxattr(p, buf, size) : listxattr(p, buf, size);
	case XATTR_SET:
		return fd >= 0 ? fsetxattr(fd, name, value, vlen, xflags)
		       : nofollow ? lsetxattr(p, name, value, vlen, xflags)
				  : setxattr(p, name, value, vlen, xflags);
	case XATTR_REMOVE:
		return fd >= 0 ? fremovexattr(fd, name)
		       : nofollow ? lremovexattr(p, name) : removexattr(p, name);
	}
	errno = EINVAL;
	return -1;
}

/* Every xattr request: the target, a name (but list), a value and flags
 * (set). Get and list answer the bytes, set and remove a status. */
static int xattr_request(struct server *s, uint32_t id, struct wire_reader *r, enum xattr_op op)
{
	static char buf[HASHI_XATTR_MAX];
	static const char *const verbs[] = { "getxattr", "listxattr", "setxattr", "removexattr" };
	struct target t;
	char *name = NULL;
	const uint8_t *value = NULL;
	uint32_t vlen = 0, xflags = 0;
	int err = get_target(s, r, &t);
	if (err)
		return err;
	/* Longer names than XATTR_NAME_MAX get the kernel's ERANGE. */
	if ((op != XATTR_LIST && (err = wire_get_cstring(r, &name, 4096))) ||
	    (op == XATTR_SET &&
	     ((err = wire_get_string(r, &value, &vlen)) || (err = wire_get_u32(r, &xflags))))) {
		free(name);
		target_free(&t);
		return err;
	}
	bool mutating = op == XATTR_SET || op == XATTR_REMOVE;
	if (mutating)
		log_info("%s@hashi \"%s\" \"%s\"", verbs[op], t.name, name);
	else
		log_verbose("%s@hashi \"%s\" \"%s\"", verbs[op], t.name, name ? name : "");
	int e = target_ready(s, &t, PATHS_NODE);
	/* Our flag values are XATTR_CREATE's and XATTR_REPLACE's. */
	if (!e && (xflags & ~(uint32_t)(HASHI_XATTR_CREATE | HASHI_XATTR_REPLACE)))
		e = EINVAL;
	ssize_t n = 0;
	if (!e && (n = xattr_call(op, &t, name, value, vlen, (int)xflags, buf, sizeof(buf))) < 0)
		e = errno;
	if (e || mutating) {
		server_send_errno(s, id, e);
	} else {
		size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
		put_or_die(wire_put_string(server_out(s), buf, (size_t)n));
		server_reply_end(s, mark);
	}
	free(name);
	target_free(&t);
	return 0;
}

static int hx_getxattr(struct server *s, uint32_t id, struct wire_reader *r)
{
	return xattr_request(s, id, r, XATTR_GET);
}

static int hx_listxattr(struct server *s, uint32_t id, struct wire_reader *r)
{
	return xattr_request(s, id, r, XATTR_LIST);
}

static int hx_setxattr(struct server *s, uint32_t id, struct wire_reader *r)
{
	return xattr_request(s, id, r, XATTR_SET);
}

static int hx_removexattr(struct server *s, uint32_t id, struct wire_reader *r)
{
	return xattr_request(s, id, r, XATTR_REMOVE);
}

/* ------------------------------------------------------------ locks */

static int lock_type(uint32_t type, short *out)
{
	switch (type) {
	case HASHI_LOCK_RDLCK: *out = F_RDLCK; return 0;
	case HASHI_LOCK_WRLCK: *out = F_WRLCK; return 0;
	case HASHI_LOCK_UNLCK: *out = F_UNLCK; return 0;
	default: return EINVAL;
	}
}

/* One try of a lock that may have to wait: 0, EAGAIN (held by someone
 * else) or another errno. */
static int lock_try(int fd, uint32_t op, struct flock *fl, int flock_op)
{
	int ret;
	do {
		if (op == HASHI_LOCK_FLOCK)
			ret = flock(fd, flock_op | LOCK_NB);
		else
			ret = fcntl(fd, F_OFD_SETLK, fl);
	} while (ret < 0 && errno == EINTR);
	if (ret == 0)
		return 0;
	return (errno == EACCES || errno == EWOULDBLOCK) ? EAGAIN : errno;
}

static struct hashi_ext *hx_state(struct server *s)
{
	struct hashi_ext **p = server_hashi_ext(s);
	if (!*p && !(*p = calloc(1, sizeof(**p))))
		log_fatal("out of memory");
	return *p;
}

static void timespec_after_ms(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += (long)ms * 1000000L;
	while (ts->tv_nsec >= 1000000000L) {
		ts->tv_nsec -= 1000000000L;
		ts->tv_sec++;
	}
}

/* A change of lock state here may let a waiter through: try them all soon. */
static void wake_waiters(struct server *s)
{
	struct hashi_ext *hx = *server_hashi_ext(s);
	for (struct lock_wait *w = hx ? hx->head : NULL; w; w = w->next) {
		w->delay_ms = HX_WAIT_FIRST_MS;
		clock_gettime(CLOCK_MONOTONIC, &w->due);
	}
}

static void add_waiter(struct server *s, uint32_t id, const struct handle *h, uint32_t op,
		       const struct flock *fl, int flock_op)
{
	struct hashi_ext *hx = hx_state(s);
	if (hx->count >= HX_MAX_WAITERS) {
		server_send_errno(s, id, ENOLCK);
		return;
	}
	struct lock_wait *w = calloc(1, sizeof(*w));
	if (!w)
		log_fatal("out of memory");
	w->id = id;
	w->index = h->index;
	w->gen = h->gen;
	w->op = op;
	if (fl)
		w->fl = *fl;
	w->flock_op = flock_op;
	w->delay_ms = HX_WAIT_FIRST_MS;
	timespec_after_ms(&w->due, w->delay_ms);
	struct lock_wait **tail = &hx->head;
	while (*tail)
		tail = &(*tail)->next;
	*tail = w;
	hx->count++;
	log_debug("request %u: lock waits", id);
}

static void send_getlk(struct server *s, uint32_t id, const struct flock *fl)
{
	uint32_t type = fl->l_type == F_RDLCK   ? HASHI_LOCK_RDLCK
			: fl->l_type == F_WRLCK ? HASHI_LOCK_WRLCK
						: HASHI_LOCK_UNLCK;
	struct wire_buf *out = server_out(s);
	size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
	put_or_die(wire_put_u32(out, type));
	put_or_die(wire_put_u64(out, (uint64_t)fl->l_start));
	put_or_die(wire_put_u64(out, (uint64_t)fl->l_len));
	put_or_die(wire_put_u32(out, (uint32_t)fl->l_pid));
	server_reply_end(s, mark);
}

/* End every wait on handle h with EINTR; returns how many. */
static unsigned cancel_waits(struct server *s, const struct handle *h)
{
	struct hashi_ext *hx = *server_hashi_ext(s);
	unsigned n = 0;
	for (struct lock_wait **p = hx ? &hx->head : NULL; p && *p;) {
		struct lock_wait *w = *p;
		if (w->index == h->index && w->gen == h->gen) {
			*p = w->next;
			hx->count--;
			server_send_errno(s, w->id, EINTR);
			free(w);
			n++;
		} else {
			p = &w->next;
		}
	}
	return n;
}

static int hx_lock(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	uint32_t op, flags, type;
	uint64_t start, len;
	int e, err = get_handle(s, r, HANDLE_ANY, &h, &e);
	if (err)
		return err;
	if ((err = wire_get_u32(r, &op)) || (err = wire_get_u32(r, &flags)) ||
	    (err = wire_get_u32(r, &type)) || (err = wire_get_u64(r, &start)) ||
	    (err = wire_get_u64(r, &len)))
		return err;
	log_debug("request %u: lock@hashi \"%s\" op %u flags %u type %u start %llu len %llu", id,
		  h ? h->name : "(invalid)", op, flags, type, (unsigned long long)start,
		  (unsigned long long)len);
	struct flock fl = { .l_whence = SEEK_SET, .l_start = (off_t)start, .l_len = (off_t)len };
	if (!e && ((flags & ~(uint32_t)HASHI_LOCK_WAIT) || start > (uint64_t)INT64_MAX ||
		   len > (uint64_t)INT64_MAX))
		e = EINVAL;
	if (!e && op != HASHI_LOCK_CANCEL)
		e = lock_type(type, &fl.l_type);
	if (e) {
		server_send_errno(s, id, e);
		return 0;
	}
	int flock_op = type == HASHI_LOCK_RDLCK ? LOCK_SH : type == HASHI_LOCK_WRLCK ? LOCK_EX : LOCK_UN;
	switch (op) {
	case HASHI_LOCK_GET:
		if (fcntl(h->fd, F_OFD_GETLK, &fl) < 0)
			server_send_errno(s, id, errno);
		else
			send_getlk(s, id, &fl);
		return 0;
	case HASHI_LOCK_SET:
	case HASHI_LOCK_FLOCK:
		e = lock_try(h->fd, op, &fl, flock_op);
		if (e == EAGAIN && (flags & HASHI_LOCK_WAIT) && type != HASHI_LOCK_UNLCK &&
		    server_loop_running(s)) {
			add_waiter(s, id, h, op, &fl, flock_op);
			return 0;
		}
		if (!e)
			wake_waiters(s);
		server_send_errno(s, id, e);
		return 0;
	case HASHI_LOCK_CANCEL:
		log_debug("request %u: cancelled %u waiting locks", id, cancel_waits(s, h));
		server_send_status(s, id, SSH_FX_OK);
		return 0;
	default:
		server_send_errno(s, id, EINVAL);
		return 0;
	}
}

int hashi_ext_timeout(struct server *s)
{
	struct hashi_ext *hx = *server_hashi_ext(s);
	if (!hx || !hx->head)
		return -1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t best = INT64_MAX;
	for (struct lock_wait *w = hx->head; w; w = w->next) {
		int64_t ms = (int64_t)(w->due.tv_sec - now.tv_sec) * 1000 +
			     (w->due.tv_nsec - now.tv_nsec) / 1000000;
		if (ms < best)
			best = ms;
	}
	return best < 0 ? 0 : (int)(best > HX_WAIT_MAX_MS ? HX_WAIT_MAX_MS : best) + 1;
}

void hashi_ext_retry(struct server *s)
{
	struct hashi_ext *hx = *server_hashi_ext(s);
	if (!hx || !hx->head)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	bool granted = false;
	for (struct lock_wait **p = &hx->head; *p;) {
		struct lock_wait *w = *p;
		if (w->due.tv_sec > now.tv_sec ||
		    (w->due.tv_sec == now.tv_sec && w->due.tv_nsec > now.tv_nsec)) {
			p = &w->next;
			continue;
		}
		struct handle *h = handles_slot(server_handles(s), w->index, w->gen);
		int e = (!h || h->closing) ? EBADF : lock_try(h->fd, w->op, &w->fl, w->flock_op);
		if (e == EAGAIN) {
			w->delay_ms = w->delay_ms * 2 > HX_WAIT_MAX_MS ? HX_WAIT_MAX_MS : w->delay_ms * 2;
			timespec_after_ms(&w->due, w->delay_ms);
			p = &w->next;
			continue;
		}
		log_debug("request %u: waiting lock %s", w->id, e ? strerror(e) : "granted");
		server_send_errno(s, w->id, e);
		granted |= e == 0;
		*p = w->next;
		hx->count--;
		free(w);
	}
	if (granted)
		wake_waiters(s);
}

void hashi_ext_free(struct hashi_ext *hx)
{
	if (!hx)
		return;
	while (hx->head) {
		struct lock_wait *w = hx->head;
		hx->head = w->next;
		free(w);
	}
	free(hx);
}

/* ------------------------------------------------------------ fallocate, lseek */

static int hx_fallocate(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	uint32_t mode;
	uint64_t off, len;
	int e, err = get_handle(s, r, HANDLE_FILE, &h, &e);
	if (err)
		return err;
	if ((err = wire_get_u32(r, &mode)) || (err = wire_get_u64(r, &off)) ||
	    (err = wire_get_u64(r, &len)))
		return err;
	log_info("fallocate@hashi \"%s\" mode 0x%x off %llu len %llu", h ? h->name : "(invalid)",
		 mode, (unsigned long long)off, (unsigned long long)len);
	if (!e && (mode & ~(uint32_t)(HASHI_FALLOC_KEEP_SIZE | HASHI_FALLOC_PUNCH_HOLE |
				      HASHI_FALLOC_ZERO_RANGE)))
		e = EOPNOTSUPP;
	if (!e && (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX))
		e = EINVAL;
	/* Our values are Linux's FALLOC_FL_* ones. */
	if (!e && fallocate(h->fd, (int)mode, (off_t)off, (off_t)len) < 0)
		e = errno;
	server_send_errno(s, id, e);
	return 0;
}

static int hx_lseek(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	uint64_t off;
	uint32_t whence;
	int e, err = get_handle(s, r, HANDLE_FILE, &h, &e);
	if (err)
		return err;
	if ((err = wire_get_u64(r, &off)) || (err = wire_get_u32(r, &whence)))
		return err;
	log_debug("request %u: lseek@hashi \"%s\" off %llu whence %u", id,
		  h ? h->name : "(invalid)", (unsigned long long)off, whence);
	if (!e && ((whence != HASHI_SEEK_DATA && whence != HASHI_SEEK_HOLE) ||
		   off > (uint64_t)INT64_MAX))
		e = EINVAL;
	off_t pos = -1;
	if (!e && (pos = lseek(h->fd, (off_t)off, whence == HASHI_SEEK_DATA ? SEEK_DATA : SEEK_HOLE)) < 0)
		e = errno;
	if (e) {
		server_send_errno(s, id, e);
		return 0;
	}
	size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
	put_or_die(wire_put_u64(server_out(s), (uint64_t)pos));
	server_reply_end(s, mark);
	return 0;
}

#define HX(ext, fn, mutating) { ext, ext, SFTP_HASHI_EXT_VERSION, 0, fn, mutating }

/* -P/-p and -Q name these by their extension names. */
const struct request_def requests_hashi[] = {
	HX(SFTP_EXT_HASHI_ERRNO, hx_errno, false),
	HX(SFTP_EXT_HASHI_STAT, hx_stat, false),
	HX(SFTP_EXT_HASHI_READDIR, hx_readdir, false),
	HX(SFTP_EXT_HASHI_SETSTAT, hx_setstat, true),
	HX(SFTP_EXT_HASHI_OPEN, hx_open, false), /* -R checked inside, as for OPEN */
	HX(SFTP_EXT_HASHI_MKNOD, hx_mknod, true),
	HX(SFTP_EXT_HASHI_GETXATTR, hx_getxattr, false),
	HX(SFTP_EXT_HASHI_SETXATTR, hx_setxattr, true),
	HX(SFTP_EXT_HASHI_LISTXATTR, hx_listxattr, false),
	HX(SFTP_EXT_HASHI_REMOVEXATTR, hx_removexattr, true),
	HX(SFTP_EXT_HASHI_LOCK, hx_lock, false),
	HX(SFTP_EXT_HASHI_FALLOCATE, hx_fallocate, true),
	HX(SFTP_EXT_HASHI_LSEEK, hx_lseek, false),
	{ NULL, NULL, NULL, 0, NULL, false },
};
