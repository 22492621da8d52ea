/* Unit tests for common/wire.[ch]: the bounds-checked reader and wire_buf. */
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* ---------------------------------------------------------------- helpers */

/* Each getter under test, behind one signature: returns the WIRE_* code. */
typedef int (*getter_fn)(struct wire_reader *r);

static int get_u8(struct wire_reader *r)
{
	uint8_t v = 0xAA;
	int err = wire_get_u8(r, &v);
	if (err)
		g_assert_cmpuint(v, ==, 0xAA); /* output untouched on failure */
	return err;
}

static int get_u32(struct wire_reader *r)
{
	uint32_t v = 0xAAAAAAAA;
	int err = wire_get_u32(r, &v);
	if (err)
		g_assert_cmpuint(v, ==, 0xAAAAAAAA);
	return err;
}

static int get_u64(struct wire_reader *r)
{
	uint64_t v = 0xAAAAAAAAAAAAAAAAull;
	int err = wire_get_u64(r, &v);
	if (err)
		g_assert_cmpuint(v, ==, 0xAAAAAAAAAAAAAAAAull);
	return err;
}

static int get_string(struct wire_reader *r)
{
	const uint8_t *p = NULL;
	uint32_t n = 12345;
	int err = wire_get_string(r, &p, &n);
	if (err) {
		g_assert_null(p);
		g_assert_cmpuint(n, ==, 12345);
	}
	return err;
}

static int get_cstring(struct wire_reader *r)
{
	char *s = NULL;
	int err = wire_get_cstring(r, &s, 1024);
	if (err)
		g_assert_null(s);
	free(s);
	return err;
}

static int get_sub(struct wire_reader *r)
{
	struct wire_reader sub = { NULL, 0, 0 };
	return wire_get_sub(r, &sub);
}

struct getter_case {
	const char *name;
	getter_fn fn;
	const uint8_t *bytes; /* a minimal valid encoding */
	size_t len;
};

static const uint8_t enc_u8[] = { 0x7f };
static const uint8_t enc_u32[] = { 1, 2, 3, 4 };
static const uint8_t enc_u64[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const uint8_t enc_str[] = { 0, 0, 0, 3, 'a', 'b', 'c' };

static const struct getter_case getters[] = {
	{ "u8", get_u8, enc_u8, sizeof(enc_u8) },
	{ "u32", get_u32, enc_u32, sizeof(enc_u32) },
	{ "u64", get_u64, enc_u64, sizeof(enc_u64) },
	{ "string", get_string, enc_str, sizeof(enc_str) },
	{ "cstring", get_cstring, enc_str, sizeof(enc_str) },
	{ "sub", get_sub, enc_str, sizeof(enc_str) },
};

/* A reader over bytes that sit after a 3-byte prefix already consumed, so a
 * failure that resets the position to 0 would be caught. */
static void reader_at(struct wire_reader *r, uint8_t *buf, const uint8_t *bytes, size_t len)
{
	buf[0] = 0xEE;
	buf[1] = 0xEE;
	buf[2] = 0xEE;
	if (len)
		memcpy(buf + 3, bytes, len);
	wire_reader_init(r, buf, 3 + len);
	g_assert_cmpint(wire_skip(r, 3), ==, WIRE_OK);
}

/* ------------------------------------------------------------ the reader */

static void test_strerror(void)
{
	int codes[] = { WIRE_OK, WIRE_ESHORT, WIRE_ETOOLONG, WIRE_EFORMAT, WIRE_ENOMEM };
	for (size_t i = 0; i < G_N_ELEMENTS(codes); i++) {
		const char *s = wire_strerror(codes[i]);
		g_assert_nonnull(s);
		g_assert_cmpstr(s, !=, "unknown error");
		for (size_t j = 0; j < i; j++)
			g_assert_cmpstr(s, !=, wire_strerror(codes[j]));
	}
	g_assert_cmpstr(wire_strerror(-99), ==, "unknown error");
	g_assert_cmpstr(wire_strerror(7), ==, "unknown error");
}

static void test_reader_init(void)
{
	struct wire_reader r;
	uint8_t b[4] = { 0 };
	wire_reader_init(&r, b, sizeof(b));
	g_assert_cmpuint(wire_remaining(&r), ==, 4);
	g_assert_cmpuint(r.pos, ==, 0);

	/* NULL data is an empty reader whatever len says. */
	wire_reader_init(&r, NULL, 100);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);
	uint8_t v;
	g_assert_cmpint(wire_get_u8(&r, &v), ==, WIRE_ESHORT);
	g_assert_cmpint(wire_skip(&r, 0), ==, WIRE_OK);
	g_assert_cmpint(wire_skip(&r, 1), ==, WIRE_ESHORT);
}

/* Every getter on exactly its length, one short of it (every shorter length,
 * in fact) and empty input. */
static void test_getters_lengths(void)
{
	uint8_t buf[64];
	for (size_t i = 0; i < G_N_ELEMENTS(getters); i++) {
		const struct getter_case *g = &getters[i];
		struct wire_reader r;

		g_test_message("getter %s", g->name);

		/* Exact length: success, everything consumed. */
		reader_at(&r, buf, g->bytes, g->len);
		g_assert_cmpint(g->fn(&r), ==, WIRE_OK);
		g_assert_cmpuint(r.pos, ==, 3 + g->len);
		g_assert_cmpuint(wire_remaining(&r), ==, 0);

		/* One more byte than needed: success, one byte left. */
		uint8_t plus[32];
		memcpy(plus, g->bytes, g->len);
		plus[g->len] = 0x55;
		reader_at(&r, buf, plus, g->len + 1);
		g_assert_cmpint(g->fn(&r), ==, WIRE_OK);
		g_assert_cmpuint(wire_remaining(&r), ==, 1);

		/* Every shorter input, including one short and empty. */
		for (size_t cut = 0; cut < g->len; cut++) {
			reader_at(&r, buf, g->bytes, cut);
			g_assert_cmpint(g->fn(&r), ==, WIRE_ESHORT);
			g_assert_cmpuint(r.pos, ==, 3);
			g_assert_cmpuint(wire_remaining(&r), ==, cut);
		}

		/* Empty reader at position 0. */
		wire_reader_init(&r, buf, 0);
		g_assert_cmpint(g->fn(&r), ==, WIRE_ESHORT);
		g_assert_cmpuint(r.pos, ==, 0);
	}
}

static void test_get_values(void)
{
	static const uint8_t bytes[] = {
		0xfe,
		0xde, 0xad, 0xbe, 0xef,
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
		0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	};
	struct wire_reader r;
	uint8_t u8;
	uint32_t u32;
	uint64_t u64;
	wire_reader_init(&r, bytes, sizeof(bytes));
	g_assert_cmpint(wire_get_u8(&r, &u8), ==, WIRE_OK);
	g_assert_cmpuint(u8, ==, 0xfe);
	g_assert_cmpint(wire_get_u32(&r, &u32), ==, WIRE_OK);
	g_assert_cmpuint(u32, ==, 0xdeadbeef);
	g_assert_cmpint(wire_get_u64(&r, &u64), ==, WIRE_OK);
	g_assert_cmpuint(u64, ==, 0x0123456789abcdefull);
	g_assert_cmpint(wire_get_u32(&r, &u32), ==, WIRE_OK);
	g_assert_cmpuint(u32, ==, UINT32_MAX);
	g_assert_cmpint(wire_get_u64(&r, &u64), ==, WIRE_OK);
	g_assert_cmpuint(u64, ==, UINT64_MAX);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);
}

static void test_skip(void)
{
	uint8_t b[5] = { 0 };
	struct wire_reader r;
	wire_reader_init(&r, b, sizeof(b));
	g_assert_cmpint(wire_skip(&r, 0), ==, WIRE_OK);
	g_assert_cmpint(wire_skip(&r, 2), ==, WIRE_OK);
	g_assert_cmpint(wire_skip(&r, 4), ==, WIRE_ESHORT);
	g_assert_cmpuint(r.pos, ==, 2);
	g_assert_cmpint(wire_skip(&r, SIZE_MAX), ==, WIRE_ESHORT);
	g_assert_cmpuint(r.pos, ==, 2);
	g_assert_cmpint(wire_skip(&r, 3), ==, WIRE_OK);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);
	g_assert_cmpint(wire_skip(&r, 1), ==, WIRE_ESHORT);
	g_assert_cmpint(wire_skip(&r, 0), ==, WIRE_OK);
}

/* String length prefixes that point past the end of the input. */
static void test_string_past_end(void)
{
	static const uint32_t lens[] = {
		4, 5, 6, 100, 0x7fffffff, 0x80000000, 0xfffffffb, 0xfffffffc,
		0xfffffffd, 0xfffffffe, 0xffffffff,
	};
	for (size_t i = 0; i < G_N_ELEMENTS(lens); i++) {
		/* prefix + 3 bytes of payload: every len above 3 is past the end */
		uint8_t enc[7] = { 0, 0, 0, 0, 'x', 'y', 'z' };
		uint8_t buf[16];
		struct wire_reader r;
		wire_store_u32(enc, lens[i]);

		getter_fn fns[] = { get_string, get_cstring, get_sub };
		for (size_t f = 0; f < G_N_ELEMENTS(fns); f++) {
			reader_at(&r, buf, enc, sizeof(enc));
			g_assert_cmpint(fns[f](&r), ==, WIRE_ESHORT);
			g_assert_cmpuint(r.pos, ==, 3);
		}
		/* cstring with a huge maxlen: still ESHORT (not ETOOLONG first
		 * when the length is in range), position unchanged */
		char *s = NULL;
		reader_at(&r, buf, enc, sizeof(enc));
		g_assert_cmpint(wire_get_cstring(&r, &s, SIZE_MAX), ==, WIRE_ESHORT);
		g_assert_null(s);
		g_assert_cmpuint(r.pos, ==, 3);
	}
}

static void test_string_zero_length(void)
{
	static const uint8_t enc[] = { 0, 0, 0, 0, 0, 0, 0, 0 };
	struct wire_reader r;
	const uint8_t *p = NULL;
	uint32_t n = 99;

	wire_reader_init(&r, enc, sizeof(enc));
	g_assert_cmpint(wire_get_string(&r, &p, &n), ==, WIRE_OK);
	g_assert_cmpuint(n, ==, 0);
	g_assert_true(p == enc + 4);
	g_assert_cmpuint(r.pos, ==, 4);

	char *s = NULL;
	g_assert_cmpint(wire_get_cstring(&r, &s, 0), ==, WIRE_OK);
	g_assert_nonnull(s);
	g_assert_cmpstr(s, ==, "");
	free(s);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);

	struct wire_reader sub;
	wire_reader_init(&r, enc, 4);
	g_assert_cmpint(wire_get_sub(&r, &sub), ==, WIRE_OK);
	g_assert_cmpuint(wire_remaining(&sub), ==, 0);
	uint8_t v;
	g_assert_cmpint(wire_get_u8(&sub, &v), ==, WIRE_ESHORT);
}

static void test_string_contents(void)
{
	static const uint8_t enc[] = { 0, 0, 0, 5, 'h', '\0', 'l', 'l', 'o', 0, 0, 0, 1, '!' };
	struct wire_reader r;
	const uint8_t *p;
	uint32_t n;
	wire_reader_init(&r, enc, sizeof(enc));
	/* Binary strings may contain NUL. */
	g_assert_cmpint(wire_get_string(&r, &p, &n), ==, WIRE_OK);
	g_assert_cmpuint(n, ==, 5);
	g_assert_cmpmem(p, n, "h\0llo", 5);
	g_assert_cmpint(wire_get_string(&r, &p, &n), ==, WIRE_OK);
	g_assert_cmpmem(p, n, "!", 1);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);
}

static void test_cstring_nul(void)
{
	/* NUL at the start, middle and end of the string. */
	static const uint8_t encs[][9] = {
		{ 0, 0, 0, 5, '\0', 'b', 'c', 'd', 'e' },
		{ 0, 0, 0, 5, 'a', 'b', '\0', 'd', 'e' },
		{ 0, 0, 0, 5, 'a', 'b', 'c', 'd', '\0' },
		{ 0, 0, 0, 1, '\0', 'X', 'X', 'X', 'X' },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(encs); i++) {
		uint8_t buf[16];
		struct wire_reader r;
		char *s = NULL;
		reader_at(&r, buf, encs[i], sizeof(encs[i]));
		g_assert_cmpint(wire_get_cstring(&r, &s, 100), ==, WIRE_EFORMAT);
		g_assert_null(s);
		g_assert_cmpuint(r.pos, ==, 3);
		/* The same bytes as a binary string are fine. */
		g_assert_cmpint(get_string(&r), ==, WIRE_OK);
	}
}

static void test_cstring_maxlen(void)
{
	static const uint8_t enc[] = { 0, 0, 0, 4, 'a', 'b', 'c', 'd' };
	uint8_t buf[16];
	struct wire_reader r;
	char *s = NULL;

	for (size_t max = 0; max < 4; max++) {
		reader_at(&r, buf, enc, sizeof(enc));
		g_assert_cmpint(wire_get_cstring(&r, &s, max), ==, WIRE_ETOOLONG);
		g_assert_null(s);
		g_assert_cmpuint(r.pos, ==, 3);
	}
	/* Exactly maxlen is allowed. */
	reader_at(&r, buf, enc, sizeof(enc));
	g_assert_cmpint(wire_get_cstring(&r, &s, 4), ==, WIRE_OK);
	g_assert_cmpstr(s, ==, "abcd");
	g_assert_cmpuint(wire_remaining(&r), ==, 0);
	free(s);

	/* Over maxlen and containing NUL: the length is checked first; either
	 * way it fails and leaves the position alone. */
	static const uint8_t enc2[] = { 0, 0, 0, 4, 'a', 0, 'c', 'd' };
	reader_at(&r, buf, enc2, sizeof(enc2));
	s = NULL;
	g_assert_cmpint(wire_get_cstring(&r, &s, 2), <, 0);
	g_assert_null(s);
	g_assert_cmpuint(r.pos, ==, 3);
}

static void test_sub_reader(void)
{
	/* string{ u32 7, string "ab", u8 9 } then u32 0x11223344 */
	static const uint8_t enc[] = {
		0, 0, 0, 11,
		0, 0, 0, 7,
		0, 0, 0, 2, 'a', 'b',
		9,
		0x11, 0x22, 0x33, 0x44,
	};
	struct wire_reader r, sub;
	uint32_t u32;
	uint8_t u8;
	const uint8_t *p;
	uint32_t n;

	wire_reader_init(&r, enc, sizeof(enc));
	g_assert_cmpint(wire_get_sub(&r, &sub), ==, WIRE_OK);
	g_assert_cmpuint(r.pos, ==, 15);
	g_assert_cmpuint(wire_remaining(&sub), ==, 11);
	g_assert_cmpuint(sub.pos, ==, 0);

	g_assert_cmpint(wire_get_u32(&sub, &u32), ==, WIRE_OK);
	g_assert_cmpuint(u32, ==, 7);
	g_assert_cmpint(wire_get_string(&sub, &p, &n), ==, WIRE_OK);
	g_assert_cmpmem(p, n, "ab", 2);
	g_assert_cmpint(wire_get_u8(&sub, &u8), ==, WIRE_OK);
	g_assert_cmpuint(u8, ==, 9);
	/* The sub-reader ends at its string's end, not the parent's. */
	g_assert_cmpuint(wire_remaining(&sub), ==, 0);
	g_assert_cmpint(wire_get_u8(&sub, &u8), ==, WIRE_ESHORT);
	g_assert_cmpint(wire_get_u32(&sub, &u32), ==, WIRE_ESHORT);
	g_assert_cmpint(wire_skip(&sub, 1), ==, WIRE_ESHORT);

	/* The parent goes on after the sub-string. */
	g_assert_cmpint(wire_get_u32(&r, &u32), ==, WIRE_OK);
	g_assert_cmpuint(u32, ==, 0x11223344);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);

	/* An inner string whose length points past the sub-reader's end but
	 * inside the parent is refused. */
	static const uint8_t enc2[] = {
		0, 0, 0, 6,
		0, 0, 0, 6, 'a', 'b',
		'c', 'd', 'e', 'f',
	};
	wire_reader_init(&r, enc2, sizeof(enc2));
	g_assert_cmpint(wire_get_sub(&r, &sub), ==, WIRE_OK);
	g_assert_cmpint(wire_get_string(&sub, &p, &n), ==, WIRE_ESHORT);
	g_assert_cmpuint(sub.pos, ==, 0);

	/* A sub-reader of a sub-reader. */
	static const uint8_t enc3[] = { 0, 0, 0, 6, 0, 0, 0, 2, 'x', 'y', 'z' };
	struct wire_reader subsub;
	wire_reader_init(&r, enc3, sizeof(enc3));
	g_assert_cmpint(wire_get_sub(&r, &sub), ==, WIRE_OK);
	g_assert_cmpint(wire_get_sub(&sub, &subsub), ==, WIRE_OK);
	g_assert_cmpuint(wire_remaining(&subsub), ==, 2);
	g_assert_cmpint(wire_get_u8(&subsub, &u8), ==, WIRE_OK);
	g_assert_cmpuint(u8, ==, 'x');
	g_assert_cmpuint(wire_remaining(&sub), ==, 0);
	g_assert_cmpuint(wire_remaining(&r), ==, 1);
}

/* ------------------------------------------------------- wire_peek_packet */

static void test_peek_packet(void)
{
	uint8_t buf[32] = { 0 };
	uint32_t len;

	/* Partial length prefix: 0..3 bytes. */
	wire_store_u32(buf, 5);
	for (size_t avail = 0; avail < 4; avail++) {
		len = 777;
		g_assert_cmpint(wire_peek_packet(buf, avail, 100, &len), ==, 0);
		g_assert_cmpuint(len, ==, 777);
	}
	/* Partial body. */
	for (size_t avail = 4; avail < 9; avail++)
		g_assert_cmpint(wire_peek_packet(buf, avail, 100, &len), ==, 0);
	/* Whole packet, exactly and with more behind it. */
	len = 0;
	g_assert_cmpint(wire_peek_packet(buf, 9, 100, &len), ==, 1);
	g_assert_cmpuint(len, ==, 5);
	len = 0;
	g_assert_cmpint(wire_peek_packet(buf, sizeof(buf), 100, &len), ==, 1);
	g_assert_cmpuint(len, ==, 5);

	/* Zero-length body. */
	wire_store_u32(buf, 0);
	len = 777;
	g_assert_cmpint(wire_peek_packet(buf, 4, 100, &len), ==, 1);
	g_assert_cmpuint(len, ==, 0);

	/* Exactly max is allowed; max + 1 is refused as soon as the prefix is
	 * there, without waiting for the body. */
	wire_store_u32(buf, 256 * 1024);
	g_assert_cmpint(wire_peek_packet(buf, 4, 256 * 1024, &len), ==, 0);
	wire_store_u32(buf, 256 * 1024 + 1);
	g_assert_cmpint(wire_peek_packet(buf, 3, 256 * 1024, &len), ==, 0);
	g_assert_cmpint(wire_peek_packet(buf, 4, 256 * 1024, &len), ==, WIRE_ETOOLONG);
	g_assert_cmpint(wire_peek_packet(buf, sizeof(buf), 256 * 1024, &len), ==, WIRE_ETOOLONG);
	wire_store_u32(buf, 0xffffffff);
	g_assert_cmpint(wire_peek_packet(buf, 4, 256 * 1024, &len), ==, WIRE_ETOOLONG);
	g_assert_cmpint(wire_peek_packet(buf, 4, 0xfffffffe, &len), ==, WIRE_ETOOLONG);
	/* A body of 0xffffffff under a max that allows it: needs more bytes. */
	g_assert_cmpint(wire_peek_packet(buf, sizeof(buf), SIZE_MAX, &len), ==, 0);
	g_assert_cmpuint(len, ==, 0xffffffff);
}

/* -------------------------------------------------------------- wire_buf */

static void test_buf_init_free(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 1000);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	g_assert_cmpuint(b.max, ==, 1000);
	g_assert_null(b.data);
	wire_buf_free(&b);
	g_assert_null(b.data);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	/* free twice is harmless; a freed buffer is usable again (no limit) */
	wire_buf_free(&b);
	g_assert_cmpint(wire_put_u32(&b, 1), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&b), ==, 4);
	wire_buf_free(&b);
}

static void test_buf_mem(void)
{
	/* a buffer started on given memory writes into it without growing,
	 * grows past it, and hands it back */
	struct wire_buf b;
	uint8_t *mem = malloc(64);
	g_assert_nonnull(mem);
	wire_buf_init_mem(&b, mem, 64, 0);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	g_assert_cmpint(wire_put_u32(&b, 7), ==, WIRE_OK);
	g_assert_true(wire_buf_ptr(&b) == mem);
	uint8_t big[100] = { 0 };
	g_assert_cmpint(wire_put_bytes(&b, big, sizeof(big)), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&b), ==, 104);
	g_assert_cmpuint(wire_load_u32(wire_buf_ptr(&b)), ==, 7);
	size_t cap = 0;
	uint8_t *p = wire_buf_steal(&b, &cap);
	g_assert_nonnull(p);
	g_assert_cmpuint(cap, >=, 104);
	g_assert_null(b.data);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	/* stealing from an empty buffer gives nothing */
	g_assert_null(wire_buf_steal(&b, &cap));
	g_assert_cmpuint(cap, ==, 0);
	/* a limit still holds on given memory */
	wire_buf_init_mem(&b, p, 104, 8);
	g_assert_cmpint(wire_put_u64(&b, 1), ==, WIRE_OK);
	g_assert_cmpint(wire_put_u8(&b, 1), !=, WIRE_OK);
	wire_buf_free(&b);
}

static void test_buf_growth(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);
	/* Fill byte by byte through several reallocations and check nothing
	 * written earlier is lost. */
	const size_t total = 100000;
	for (size_t i = 0; i < total; i++)
		g_assert_cmpint(wire_put_u8(&b, (uint8_t)(i * 7)), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&b), ==, total);
	g_assert_cmpuint(b.cap, >=, total);
	for (size_t i = 0; i < total; i++)
		g_assert_cmpuint(wire_buf_ptr(&b)[i], ==, (uint8_t)(i * 7));

	/* One big put into a fresh buffer. */
	wire_buf_free(&b);
	wire_buf_init(&b, 0);
	guint8 *big = g_malloc(300000);
	for (size_t i = 0; i < 300000; i++)
		big[i] = (guint8)(i ^ (i >> 8));
	g_assert_cmpint(wire_put_bytes(&b, big, 300000), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&b), ==, 300000);
	g_assert_cmpmem(wire_buf_ptr(&b), 300000, big, 300000);
	g_free(big);
	wire_buf_free(&b);
}

static void test_buf_max(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 10);
	g_assert_cmpint(wire_put_u64(&b, 1), ==, WIRE_OK);
	/* 8 + 4 > 10: refused, nothing written */
	g_assert_cmpint(wire_put_u32(&b, 2), ==, WIRE_ENOMEM);
	g_assert_cmpuint(wire_buf_len(&b), ==, 8);
	g_assert_cmpint(wire_put_string(&b, "", 0), ==, WIRE_ENOMEM);
	g_assert_cmpint(wire_put_bytes(&b, "abc", 3), ==, WIRE_ENOMEM);
	g_assert_cmpuint(wire_buf_len(&b), ==, 8);
	g_assert_null(wire_buf_reserve(&b, 3));
	/* Exactly up to the limit is fine. */
	g_assert_cmpint(wire_put_u8(&b, 3), ==, WIRE_OK);
	g_assert_cmpint(wire_put_u8(&b, 4), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&b), ==, 10);
	g_assert_cmpint(wire_put_u8(&b, 5), ==, WIRE_ENOMEM);
	g_assert_nonnull(wire_buf_reserve(&b, 0));

	/* The limit is on unconsumed bytes: consuming makes room again. */
	wire_buf_consume(&b, 4);
	g_assert_cmpint(wire_put_u32(&b, 0xabcdef01), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&b), ==, 10);
	static const uint8_t want[] = { 0, 0, 0, 1, 3, 4, 0xab, 0xcd, 0xef, 0x01 };
	g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), want, sizeof(want));

	/* Packet begin past the limit fails cleanly. */
	size_t mark = 99;
	g_assert_cmpint(wire_packet_begin(&b, 7, &mark), ==, WIRE_ENOMEM);
	g_assert_cmpuint(wire_buf_len(&b), ==, 10);
	wire_buf_free(&b);

	/* Absurd sizes are refused without trying to allocate. */
	wire_buf_init(&b, 0);
	g_assert_null(wire_buf_reserve(&b, SIZE_MAX));
	g_assert_null(wire_buf_reserve(&b, SIZE_MAX / 2 + 1));
	g_assert_cmpint(wire_put_bytes(&b, "", SIZE_MAX), ==, WIRE_ENOMEM);
	g_assert_cmpint(wire_put_string(&b, "", (size_t)UINT32_MAX + 1), ==, WIRE_ETOOLONG);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	wire_buf_free(&b);

	/* A large limit: a 256 KiB packet fits, one more byte does not. */
	wire_buf_init(&b, 256 * 1024 + 4);
	guint8 *body = g_malloc0(256 * 1024);
	g_assert_cmpint(wire_put_string(&b, body, 256 * 1024), ==, WIRE_OK);
	g_assert_cmpint(wire_put_u8(&b, 0), ==, WIRE_ENOMEM);
	g_free(body);
	wire_buf_free(&b);
}

/* Zero-length writes must work on a fresh buffer too. */
static void test_buf_zero_length(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);
	g_assert_cmpint(wire_put_bytes(&b, "", 0), ==, WIRE_OK);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	g_assert_nonnull(wire_buf_reserve(&b, 0));
	wire_buf_commit(&b, 0);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	g_assert_cmpint(wire_put_string(&b, NULL, 0), ==, WIRE_OK);
	g_assert_cmpint(wire_put_cstring(&b, ""), ==, WIRE_OK);
	static const uint8_t want[8] = { 0 };
	g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), want, sizeof(want));
	wire_buf_free(&b);
}

static void test_buf_consume(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);
	g_assert_cmpint(wire_put_bytes(&b, "0123456789", 10), ==, WIRE_OK);
	wire_buf_consume(&b, 0);
	g_assert_cmpuint(wire_buf_len(&b), ==, 10);
	wire_buf_consume(&b, 3);
	g_assert_cmpuint(wire_buf_len(&b), ==, 7);
	g_assert_cmpmem(wire_buf_ptr(&b), 7, "3456789", 7);
	g_assert_cmpuint(b.start, ==, 3);
	/* Consuming more than there is consumes all and rewinds. */
	wire_buf_consume(&b, 1000);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	g_assert_cmpuint(b.start, ==, 0);
	g_assert_cmpuint(b.end, ==, 0);
	wire_buf_consume(&b, 1);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);

	/* Consuming exactly everything rewinds as well. */
	g_assert_cmpint(wire_put_bytes(&b, "abc", 3), ==, WIRE_OK);
	g_assert_cmpmem(wire_buf_ptr(&b), 3, "abc", 3);
	wire_buf_consume(&b, 3);
	g_assert_cmpuint(b.start, ==, 0);
	g_assert_cmpuint(b.end, ==, 0);

	/* Reset drops everything but keeps the memory. */
	g_assert_cmpint(wire_put_bytes(&b, "abc", 3), ==, WIRE_OK);
	wire_buf_consume(&b, 1);
	size_t cap = b.cap;
	wire_buf_reset(&b);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	g_assert_cmpuint(b.start, ==, 0);
	g_assert_cmpuint(b.cap, ==, cap);
	wire_buf_free(&b);
}

static void test_buf_reserve_commit(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);
	g_assert_cmpint(wire_put_bytes(&b, "AB", 2), ==, WIRE_OK);

	uint8_t *p = wire_buf_reserve(&b, 100);
	g_assert_nonnull(p);
	g_assert_true(p == wire_buf_ptr(&b) + 2);
	g_assert_cmpuint(wire_buf_len(&b), ==, 2); /* not counted yet */
	g_assert_cmpuint(b.cap - b.end, >=, 100);
	memcpy(p, "cdefg", 5);
	wire_buf_commit(&b, 3); /* only part of what was reserved */
	g_assert_cmpuint(wire_buf_len(&b), ==, 5);
	g_assert_cmpmem(wire_buf_ptr(&b), 5, "ABcde", 5);

	/* Reserve again: continues right after the committed bytes. */
	p = wire_buf_reserve(&b, 1);
	g_assert_true(p == wire_buf_ptr(&b) + 5);
	*p = 'Z';
	wire_buf_commit(&b, 1);
	g_assert_cmpmem(wire_buf_ptr(&b), 6, "ABcdeZ", 6);

	/* Commit of zero is a no-op. */
	wire_buf_commit(&b, 0);
	g_assert_cmpuint(wire_buf_len(&b), ==, 6);

	/* A reserve that needs growth keeps the bytes already there. */
	size_t cap = b.cap;
	p = wire_buf_reserve(&b, cap * 3);
	g_assert_nonnull(p);
	g_assert_cmpuint(b.cap - b.end, >=, cap * 3);
	g_assert_cmpmem(wire_buf_ptr(&b), 6, "ABcdeZ", 6);
	memset(p, 'q', cap * 3);
	wire_buf_commit(&b, cap * 3);
	g_assert_cmpuint(wire_buf_len(&b), ==, 6 + cap * 3);
	wire_buf_free(&b);
}

/* Committing more than was reserved is a programming error: abort. */
static void test_buf_commit_overflow(void)
{
	if (g_test_subprocess()) {
		struct wire_buf b;
		wire_buf_init(&b, 0);
		g_assert_cmpint(wire_put_bytes(&b, "abc", 3), ==, WIRE_OK);
		g_assert_nonnull(wire_buf_reserve(&b, 10));
		wire_buf_commit(&b, b.cap - b.end + 1); /* one past the end */
		return;
	}
	g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
	g_test_trap_assert_failed();
}

static void test_buf_truncate_overflow(void)
{
	if (g_test_subprocess()) {
		struct wire_buf b;
		wire_buf_init(&b, 0);
		g_assert_cmpint(wire_put_u32(&b, 1), ==, WIRE_OK);
		wire_buf_truncate(&b, 5);
		return;
	}
	g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
	g_test_trap_assert_failed();
}

static void test_buf_poke_overflow(void)
{
	if (g_test_subprocess()) {
		struct wire_buf b;
		wire_buf_init(&b, 0);
		g_assert_cmpint(wire_put_u32(&b, 1), ==, WIRE_OK);
		g_assert_cmpint(wire_put_u8(&b, 1), ==, WIRE_OK);
		wire_poke_u32(&b, 2, 0); /* bytes 2..5 of a 5-byte buffer */
		return;
	}
	g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
	g_test_trap_assert_failed();
}

/* The unconsumed bytes slide to the front when the consumed prefix is the
 * bigger part and that makes enough room; otherwise the buffer grows. */
static void test_buf_slide(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);
	/* Fill the first allocation exactly. */
	uint8_t *p = wire_buf_reserve(&b, 1);
	g_assert_nonnull(p);
	size_t cap = b.cap;
	g_assert_cmpuint(cap, >=, 64);
	for (size_t i = 0; i < cap; i++)
		g_assert_cmpint(wire_put_u8(&b, (uint8_t)i), ==, WIRE_OK);
	g_assert_cmpuint(b.cap, ==, cap);

	/* Consume most of it, then ask for room that only a slide can give
	 * without growing. */
	size_t keep = 10;
	wire_buf_consume(&b, cap - keep);
	g_assert_cmpuint(b.start, ==, cap - keep);
	p = wire_buf_reserve(&b, 20);
	g_assert_nonnull(p);
	g_assert_cmpuint(b.cap, ==, cap); /* no growth */
	g_assert_cmpuint(b.start, ==, 0); /* slid */
	g_assert_cmpuint(wire_buf_len(&b), ==, keep);
	g_assert_true(p == b.data + keep);
	for (size_t i = 0; i < keep; i++)
		g_assert_cmpuint(wire_buf_ptr(&b)[i], ==, (uint8_t)(cap - keep + i));

	/* Now: the consumed prefix is the smaller part: grow rather than
	 * slide, and the data stays intact. */
	wire_buf_reset(&b);
	for (size_t i = 0; i < cap; i++)
		g_assert_cmpint(wire_put_u8(&b, (uint8_t)i), ==, WIRE_OK);
	wire_buf_consume(&b, 10);
	p = wire_buf_reserve(&b, 5);
	g_assert_nonnull(p);
	g_assert_cmpuint(b.cap, >, cap);
	g_assert_cmpuint(wire_buf_len(&b), ==, cap - 10);
	for (size_t i = 0; i < cap - 10; i++)
		g_assert_cmpuint(wire_buf_ptr(&b)[i], ==, (uint8_t)(10 + i));

	/* A reserve that fits in the tail neither slides nor grows. */
	wire_buf_free(&b);
	wire_buf_init(&b, 0);
	g_assert_cmpint(wire_put_bytes(&b, "abcdef", 6), ==, WIRE_OK);
	wire_buf_consume(&b, 4);
	cap = b.cap;
	p = wire_buf_reserve(&b, 8);
	g_assert_true(p == b.data + 6);
	g_assert_cmpuint(b.start, ==, 4);
	g_assert_cmpuint(b.cap, ==, cap);
	wire_buf_free(&b);
}

/* A stream of packets written and consumed in uneven pieces, many times
 * over the buffer's capacity: the bytes that come out are the bytes that
 * went in, in order. */
static void test_buf_stream(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 20000);
	GByteArray *expect = g_byte_array_new();
	GRand *rand = g_rand_new_with_seed(1234);
	size_t out = 0;
	uint32_t counter = 0;

	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)g_rand_int_range(rand, 0, 300);
		if (g_rand_boolean(rand)) {
			uint8_t *p = wire_buf_reserve(&b, n);
			if (!p) {
				g_assert_cmpuint(wire_buf_len(&b) + n, >, 20000);
				continue;
			}
			for (size_t i = 0; i < n; i++)
				p[i] = (uint8_t)(counter++ * 31);
			size_t fill = n ? (size_t)g_rand_int_range(rand, 0, (gint32)n + 1) : 0;
			/* only the first fill bytes count; rewind counter */
			counter -= (uint32_t)(n - fill);
			g_byte_array_append(expect, p, (guint)fill);
			wire_buf_commit(&b, fill);
		} else {
			if (n > wire_buf_len(&b))
				n = wire_buf_len(&b);
			g_assert_cmpmem(wire_buf_ptr(&b), n, expect->data + out, n);
			wire_buf_consume(&b, n);
			out += n;
		}
		g_assert_cmpuint(wire_buf_len(&b), ==, expect->len - out);
		g_assert_cmpuint(wire_buf_len(&b), <=, 20000);
	}
	g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), expect->data + out, expect->len - out);
	g_rand_free(rand);
	g_byte_array_unref(expect);
	wire_buf_free(&b);
}

static void test_buf_truncate(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);
	g_assert_cmpint(wire_put_bytes(&b, "abcdef", 6), ==, WIRE_OK);
	size_t m = wire_buf_mark(&b);
	g_assert_cmpuint(m, ==, 6);
	g_assert_cmpint(wire_put_bytes(&b, "ghij", 4), ==, WIRE_OK);
	wire_buf_truncate(&b, m);
	g_assert_cmpuint(wire_buf_len(&b), ==, 6);
	g_assert_cmpmem(wire_buf_ptr(&b), 6, "abcdef", 6);
	/* Truncate to the current length is a no-op, to 0 empties. */
	wire_buf_truncate(&b, 6);
	g_assert_cmpuint(wire_buf_len(&b), ==, 6);
	/* After a consume, truncate counts from the unconsumed front. */
	wire_buf_consume(&b, 2);
	wire_buf_truncate(&b, 3);
	g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), "cde", 3);
	wire_buf_truncate(&b, 0);
	g_assert_cmpuint(wire_buf_len(&b), ==, 0);
	/* Writing after a truncate overwrites the cut bytes. */
	g_assert_cmpint(wire_put_bytes(&b, "XY", 2), ==, WIRE_OK);
	g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), "XY", 2);
	wire_buf_free(&b);
}

/* Marks are offsets from the first unconsumed byte: they stay valid when the
 * buffer grows (realloc moves it) and when a reserve slides the bytes down
 * after a consume. */
static void test_buf_marks(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);

	/* Growth: a mark taken in a small buffer, then lots written. */
	g_assert_cmpint(wire_put_bytes(&b, "head", 4), ==, WIRE_OK);
	size_t m = wire_buf_mark(&b);
	size_t cap0 = b.cap;
	for (int i = 0; i < 5000; i++)
		g_assert_cmpint(wire_put_u32(&b, (uint32_t)i), ==, WIRE_OK);
	g_assert_cmpuint(b.cap, >, cap0);
	wire_poke_u32(&b, m, 0xcafef00d);
	g_assert_cmpuint(wire_load_u32(wire_buf_ptr(&b) + m), ==, 0xcafef00d);
	wire_buf_truncate(&b, m);
	g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), "head", 4);
	wire_buf_free(&b);

	/* Slide: earlier output partly consumed (as by a partial write), a
	 * packet begun, then a body that makes the reserve slide the bytes
	 * down. The mark still finds the packet's length field. */
	wire_buf_init(&b, 0);
	g_assert_nonnull(wire_buf_reserve(&b, 1));
	size_t cap = b.cap;
	guint8 *fill = g_malloc(cap);
	memset(fill, 'o', cap);
	g_assert_cmpint(wire_put_bytes(&b, fill, cap - 100), ==, WIRE_OK);
	wire_buf_consume(&b, cap - 150); /* 50 bytes of old output remain */
	size_t pm;
	g_assert_cmpint(wire_packet_begin(&b, 42, &pm), ==, WIRE_OK);
	g_assert_cmpuint(pm, ==, 50);
	size_t start_before = b.start;
	g_assert_cmpint(wire_put_bytes(&b, fill, 200), ==, WIRE_OK);
	g_assert_cmpuint(b.start, <, start_before); /* it did slide */
	g_assert_cmpuint(b.cap, ==, cap);           /* without growing */
	g_assert_cmpint(wire_packet_end(&b, pm), ==, WIRE_OK);
	g_assert_cmpuint(wire_load_u32(wire_buf_ptr(&b) + pm), ==, 201);
	g_assert_cmpuint(wire_buf_ptr(&b)[pm + 4], ==, 42);
	for (size_t i = 0; i < 50; i++)
		g_assert_cmpuint(wire_buf_ptr(&b)[i], ==, 'o');

	/* Consume: output in front of a mark being consumed moves the mark's
	 * byte towards the front by exactly what was consumed (marks count
	 * from the unconsumed front). A mark taken after the consume is
	 * exact. */
	wire_buf_reset(&b);
	g_assert_cmpint(wire_put_bytes(&b, "0123456789", 10), ==, WIRE_OK);
	m = wire_buf_mark(&b);
	g_assert_cmpint(wire_put_bytes(&b, "abcd", 4), ==, WIRE_OK);
	wire_buf_consume(&b, 4);
	g_assert_cmpuint(wire_buf_ptr(&b)[m - 4], ==, 'a');
	m = wire_buf_mark(&b);
	g_assert_cmpint(wire_put_bytes(&b, fill, cap), ==, WIRE_OK); /* grows */
	wire_buf_truncate(&b, m);
	g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), "456789abcd", 10);

	/* Consume everything (start/end rewind to 0): a mark of 0 taken
	 * afterwards works. */
	wire_buf_consume(&b, wire_buf_len(&b));
	g_assert_cmpint(wire_packet_begin(&b, 1, &pm), ==, WIRE_OK);
	g_assert_cmpuint(pm, ==, 0);
	g_assert_cmpint(wire_put_u32(&b, 3), ==, WIRE_OK);
	g_assert_cmpint(wire_packet_end(&b, pm), ==, WIRE_OK);
	static const uint8_t want[] = { 0, 0, 0, 5, 1, 0, 0, 0, 3 };
	g_assert_cmpmem(wire_buf_ptr(&b), wire_buf_len(&b), want, sizeof(want));

	g_free(fill);
	wire_buf_free(&b);
}

static void test_packet(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);
	size_t m1, m2, m3;

	/* Empty body: length 1 (just the type). */
	g_assert_cmpint(wire_packet_begin(&b, 101, &m1), ==, WIRE_OK);
	g_assert_cmpuint(m1, ==, 0);
	g_assert_cmpuint(wire_buf_len(&b), ==, 5);
	g_assert_cmpint(wire_packet_end(&b, m1), ==, WIRE_OK);

	/* A packet with an id and a string. */
	g_assert_cmpint(wire_packet_begin(&b, 104, &m2), ==, WIRE_OK);
	g_assert_cmpuint(m2, ==, 5);
	g_assert_cmpint(wire_put_u32(&b, 77), ==, WIRE_OK);
	g_assert_cmpint(wire_put_cstring(&b, "name"), ==, WIRE_OK);
	g_assert_cmpint(wire_packet_end(&b, m2), ==, WIRE_OK);

	/* A large one. */
	g_assert_cmpint(wire_packet_begin(&b, 103, &m3), ==, WIRE_OK);
	guint8 *big = g_malloc0(100000);
	g_assert_cmpint(wire_put_string(&b, big, 100000), ==, WIRE_OK);
	g_free(big);
	g_assert_cmpint(wire_packet_end(&b, m3), ==, WIRE_OK);

	/* Parse them back with wire_peek_packet and the reader. */
	const uint8_t *p = wire_buf_ptr(&b);
	size_t avail = wire_buf_len(&b);
	uint32_t len;
	uint8_t type;
	struct wire_reader r;

	g_assert_cmpint(wire_peek_packet(p, avail, 256 * 1024, &len), ==, 1);
	g_assert_cmpuint(len, ==, 1);
	g_assert_cmpuint(p[4], ==, 101);
	p += 4 + len;
	avail -= 4 + len;

	g_assert_cmpint(wire_peek_packet(p, avail, 256 * 1024, &len), ==, 1);
	g_assert_cmpuint(len, ==, 1 + 4 + 4 + 4);
	wire_reader_init(&r, p + 4, len);
	uint32_t id;
	char *s;
	g_assert_cmpint(wire_get_u8(&r, &type), ==, WIRE_OK);
	g_assert_cmpuint(type, ==, 104);
	g_assert_cmpint(wire_get_u32(&r, &id), ==, WIRE_OK);
	g_assert_cmpuint(id, ==, 77);
	g_assert_cmpint(wire_get_cstring(&r, &s, 100), ==, WIRE_OK);
	g_assert_cmpstr(s, ==, "name");
	free(s);
	g_assert_cmpuint(wire_remaining(&r), ==, 0);
	p += 4 + len;
	avail -= 4 + len;

	g_assert_cmpint(wire_peek_packet(p, avail, 256 * 1024, &len), ==, 1);
	g_assert_cmpuint(len, ==, 1 + 4 + 100000);
	g_assert_cmpuint(avail, ==, 4 + len);
	/* A packet one byte short of complete. */
	g_assert_cmpint(wire_peek_packet(p, avail - 1, 256 * 1024, &len), ==, 0);

	/* A packet abandoned with truncate leaves no trace. */
	size_t before = wire_buf_len(&b);
	g_assert_cmpint(wire_packet_begin(&b, 9, &m1), ==, WIRE_OK);
	g_assert_cmpint(wire_put_u64(&b, 1), ==, WIRE_OK);
	wire_buf_truncate(&b, m1);
	g_assert_cmpuint(wire_buf_len(&b), ==, before);
	wire_buf_free(&b);
}

static void test_poke(void)
{
	struct wire_buf b;
	wire_buf_init(&b, 0);
	g_assert_cmpint(wire_put_bytes(&b, "xxxxxxxx", 8), ==, WIRE_OK);
	wire_poke_u32(&b, 4, 0x01020304); /* the last 4 bytes: allowed */
	wire_poke_u32(&b, 0, 0xa0b0c0d0);
	static const uint8_t want[] = { 0xa0, 0xb0, 0xc0, 0xd0, 1, 2, 3, 4 };
	g_assert_cmpmem(wire_buf_ptr(&b), 8, want, 8);
	/* After a consume, offsets count from the unconsumed front. */
	wire_buf_consume(&b, 2);
	wire_poke_u32(&b, 0, 0x11223344);
	static const uint8_t want2[] = { 0x11, 0x22, 0x33, 0x44, 3, 4 };
	g_assert_cmpmem(wire_buf_ptr(&b), 6, want2, 6);
	wire_buf_free(&b);
}

/* ------------------------------------------------------------ round trips */

static void test_roundtrip(void)
{
	static const uint8_t u8s[] = { 0, 1, 0x7f, 0x80, 0xff };
	static const uint32_t u32s[] = { 0, 1, 0xff, 0x100, 0x7fffffff, 0x80000000, 0xdeadbeef, UINT32_MAX };
	static const uint64_t u64s[] = {
		0, 1, 0xffffffffull, 0x100000000ull, 0x7fffffffffffffffull,
		0x8000000000000000ull, 0x0123456789abcdefull, UINT64_MAX,
	};
	static const char *const strs[] = { "", "a", "hello world", "/tmp/x y/ü", "%d%u" };
	struct wire_buf b;
	wire_buf_init(&b, 0);

	for (size_t i = 0; i < G_N_ELEMENTS(u8s); i++)
		g_assert_cmpint(wire_put_u8(&b, u8s[i]), ==, WIRE_OK);
	for (size_t i = 0; i < G_N_ELEMENTS(u32s); i++)
		g_assert_cmpint(wire_put_u32(&b, u32s[i]), ==, WIRE_OK);
	for (size_t i = 0; i < G_N_ELEMENTS(u64s); i++)
		g_assert_cmpint(wire_put_u64(&b, u64s[i]), ==, WIRE_OK);
	for (size_t i = 0; i < G_N_ELEMENTS(strs); i++)
		g_assert_cmpint(wire_put_cstring(&b, strs[i]), ==, WIRE_OK);
	/* binary string with NULs and every byte value */
	uint8_t all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	g_assert_cmpint(wire_put_string(&b, all, sizeof(all)), ==, WIRE_OK);

	size_t expect_len = G_N_ELEMENTS(u8s) + 4 * G_N_ELEMENTS(u32s) + 8 * G_N_ELEMENTS(u64s) + 4 + 256;
	for (size_t i = 0; i < G_N_ELEMENTS(strs); i++)
		expect_len += 4 + strlen(strs[i]);
	g_assert_cmpuint(wire_buf_len(&b), ==, expect_len);

	/* Big-endian on the wire. */
	g_assert_cmpuint(wire_buf_ptr(&b)[G_N_ELEMENTS(u8s) + 4 * 6], ==, 0xde);

	struct wire_reader r;
	wire_reader_init(&r, wire_buf_ptr(&b), wire_buf_len(&b));
	for (size_t i = 0; i < G_N_ELEMENTS(u8s); i++) {
		uint8_t v;
		g_assert_cmpint(wire_get_u8(&r, &v), ==, WIRE_OK);
		g_assert_cmpuint(v, ==, u8s[i]);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(u32s); i++) {
		uint32_t v;
		g_assert_cmpint(wire_get_u32(&r, &v), ==, WIRE_OK);
		g_assert_cmpuint(v, ==, u32s[i]);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(u64s); i++) {
		uint64_t v;
		g_assert_cmpint(wire_get_u64(&r, &v), ==, WIRE_OK);
		g_assert_cmpuint(v, ==, u64s[i]);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(strs); i++) {
		char *s;
		g_assert_cmpint(wire_get_cstring(&r, &s, 4096), ==, WIRE_OK);
		g_assert_cmpstr(s, ==, strs[i]);
		free(s);
	}
	const uint8_t *p;
	uint32_t n;
	g_assert_cmpint(wire_get_string(&r, &p, &n), ==, WIRE_OK);
	g_assert_cmpmem(p, n, all, sizeof(all));
	g_assert_cmpuint(wire_remaining(&r), ==, 0);

	/* wire_store_u32 / wire_load_u32 */
	uint8_t q[4];
	for (size_t i = 0; i < G_N_ELEMENTS(u32s); i++) {
		wire_store_u32(q, u32s[i]);
		g_assert_cmpuint(wire_load_u32(q), ==, u32s[i]);
	}
	wire_store_u32(q, 0x01020304);
	g_assert_cmpuint(q[0], ==, 1);
	g_assert_cmpuint(q[3], ==, 4);
	wire_buf_free(&b);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);

	g_test_add_func("/wire/strerror", test_strerror);
	g_test_add_func("/wire/buf/mem", test_buf_mem);
	g_test_add_func("/wire/reader/init", test_reader_init);
	g_test_add_func("/wire/reader/lengths", test_getters_lengths);
	g_test_add_func("/wire/reader/values", test_get_values);
	g_test_add_func("/wire/reader/skip", test_skip);
	g_test_add_func("/wire/reader/string-past-end", test_string_past_end);
	g_test_add_func("/wire/reader/string-zero-length", test_string_zero_length);
	g_test_add_func("/wire/reader/string-contents", test_string_contents);
	g_test_add_func("/wire/reader/cstring-nul", test_cstring_nul);
	g_test_add_func("/wire/reader/cstring-maxlen", test_cstring_maxlen);
	g_test_add_func("/wire/reader/sub", test_sub_reader);
	g_test_add_func("/wire/peek-packet", test_peek_packet);
	g_test_add_func("/wire/buf/init-free", test_buf_init_free);
	g_test_add_func("/wire/buf/growth", test_buf_growth);
	g_test_add_func("/wire/buf/max", test_buf_max);
	g_test_add_func("/wire/buf/zero-length", test_buf_zero_length);
	g_test_add_func("/wire/buf/consume", test_buf_consume);
	g_test_add_func("/wire/buf/reserve-commit", test_buf_reserve_commit);
	g_test_add_func("/wire/buf/commit-overflow", test_buf_commit_overflow);
	g_test_add_func("/wire/buf/truncate-overflow", test_buf_truncate_overflow);
	g_test_add_func("/wire/buf/poke-overflow", test_buf_poke_overflow);
	g_test_add_func("/wire/buf/slide", test_buf_slide);
	g_test_add_func("/wire/buf/stream", test_buf_stream);
	g_test_add_func("/wire/buf/truncate", test_buf_truncate);
	g_test_add_func("/wire/buf/marks", test_buf_marks);
	g_test_add_func("/wire/buf/poke", test_poke);
	g_test_add_func("/wire/packet", test_packet);
	g_test_add_func("/wire/roundtrip", test_roundtrip);

	return g_test_run();
}
