#include "attrs.h"

#include <errno.h>
#include <string.h>

#include "sftp-proto.h"

#define KNOWN_FLAGS (SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_UIDGID | \
		     SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_ACMODTIME | \
		     SSH_FILEXFER_ATTR_EXTENDED)

void attrs_clear(struct sftp_attrs *a)
{
	memset(a, 0, sizeof(*a));
}

int attrs_get(struct wire_reader *r, struct sftp_attrs *a)
{
	struct wire_reader save = *r;
	int err;

	attrs_clear(a);
	if ((err = wire_get_u32(r, &a->flags)))
		goto fail;
	/* Unknown bits carry no fields in v3; ignore them as OpenSSH does. */
	a->flags &= (uint32_t)KNOWN_FLAGS;
	if ((a->flags & SSH_FILEXFER_ATTR_SIZE) && (err = wire_get_u64(r, &a->size)))
		goto fail;
	if (a->flags & SSH_FILEXFER_ATTR_UIDGID) {
		if ((err = wire_get_u32(r, &a->uid)) || (err = wire_get_u32(r, &a->gid)))
			goto fail;
	}
	if ((a->flags & SSH_FILEXFER_ATTR_PERMISSIONS) && (err = wire_get_u32(r, &a->perm)))
		goto fail;
	if (a->flags & SSH_FILEXFER_ATTR_ACMODTIME) {
		if ((err = wire_get_u32(r, &a->atime)) || (err = wire_get_u32(r, &a->mtime)))
			goto fail;
	}
	if (a->flags & SSH_FILEXFER_ATTR_EXTENDED) {
		uint32_t n;
		if ((err = wire_get_u32(r, &n)))
			goto fail;
		if (n > SFTP_MAX_ATTR_EXTENSIONS) {
			err = WIRE_ETOOLONG;
			goto fail;
		}
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *p;
			uint32_t len;
			if ((err = wire_get_string(r, &p, &len)) ||
			    (err = wire_get_string(r, &p, &len)))
				goto fail;
		}
		a->ext_count = n;
	}
	return WIRE_OK;
fail:
	*r = save;
	return err;
}

int attrs_put(struct wire_buf *b, const struct sftp_attrs *a)
{
	uint32_t flags = a->flags & ~(uint32_t)SSH_FILEXFER_ATTR_EXTENDED;
	int err;
	size_t mark = wire_buf_mark(b);

	if ((err = wire_put_u32(b, flags)))
		goto fail;
	if ((flags & SSH_FILEXFER_ATTR_SIZE) && (err = wire_put_u64(b, a->size)))
		goto fail;
	if ((flags & SSH_FILEXFER_ATTR_UIDGID) &&
	    ((err = wire_put_u32(b, a->uid)) || (err = wire_put_u32(b, a->gid))))
		goto fail;
	if ((flags & SSH_FILEXFER_ATTR_PERMISSIONS) && (err = wire_put_u32(b, a->perm)))
		goto fail;
	if ((flags & SSH_FILEXFER_ATTR_ACMODTIME) &&
	    ((err = wire_put_u32(b, a->atime)) || (err = wire_put_u32(b, a->mtime))))
		goto fail;
	return WIRE_OK;
fail:
	wire_buf_truncate(b, mark);
	return err;
}

void attrs_from_stat(const struct stat *st, struct sftp_attrs *a)
{
	attrs_clear(a);
	a->flags = SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_UIDGID |
		   SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_ACMODTIME;
	a->size = (uint64_t)st->st_size;
	a->uid = (uint32_t)st->st_uid;
	a->gid = (uint32_t)st->st_gid;
	a->perm = (uint32_t)st->st_mode;
	a->atime = (uint32_t)st->st_atime;
	a->mtime = (uint32_t)st->st_mtime;
}

void attrs_to_stat(const struct sftp_attrs *a, struct stat *st)
{
	if (a->flags & SSH_FILEXFER_ATTR_SIZE)
		st->st_size = (off_t)a->size;
	if (a->flags & SSH_FILEXFER_ATTR_UIDGID) {
		st->st_uid = (uid_t)a->uid;
		st->st_gid = (gid_t)a->gid;
	}
	if (a->flags & SSH_FILEXFER_ATTR_PERMISSIONS)
		st->st_mode = (mode_t)a->perm;
	if (a->flags & SSH_FILEXFER_ATTR_ACMODTIME) {
		st->st_atim.tv_sec = (time_t)a->atime;
		st->st_atim.tv_nsec = 0;
		st->st_mtim.tv_sec = (time_t)a->mtime;
		st->st_mtim.tv_nsec = 0;
	}
}

uint32_t attrs_errno_to_status(int err)
{
	switch (err) {
	case 0:
		return SSH_FX_OK;
	case ENOENT:
	case ENOTDIR:
	case EBADF:
	case ELOOP:
		return SSH_FX_NO_SUCH_FILE;
	case EPERM:
	case EACCES:
	case EFAULT:
		return SSH_FX_PERMISSION_DENIED;
	case ENAMETOOLONG:
	case EINVAL:
		return SSH_FX_BAD_MESSAGE;
	case ENOSYS:
		return SSH_FX_OP_UNSUPPORTED;
	default:
		return SSH_FX_FAILURE;
	}
}

int attrs_status_to_errno(uint32_t status)
{
	switch (status) {
	case SSH_FX_OK:
		return 0;
	case SSH_FX_EOF:
		return ENODATA;
	case SSH_FX_NO_SUCH_FILE:
		return ENOENT;
	case SSH_FX_PERMISSION_DENIED:
		return EACCES;
	case SSH_FX_FAILURE:
		return EPERM;
	case SSH_FX_BAD_MESSAGE:
		return EBADMSG;
	case SSH_FX_NO_CONNECTION:
		return ENOTCONN;
	case SSH_FX_CONNECTION_LOST:
		return ECONNABORTED;
	case SSH_FX_OP_UNSUPPORTED:
		return EOPNOTSUPP;
	default:
		return EIO;
	}
}

const char *attrs_status_message(uint32_t status)
{
	static const char *const msgs[] = {
		"Success", "End of file", "No such file", "Permission denied",
		"Failure", "Bad message", "No connection", "Connection lost",
		"Operation unsupported",
	};
	return status <= SSH_FX_MAX ? msgs[status] : "Unknown error";
}
