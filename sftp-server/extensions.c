/* OpenSSH's SFTP extensions, one function each. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "attrs.h"
#include "log.h"
#include "server.h"
#include "sftp-proto.h"

/* A users-groups-by-id reply larger than this is refused (SSH_FX_FAILURE). */
#define MAX_NAMES_REPLY (4 * 1024 * 1024)

static int do_rename(const struct spath *o, const struct spath *n)
{
	return renameat(o->dirfd, o->name, n->dirfd, n->name);
}

static int ext_posix_rename(struct server *s, uint32_t id, struct wire_reader *r)
{
	return server_path2_op(s, id, r, "posix-rename", false, do_rename);
}

static void send_statvfs(struct server *s, uint32_t id, const struct statvfs *st)
{
	struct wire_buf *out = server_out(s);
	uint64_t flag = ((st->f_flag & ST_RDONLY) ? SSH_FXE_STATVFS_ST_RDONLY : 0) |
			((st->f_flag & ST_NOSUID) ? SSH_FXE_STATVFS_ST_NOSUID : 0);
	uint64_t v[] = { st->f_bsize, st->f_frsize, st->f_blocks, st->f_bfree, st->f_bavail,
			 st->f_files, st->f_ffree, st->f_favail, st->f_fsid, flag, st->f_namemax };
	size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (wire_put_u64(out, v[i]))
			log_fatal("internal error: reply queue full");
	server_reply_end(s, mark);
}

static int ext_statvfs(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *path;
	struct statvfs st;
	int err = wire_get_cstring(r, &path, SFTP_MAX_MSG_LENGTH);
	if (err)
		return err;
	log_info("statvfs \"%s\"", path);
	struct spath sp;
	if (paths_resolve(server_paths(s), path, PATHS_FOLLOW, &sp) < 0) {
		server_send_errno(s, id, errno);
	} else {
		if (statvfs(sp.name, &st) < 0)
			server_send_errno(s, id, errno);
		else
			send_statvfs(s, id, &st);
		spath_done(&sp);
	}
	free(path);
	return 0;
}

static int ext_fstatvfs(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	struct statvfs st;
	int err = server_get_handle(s, r, HANDLE_ANY, &h);
	if (err)
		return err;
	log_debug("request %u: fstatvfs \"%s\"", id, h ? h->name : "(invalid)");
	if (!h)
		server_send_status(s, id, SSH_FX_FAILURE);
	else if (fstatvfs(h->fd, &st) < 0)
		server_send_errno(s, id, errno);
	else
		send_statvfs(s, id, &st);
	return 0;
}

static int do_link(const struct spath *o, const struct spath *n)
{
	return linkat(o->dirfd, o->name, n->dirfd, n->name, 0);
}

static int ext_hardlink(struct server *s, uint32_t id, struct wire_reader *r)
{
	return server_path2_op(s, id, r, "hardlink", false, do_link);
}

static int ext_fsync(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	int err = server_get_handle(s, r, HANDLE_ANY, &h);
	if (err)
		return err;
	log_verbose("fsync \"%s\"", h ? h->name : "(invalid)");
	if (!h || h->kind != HANDLE_FILE)
		server_send_status(s, id, SSH_FX_NO_SUCH_FILE);
	else
		server_send_errno(s, id, fsync(h->fd) < 0 ? errno : 0);
	return 0;
}

static int ext_lsetstat(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *name;
	struct sftp_attrs a;
	uint32_t status = SSH_FX_OK;
	int err = wire_get_cstring(r, &name, SFTP_MAX_MSG_LENGTH);
	if (err)
		return err;
	if ((err = attrs_get(r, &a))) {
		free(name);
		return err;
	}
	log_debug("request %u: lsetstat name \"%s\"", id, name);
	if (a.flags & SSH_FILEXFER_ATTR_SIZE) {
		/* A size means nothing for a link. */
		server_send_status(s, id, SSH_FX_BAD_MESSAGE);
		free(name);
		return 0;
	}
	struct spath sp;
	if (paths_resolve(server_paths(s), name, PATHS_LAST, &sp) < 0) {
		server_send_errno(s, id, errno);
		free(name);
		return 0;
	}
	if (a.flags & SSH_FILEXFER_ATTR_PERMISSIONS) {
		log_info("set \"%s\" mode %04o", name, a.perm);
		if (fchmodat(sp.dirfd, sp.name, a.perm & 07777, AT_SYMLINK_NOFOLLOW) < 0)
			status = attrs_errno_to_status(errno);
	}
	if (a.flags & SSH_FILEXFER_ATTR_ACMODTIME) {
		struct timespec ts[2] = { { .tv_sec = (time_t)a.atime }, { .tv_sec = (time_t)a.mtime } };
		server_log_modtime(name, a.mtime);
		if (utimensat(sp.dirfd, sp.name, ts, AT_SYMLINK_NOFOLLOW) < 0)
			status = attrs_errno_to_status(errno);
	}
	if (a.flags & SSH_FILEXFER_ATTR_UIDGID) {
		log_info("set \"%s\" owner %lu group %lu", name, (unsigned long)a.uid,
			 (unsigned long)a.gid);
		if (fchownat(sp.dirfd, sp.name, a.uid, a.gid, AT_SYMLINK_NOFOLLOW) < 0)
			status = attrs_errno_to_status(errno);
	}
	spath_done(&sp);
	server_send_status(s, id, status);
	free(name);
	return 0;
}

static int ext_limits(struct server *s, uint32_t id, struct wire_reader *r)
{
	(void)r;
	log_debug("request %u: limits", id);
	struct wire_buf *out = server_out(s);
	size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
	if (wire_put_u64(out, SFTP_MAX_MSG_LENGTH) || wire_put_u64(out, SFTP_MAX_READ_LENGTH) ||
	    wire_put_u64(out, SFTP_MAX_WRITE_LENGTH) || wire_put_u64(out, server_handles(s)->max))
		log_fatal("internal error: reply queue full");
	server_reply_end(s, mark);
	return 0;
}

/* "~user/rest" -> that user's home + "/rest", as the client sees it; NULL
 * with errno when unknown (or out of the client's sight). */
static char *tilde_user(const struct paths *paths, const char *path)
{
	const char *slash = strchr(path + 1, '/');
	size_t ulen = slash ? (size_t)(slash - path - 1) : strlen(path + 1);
	char user[256];
	if (ulen == 0 || ulen >= sizeof(user)) {
		errno = ENOENT;
		return NULL;
	}
	memcpy(user, path + 1, ulen);
	user[ulen] = '\0';
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		errno = ENOENT;
		return NULL;
	}
	char home[PATH_MAX];
	if (!paths_visible(paths, pw->pw_dir, home, sizeof(home))) {
		errno = ENOENT;
		return NULL;
	}
	char *out;
	if (asprintf(&out, "%s%s", home, slash ? slash : "") < 0)
		return NULL;
	return out;
}

static int ext_expand_path(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *path, *full = NULL;
	char cwd[PATH_MAX], resolved[PATH_MAX];
	int err = wire_get_cstring(r, &path, SFTP_MAX_MSG_LENGTH);
	if (err)
		return err;
	log_debug3("request %u: expand, original \"%s\"", id, path);
	if (paths_cwd(server_paths(s), cwd, sizeof(cwd)) < 0) {
		server_send_errno(s, id, errno);
		goto out;
	}
	/* "~" is the start directory (-d), as in OpenSSH. */
	int n = 0;
	if (path[0] == '\0')
		full = strdup(".");
	else if (strcmp(path, "~") == 0)
		full = strdup(cwd);
	else if (strncmp(path, "~/", 2) == 0)
		n = asprintf(&full, "%s/%s", cwd, path + 2);
	else if (path[0] == '~') {
		if (!(full = tilde_user(server_paths(s), path))) {
			server_send_status_msg(s, id, attrs_errno_to_status(ENOENT), "no such user");
			goto out;
		}
	} else if (path[0] != '/')
		n = asprintf(&full, "%s/%s", cwd, path);
	else
		full = strdup(path);
	if (n < 0 || !full) {
		full = NULL;
		server_send_status(s, id, SSH_FX_FAILURE);
		goto out;
	}
	log_verbose("expand \"%s\"", full);
	if (paths_realpath(server_paths(s), full, resolved) < 0)
		server_send_errno(s, id, errno);
	else
		server_send_name1(s, id, resolved);
out:
	free(full);
	free(path);
	return 0;
}

/* Copy between two open files; read_len 0 means "to EOF".
 * Reaching EOF early is answered as OpenSSH answers it: OpenSSH copies in
 * 64 KiB chunks and says SSH_FX_EOF only when EOF comes before the chunk
 * that would have ended the copy, SSH_FX_OK otherwise. */
#define OPENSSH_COPY_CHUNK 65536
static uint32_t copy_range(struct handle *rh, uint64_t roff, uint64_t rlen, struct handle *wh,
			   uint64_t woff)
{
	bool until_eof = rlen == 0;
	bool append = (wh->flags & O_APPEND) != 0;
	bool use_cfr = !append;
	static uint8_t buf[256 * 1024];

	if (roff > (uint64_t)INT64_MAX || woff > (uint64_t)INT64_MAX)
		return attrs_errno_to_status(EINVAL);
	if (until_eof)
		rlen = (uint64_t)INT64_MAX - roff;
	uint64_t want = rlen;
	while (rlen > 0) {
		size_t chunk = rlen > (1u << 30) ? (1u << 30) : (size_t)rlen;
		ssize_t n;
		if (use_cfr) {
			loff_t ro = (loff_t)roff, wo = (loff_t)woff;
			n = copy_file_range(rh->fd, &ro, wh->fd, &wo, chunk, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP || errno == EBADF)) {
				/* Not possible between these files: plain reads and writes. */
				use_cfr = false;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return attrs_errno_to_status(errno);
			if (n == 0)
				break;
			rh->bytes_read += (uint64_t)n;
			wh->bytes_written += (uint64_t)n;
		} else {
			if (chunk > sizeof(buf))
				chunk = sizeof(buf);
			n = pread(rh->fd, buf, chunk, (off_t)roff);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return attrs_errno_to_status(errno);
			if (n == 0)
				break;
			rh->bytes_read += (uint64_t)n;
			for (ssize_t done = 0; done < n;) {
				ssize_t w = append ? write(wh->fd, buf + done, (size_t)(n - done))
						   : pwrite(wh->fd, buf + done, (size_t)(n - done),
							    (off_t)(woff + (uint64_t)done));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					return attrs_errno_to_status(w < 0 ? errno : EIO);
				done += w;
				wh->bytes_written += (uint64_t)w;
			}
		}
		roff += (uint64_t)n;
		woff += (uint64_t)n;
		rlen -= (uint64_t)n;
	}
	if (rlen > 0 && !until_eof) {
		uint64_t copied = want - rlen;
		uint64_t chunk_end = (copied / OPENSSH_COPY_CHUNK + 1) * OPENSSH_COPY_CHUNK;
		return want > chunk_end ? SSH_FX_EOF : SSH_FX_OK;
	}
	return SSH_FX_OK;
}

static int ext_copy_data(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *rh, *wh;
	uint64_t roff, rlen, woff;
	int err;

	if ((err = server_get_handle(s, r, HANDLE_FILE, &rh)) || (err = wire_get_u64(r, &roff)) ||
	    (err = wire_get_u64(r, &rlen)) || (err = server_get_handle(s, r, HANDLE_FILE, &wh)) ||
	    (err = wire_get_u64(r, &woff)))
		return err;
	log_debug("request %u: copy-data from \"%s\" off %llu len %llu to \"%s\" off %llu", id,
		  rh ? rh->name : "(invalid)", (unsigned long long)roff, (unsigned long long)rlen,
		  wh ? wh->name : "(invalid)", (unsigned long long)woff);
	struct stat rst, wst;
	if (!rh || !wh || rh == wh) {
		server_send_status(s, id, SSH_FX_FAILURE);
		return 0;
	}
	/* Checked here, before anything is read: a handle opened for reading
	 * is never written through (EBADF, as OpenSSH's write would say). */
	if ((wh->flags & O_ACCMODE) == O_RDONLY) {
		log_error("copy-data: \"%s\" is not open for writing", wh->name);
		server_send_errno(s, id, EBADF);
		return 0;
	}
	if (fstat(rh->fd, &rst) < 0 || fstat(wh->fd, &wst) < 0) {
		server_send_errno(s, id, errno);
		return 0;
	}
	if (rst.st_dev == wst.st_dev && rst.st_ino == wst.st_ino) {
		log_error("copy-data: \"%s\" and \"%s\" are the same file", rh->name, wh->name);
		server_send_status(s, id, SSH_FX_FAILURE);
		return 0;
	}
	server_send_status(s, id, copy_range(rh, roff, rlen, wh, woff));
	return 0;
}

static int ext_home_directory(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *user;
	int err = wire_get_cstring(r, &user, 1024);
	if (err)
		return err;
	log_debug3("request %u: home-directory \"%s\"", id, user);
	const char *home = NULL;
	char shown[PATH_MAX];
	if (user[0] == '\0') {
		home = server_opts(s)->home;
	} else {
		struct passwd *pw = getpwnam(user);
		home = pw ? pw->pw_dir : NULL;
	}
	/* Under -r: as seen from the root, or not at all. */
	if (home && server_paths(s))
		home = paths_visible(server_paths(s), home, shown, sizeof(shown)) ? shown : NULL;
	if (!home) {
		server_send_status_msg(s, id, SSH_FX_FAILURE, "no such user");
	} else {
		log_verbose("home-directory \"%s\"", home);
		server_send_name1(s, id, home);
	}
	free(user);
	return 0;
}

static int put_names(struct wire_buf *out, struct wire_reader *ids, bool users, uint32_t *count,
		     size_t reply_mark)
{
	size_t mark;
	/* The names go in one string: its length is filled in at the end. */
	mark = wire_buf_mark(out);
	if (wire_put_u32(out, 0))
		return WIRE_ENOMEM;
	*count = 0;
	while (wire_remaining(ids) > 0) {
		uint32_t n;
		int err = wire_get_u32(ids, &n);
		if (err)
			return err;
		const char *name = "";
		if (users) {
			struct passwd *pw = getpwuid((uid_t)n);
			if (pw)
				name = pw->pw_name;
		} else {
			struct group *gr = getgrgid((gid_t)n);
			if (gr)
				name = gr->gr_name;
		}
		if (wire_buf_mark(out) - reply_mark > MAX_NAMES_REPLY || wire_put_cstring(out, name))
			return WIRE_ENOMEM;
		(*count)++;
	}
	wire_poke_u32(out, mark, (uint32_t)(wire_buf_mark(out) - mark - 4));
	return 0;
}

static int ext_users_groups_by_id(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct wire_reader uids, gids;
	int err;
	if ((err = wire_get_sub(r, &uids)) || (err = wire_get_sub(r, &gids)))
		return err;
	if (wire_remaining(&uids) % 4 || wire_remaining(&gids) % 4)
		return WIRE_EFORMAT;
	struct wire_buf *out = server_out(s);
	uint32_t nu, ng;
	size_t mark = server_reply_begin(s, SSH_FXP_EXTENDED_REPLY, id);
	if (put_names(out, &uids, true, &nu, mark) || put_names(out, &gids, false, &ng, mark)) {
		wire_buf_truncate(out, mark);
		log_error("users-groups-by-id: reply too large");
		server_send_status(s, id, SSH_FX_FAILURE);
		return 0;
	}
	server_reply_end(s, mark);
	log_verbose("users-groups-by-id: %u users, %u groups", nu, ng);
	return 0;
}

const struct request_def requests_extensions[] = {
	{ "posix-rename", SFTP_EXT_POSIX_RENAME, "1", 0, ext_posix_rename, true },
	{ "statvfs", SFTP_EXT_STATVFS, "2", 0, ext_statvfs, false },
	{ "fstatvfs", SFTP_EXT_FSTATVFS, "2", 0, ext_fstatvfs, false },
	{ "hardlink", SFTP_EXT_HARDLINK, "1", 0, ext_hardlink, true },
	{ "fsync", SFTP_EXT_FSYNC, "1", 0, ext_fsync, true },
	{ "lsetstat", SFTP_EXT_LSETSTAT, "1", 0, ext_lsetstat, true },
	{ "limits", SFTP_EXT_LIMITS, "1", 0, ext_limits, false },
	{ "expand-path", SFTP_EXT_EXPAND_PATH, "1", 0, ext_expand_path, false },
	{ "copy-data", SFTP_EXT_COPY_DATA, "1", 0, ext_copy_data, true },
	{ "home-directory", SFTP_EXT_HOME_DIR, "1", 0, ext_home_directory, false },
	{ "users-groups-by-id", SFTP_EXT_USERS_GROUPS, "1", 0, ext_users_groups_by_id, false },
	{ NULL, NULL, NULL, 0, NULL, false },
};
