/* The core SFTP v3 requests, one function each. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "attrs.h"
#include "log.h"
#include "server.h"
#include "sftp-proto.h"

/* Entries per READDIR reply: at most this many, and stop adding once the
 * reply passes READDIR_MAX_BYTES (an entry is well under 1 KiB). */
#define READDIR_MAX_ENTRIES 256
#define READDIR_MAX_BYTES (128 * 1024)

static int get_path(struct wire_reader *r, char **path)
{
	return wire_get_cstring(r, path, SFTP_MAX_MSG_LENGTH);
}

static int flags_from_portable(uint32_t pflags)
{
	int flags = 0;

	if ((pflags & SSH_FXF_READ) && (pflags & SSH_FXF_WRITE))
		flags = O_RDWR;
	else if (pflags & SSH_FXF_READ)
		flags = O_RDONLY;
	else if (pflags & SSH_FXF_WRITE)
		flags = O_WRONLY;
	if (pflags & SSH_FXF_APPEND)
		flags |= O_APPEND;
	if (pflags & SSH_FXF_CREAT)
		flags |= O_CREAT;
	if (pflags & SSH_FXF_TRUNC)
		flags |= O_TRUNC;
	if (pflags & SSH_FXF_EXCL)
		flags |= O_EXCL;
	return flags;
}

static const char *string_from_portable(uint32_t pflags, char *buf, size_t size)
{
	static const struct { uint32_t bit; const char *name; } names[] = {
		{ SSH_FXF_READ, "READ" }, { SSH_FXF_WRITE, "WRITE" }, { SSH_FXF_APPEND, "APPEND" },
		{ SSH_FXF_CREAT, "CREATE" }, { SSH_FXF_TRUNC, "TRUNCATE" }, { SSH_FXF_EXCL, "EXCL" },
	};
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(pflags & names[i].bit))
			continue;
		size_t used = strlen(buf);
		snprintf(buf + used, size - used, "%s%s", used ? "," : "", names[i].name);
	}
	return buf;
}

static int req_open(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *name, fbuf[64];
	uint32_t pflags;
	struct sftp_attrs a;
	int err;

	if ((err = get_path(r, &name)))
		return err;
	if ((err = wire_get_u32(r, &pflags)) || (err = attrs_get(r, &a))) {
		free(name);
		return err;
	}
	int flags = flags_from_portable(pflags);
	int mode = (a.flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? (int)(a.perm & 07777) : 0666;
	log_info("open \"%s\" flags %s mode 0%o", name,
		 string_from_portable(pflags, fbuf, sizeof(fbuf)), (unsigned)mode);
	if (server_opts(s)->readonly &&
	    ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0)) {
		log_verbose("Refusing open request in read-only mode");
		server_send_status(s, id, SSH_FX_PERMISSION_DENIED);
		free(name);
		return 0;
	}
	/* O_NONBLOCK so that a FIFO or a device cannot stall the whole session
	 * in open(); it is cleared again for regular files. */
	int fd = paths_open(server_paths(s), name, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
			    (mode_t)mode);
	if (fd < 0) {
		server_send_errno(s, id, errno);
		free(name);
		return 0;
	}
	struct handle *h = server_add_file_handle(s, name, fd, flags);
	if (!h)
		server_send_status(s, id, SSH_FX_FAILURE);
	else
		server_send_handle(s, id, h);
	free(name);
	return 0;
}

struct handle *server_add_file_handle(struct server *s, const char *name, int fd, int flags)
{
	struct stat st;
	bool regular = false;
	if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
		fcntl(fd, F_SETFL, flags & (O_APPEND | O_NOATIME));
		regular = S_ISREG(st.st_mode);
	}
	struct handle *h = handles_new(server_handles(s), HANDLE_FILE, name, fd, NULL, flags);
	if (!h) {
		log_error("open \"%s\": too many open handles", name);
		close(fd);
		return NULL;
	}
	h->regular = regular;
	h->size_hint = regular ? (uint64_t)st.st_size : 0;
	return h;
}

static int req_close(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	int err = server_get_handle(s, r, HANDLE_ANY, &h);
	if (err)
		return err;
	if (!h) {
		server_send_errno(s, id, ENOENT);
		return 0;
	}
	if (h->kind == HANDLE_FILE)
		log_info("close \"%s\" bytes read %llu written %llu", h->name,
			 (unsigned long long)h->bytes_read, (unsigned long long)h->bytes_written);
	else
		log_info("closedir \"%s\"", h->name);
	if (h->busy) {
		/* Replies still carry its data: close once they are sent. A
		 * read-only descriptor's close has nothing to report. */
		h->closing = true;
		server_send_status(s, id, SSH_FX_OK);
		return 0;
	}
	int ret = handles_close(server_handles(s), h);
	server_send_errno(s, id, ret < 0 ? errno : 0);
	return 0;
}

/* Reads at least this long from a file opened read-only are sent with
 * sendfile(2): the bytes go from the page cache to the client's pipe or
 * socket without passing through us. */
#define ZERO_COPY_MIN 8192

static int read_zero_copy(struct server *s, uint32_t id, struct handle *h, uint64_t off,
			  uint32_t len)
{
	/* The reply's length goes out first, so the size must be known: look
	 * again only when the read reaches past what we last saw. */
	if (off + len > h->size_hint) {
		struct stat st;
		if (fstat(h->fd, &st) < 0) {
			server_send_errno(s, id, errno);
			return 0;
		}
		h->size_hint = (uint64_t)st.st_size;
	}
	if (off >= h->size_hint) {
		server_send_status(s, id, SSH_FX_EOF);
		return 0;
	}
	uint64_t n = h->size_hint - off < len ? h->size_hint - off : len;
	size_t mark = server_reply_begin(s, SSH_FXP_DATA, id);
	if (wire_put_u32(server_out(s), (uint32_t)n))
		log_fatal("internal error: reply queue full");
	/* length = type + id + data length + the data itself */
	wire_poke_u32(server_out(s), mark, (uint32_t)(1 + 4 + 4 + n));
	server_queue_file(s, h, (off_t)off, (size_t)n);
	h->bytes_read += n;
	log_debug("request %u: sent data len %llu", id, (unsigned long long)n);
	return 0;
}

/* Otherwise the data is read straight into the reply queue: no intermediate copy. */
static int req_read(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	uint64_t off;
	uint32_t len;
	int err;

	if ((err = server_get_handle(s, r, HANDLE_FILE, &h)) || (err = wire_get_u64(r, &off)) ||
	    (err = wire_get_u32(r, &len)))
		return err;
	log_debug("request %u: read \"%s\" off %llu len %u", id, h ? h->name : "(invalid)",
		  (unsigned long long)off, len);
	if (!h) {
		server_send_status(s, id, SSH_FX_FAILURE);
		return 0;
	}
	if (len > SFTP_MAX_READ_LENGTH) {
		log_debug2("read change len %u to %u", len, SFTP_MAX_READ_LENGTH);
		len = SFTP_MAX_READ_LENGTH;
	}
	if (off > (uint64_t)INT64_MAX) {
		server_send_errno(s, id, EINVAL);
		return 0;
	}
	if (len >= ZERO_COPY_MIN && h->regular && (h->flags & O_ACCMODE) == O_RDONLY &&
	    server_zero_copy(s))
		return read_zero_copy(s, id, h, off, len);
	struct wire_buf *out = server_out(s);
	size_t mark = server_reply_begin(s, SSH_FXP_DATA, id);
	uint8_t *p = wire_buf_reserve(out, (size_t)len + 4);
	if (!p)
		log_fatal("internal error: reply queue full");
	ssize_t n = 0;
	if (len > 0) {
		do {
			n = pread(h->fd, p + 4, len, (off_t)off);
			if (n < 0 && errno == ESPIPE)
				n = read(h->fd, p + 4, len);
		} while (n < 0 && errno == EINTR);
	}
	if (n < 0) {
		int e = errno;
		wire_buf_truncate(out, mark);
		log_error("read \"%.100s\": %s", h->name, strerror(e));
		server_send_errno(s, id, e);
		return 0;
	}
	if (n == 0 && len > 0) {
		wire_buf_truncate(out, mark);
		/* Past what the file system allows, OpenSSH's lseek fails (EINVAL). */
		if (lseek(h->fd, (off_t)off, SEEK_SET) < 0 && errno != ESPIPE)
			server_send_errno(s, id, errno);
		else
			server_send_status(s, id, SSH_FX_EOF);
		return 0;
	}
	wire_store_u32(p, (uint32_t)n);
	wire_buf_commit(out, (size_t)n + 4);
	server_reply_end(s, mark);
	log_debug("request %u: sent data len %zd", id, n);
	h->bytes_read += (uint64_t)n;
	return 0;
}

/* Write one request's data; returns 0 or an errno. */
static int write_all(struct handle *h, uint64_t off, const uint8_t *data, size_t len, size_t *done)
{
	bool append = (h->flags & O_APPEND) != 0;
	*done = 0;
	while (*done < len) {
		ssize_t n;
		if (append)
			n = write(h->fd, data + *done, len - *done);
		else {
			n = pwrite(h->fd, data + *done, len - *done, (off_t)(off + *done));
			if (n < 0 && errno == ESPIPE)
				n = write(h->fd, data + *done, len - *done);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			/* An offset past what the file system allows: OpenSSH's lseek
			 * fails first and says so (EINVAL). */
			if (e == EFBIG && !append && lseek(h->fd, (off_t)(off + *done), SEEK_SET) < 0)
				e = errno;
			log_error("write \"%.100s\": %s", h->name, strerror(e));
			return e;
		}
		if (n == 0)
			return -1;
		*done += (size_t)n;
	}
	return 0;
}

static void write_one(struct server *s, uint32_t id, struct handle *h, uint64_t off,
		      const uint8_t *data, uint32_t len)
{
	size_t done;
	int e = write_all(h, off, data, len, &done);
	h->bytes_written += done;
	if (e > 0)
		server_send_errno(s, id, e);
	else
		server_send_status(s, id, e == 0 ? SSH_FX_OK : SSH_FX_FAILURE);
}

/* Consecutive WRITEs to the same file at contiguous offsets (what every
 * client's upload pipeline sends) go to the file in one pwritev(2). */
#define WRITE_RUN_MAX 64
#define WRITE_RUN_BYTES (4 * 1024 * 1024)

struct write_part {
	uint32_t id;
	const uint8_t *data;
	uint32_t len;
};

static size_t gather_run(struct server *s, const uint8_t *hstr, uint32_t hlen, uint64_t next_off,
			 size_t total, struct write_part *parts)
{
	size_t n = 0;
	while (n < WRITE_RUN_MAX - 1) {
		const uint8_t *pkt;
		uint32_t plen, id, dlen, hl;
		uint8_t type;
		uint64_t off;
		const uint8_t *hs, *data;
		struct wire_reader r;
		if (!server_peek_next(s, n, &pkt, &plen))
			break;
		wire_reader_init(&r, pkt, plen);
		if (wire_get_u8(&r, &type) || type != SSH_FXP_WRITE || wire_get_u32(&r, &id) ||
		    wire_get_string(&r, &hs, &hl) || hl != hlen || memcmp(hs, hstr, hl) != 0 ||
		    wire_get_u64(&r, &off) || off != next_off || wire_get_string(&r, &data, &dlen) ||
		    total + dlen > WRITE_RUN_BYTES)
			break;
		parts[n].id = id;
		parts[n].data = data;
		parts[n].len = dlen;
		next_off += dlen;
		total += dlen;
		n++;
	}
	return n;
}

static int req_write(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	uint64_t off;
	const uint8_t *hstr, *data;
	uint32_t hlen, len;
	int err;

	if ((err = wire_get_string(r, &hstr, &hlen)) || (err = wire_get_u64(r, &off)) ||
	    (err = wire_get_string(r, &data, &len)))
		return err;
	h = handles_lookup(server_handles(s), hstr, hlen, HANDLE_FILE);
	log_debug("request %u: write \"%s\" off %llu len %u", id, h ? h->name : "(invalid)",
		  (unsigned long long)off, len);
	if (!h) {
		server_send_status(s, id, SSH_FX_FAILURE);
		return 0;
	}
	if (off > (uint64_t)INT64_MAX - len) {
		server_send_errno(s, id, EINVAL);
		return 0;
	}
	struct write_part parts[WRITE_RUN_MAX];
	size_t more = 0;
	if (!(h->flags & O_APPEND) && h->regular)
		more = gather_run(s, hstr, hlen, off + len, len, parts);
	if (more == 0) {
		write_one(s, id, h, off, data, len);
		return 0;
	}
	struct iovec iov[WRITE_RUN_MAX];
	size_t total = len;
	iov[0].iov_base = (void *)data;
	iov[0].iov_len = len;
	for (size_t i = 0; i < more; i++) {
		iov[i + 1].iov_base = (void *)parts[i].data;
		iov[i + 1].iov_len = parts[i].len;
		total += parts[i].len;
		log_debug("request %u: write \"%s\" off %llu len %u", parts[i].id, h->name,
			  (unsigned long long)(off + total - parts[i].len), parts[i].len);
	}
	server_skip_next(s, more);
	ssize_t n;
	do
		n = pwritev(h->fd, iov, (int)more + 1, (off_t)off);
	while (n < 0 && errno == EINTR);
	size_t done = n > 0 ? (size_t)n : 0;
	h->bytes_written += done;
	/* Each request whose bytes are all written succeeded; the rest are
	 * tried again one by one, to report their own errors. */
	uint64_t pos = off;
	for (size_t i = 0; i <= more; i++) {
		uint32_t rid = i == 0 ? id : parts[i - 1].id;
		const uint8_t *d = i == 0 ? data : parts[i - 1].data;
		uint32_t l = i == 0 ? len : parts[i - 1].len;
		if (pos + l <= off + done)
			server_send_status(s, rid, SSH_FX_OK);
		else if (pos >= off + done)
			write_one(s, rid, h, pos, d, l);
		else {
			size_t head = (size_t)(off + done - pos);
			size_t rest;
			int e = write_all(h, pos + head, d + head, l - head, &rest);
			h->bytes_written += rest;
			if (e > 0)
				server_send_errno(s, rid, e);
			else
				server_send_status(s, rid, e == 0 ? SSH_FX_OK : SSH_FX_FAILURE);
		}
		pos += l;
	}
	return 0;
}

static int do_stat(struct server *s, uint32_t id, struct wire_reader *r, bool lstat_)
{
	char *name;
	struct stat st;
	int err = get_path(r, &name);
	if (err)
		return err;
	log_verbose("%sstat name \"%s\"", lstat_ ? "l" : "", name);
	struct spath sp;
	if (paths_resolve(server_paths(s), name, lstat_ ? PATHS_LAST : PATHS_FOLLOW, &sp) < 0) {
		server_send_errno(s, id, errno);
	} else {
		if (fstatat(sp.dirfd, sp.name, &st, lstat_ ? AT_SYMLINK_NOFOLLOW : 0) < 0)
			server_send_errno(s, id, errno);
		else
			server_send_attrs(s, id, &st);
		spath_done(&sp);
	}
	free(name);
	return 0;
}

static int req_stat(struct server *s, uint32_t id, struct wire_reader *r)
{
	return do_stat(s, id, r, false);
}

static int req_lstat(struct server *s, uint32_t id, struct wire_reader *r)
{
	return do_stat(s, id, r, true);
}

static int req_fstat(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	struct stat st;
	int err = server_get_handle(s, r, HANDLE_ANY, &h);
	if (err)
		return err;
	log_debug("request %u: fstat \"%s\"", id, h ? h->name : "(invalid)");
	if (!h)
		server_send_status(s, id, SSH_FX_FAILURE);
	else if (fstat(h->fd, &st) < 0)
		server_send_errno(s, id, errno);
	else
		server_send_attrs(s, id, &st);
	return 0;
}

/* setstat and fsetstat: size, mode, times, owner, in OpenSSH's order; every
 * part is tried and the last failure is reported. fd < 0 means by path: sp,
 * resolved with PATHS_FOLLOW (so sp->name reaches it from AT_FDCWD); name is
 * the client's, for the log. */
static uint32_t apply_attrs(const char *name, const struct spath *sp, int fd,
			    const struct sftp_attrs *a)
{
	const char *path = sp ? sp->name : NULL;

	uint32_t status = SSH_FX_OK;

	if (a->flags & SSH_FILEXFER_ATTR_SIZE) {
		log_info("set \"%s\" size %llu", name, (unsigned long long)a->size);
		if (a->size > (uint64_t)INT64_MAX)
			status = attrs_errno_to_status(EINVAL);
		else if ((fd >= 0 ? ftruncate(fd, (off_t)a->size) : truncate(path, (off_t)a->size)) < 0)
			status = attrs_errno_to_status(errno);
	}
	if (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) {
		log_info("set \"%s\" mode %04o", name, a->perm);
		if ((fd >= 0 ? fchmod(fd, a->perm & 07777) : chmod(path, a->perm & 07777)) < 0)
			status = attrs_errno_to_status(errno);
	}
	if (a->flags & SSH_FILEXFER_ATTR_ACMODTIME) {
		struct timespec ts[2] = { { .tv_sec = (time_t)a->atime }, { .tv_sec = (time_t)a->mtime } };
		server_log_modtime(name, a->mtime);
		if ((fd >= 0 ? futimens(fd, ts) : utimensat(AT_FDCWD, path, ts, 0)) < 0)
			status = attrs_errno_to_status(errno);
	}
	if (a->flags & SSH_FILEXFER_ATTR_UIDGID) {
		log_info("set \"%s\" owner %lu group %lu", name, (unsigned long)a->uid,
			 (unsigned long)a->gid);
		if ((fd >= 0 ? fchown(fd, a->uid, a->gid) : chown(path, a->uid, a->gid)) < 0)
			status = attrs_errno_to_status(errno);
	}
	return status;
}

static int req_setstat(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *name;
	struct sftp_attrs a;
	int err = get_path(r, &name);
	if (err)
		return err;
	if ((err = attrs_get(r, &a))) {
		free(name);
		return err;
	}
	log_debug("request %u: setstat name \"%s\"", id, name);
	struct spath sp;
	if (paths_resolve(server_paths(s), name, PATHS_FOLLOW, &sp) < 0) {
		server_send_errno(s, id, errno);
	} else {
		server_send_status(s, id, apply_attrs(name, &sp, -1, &a));
		spath_done(&sp);
	}
	free(name);
	return 0;
}

static int req_fsetstat(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	struct sftp_attrs a;
	int err;
	if ((err = server_get_handle(s, r, HANDLE_ANY, &h)) || (err = attrs_get(r, &a)))
		return err;
	log_debug("request %u: fsetstat \"%s\"", id, h ? h->name : "(invalid)");
	if (!h)
		server_send_status(s, id, SSH_FX_FAILURE);
	else
		server_send_status(s, id, apply_attrs(h->name, NULL, h->fd, &a));
	return 0;
}

static int req_opendir(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *path;
	int err = get_path(r, &path);
	if (err)
		return err;
	log_info("opendir \"%s\"", path);
	int fd = paths_open(server_paths(s), path, O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC, 0);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		server_send_errno(s, id, e);
	} else {
		struct handle *h = handles_new(server_handles(s), HANDLE_DIR, path, fd, dir, 0);
		if (!h) {
			log_error("opendir \"%s\": too many open handles", path);
			closedir(dir);
			server_send_status(s, id, SSH_FX_FAILURE);
		} else {
			server_send_handle(s, id, h);
		}
	}
	free(path);
	return 0;
}

static int req_readdir(struct server *s, uint32_t id, struct wire_reader *r)
{
	struct handle *h;
	int err = server_get_handle(s, r, HANDLE_DIR, &h);
	if (err)
		return err;
	log_debug("request %u: readdir \"%s\"", id, h ? h->name : "(invalid)");
	if (!h) {
		server_send_status(s, id, SSH_FX_FAILURE);
		return 0;
	}
	struct wire_buf *out = server_out(s);
	size_t mark = server_reply_begin(s, SSH_FXP_NAME, id);
	size_t count_at = wire_buf_mark(out);
	uint32_t count = 0;
	if (wire_put_u32(out, 0))
		log_fatal("internal error: reply queue full");
	struct dirent *dp;
	char longname[1024];
	errno = 0;
	while (count < READDIR_MAX_ENTRIES && wire_buf_mark(out) - mark < READDIR_MAX_BYTES &&
	       (dp = readdir(h->dir)) != NULL) {
		struct stat st;
		struct sftp_attrs a;
		if (fstatat(h->fd, dp->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		server_longname(s, longname, sizeof(longname), dp->d_name, &st);
		attrs_from_stat(&st, &a);
		if (wire_put_cstring(out, dp->d_name) || wire_put_cstring(out, longname) ||
		    attrs_put(out, &a))
			log_fatal("internal error: reply queue full");
		count++;
	}
	if (count == 0) {
		wire_buf_truncate(out, mark);
		server_send_status(s, id, SSH_FX_EOF);
		return 0;
	}
	wire_poke_u32(out, count_at, count);
	server_reply_end(s, mark);
	log_debug("request %u: sent names count %u", id, count);
	return 0;
}

static int do_unlink(const struct spath *p)
{
	return unlinkat(p->dirfd, p->name, 0);
}

static int req_remove(struct server *s, uint32_t id, struct wire_reader *r)
{
	return server_path1_op(s, id, r, "remove", do_unlink);
}

static int req_mkdir(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *name;
	struct sftp_attrs a;
	int err = get_path(r, &name);
	if (err)
		return err;
	if ((err = attrs_get(r, &a))) {
		free(name);
		return err;
	}
	unsigned mode = (a.flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? (a.perm & 07777) : 0777;
	log_info("mkdir name \"%s\" mode 0%o", name, mode);
	struct spath sp;
	if (paths_resolve(server_paths(s), name, PATHS_LAST, &sp) < 0) {
		server_send_errno(s, id, errno);
	} else {
		server_send_errno(s, id, mkdirat(sp.dirfd, sp.name, mode) < 0 ? errno : 0);
		spath_done(&sp);
	}
	free(name);
	return 0;
}

static int do_rmdir(const struct spath *p)
{
	return unlinkat(p->dirfd, p->name, AT_REMOVEDIR);
}

static int req_rmdir(struct server *s, uint32_t id, struct wire_reader *r)
{
	return server_path1_op(s, id, r, "rmdir", do_rmdir);
}

static int req_realpath(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *path;
	char resolved[PATH_MAX];
	int err = get_path(r, &path);
	if (err)
		return err;
	const char *p = path[0] ? path : ".";
	log_verbose("realpath \"%s\"", p);
	if (paths_realpath(server_paths(s), p, resolved) < 0)
		server_send_errno(s, id, errno);
	else
		server_send_name1(s, id, resolved);
	free(path);
	return 0;
}

/* The v3 rename must not replace an existing target. renameat2's
 * RENAME_NOREPLACE does that atomically; where the filesystem lacks it, do
 * what OpenSSH does (link+unlink for files, stat+rename otherwise). */
static int rename_noreplace(const struct spath *o, const struct spath *n)
{
	if (renameat2(o->dirfd, o->name, n->dirfd, n->name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -1;
	struct stat sb;
	if (fstatat(o->dirfd, o->name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	if (S_ISREG(sb.st_mode)) {
		if (linkat(o->dirfd, o->name, n->dirfd, n->name, 0) == 0) {
			if (unlinkat(o->dirfd, o->name, 0) < 0) {
				int e = errno;
				unlinkat(n->dirfd, n->name, 0);
				errno = e;
				return -1;
			}
			return 0;
		}
		if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EXDEV && errno != EPERM)
			return -1;
	}
	if (fstatat(n->dirfd, n->name, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	return renameat(o->dirfd, o->name, n->dirfd, n->name);
}

static int req_rename(struct server *s, uint32_t id, struct wire_reader *r)
{
	return server_path2_op(s, id, r, "rename", false, rename_noreplace);
}

static int req_readlink(struct server *s, uint32_t id, struct wire_reader *r)
{
	char *path;
	char buf[PATH_MAX];
	int err = get_path(r, &path);
	if (err)
		return err;
	log_verbose("readlink \"%s\"", path);
	struct spath sp;
	ssize_t n = -1;
	if (paths_resolve(server_paths(s), path, PATHS_LAST, &sp) == 0) {
		n = readlinkat(sp.dirfd, sp.name, buf, sizeof(buf) - 1);
		int e = errno;
		spath_done(&sp);
		errno = e;
	}
	if (n < 0) {
		server_send_errno(s, id, errno);
	} else {
		buf[n] = '\0';
		server_send_name1(s, id, buf);
	}
	free(path);
	return 0;
}

/* OpenSSH's order: the first path is the link's target (stored as given),
 * the second the link. */
static int do_symlink(const struct spath *target, const struct spath *link)
{
	return symlinkat(target->name, link->dirfd, link->name);
}

static int req_symlink(struct server *s, uint32_t id, struct wire_reader *r)
{
	return server_path2_op(s, id, r, "symlink", true, do_symlink);
}

const struct request_def requests_core[] = {
	{ "open", NULL, NULL, SSH_FXP_OPEN, req_open, false }, /* -R checked inside */
	{ "close", NULL, NULL, SSH_FXP_CLOSE, req_close, false },
	{ "read", NULL, NULL, SSH_FXP_READ, req_read, false },
	{ "write", NULL, NULL, SSH_FXP_WRITE, req_write, true },
	{ "lstat", NULL, NULL, SSH_FXP_LSTAT, req_lstat, false },
	{ "fstat", NULL, NULL, SSH_FXP_FSTAT, req_fstat, false },
	{ "setstat", NULL, NULL, SSH_FXP_SETSTAT, req_setstat, true },
	{ "fsetstat", NULL, NULL, SSH_FXP_FSETSTAT, req_fsetstat, true },
	{ "opendir", NULL, NULL, SSH_FXP_OPENDIR, req_opendir, false },
	{ "readdir", NULL, NULL, SSH_FXP_READDIR, req_readdir, false },
	{ "remove", NULL, NULL, SSH_FXP_REMOVE, req_remove, true },
	{ "mkdir", NULL, NULL, SSH_FXP_MKDIR, req_mkdir, true },
	{ "rmdir", NULL, NULL, SSH_FXP_RMDIR, req_rmdir, true },
	{ "realpath", NULL, NULL, SSH_FXP_REALPATH, req_realpath, false },
	{ "stat", NULL, NULL, SSH_FXP_STAT, req_stat, false },
	{ "rename", NULL, NULL, SSH_FXP_RENAME, req_rename, true },
	{ "readlink", NULL, NULL, SSH_FXP_READLINK, req_readlink, false },
	{ "symlink", NULL, NULL, SSH_FXP_SYMLINK, req_symlink, true },
	{ NULL, NULL, NULL, 0, NULL, false },
};
