/*
 * libFuzzer target for common/attrs.c: ATTRS decode/encode round trip.
 *
 * The input is an SFTP v3 ATTRS followed by anything. When attrs_get accepts
 * it, attrs_put must re-encode it, decoding that again must give the same
 * fields, and (when no unknown flag bits or extended pairs were present) the
 * encoding must be the very bytes that were consumed. Every shorter prefix of
 * an accepted ATTRS, copied into a buffer of exactly that size, must be
 * refused as short without moving the reader (AddressSanitizer checks that
 * nothing reads past the end). The errno/status helpers get the input's first
 * bytes too.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attrs.h"
#include "sftp-proto.h"

#include "fuzz-common.h"

#define KNOWN (SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_UIDGID | \
	       SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_ACMODTIME | \
	       SSH_FILEXFER_ATTR_EXTENDED)

static uint32_t load32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static size_t encoded_len(uint32_t flags)
{
	return 4 + ((flags & SSH_FILEXFER_ATTR_SIZE) ? 8 : 0) +
	       ((flags & SSH_FILEXFER_ATTR_UIDGID) ? 8 : 0) +
	       ((flags & SSH_FILEXFER_ATTR_PERMISSIONS) ? 4 : 0) +
	       ((flags & SSH_FILEXFER_ATTR_ACMODTIME) ? 8 : 0);
}

/* The fields a carries, compared (attrs_get zeroes the others). */
static void check_same(const struct sftp_attrs *a, const struct sftp_attrs *b)
{
	CHECK((a->flags & ~(uint32_t)SSH_FILEXFER_ATTR_EXTENDED) ==
	      (b->flags & ~(uint32_t)SSH_FILEXFER_ATTR_EXTENDED));
	CHECK(a->size == b->size);
	CHECK(a->uid == b->uid && a->gid == b->gid);
	CHECK(a->perm == b->perm);
	CHECK(a->atime == b->atime && a->mtime == b->mtime);
}

static void check_helpers(const uint8_t *data, size_t size)
{
	int e = 0;
	uint32_t st = 0;
	if (size >= 4) {
		e = (int)load32(data);
		st = load32(data);
	}
	uint32_t s = attrs_errno_to_status(e);
	CHECK(s <= SSH_FX_MAX);
	CHECK(attrs_status_message(st) != NULL);
	CHECK(attrs_status_message(s) != NULL);
	(void)attrs_status_to_errno(st);
	/* Every status maps to an errno that maps back to a status in range. */
	CHECK(attrs_errno_to_status(attrs_status_to_errno(st)) <= SSH_FX_MAX);
	if (st <= SSH_FX_MAX && st != SSH_FX_OK)
		CHECK(attrs_status_to_errno(st) != 0);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_reader r;
	struct sftp_attrs a;

	check_helpers(data, size);

	wire_reader_init(&r, data, size);
	int rc = attrs_get(&r, &a);
	if (rc != WIRE_OK) {
		CHECK(rc == WIRE_ESHORT || rc == WIRE_ETOOLONG);
		CHECK(r.pos == 0);
		return 0;
	}
	const size_t used = r.pos;
	const uint32_t wire_flags = load32(data);
	CHECK(used >= 4 && used <= size);
	CHECK(a.flags == (wire_flags & (uint32_t)KNOWN));
	CHECK(used >= encoded_len(a.flags));
	if (!(a.flags & SSH_FILEXFER_ATTR_EXTENDED)) {
		CHECK(used == encoded_len(a.flags));
		CHECK(a.ext_count == 0);
	} else {
		CHECK(a.ext_count <= SFTP_MAX_ATTR_EXTENSIONS);
	}

	/* Every strict prefix is refused, reading only its own bytes. */
	for (size_t n = 0; n < used; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		CHECK(copy != NULL);
		memcpy(copy, data, n);
		struct wire_reader pr;
		struct sftp_attrs pa;
		wire_reader_init(&pr, copy, n);
		int prc = attrs_get(&pr, &pa);
		CHECK(prc == WIRE_ESHORT);
		CHECK(pr.pos == 0);
		free(copy);
	}

	/* Re-encode. */
	struct wire_buf b;
	wire_buf_init(&b, 0);
	CHECK(wire_put_u8(&b, 0x5a) == WIRE_OK); /* something before, kept as is */
	CHECK(attrs_put(&b, &a) == WIRE_OK);
	CHECK(wire_buf_len(&b) == 1 + encoded_len(a.flags));
	CHECK(wire_buf_ptr(&b)[0] == 0x5a);
	const uint8_t *enc = wire_buf_ptr(&b) + 1;
	size_t enclen = wire_buf_len(&b) - 1;
	if (wire_flags == a.flags && !(a.flags & SSH_FILEXFER_ATTR_EXTENDED))
		CHECK(enclen == used && memcmp(enc, data, used) == 0);

	/* Decode again: the same fields, all bytes used, no extended part. */
	struct wire_reader r2;
	struct sftp_attrs a2;
	wire_reader_init(&r2, enc, enclen);
	CHECK(attrs_get(&r2, &a2) == WIRE_OK);
	CHECK(r2.pos == enclen);
	CHECK(!(a2.flags & SSH_FILEXFER_ATTR_EXTENDED));
	CHECK(a2.ext_count == 0);
	check_same(&a, &a2);

	/* A second encoding is byte-identical. */
	struct wire_buf b2;
	wire_buf_init(&b2, 0);
	CHECK(attrs_put(&b2, &a2) == WIRE_OK);
	CHECK(wire_buf_len(&b2) == enclen && memcmp(wire_buf_ptr(&b2), enc, enclen) == 0);
	wire_buf_free(&b2);

	/* A full queue refuses and leaves what was there untouched. */
	for (size_t max = 1; max < 1 + enclen; max += 3) {
		struct wire_buf small;
		wire_buf_init(&small, max);
		CHECK(wire_put_u8(&small, 0xa5) == WIRE_OK);
		CHECK(attrs_put(&small, &a) == WIRE_ENOMEM);
		CHECK(wire_buf_len(&small) == 1 && wire_buf_ptr(&small)[0] == 0xa5);
		wire_buf_free(&small);
	}
	wire_buf_free(&b);

	/* Through struct stat and back: the fields it carries survive. */
	struct stat st;
	memset(&st, 0, sizeof(st));
	attrs_to_stat(&a, &st);
	struct sftp_attrs a3;
	attrs_from_stat(&st, &a3);
	if (a.flags & SSH_FILEXFER_ATTR_SIZE)
		CHECK(a3.size == a.size);
	else
		CHECK(a3.size == 0);
	if (a.flags & SSH_FILEXFER_ATTR_UIDGID)
		CHECK(a3.uid == a.uid && a3.gid == a.gid);
	if (a.flags & SSH_FILEXFER_ATTR_PERMISSIONS)
		CHECK(a3.perm == a.perm);
	if (a.flags & SSH_FILEXFER_ATTR_ACMODTIME)
		CHECK(a3.atime == a.atime && a3.mtime == a.mtime);
	return 0;
}
