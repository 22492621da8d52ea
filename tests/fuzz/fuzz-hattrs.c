/*
 * libFuzzer target for common/hattrs.c: the full-attributes block and the
 * setstat@hashi block of hashi's extensions (man/PROTOCOL.hashi), what the
 * client decodes from every stat@hashi, readdir@hashi and open@hashi reply.
 *
 * The input is read as a readdir@hashi reply would be: a count, then
 * (name, hattrs) entries, as far as they decode. Every accepted hattrs
 * must re-encode to a block that decodes to the same fields, of exactly
 * 4 + HATTRS_V1_LEN bytes (a longer input string is a later version's: its
 * tail is skipped); every strict prefix of an accepted block, copied into a
 * buffer of that size, must be refused as short without moving the reader.
 * The same input is then decoded as an hsetattr block, with the same checks.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hattrs.h"
#include "sftp-proto.h"

#include "fuzz-common.h"

static void check_time(const struct hattrs_time *a, const struct hattrs_time *b)
{
	CHECK(a->sec == b->sec && a->nsec == b->nsec);
	CHECK(a->nsec < 1000000000u);
}

static void check_same(const struct hattrs *a, const struct hattrs *b)
{
	CHECK(a->mask == b->mask && a->mode == b->mode && a->nlink == b->nlink);
	CHECK(a->uid == b->uid && a->gid == b->gid && a->blksize == b->blksize);
	CHECK(a->ino == b->ino && a->size == b->size && a->blocks == b->blocks);
	CHECK(a->dev_major == b->dev_major && a->dev_minor == b->dev_minor);
	CHECK(a->rdev_major == b->rdev_major && a->rdev_minor == b->rdev_minor);
	check_time(&a->atime, &b->atime);
	check_time(&a->mtime, &b->mtime);
	check_time(&a->ctime, &b->ctime);
	check_time(&a->btime, &b->btime);
}

/* Every strict prefix of data[0..used) is refused as short, in place. */
static void check_prefixes(const uint8_t *data, size_t used, bool setattr)
{
	for (size_t n = 0; n < used; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		CHECK(copy != NULL);
		memcpy(copy, data, n);
		struct wire_reader r;
		wire_reader_init(&r, copy, n);
		if (setattr) {
			struct hsetattr s;
			CHECK(hsetattr_get(&r, &s) == WIRE_ESHORT);
		} else {
			struct hattrs a;
			CHECK(hattrs_get(&r, &a) == WIRE_ESHORT);
		}
		CHECK(r.pos == 0);
		free(copy);
	}
}

static void check_hattrs(const uint8_t *data, size_t used, const struct hattrs *a)
{
	CHECK(used >= 4 + HATTRS_V1_LEN);
	CHECK(wire_load_u32(data) == used - 4);
	check_prefixes(data, 4 + HATTRS_V1_LEN, false);

	struct wire_buf b;
	wire_buf_init(&b, 0);
	CHECK(hattrs_put(&b, a) == WIRE_OK);
	CHECK(wire_buf_len(&b) == 4 + HATTRS_V1_LEN);
	if (used == 4 + HATTRS_V1_LEN)
		CHECK(memcmp(wire_buf_ptr(&b), data, used) == 0);
	else
		CHECK(memcmp(wire_buf_ptr(&b) + 4, data + 4, HATTRS_V1_LEN) == 0);
	struct wire_reader r;
	struct hattrs a2;
	wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
	CHECK(hattrs_get(&r, &a2) == WIRE_OK);
	CHECK(wire_remaining(&r) == 0);
	check_same(a, &a2);
	wire_buf_free(&b);

	/* Through struct stat: the fields it carries survive a second trip. */
	struct stat st;
	memset(&st, 0, sizeof(st));
	hattrs_to_stat(a, &st);
	struct hattrs a3;
	hattrs_from_stat(&st, &a3);
	if ((a->mask & HATTR_INO))
		CHECK(a3.ino == a->ino);
	if ((a->mask & HATTR_SIZE))
		CHECK(a3.size == a->size);
	if ((a->mask & HATTR_MTIME))
		check_time(&a3.mtime, &a->mtime);
}

static void check_hsetattr(const uint8_t *data, size_t size)
{
	struct wire_reader r;
	struct hsetattr s;
	wire_reader_init(&r, data, size);
	int rc = hsetattr_get(&r, &s);
	if (rc != WIRE_OK) {
		CHECK(rc == WIRE_ESHORT || rc == WIRE_EFORMAT);
		CHECK(r.pos == 0);
		return;
	}
	CHECK(r.pos == HSETATTR_LEN);
	check_prefixes(data, HSETATTR_LEN, true);
	struct wire_buf b;
	wire_buf_init(&b, 0);
	CHECK(hsetattr_put(&b, &s) == WIRE_OK);
	CHECK(wire_buf_len(&b) == HSETATTR_LEN);
	CHECK(memcmp(wire_buf_ptr(&b), data, HSETATTR_LEN) == 0);
	wire_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_reader r;
	uint32_t count;

	check_hsetattr(data, size);

	wire_reader_init(&r, data, size);
	if (wire_get_u32(&r, &count) != WIRE_OK)
		return 0;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *name;
		uint32_t nlen;
		if (wire_get_string(&r, &name, &nlen) != WIRE_OK)
			break;
		size_t at = r.pos;
		struct hattrs a;
		int rc = hattrs_get(&r, &a);
		if (rc != WIRE_OK) {
			CHECK(rc == WIRE_ESHORT || rc == WIRE_EFORMAT);
			CHECK(r.pos == at);
			break;
		}
		check_hattrs(data + at, r.pos - at, &a);
	}
	return 0;
}
