#include "hattrs.h"

#include <string.h>
#include <sys/sysmacros.h>

#include "sftp-proto.h"

#define NSEC_PER_SEC 1000000000u

/* The wire's mask bits are statx's (PROTOCOL.hashi says so). */
_Static_assert(HATTR_TYPE == STATX_TYPE && HATTR_MODE == STATX_MODE &&
		       HATTR_NLINK == STATX_NLINK && HATTR_UID == STATX_UID &&
		       HATTR_GID == STATX_GID && HATTR_ATIME == STATX_ATIME &&
		       HATTR_MTIME == STATX_MTIME && HATTR_CTIME == STATX_CTIME &&
		       HATTR_INO == STATX_INO && HATTR_SIZE == STATX_SIZE &&
		       HATTR_BLOCKS == STATX_BLOCKS && HATTR_BTIME == STATX_BTIME,
	       "HATTR_* bits are STATX_* bits");

static int put_time(struct wire_buf *b, const struct hattrs_time *t)
{
	int err;
	if ((err = wire_put_u64(b, (uint64_t)t->sec)) || (err = wire_put_u32(b, t->nsec)))
		return err;
	return WIRE_OK;
}

static int get_time(struct wire_reader *r, struct hattrs_time *t)
{
	uint64_t sec;
	int err;
	if ((err = wire_get_u64(r, &sec)) || (err = wire_get_u32(r, &t->nsec)))
		return err;
	t->sec = (int64_t)sec;
	return t->nsec < NSEC_PER_SEC ? WIRE_OK : WIRE_EFORMAT;
}

int hattrs_put(struct wire_buf *b, const struct hattrs *a)
{
	size_t mark = wire_buf_mark(b);
	uint32_t u32s[] = { HATTRS_V1_LEN, a->mask, a->mode, a->nlink, a->uid, a->gid, a->blksize };
	uint64_t u64s[] = { a->ino, a->size, a->blocks };
	uint32_t devs[] = { a->dev_major, a->dev_minor, a->rdev_major, a->rdev_minor };
	const struct hattrs_time *times[] = { &a->atime, &a->mtime, &a->ctime, &a->btime };
	int err = 0;

	for (size_t i = 0; !err && i < sizeof(u32s) / sizeof(u32s[0]); i++)
		err = wire_put_u32(b, u32s[i]);
	for (size_t i = 0; !err && i < sizeof(u64s) / sizeof(u64s[0]); i++)
		err = wire_put_u64(b, u64s[i]);
	for (size_t i = 0; !err && i < sizeof(devs) / sizeof(devs[0]); i++)
		err = wire_put_u32(b, devs[i]);
	for (size_t i = 0; !err && i < sizeof(times) / sizeof(times[0]); i++)
		err = put_time(b, times[i]);
	if (err)
		wire_buf_truncate(b, mark);
	return err;
}

int hattrs_get(struct wire_reader *r, struct hattrs *a)
{
	struct wire_reader save = *r, sub;
	uint32_t *u32s[] = { &a->mask, &a->mode, &a->nlink, &a->uid, &a->gid, &a->blksize };
	uint64_t *u64s[] = { &a->ino, &a->size, &a->blocks };
	uint32_t *devs[] = { &a->dev_major, &a->dev_minor, &a->rdev_major, &a->rdev_minor };
	struct hattrs_time *times[] = { &a->atime, &a->mtime, &a->ctime, &a->btime };
	int err;

	memset(a, 0, sizeof(*a));
	if ((err = wire_get_sub(r, &sub)))
		return err;
	if (wire_remaining(&sub) < HATTRS_V1_LEN) {
		err = WIRE_ESHORT;
		goto fail;
	}
	/* The length is checked: the gets below cannot fail short. */
	for (size_t i = 0; i < sizeof(u32s) / sizeof(u32s[0]); i++)
		wire_get_u32(&sub, u32s[i]);
	for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++)
		wire_get_u64(&sub, u64s[i]);
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
		wire_get_u32(&sub, devs[i]);
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++)
		if ((err = get_time(&sub, times[i])))
			goto fail;
	return WIRE_OK;
fail:
	*r = save;
	memset(a, 0, sizeof(*a));
	return err;
}

static void time_from_statx(const struct statx_timestamp *t, struct hattrs_time *out)
{
	out->sec = t->tv_sec;
	out->nsec = t->tv_nsec < NSEC_PER_SEC ? t->tv_nsec : 0;
}

void hattrs_from_statx(const struct statx *sx, struct hattrs *a)
{
	memset(a, 0, sizeof(*a));
	/* The same bits; dev, rdev and blksize statx always fills. */
	a->mask = (sx->stx_mask & (STATX_BASIC_STATS | STATX_BTIME)) | HATTR_DEV | HATTR_BLKSIZE;
	a->mode = sx->stx_mode;
	a->nlink = sx->stx_nlink;
	a->uid = sx->stx_uid;
	a->gid = sx->stx_gid;
	a->blksize = sx->stx_blksize;
	a->ino = sx->stx_ino;
	a->size = sx->stx_size;
	a->blocks = sx->stx_blocks;
	a->dev_major = sx->stx_dev_major;
	a->dev_minor = sx->stx_dev_minor;
	a->rdev_major = sx->stx_rdev_major;
	a->rdev_minor = sx->stx_rdev_minor;
	time_from_statx(&sx->stx_atime, &a->atime);
	time_from_statx(&sx->stx_mtime, &a->mtime);
	time_from_statx(&sx->stx_ctime, &a->ctime);
	if (a->mask & HATTR_BTIME)
		time_from_statx(&sx->stx_btime, &a->btime);
}

static void time_from_ts(const struct timespec *ts, struct hattrs_time *out)
{
	out->sec = ts->tv_sec;
	out->nsec = (uint32_t)ts->tv_nsec < NSEC_PER_SEC ? (uint32_t)ts->tv_nsec : 0;
}

void hattrs_from_stat(const struct stat *st, struct hattrs *a)
{
	memset(a, 0, sizeof(*a));
	a->mask = HATTR_TYPE | HATTR_MODE | HATTR_NLINK | HATTR_UID | HATTR_GID | HATTR_ATIME |
		  HATTR_MTIME | HATTR_CTIME | HATTR_INO | HATTR_SIZE | HATTR_BLOCKS | HATTR_DEV |
		  HATTR_BLKSIZE;
	a->mode = (uint32_t)st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = (uint32_t)st->st_uid;
	a->gid = (uint32_t)st->st_gid;
	a->blksize = (uint32_t)st->st_blksize;
	a->ino = (uint64_t)st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->dev_major = major(st->st_dev);
	a->dev_minor = minor(st->st_dev);
	a->rdev_major = major(st->st_rdev);
	a->rdev_minor = minor(st->st_rdev);
	time_from_ts(&st->st_atim, &a->atime);
	time_from_ts(&st->st_mtim, &a->mtime);
	time_from_ts(&st->st_ctim, &a->ctime);
}

static void time_to_ts(const struct hattrs_time *t, struct timespec *ts)
{
	ts->tv_sec = (time_t)t->sec;
	ts->tv_nsec = (long)t->nsec;
}

void hattrs_to_stat(const struct hattrs *a, struct stat *st)
{
	if (a->mask & (HATTR_TYPE | HATTR_MODE)) {
		mode_t type = (a->mask & HATTR_TYPE) ? (mode_t)a->mode & S_IFMT : st->st_mode & S_IFMT;
		mode_t perm = (a->mask & HATTR_MODE) ? (mode_t)a->mode & 07777 : st->st_mode & 07777;
		st->st_mode = type | perm;
	}
	if (a->mask & HATTR_NLINK)
		st->st_nlink = (nlink_t)a->nlink;
	if (a->mask & HATTR_UID)
		st->st_uid = (uid_t)a->uid;
	if (a->mask & HATTR_GID)
		st->st_gid = (gid_t)a->gid;
	if (a->mask & HATTR_BLKSIZE)
		st->st_blksize = (blksize_t)a->blksize;
	if (a->mask & HATTR_INO)
		st->st_ino = (ino_t)a->ino;
	if (a->mask & HATTR_SIZE)
		st->st_size = (off_t)a->size;
	if (a->mask & HATTR_BLOCKS)
		st->st_blocks = (blkcnt_t)a->blocks;
	if (a->mask & HATTR_DEV) {
		st->st_dev = makedev(a->dev_major, a->dev_minor);
		st->st_rdev = makedev(a->rdev_major, a->rdev_minor);
	}
	if (a->mask & HATTR_ATIME)
		time_to_ts(&a->atime, &st->st_atim);
	if (a->mask & HATTR_MTIME)
		time_to_ts(&a->mtime, &st->st_mtim);
	if (a->mask & HATTR_CTIME)
		time_to_ts(&a->ctime, &st->st_ctim);
}

int hsetattr_put(struct wire_buf *b, const struct hsetattr *s)
{
	size_t mark = wire_buf_mark(b);
	int err;
	if ((err = wire_put_u32(b, s->valid)) || (err = wire_put_u32(b, s->mode)) ||
	    (err = wire_put_u32(b, s->uid)) || (err = wire_put_u32(b, s->gid)) ||
	    (err = wire_put_u64(b, s->size)) || (err = put_time(b, &s->atime)) ||
	    (err = put_time(b, &s->mtime)))
		wire_buf_truncate(b, mark);
	return err;
}

int hsetattr_get(struct wire_reader *r, struct hsetattr *s)
{
	struct wire_reader save = *r;
	int err;
	memset(s, 0, sizeof(*s));
	if ((err = wire_get_u32(r, &s->valid)) || (err = wire_get_u32(r, &s->mode)) ||
	    (err = wire_get_u32(r, &s->uid)) || (err = wire_get_u32(r, &s->gid)) ||
	    (err = wire_get_u64(r, &s->size)) || (err = get_time(r, &s->atime)) ||
	    (err = get_time(r, &s->mtime))) {
		*r = save;
		memset(s, 0, sizeof(*s));
	}
	return err;
}
