/* SFTP v3 ATTRS <-> struct stat, and errno <-> SSH_FX_* status codes. */
#ifndef HASHI_ATTRS_H
#define HASHI_ATTRS_H

#include <stdint.h>
#include <sys/stat.h>

#include "wire.h"

struct sftp_attrs {
	uint32_t flags;
	uint64_t size;
	uint32_t uid, gid;
	uint32_t perm;
	uint32_t atime, mtime;
	uint32_t ext_count; /* extended pairs seen (their contents are skipped) */
};

void attrs_clear(struct sftp_attrs *a);
/* Decode ATTRS. Unknown flag bits are dropped (as OpenSSH does); more than
 * SFTP_MAX_ATTR_EXTENSIONS extended pairs is WIRE_ETOOLONG. */
int attrs_get(struct wire_reader *r, struct sftp_attrs *a);
int attrs_put(struct wire_buf *b, const struct sftp_attrs *a);
void attrs_from_stat(const struct stat *st, struct sftp_attrs *a);
/* Fill the fields of st that a carries; the rest are left alone. */
void attrs_to_stat(const struct sftp_attrs *a, struct stat *st);

/* The same mapping as OpenSSH's sftp-server. */
uint32_t attrs_errno_to_status(int err);
/* The client's view: a status to the errno a program should see. */
int attrs_status_to_errno(uint32_t status);
/* OpenSSH's status messages ("No such file", ...). */
const char *attrs_status_message(uint32_t status);

#endif
