/* Unit tests for common/hattrs.[ch]: hashi's full-attributes block and the
 * setstat@hashi block (man/PROTOCOL.hashi). */
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "hattrs.h"
#include "sftp-proto.h"
#include "wire.h"

static void sample(struct hattrs *a)
{
	memset(a, 0, sizeof(*a));
	a->mask = HATTR_TYPE | HATTR_MODE | HATTR_NLINK | HATTR_INO | HATTR_BTIME | HATTR_DEV;
	a->mode = S_IFCHR | 04755;
	a->nlink = 3;
	a->uid = 0xfffffffe;
	a->gid = 1000;
	a->blksize = 4096;
	a->ino = 0x0123456789abcdefull;
	a->size = 1ull << 40;
	a->blocks = 77;
	a->dev_major = 259;
	a->dev_minor = 1;
	a->rdev_major = 1;
	a->rdev_minor = 3;
	a->atime = (struct hattrs_time){ -1, 999999999 };
	a->mtime = (struct hattrs_time){ 1700000000, 123456789 };
	a->ctime = (struct hattrs_time){ INT64_MAX, 0 };
	a->btime = (struct hattrs_time){ INT64_MIN, 1 };
}

static void assert_same_time(const struct hattrs_time *a, const struct hattrs_time *b)
{
	g_assert_cmpint(a->sec, ==, b->sec);
	g_assert_cmpuint(a->nsec, ==, b->nsec);
}

/* Field by field: struct padding is not part of the value. */
static void assert_same(const struct hattrs *a, const struct hattrs *b)
{
	const uint32_t a32[] = { a->mask, a->mode, a->nlink, a->uid, a->gid, a->blksize,
				 a->dev_major, a->dev_minor, a->rdev_major, a->rdev_minor };
	const uint32_t b32[] = { b->mask, b->mode, b->nlink, b->uid, b->gid, b->blksize,
				 b->dev_major, b->dev_minor, b->rdev_major, b->rdev_minor };
	g_assert_cmpmem(a32, sizeof(a32), b32, sizeof(b32));
	g_assert_cmpuint(a->ino, ==, b->ino);
	g_assert_cmpuint(a->size, ==, b->size);
	g_assert_cmpuint(a->blocks, ==, b->blocks);
	assert_same_time(&a->atime, &b->atime);
	assert_same_time(&a->mtime, &b->mtime);
	assert_same_time(&a->ctime, &b->ctime);
	assert_same_time(&a->btime, &b->btime);
}

static void test_roundtrip(void)
{
	struct hattrs a, b;
	struct wire_buf buf;
	struct wire_reader r;
	sample(&a);
	wire_buf_init(&buf, 0);
	g_assert_cmpint(hattrs_put(&buf, &a), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&buf), ==, 4 + HATTRS_V1_LEN);
	const uint8_t *p = wire_buf_ptr(&buf);
	g_assert_cmpuint(wire_load_u32(p), ==, HATTRS_V1_LEN);
	g_assert_cmpuint(wire_load_u32(p + 4), ==, a.mask);
	g_assert_cmpuint(wire_load_u32(p + 8), ==, a.mode);
	/* ino is the first uint64, after six uint32s */
	g_assert_cmpuint(wire_load_u32(p + 4 + 24), ==, 0x01234567);
	/* atime -1 as two's complement */
	g_assert_cmpuint(wire_load_u32(p + 4 + 64), ==, 0xffffffff);
	wire_reader_init(&r, p, wire_buf_len(&buf));
	g_assert_cmpint(hattrs_get(&r, &b), ==, WIRE_OK);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);
	assert_same(&a, &b);
	wire_buf_free(&buf);
}

static void test_short_and_long(void)
{
	struct hattrs a, b;
	struct wire_buf buf;
	struct wire_reader r;
	sample(&a);
	wire_buf_init(&buf, 0);
	g_assert_cmpint(hattrs_put(&buf, &a), ==, WIRE_OK);
	uint8_t enc[4 + HATTRS_V1_LEN + 8];
	memcpy(enc, wire_buf_ptr(&buf), 4 + HATTRS_V1_LEN);
	wire_buf_free(&buf);

	/* Every truncation of the packet is short, and moves nothing. */
	for (size_t n = 0; n < 4 + HATTRS_V1_LEN; n++) {
		wire_reader_init(&r, enc, n);
		g_assert_cmpint(hattrs_get(&r, &b), ==, WIRE_ESHORT);
		g_assert_cmpuint(r.pos, ==, 0);
	}
	/* A string shorter than version 1's block is short too. */
	uint8_t small[4 + 100];
	memcpy(small, enc, sizeof(small));
	wire_store_u32(small, 100);
	wire_reader_init(&r, small, sizeof(small));
	g_assert_cmpint(hattrs_get(&r, &b), ==, WIRE_ESHORT);
	g_assert_cmpuint(r.pos, ==, 0);
	/* A longer one (a later version's) is read, the rest skipped. */
	memset(enc + 4 + HATTRS_V1_LEN, 0xee, 8);
	wire_store_u32(enc, HATTRS_V1_LEN + 8);
	wire_reader_init(&r, enc, sizeof(enc));
	g_assert_cmpint(hattrs_get(&r, &b), ==, WIRE_OK);
	g_assert_cmpuint(r.pos, ==, sizeof(enc));
	assert_same(&a, &b);
}

static void test_bad_nsec(void)
{
	struct hattrs a, b;
	struct wire_buf buf;
	struct wire_reader r;
	sample(&a);
	a.btime.nsec = 1000000000;
	wire_buf_init(&buf, 0);
	g_assert_cmpint(hattrs_put(&buf, &a), ==, WIRE_OK);
	wire_reader_init(&r, wire_buf_ptr(&buf), wire_buf_len(&buf));
	g_assert_cmpint(hattrs_get(&r, &b), ==, WIRE_EFORMAT);
	g_assert_cmpuint(r.pos, ==, 0);
	wire_buf_free(&buf);
}

static void test_put_limit(void)
{
	struct hattrs a;
	struct hsetattr s = { .valid = HSET_MODE };
	sample(&a);
	for (size_t max = 1; max < 1 + 4 + HATTRS_V1_LEN; max += 7) {
		struct wire_buf buf;
		wire_buf_init(&buf, max);
		g_assert_cmpint(wire_put_u8(&buf, 0xa5), ==, WIRE_OK);
		g_assert_cmpint(hattrs_put(&buf, &a), ==, WIRE_ENOMEM);
		if (max < 1 + HSETATTR_LEN)
			g_assert_cmpint(hsetattr_put(&buf, &s), ==, WIRE_ENOMEM);
		g_assert_cmpuint(wire_buf_len(&buf), ==, 1);
		wire_buf_free(&buf);
	}
}

static void test_from_stat_of_a_file(void)
{
	GError *err = NULL;
	gchar *path = NULL;
	int fd = g_file_open_tmp("hattrs-XXXXXX", &path, &err);
	g_assert_no_error(err);
	g_assert_cmpint(write(fd, "hello", 5), ==, 5);
	struct timespec ts[2] = { { 1000, 1 }, { 2000, 999999999 } };
	g_assert_cmpint(futimens(fd, ts), ==, 0);
	struct stat st;
	struct statx sx;
	g_assert_cmpint(fstat(fd, &st), ==, 0);
	g_assert_cmpint(statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME, &sx), ==, 0);

	struct hattrs a, b;
	hattrs_from_stat(&st, &a);
	hattrs_from_statx(&sx, &b);
	g_assert_cmpuint(a.ino, ==, st.st_ino);
	g_assert_cmpuint(a.mtime.nsec, ==, 999999999);
	g_assert_cmpint(a.atime.sec, ==, 1000);
	g_assert_cmpuint(a.dev_major, ==, major(st.st_dev));
	/* statx says the same, and more (a birth time where the fs has one) */
	g_assert_cmpuint(b.mask & a.mask, ==, a.mask);
	b.mask = a.mask;
	b.btime = a.btime;
	assert_same(&a, &b);

	/* back to struct stat: the fields it carries */
	struct stat back;
	memset(&back, 0, sizeof(back));
	hattrs_to_stat(&a, &back);
	g_assert_cmpuint(back.st_ino, ==, st.st_ino);
	g_assert_cmpuint(back.st_mode, ==, st.st_mode);
	g_assert_cmpuint(back.st_nlink, ==, st.st_nlink);
	g_assert_cmpuint(back.st_dev, ==, st.st_dev);
	g_assert_cmpint(back.st_size, ==, 5);
	g_assert_cmpint(back.st_blocks, ==, st.st_blocks);
	g_assert_cmpint(back.st_mtim.tv_nsec, ==, 999999999);
	g_assert_cmpint(back.st_ctim.tv_sec, ==, st.st_ctim.tv_sec);
	close(fd);
	g_unlink(path);
	g_free(path);
}

static void test_to_stat_only_masked(void)
{
	struct hattrs a;
	struct stat st;
	sample(&a);
	a.mask = HATTR_MODE; /* permission bits only: the type stays */
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFDIR | 0700;
	st.st_ino = 42;
	hattrs_to_stat(&a, &st);
	g_assert_cmpuint(st.st_mode, ==, S_IFDIR | 04755);
	g_assert_cmpuint(st.st_ino, ==, 42);
	g_assert_cmpint(st.st_size, ==, 0);
}

static void test_hsetattr(void)
{
	struct hsetattr s, t;
	memset(&s, 0, sizeof(s));
	s.valid = HSET_MODE | HSET_MTIME | HSET_ATIME_NOW;
	s.mode = 0644;
	s.uid = 1;
	s.gid = 2;
	s.size = 3;
	s.atime = (struct hattrs_time){ -5, 6 };
	s.mtime = (struct hattrs_time){ 7, 999999999 };
	struct wire_buf buf;
	struct wire_reader r;
	wire_buf_init(&buf, 0);
	g_assert_cmpint(hsetattr_put(&buf, &s), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&buf), ==, HSETATTR_LEN);
	wire_reader_init(&r, wire_buf_ptr(&buf), wire_buf_len(&buf));
	g_assert_cmpint(hsetattr_get(&r, &t), ==, WIRE_OK);
	g_assert_cmpuint(r.pos, ==, HSETATTR_LEN);
	g_assert_cmpuint(t.valid, ==, s.valid);
	g_assert_cmpuint(t.mode, ==, s.mode);
	g_assert_cmpuint(t.uid, ==, s.uid);
	g_assert_cmpuint(t.gid, ==, s.gid);
	g_assert_cmpuint(t.size, ==, s.size);
	assert_same_time(&t.atime, &s.atime);
	assert_same_time(&t.mtime, &s.mtime);
	for (size_t n = 0; n < HSETATTR_LEN; n++) {
		wire_reader_init(&r, wire_buf_ptr(&buf), n);
		g_assert_cmpint(hsetattr_get(&r, &t), ==, WIRE_ESHORT);
		g_assert_cmpuint(r.pos, ==, 0);
	}
	wire_buf_free(&buf);
	s.atime.nsec = 1000000000;
	wire_buf_init(&buf, 0);
	g_assert_cmpint(hsetattr_put(&buf, &s), ==, WIRE_OK);
	wire_reader_init(&r, wire_buf_ptr(&buf), wire_buf_len(&buf));
	g_assert_cmpint(hsetattr_get(&r, &t), ==, WIRE_EFORMAT);
	g_assert_cmpuint(r.pos, ==, 0);
	wire_buf_free(&buf);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/hattrs/roundtrip", test_roundtrip);
	g_test_add_func("/hattrs/short-and-long", test_short_and_long);
	g_test_add_func("/hattrs/bad-nsec", test_bad_nsec);
	g_test_add_func("/hattrs/put-limit", test_put_limit);
	g_test_add_func("/hattrs/from-stat-of-a-file", test_from_stat_of_a_file);
	g_test_add_func("/hattrs/to-stat-only-masked", test_to_stat_only_masked);
	g_test_add_func("/hattrs/hsetattr", test_hsetattr);
	return g_test_run();
}
