/*
 * Where a client's path names lead: every request that takes a path turns it
 * into (directory descriptor, name) here, and makes its *at() system call on
 * that pair.
 *
 * Without a root (p == NULL) a path is used as it came: the pair is
 * (AT_FDCWD, path), so behaviour is exactly that of the plain calls.
 *
 * With -r DIR every path is resolved by the kernel with openat2(2) and
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS against a descriptor of DIR: a
 * "..", an absolute symbolic link or a link pointing outside fails (the client
 * sees "Permission denied"); no string comparison decides what is inside.
 * The client sees DIR as "/"; relative paths start at the start directory.
 */
#ifndef HASHI_PATHS_H
#define HASHI_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct paths;

/* Confine to dir; start (may be NULL) is the start directory as seen inside
 * it. NULL with errno on failure: ENOSYS when the kernel has no openat2. */
struct paths *paths_new_root(const char *dir, const char *start);
void paths_free(struct paths *p);
/* The root directory's real path (for the sandbox), or NULL without one. */
const char *paths_root_dir(const struct paths *p);
/* An O_PATH descriptor of the start directory, or -1 without a root. */
int paths_start_fd(const struct paths *p);

/* One path, resolved for one system call: fooat(sp.dirfd, sp.name, ...). */
struct spath {
	int dirfd;
	const char *name;
	/* For a call that has no *at() form (the xattr family): whether it
	 * must follow name (getxattr) or not (lgetxattr). */
	bool follow;
	/* private */
	int fd;
	char proc[40];
	char *owned;
};

enum paths_mode {
	/* The name itself, symbolic link or not (lstat, unlink, rename, link,
	 * symlink, readlink, mkdir, lsetstat): dirfd is its directory. */
	PATHS_LAST,
	/* What the path leads to, following symbolic links (stat, setstat,
	 * statvfs): with a root, it must exist, and name reaches it from
	 * AT_FDCWD whatever the call. */
	PATHS_FOLLOW,
	/* The name itself, symbolic link or not, for calls that have no *at()
	 * form: name reaches it from AT_FDCWD. With a root, name is the magic
	 * link of an O_PATH descriptor of the node, which the call must follow
	 * (the kernel stops at the node, link or not; f*xattr refuses O_PATH
	 * descriptors); without, it is the client's path, which the call must
	 * not follow. sp.follow says which. */
	PATHS_NODE,
};

/* 0, or -1 with errno. Call spath_done() after a 0. */
int paths_resolve(const struct paths *p, const char *path, enum paths_mode mode, struct spath *sp);
void spath_done(struct spath *sp);

/* open(2) of a client path: a descriptor, or -1 with errno. */
int paths_open(const struct paths *p, const char *path, int flags, mode_t mode);

/* realpath(3) as the client sees it; like OpenSSH's, a missing last
 * component is accepted. resolved holds PATH_MAX bytes. 0, or -1 with errno. */
int paths_realpath(const struct paths *p, const char *path, char *resolved);

/* The start directory as the client sees it. 0, or -1 with errno. */
int paths_cwd(const struct paths *p, char *buf, size_t size);

/* A path of ours (a home directory) as the client sees it: copied to buf, or
 * false when the client cannot see it (outside the root). */
bool paths_visible(const struct paths *p, const char *real, char *buf, size_t size);

#endif
