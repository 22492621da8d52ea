/* hashi's full attributes (stat@hashi, readdir@hashi, open@hashi, ...) and
 * the attributes setstat@hashi sets: their wire blocks (sftp-proto.h,
 * man/PROTOCOL.hashi) <-> C structs, shared by the server and the client. */
#ifndef HASHI_HATTRS_H
#define HASHI_HATTRS_H

#include <stdint.h>
#include <sys/stat.h>

#include "wire.h"

struct hattrs_time {
	int64_t sec;
	uint32_t nsec; /* < 1000000000 */
};

struct hattrs {
	uint32_t mask; /* HATTR_* */
	uint32_t mode, nlink, uid, gid, blksize;
	uint64_t ino, size, blocks;
	uint32_t dev_major, dev_minor, rdev_major, rdev_minor;
	struct hattrs_time atime, mtime, ctime, btime;
};

struct hsetattr {
	uint32_t valid; /* HSET_* */
	uint32_t mode, uid, gid;
	uint64_t size;
	struct hattrs_time atime, mtime;
};

/* The block as one SSH string. */
int hattrs_put(struct wire_buf *b, const struct hattrs *a);
/* Decode one: WIRE_ESHORT when the string is short of HATTRS_V1_LEN or
 * past the end, WIRE_EFORMAT for a nanosecond field of 1e9 or more. The
 * reader does not move on failure. */
int hattrs_get(struct wire_reader *r, struct hattrs *a);
void hattrs_from_statx(const struct statx *sx, struct hattrs *a);
void hattrs_from_stat(const struct stat *st, struct hattrs *a);
/* Every field of st that a carries; st_dev and st_rdev through makedev(). */
void hattrs_to_stat(const struct hattrs *a, struct stat *st);

/* The fixed HSETATTR_LEN block (not a string). hsetattr_get fails as
 * hattrs_get does. */
int hsetattr_put(struct wire_buf *b, const struct hsetattr *s);
int hsetattr_get(struct wire_reader *r, struct hsetattr *s);

#endif
