/* Unit tests for common/attrs.[ch]: SFTP v3 ATTRS and the status tables. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attrs.h"
#include "sftp-proto.h"
#include "wire.h"

#define F_SIZE SSH_FILEXFER_ATTR_SIZE
#define F_UIDGID SSH_FILEXFER_ATTR_UIDGID
#define F_PERM SSH_FILEXFER_ATTR_PERMISSIONS
#define F_TIME SSH_FILEXFER_ATTR_ACMODTIME
#define F_EXT SSH_FILEXFER_ATTR_EXTENDED

/* The five flags, combined by the bits of an index 0..31. */
static uint32_t combo_flags(unsigned i)
{
	uint32_t f = 0;
	if (i & 1) f |= F_SIZE;
	if (i & 2) f |= F_UIDGID;
	if (i & 4) f |= F_PERM;
	if (i & 8) f |= F_TIME;
	if (i & 16) f |= F_EXT;
	return f;
}

static void sample_attrs(struct sftp_attrs *a, uint32_t flags)
{
	attrs_clear(a);
	a->flags = flags;
	a->size = 0x0123456789abcdefull;
	a->uid = 0xfffffffe;
	a->gid = 1000;
	a->perm = S_IFREG | 0644;
	a->atime = 0x80000001;
	a->mtime = 1700000000;
}

/* The length attrs_put should produce for these flags (no EXTENDED). */
static size_t encoded_len(uint32_t flags)
{
	size_t n = 4;
	if (flags & F_SIZE) n += 8;
	if (flags & F_UIDGID) n += 8;
	if (flags & F_PERM) n += 4;
	if (flags & F_TIME) n += 8;
	return n;
}

/* Encode ATTRS by hand, including extended pairs when F_EXT is set
 * (attrs_put never writes those). pairs[] alternates type, data. */
static void encode_attrs(struct wire_buf *b, uint32_t flags, const struct sftp_attrs *a,
			 uint32_t npairs, const char *const *pairs)
{
	g_assert_cmpint(wire_put_u32(b, flags), ==, WIRE_OK);
	if (flags & F_SIZE)
		g_assert_cmpint(wire_put_u64(b, a->size), ==, WIRE_OK);
	if (flags & F_UIDGID) {
		g_assert_cmpint(wire_put_u32(b, a->uid), ==, WIRE_OK);
		g_assert_cmpint(wire_put_u32(b, a->gid), ==, WIRE_OK);
	}
	if (flags & F_PERM)
		g_assert_cmpint(wire_put_u32(b, a->perm), ==, WIRE_OK);
	if (flags & F_TIME) {
		g_assert_cmpint(wire_put_u32(b, a->atime), ==, WIRE_OK);
		g_assert_cmpint(wire_put_u32(b, a->mtime), ==, WIRE_OK);
	}
	if (flags & F_EXT) {
		g_assert_cmpint(wire_put_u32(b, npairs), ==, WIRE_OK);
		for (uint32_t i = 0; i < npairs; i++) {
			const char *t = pairs ? pairs[2 * (i % 2)] : "x@example.com";
			const char *d = pairs ? pairs[2 * (i % 2) + 1] : "";
			g_assert_cmpint(wire_put_cstring(b, t), ==, WIRE_OK);
			g_assert_cmpint(wire_put_cstring(b, d), ==, WIRE_OK);
		}
	}
}

/* Check that got carries exactly the fields flags says, from want. */
static void assert_attrs(const struct sftp_attrs *got, uint32_t flags, const struct sftp_attrs *want)
{
	g_assert_cmphex(got->flags, ==, flags);
	g_assert_cmpuint(got->size, ==, (flags & F_SIZE) ? want->size : 0);
	g_assert_cmpuint(got->uid, ==, (flags & F_UIDGID) ? want->uid : 0);
	g_assert_cmpuint(got->gid, ==, (flags & F_UIDGID) ? want->gid : 0);
	g_assert_cmpuint(got->perm, ==, (flags & F_PERM) ? want->perm : 0);
	g_assert_cmpuint(got->atime, ==, (flags & F_TIME) ? want->atime : 0);
	g_assert_cmpuint(got->mtime, ==, (flags & F_TIME) ? want->mtime : 0);
}

static void garbage_attrs(struct sftp_attrs *a)
{
	memset(a, 0x5a, sizeof(*a));
}

/* ------------------------------------------------------------- ATTRS I/O */

static void test_clear(void)
{
	struct sftp_attrs a;
	garbage_attrs(&a);
	attrs_clear(&a);
	g_assert_cmpuint(a.flags, ==, 0);
	g_assert_cmpuint(a.size, ==, 0);
	g_assert_cmpuint(a.uid, ==, 0);
	g_assert_cmpuint(a.gid, ==, 0);
	g_assert_cmpuint(a.perm, ==, 0);
	g_assert_cmpuint(a.atime, ==, 0);
	g_assert_cmpuint(a.mtime, ==, 0);
	g_assert_cmpuint(a.ext_count, ==, 0);
}

/* attrs_put then attrs_get for all 32 combinations of the five flags.
 * attrs_put never writes EXTENDED (we have no extensions to send). */
static void test_roundtrip_all_flags(void)
{
	for (unsigned i = 0; i < 32; i++) {
		uint32_t flags = combo_flags(i);
		uint32_t sent = flags & ~(uint32_t)F_EXT;
		struct sftp_attrs a, got;
		struct wire_buf b;
		struct wire_reader r;

		g_test_message("flags 0x%08x", flags);
		sample_attrs(&a, flags);
		a.ext_count = 3; /* ignored by attrs_put */
		wire_buf_init(&b, 0);
		g_assert_cmpint(wire_put_u8(&b, 0xEE), ==, WIRE_OK); /* something before */
		g_assert_cmpint(attrs_put(&b, &a), ==, WIRE_OK);
		g_assert_cmpint(wire_put_u8(&b, 0xDD), ==, WIRE_OK); /* something after */
		g_assert_cmpuint(wire_buf_len(&b), ==, 2 + encoded_len(sent));
		g_assert_cmphex(wire_load_u32(wire_buf_ptr(&b) + 1), ==, sent);

		/* The bytes are exactly the draft's layout. */
		struct wire_buf exp;
		wire_buf_init(&exp, 0);
		g_assert_cmpint(wire_put_u8(&exp, 0xEE), ==, WIRE_OK);
		encode_attrs(&exp, sent, &a, 0, NULL);
		g_assert_cmpint(wire_put_u8(&exp, 0xDD), ==, WIRE_OK);
		g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), wire_buf_ptr(&exp), wire_buf_len(&exp));
		wire_buf_free(&exp);

		wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
		g_assert_cmpint(wire_skip(&r, 1), ==, WIRE_OK);
		garbage_attrs(&got);
		g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_OK);
		assert_attrs(&got, sent, &a);
		g_assert_cmpuint(got.ext_count, ==, 0);
		g_assert_cmpuint(wire_remaining(&r), ==, 1);
		wire_buf_free(&b);
	}
}

/* Decoding ATTRS that carry extended pairs, for every flag combination:
 * the pairs are counted and skipped, and what follows is read correctly. */
static void test_get_all_flags_extended(void)
{
	static const char *const pairs[] = {
		"acl@example.com", "some\001data",
		"", "",
	};
	for (unsigned i = 0; i < 32; i++) {
		uint32_t flags = combo_flags(i);
		for (uint32_t npairs = 0; npairs < 4; npairs++) {
			struct sftp_attrs a, got;
			struct wire_buf b;
			struct wire_reader r;
			uint32_t tail;

			sample_attrs(&a, flags);
			wire_buf_init(&b, 0);
			encode_attrs(&b, flags, &a, npairs, pairs);
			g_assert_cmpint(wire_put_u32(&b, 0x600DF00D), ==, WIRE_OK);

			wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
			garbage_attrs(&got);
			g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_OK);
			assert_attrs(&got, flags, &a);
			g_assert_cmpuint(got.ext_count, ==, (flags & F_EXT) ? npairs : 0);
			g_assert_cmpint(wire_get_u32(&r, &tail), ==, WIRE_OK);
			g_assert_cmphex(tail, ==, 0x600DF00D);
			g_assert_cmpuint(wire_remaining(&r), ==, 0);
			wire_buf_free(&b);
			if (!(flags & F_EXT))
				break; /* npairs makes no difference */
		}
	}
}

/* ATTRS cut short at every byte position fail with WIRE_ESHORT and leave
 * the reader where it was. */
static void test_truncated(void)
{
	static const char *const pairs[] = { "a@b", "xyz", "c@d", "" };
	for (unsigned i = 0; i < 32; i++) {
		uint32_t flags = combo_flags(i);
		struct sftp_attrs a, got;
		struct wire_buf b;
		struct wire_reader r;

		sample_attrs(&a, flags);
		wire_buf_init(&b, 0);
		g_assert_cmpint(wire_put_u32(&b, 0x01010101), ==, WIRE_OK); /* prefix */
		encode_attrs(&b, flags, &a, 2, pairs);
		size_t total = wire_buf_len(&b);

		for (size_t cut = 4; cut < total; cut++) {
			wire_reader_init(&r, wire_buf_ptr(&b), cut);
			g_assert_cmpint(wire_skip(&r, 4), ==, WIRE_OK);
			g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_ESHORT);
			g_assert_true(r.data == wire_buf_ptr(&b));
			g_assert_cmpuint(r.pos, ==, 4);
			g_assert_cmpuint(r.len, ==, cut);
		}
		/* And the whole thing decodes. */
		wire_reader_init(&r, wire_buf_ptr(&b), total);
		g_assert_cmpint(wire_skip(&r, 4), ==, WIRE_OK);
		g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_OK);
		assert_attrs(&got, flags, &a);
		g_assert_cmpuint(wire_remaining(&r), ==, 0);
		wire_buf_free(&b);
	}
}

/* An extended pair whose string length points past the end. */
static void test_extended_bad_string(void)
{
	static const uint32_t bad[] = { 100, 0x7fffffff, 0xffffffff };
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		for (int which = 0; which < 2; which++) {
			struct wire_buf b;
			struct wire_reader r;
			struct sftp_attrs got;
			wire_buf_init(&b, 0);
			g_assert_cmpint(wire_put_u32(&b, F_EXT), ==, WIRE_OK);
			g_assert_cmpint(wire_put_u32(&b, 1), ==, WIRE_OK);
			if (which == 0) {
				g_assert_cmpint(wire_put_u32(&b, bad[i]), ==, WIRE_OK);
			} else {
				g_assert_cmpint(wire_put_cstring(&b, "type"), ==, WIRE_OK);
				g_assert_cmpint(wire_put_u32(&b, bad[i]), ==, WIRE_OK);
			}
			g_assert_cmpint(wire_put_bytes(&b, "0123456789", 10), ==, WIRE_OK);
			wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
			g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_ESHORT);
			g_assert_cmpuint(r.pos, ==, 0);
			wire_buf_free(&b);
		}
	}
}

static void test_extended_limit(void)
{
	struct sftp_attrs a, got;
	struct wire_buf b;
	struct wire_reader r;
	sample_attrs(&a, F_SIZE | F_EXT);

	/* Exactly the limit is accepted. */
	wire_buf_init(&b, 0);
	encode_attrs(&b, F_SIZE | F_EXT, &a, SFTP_MAX_ATTR_EXTENSIONS, NULL);
	wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
	g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_OK);
	g_assert_cmpuint(got.ext_count, ==, SFTP_MAX_ATTR_EXTENSIONS);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);
	wire_buf_free(&b);

	/* One more is refused even though all the pairs are there. */
	wire_buf_init(&b, 0);
	encode_attrs(&b, F_SIZE | F_EXT, &a, SFTP_MAX_ATTR_EXTENSIONS + 1, NULL);
	wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
	g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_ETOOLONG);
	g_assert_cmpuint(r.pos, ==, 0);
	wire_buf_free(&b);

	/* Huge counts are refused at once, without reading pairs. */
	static const uint32_t counts[] = { 1000, 0x7fffffff, 0x80000000, 0xffffffff };
	for (size_t i = 0; i < G_N_ELEMENTS(counts); i++) {
		wire_buf_init(&b, 0);
		g_assert_cmpint(wire_put_u32(&b, 0xCAFE), ==, WIRE_OK);
		g_assert_cmpint(wire_put_u32(&b, F_EXT), ==, WIRE_OK);
		g_assert_cmpint(wire_put_u32(&b, counts[i]), ==, WIRE_OK);
		wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
		g_assert_cmpint(wire_skip(&r, 4), ==, WIRE_OK);
		g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_ETOOLONG);
		g_assert_cmpuint(r.pos, ==, 4);
		wire_buf_free(&b);
	}
}

/* Flag bits v3 does not define carry no fields and are dropped. */
static void test_unknown_flags(void)
{
	static const uint32_t unknown[] = {
		0x00000010, 0x00000020, 0x00000040, 0x00000080, 0x00000100,
		0x00010000, 0x40000000, 0x7ffffff0,
	};
	for (size_t i = 0; i < G_N_ELEMENTS(unknown); i++) {
		for (unsigned c = 0; c < 32; c++) {
			uint32_t known = combo_flags(c);
			struct sftp_attrs a, got;
			struct wire_buf b;
			struct wire_reader r;
			uint32_t tail;

			sample_attrs(&a, known);
			wire_buf_init(&b, 0);
			encode_attrs(&b, known, &a, 1, NULL);
			wire_poke_u32(&b, 0, known | unknown[i]);
			g_assert_cmpint(wire_put_u32(&b, 0x5EB0A11D), ==, WIRE_OK);

			wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
			g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_OK);
			assert_attrs(&got, known, &a);
			/* Nothing extra consumed for the unknown bits. */
			g_assert_cmpint(wire_get_u32(&r, &tail), ==, WIRE_OK);
			g_assert_cmphex(tail, ==, 0x5EB0A11D);
			g_assert_cmpuint(wire_remaining(&r), ==, 0);
			wire_buf_free(&b);
		}
	}
}

/* attrs_put into a buffer that runs out of room leaves no partial ATTRS. */
static void test_put_limit(void)
{
	struct sftp_attrs a;
	uint32_t flags = F_SIZE | F_UIDGID | F_PERM | F_TIME;
	sample_attrs(&a, flags);
	size_t need = encoded_len(flags);
	for (size_t room = 0; room < need; room++) {
		struct wire_buf b;
		wire_buf_init(&b, 3 + room);
		g_assert_cmpint(wire_put_bytes(&b, "pre", 3), ==, WIRE_OK);
		g_assert_cmpint(attrs_put(&b, &a), ==, WIRE_ENOMEM);
		g_assert_cmpuint(wire_buf_len(&b), ==, 3);
		g_assert_cmpmem(wire_buf_ptr(&b), 3, "pre", 3);
		wire_buf_free(&b);
	}
	struct wire_buf b;
	wire_buf_init(&b, 3 + need);
	g_assert_cmpint(wire_put_bytes(&b, "pre", 3), ==, WIRE_OK);
	g_assert_cmpint(attrs_put(&b, &a), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&b), ==, 3 + need);
	wire_buf_free(&b);
}

/* ------------------------------------------------------------ struct stat */

static void test_from_stat(void)
{
	struct stat st;
	struct sftp_attrs a;

	memset(&st, 0, sizeof(st));
	st.st_size = (off_t)0x123456789aLL; /* over 4 GiB */
	st.st_uid = 4000000000u;
	st.st_gid = 65534;
	st.st_mode = S_IFDIR | S_ISVTX | 01777;
	st.st_atim.tv_sec = 1234567890;
	st.st_atim.tv_nsec = 999999999;
	st.st_mtim.tv_sec = 2000000000;
	st.st_mtim.tv_nsec = 1;
	garbage_attrs(&a);
	attrs_from_stat(&st, &a);
	g_assert_cmphex(a.flags, ==, F_SIZE | F_UIDGID | F_PERM | F_TIME);
	g_assert_cmpuint(a.size, ==, 0x123456789aULL);
	g_assert_cmpuint(a.uid, ==, 4000000000u);
	g_assert_cmpuint(a.gid, ==, 65534);
	g_assert_cmphex(a.perm, ==, S_IFDIR | S_ISVTX | 01777); /* type bits too, as OpenSSH */
	g_assert_cmpuint(a.atime, ==, 1234567890);
	g_assert_cmpuint(a.mtime, ==, 2000000000);
	g_assert_cmpuint(a.ext_count, ==, 0);

	/* A real file. */
	char *path = NULL;
	GError *error = NULL;
	int fd = g_file_open_tmp("hashi-attrs-XXXXXX", &path, &error);
	g_assert_no_error(error);
	g_assert_cmpint(write(fd, "hello", 5), ==, 5);
	g_assert_cmpint(fchmod(fd, 0640), ==, 0);
	g_assert_cmpint(fstat(fd, &st), ==, 0);
	attrs_from_stat(&st, &a);
	g_assert_cmpuint(a.size, ==, 5);
	g_assert_cmphex(a.perm, ==, S_IFREG | 0640);
	g_assert_cmpuint(a.uid, ==, getuid());
	g_assert_cmpuint(a.gid, ==, st.st_gid);
	g_assert_cmpuint(a.mtime, ==, (uint32_t)st.st_mtime);
	g_assert_cmpuint(a.atime, ==, (uint32_t)st.st_atime);
	close(fd);
	g_unlink(path);
	g_free(path);
}

static void test_to_stat(void)
{
	for (unsigned i = 0; i < 32; i++) {
		uint32_t flags = combo_flags(i);
		struct sftp_attrs a;
		struct stat st, orig;
		sample_attrs(&a, flags);
		memset(&orig, 0x33, sizeof(orig));
		st = orig;
		attrs_to_stat(&a, &st);

		if (flags & F_SIZE)
			g_assert_cmpint(st.st_size, ==, (off_t)a.size);
		else
			g_assert_cmpint(st.st_size, ==, orig.st_size);
		if (flags & F_UIDGID) {
			g_assert_cmpuint(st.st_uid, ==, a.uid);
			g_assert_cmpuint(st.st_gid, ==, a.gid);
		} else {
			g_assert_cmpuint(st.st_uid, ==, orig.st_uid);
			g_assert_cmpuint(st.st_gid, ==, orig.st_gid);
		}
		if (flags & F_PERM)
			g_assert_cmphex(st.st_mode, ==, a.perm);
		else
			g_assert_cmphex(st.st_mode, ==, orig.st_mode);
		if (flags & F_TIME) {
			g_assert_cmpint(st.st_atim.tv_sec, ==, (time_t)a.atime);
			g_assert_cmpint(st.st_atim.tv_nsec, ==, 0);
			g_assert_cmpint(st.st_mtim.tv_sec, ==, (time_t)a.mtime);
			g_assert_cmpint(st.st_mtim.tv_nsec, ==, 0);
		} else {
			g_assert_cmpint(st.st_atim.tv_sec, ==, orig.st_atim.tv_sec);
			g_assert_cmpint(st.st_atim.tv_nsec, ==, orig.st_atim.tv_nsec);
			g_assert_cmpint(st.st_mtim.tv_sec, ==, orig.st_mtim.tv_sec);
			g_assert_cmpint(st.st_mtim.tv_nsec, ==, orig.st_mtim.tv_nsec);
		}
		/* Fields ATTRS never carries are left alone. */
		g_assert_cmpuint(st.st_ino, ==, orig.st_ino);
		g_assert_cmpuint(st.st_dev, ==, orig.st_dev);
		g_assert_cmpuint(st.st_nlink, ==, orig.st_nlink);
		g_assert_cmpint(st.st_ctim.tv_sec, ==, orig.st_ctim.tv_sec);
		g_assert_cmpint(st.st_blocks, ==, orig.st_blocks);
	}
}

/* stat -> ATTRS -> wire -> ATTRS -> stat. */
static void test_stat_roundtrip(void)
{
	struct stat st, back;
	struct sftp_attrs a, got;
	struct wire_buf b;
	struct wire_reader r;

	memset(&st, 0, sizeof(st));
	st.st_size = 5000000000LL;
	st.st_uid = 1001;
	st.st_gid = 1002;
	st.st_mode = S_IFLNK | 0777;
	st.st_atim.tv_sec = 1111111111;
	st.st_mtim.tv_sec = 2222222222LL;
	attrs_from_stat(&st, &a);
	wire_buf_init(&b, 0);
	g_assert_cmpint(attrs_put(&b, &a), ==, WIRE_OK);
	wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
	g_assert_cmpint(attrs_get(&r, &got), ==, WIRE_OK);
	memset(&back, 0, sizeof(back));
	attrs_to_stat(&got, &back);
	g_assert_cmpint(back.st_size, ==, st.st_size);
	g_assert_cmpuint(back.st_uid, ==, st.st_uid);
	g_assert_cmpuint(back.st_gid, ==, st.st_gid);
	g_assert_cmphex(back.st_mode, ==, st.st_mode);
	g_assert_cmpint(back.st_atim.tv_sec, ==, st.st_atim.tv_sec);
	g_assert_cmpint(back.st_mtim.tv_sec, ==, st.st_mtim.tv_sec);
	wire_buf_free(&b);
}

/* ----------------------------------------------------------- status codes */

static void test_errno_to_status(void)
{
	static const struct { int err; uint32_t status; } table[] = {
		{ 0, SSH_FX_OK },
		{ ENOENT, SSH_FX_NO_SUCH_FILE },
		{ ENOTDIR, SSH_FX_NO_SUCH_FILE },
		{ EBADF, SSH_FX_NO_SUCH_FILE },
		{ ELOOP, SSH_FX_NO_SUCH_FILE },
		{ EPERM, SSH_FX_PERMISSION_DENIED },
		{ EACCES, SSH_FX_PERMISSION_DENIED },
		{ EFAULT, SSH_FX_PERMISSION_DENIED },
		{ ENAMETOOLONG, SSH_FX_BAD_MESSAGE },
		{ EINVAL, SSH_FX_BAD_MESSAGE },
		{ ENOSYS, SSH_FX_OP_UNSUPPORTED },
		/* everything else is a plain failure, as in OpenSSH */
		{ EEXIST, SSH_FX_FAILURE },
		{ ENOTEMPTY, SSH_FX_FAILURE },
		{ EISDIR, SSH_FX_FAILURE },
		{ EROFS, SSH_FX_FAILURE },
		{ ENOSPC, SSH_FX_FAILURE },
		{ EDQUOT, SSH_FX_FAILURE },
		{ EIO, SSH_FX_FAILURE },
		{ EXDEV, SSH_FX_FAILURE },
		{ EBUSY, SSH_FX_FAILURE },
		{ EMLINK, SSH_FX_FAILURE },
		{ ETXTBSY, SSH_FX_FAILURE },
		{ EOPNOTSUPP, SSH_FX_FAILURE },
		{ ENOMEM, SSH_FX_FAILURE },
		{ EAGAIN, SSH_FX_FAILURE },
		{ EOVERFLOW, SSH_FX_FAILURE },
		{ -1, SSH_FX_FAILURE },
		{ 100000, SSH_FX_FAILURE },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
		g_test_message("errno %d", table[i].err);
		g_assert_cmpuint(attrs_errno_to_status(table[i].err), ==, table[i].status);
	}
}

static void test_status_to_errno(void)
{
	static const struct { uint32_t status; int err; } table[] = {
		{ SSH_FX_OK, 0 },
		{ SSH_FX_EOF, ENODATA },
		{ SSH_FX_NO_SUCH_FILE, ENOENT },
		{ SSH_FX_PERMISSION_DENIED, EACCES },
		{ SSH_FX_FAILURE, EPERM },
		{ SSH_FX_BAD_MESSAGE, EBADMSG },
		{ SSH_FX_NO_CONNECTION, ENOTCONN },
		{ SSH_FX_CONNECTION_LOST, ECONNABORTED },
		{ SSH_FX_OP_UNSUPPORTED, EOPNOTSUPP },
		{ 9, EIO },
		{ 100, EIO },
		{ 0x7fffffff, EIO },
		{ UINT32_MAX, EIO },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
		g_assert_cmpint(attrs_status_to_errno(table[i].status), ==, table[i].err);

	/* The errno a client sees for a server errno keeps the distinctions
	 * the status code can carry. */
	g_assert_cmpint(attrs_status_to_errno(attrs_errno_to_status(ENOENT)), ==, ENOENT);
	g_assert_cmpint(attrs_status_to_errno(attrs_errno_to_status(EACCES)), ==, EACCES);
	g_assert_cmpint(attrs_status_to_errno(attrs_errno_to_status(0)), ==, 0);
	g_assert_cmpint(attrs_status_to_errno(attrs_errno_to_status(ENOSYS)), ==, EOPNOTSUPP);
}

static void test_status_message(void)
{
	static const char *const want[] = {
		"Success", "End of file", "No such file", "Permission denied",
		"Failure", "Bad message", "No connection", "Connection lost",
		"Operation unsupported",
	};
	G_STATIC_ASSERT(G_N_ELEMENTS(want) == SSH_FX_MAX + 1);
	g_assert_cmpstr(attrs_status_message(SSH_FX_OK), ==, "Success");
	g_assert_cmpstr(attrs_status_message(SSH_FX_NO_SUCH_FILE), ==, "No such file");
	g_assert_cmpstr(attrs_status_message(SSH_FX_PERMISSION_DENIED), ==, "Permission denied");
	g_assert_cmpstr(attrs_status_message(SSH_FX_OP_UNSUPPORTED), ==, "Operation unsupported");
	for (uint32_t s = 0; s < G_N_ELEMENTS(want); s++)
		g_assert_cmpstr(attrs_status_message(s), ==, want[s]);
	static const uint32_t beyond[] = { 9, 10, 100, 0x80000000, UINT32_MAX };
	for (size_t i = 0; i < G_N_ELEMENTS(beyond); i++)
		g_assert_cmpstr(attrs_status_message(beyond[i]), ==, "Unknown error");
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);

	g_test_add_func("/attrs/clear", test_clear);
	g_test_add_func("/attrs/roundtrip-all-flags", test_roundtrip_all_flags);
	g_test_add_func("/attrs/get-all-flags-extended", test_get_all_flags_extended);
	g_test_add_func("/attrs/truncated", test_truncated);
	g_test_add_func("/attrs/extended-bad-string", test_extended_bad_string);
	g_test_add_func("/attrs/extended-limit", test_extended_limit);
	g_test_add_func("/attrs/unknown-flags", test_unknown_flags);
	g_test_add_func("/attrs/put-limit", test_put_limit);
	g_test_add_func("/attrs/from-stat", test_from_stat);
	g_test_add_func("/attrs/to-stat", test_to_stat);
	g_test_add_func("/attrs/stat-roundtrip", test_stat_roundtrip);
	g_test_add_func("/attrs/errno-to-status", test_errno_to_status);
	g_test_add_func("/attrs/status-to-errno", test_status_to_errno);
	g_test_add_func("/attrs/status-message", test_status_message);

	return g_test_run();
}
