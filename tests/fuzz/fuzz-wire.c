/*
 * libFuzzer target for common/wire.c.
 *
 * The input is a little program followed by the bytes it runs over:
 *
 *   byte 0        bits 0-5: number of opcodes n (0..63)
 *                 bits 6-7: size limit of the writer queue (none, 64, 300, 5000)
 *   bytes 1..n    opcodes: low nibble = operation, high nibble = argument
 *   the rest      the payload, read through a struct wire_reader
 *
 * The payload ends where libFuzzer's buffer ends, so AddressSanitizer reports
 * any read past its end. Reader operations (wire_get_*, sub-readers, skip,
 * peek) are checked against a plain re-decoding of the bytes; everything read
 * from the outermost reader is written back with wire_put_* and must equal
 * the bytes consumed. Writer operations run a second wire_buf (put, consume,
 * packet begin/end, truncate, reset) against a simple model of its contents.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#include "fuzz-common.h"

static uint32_t load32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int valid_err(int rc)
{
	return rc == WIRE_OK || rc == WIRE_ESHORT || rc == WIRE_ETOOLONG ||
	       rc == WIRE_EFORMAT || rc == WIRE_ENOMEM;
}

/* Touch every byte so AddressSanitizer checks the whole range. */
static volatile uint8_t sink;
static void touch(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc ^= p[i];
	sink = acc;
}

static const size_t cstring_max[16] = {
	0, 1, 2, 3, 4, 7, 8, 16, 63, 64, 255, 256, 1024, 65536, 1u << 30, SIZE_MAX,
};
static const size_t peek_max[16] = {
	0, 1, 4, 5, 8, 16, 64, 255, 256, 1000, 4096, 65535, 262144, 1u << 30, UINT32_MAX, SIZE_MAX,
};
static const size_t queue_max[4] = { 0, 64, 300, 5000 };

/* The model of the writer queue: its unconsumed bytes. */
struct model {
	uint8_t *data;
	size_t len, cap;
};

static void model_put(struct model *m, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	if (m->len + n > m->cap) {
		m->cap = (m->len + n) * 2 + 16;
		m->data = realloc(m->data, m->cap);
		CHECK(m->data != NULL);
	}
	memcpy(m->data + m->len, p, n);
	m->len += n;
}

static void check_queue(const struct wire_buf *q, const struct model *m)
{
	CHECK(q->start <= q->end);
	CHECK(q->end <= q->cap);
	CHECK(wire_buf_len(q) == m->len);
	if (q->max)
		CHECK(m->len <= q->max);
	if (m->len)
		CHECK(memcmp(wire_buf_ptr(q), m->data, m->len) == 0);
}

#define MAX_DEPTH 8
#define MAX_MARKS 4


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t nops = data[0] & 0x3f;
	size_t qmax = queue_max[data[0] >> 6];
	if (nops > size - 1)
		nops = size - 1;
	const uint8_t *ops = data + 1;
	const uint8_t *payload = data + 1 + nops;
	size_t plen = size - 1 - nops;

	struct wire_reader stack[MAX_DEPTH];
	size_t depth = 1;
	wire_reader_init(&stack[0], payload, plen);
	CHECK(wire_remaining(&stack[0]) == plen);

	struct wire_buf echo, q;
	wire_buf_init(&echo, 0);
	wire_buf_init(&q, qmax);
	struct model m = { 0 };
	size_t marks[MAX_MARKS];
	size_t nmarks = 0;

	for (size_t i = 0; i < nops; i++) {
		unsigned op = ops[i] & 0x0f, arg = ops[i] >> 4;
		struct wire_reader *r = &stack[depth - 1];
		const size_t before = r->pos;
		const size_t rem = wire_remaining(r);
		const uint8_t *at = r->data + r->pos;
		const int top = depth == 1;
		int rc = WIRE_OK;

		switch (op) {
		case 0: { /* u8 */
			uint8_t v;
			rc = wire_get_u8(r, &v);
			CHECK((rc == WIRE_OK) == (rem >= 1));
			if (rc == WIRE_OK) {
				CHECK(v == at[0]);
				if (top)
					CHECK(wire_put_u8(&echo, v) == WIRE_OK);
			}
			break;
		}
		case 1: { /* u32 */
			uint32_t v;
			rc = wire_get_u32(r, &v);
			CHECK((rc == WIRE_OK) == (rem >= 4));
			if (rc == WIRE_OK) {
				CHECK(v == load32(at));
				if (top)
					CHECK(wire_put_u32(&echo, v) == WIRE_OK);
			}
			break;
		}
		case 2: { /* u64 */
			uint64_t v;
			rc = wire_get_u64(r, &v);
			CHECK((rc == WIRE_OK) == (rem >= 8));
			if (rc == WIRE_OK) {
				CHECK(v == (((uint64_t)load32(at) << 32) | load32(at + 4)));
				if (top)
					CHECK(wire_put_u64(&echo, v) == WIRE_OK);
			}
			break;
		}
		case 3: { /* string */
			const uint8_t *p = NULL;
			uint32_t n = 0;
			rc = wire_get_string(r, &p, &n);
			int fits = rem >= 4 && load32(at) <= rem - 4;
			CHECK((rc == WIRE_OK) == fits);
			if (rc == WIRE_OK) {
				CHECK(n == load32(at));
				CHECK(p == at + 4);
				CHECK(r->pos == before + 4 + (size_t)n);
				touch(p, n);
				if (top)
					CHECK(wire_put_string(&echo, p, n) == WIRE_OK);
			}
			break;
		}
		case 4: { /* cstring */
			char *s = NULL;
			size_t maxlen = cstring_max[arg];
			rc = wire_get_cstring(r, &s, maxlen);
			if (rc == WIRE_OK) {
				uint32_t n = load32(at);
				CHECK(rem >= 4 && n <= rem - 4 && n <= maxlen);
				CHECK(strlen(s) == n);
				CHECK(memcmp(s, at + 4, n) == 0);
				CHECK(r->pos == before + 4 + (size_t)n);
				if (top)
					CHECK(wire_put_cstring(&echo, s) == WIRE_OK);
				free(s);
			} else if (rem >= 4 && load32(at) <= rem - 4) {
				uint32_t n = load32(at);
				if (n > maxlen)
					CHECK(rc == WIRE_ETOOLONG);
				else
					CHECK(rc == WIRE_EFORMAT && memchr(at + 4, 0, n) != NULL);
			} else {
				CHECK(rc == WIRE_ESHORT);
			}
			break;
		}
		case 5: { /* enter a sub-reader */
			struct wire_reader sub;
			rc = wire_get_sub(r, &sub);
			CHECK((rc == WIRE_OK) == (rem >= 4 && load32(at) <= rem - 4));
			if (rc == WIRE_OK) {
				CHECK(sub.data == at + 4 || (sub.len == 0));
				CHECK(sub.len == load32(at));
				CHECK(sub.pos == 0);
				if (top)
					CHECK(wire_put_string(&echo, sub.data, sub.len) == WIRE_OK);
				if (depth < MAX_DEPTH)
					stack[depth++] = sub;
			}
			break;
		}
		case 6: /* leave a sub-reader */
			if (depth > 1)
				depth--;
			break;
		case 7: { /* skip */
			size_t n = arg == 15 ? SIZE_MAX : (size_t)arg * 3;
			rc = wire_skip(r, n);
			CHECK((rc == WIRE_OK) == (n <= rem));
			if (rc == WIRE_OK && top)
				CHECK(wire_put_bytes(&echo, at, n) == WIRE_OK);
			break;
		}
		case 8: { /* peek at a packet in what remains */
			uint32_t n = 0xdeadbeef;
			size_t max = peek_max[arg];
			rc = wire_peek_packet(at, rem, max, &n);
			if (rem < 4) {
				CHECK(rc == 0);
			} else if (load32(at) > max) {
				CHECK(rc == WIRE_ETOOLONG);
			} else {
				CHECK(n == load32(at));
				CHECK(rc == (rem - 4 >= n ? 1 : 0));
				if (rc == 1)
					touch(at, 4 + (size_t)n);
			}
			rc = WIRE_OK;
			break;
		}
		case 9: { /* writer: put bytes taken from the payload (or a pattern) */
			uint8_t tmp[15 * 37];
			size_t n = (size_t)arg * 37;
			for (size_t k = 0; k < n; k++)
				tmp[k] = plen ? payload[k % plen] : (uint8_t)k;
			int w = wire_put_bytes(&q, tmp, n);
			int room = !qmax || m.len + n <= qmax;
			CHECK((w == WIRE_OK) == room);
			if (w == WIRE_OK)
				model_put(&m, tmp, n);
			else
				CHECK(w == WIRE_ENOMEM);
			break;
		}
		case 10: { /* writer: put a string, u32 or u64 */
			uint8_t tmp[12];
			size_t n;
			int w;
			if (arg < 5) {
				n = 4 + arg;
				tmp[0] = tmp[1] = tmp[2] = 0;
				tmp[3] = (uint8_t)arg;
				memset(tmp + 4, 'a' + arg, arg);
				w = wire_put_string(&q, tmp + 4, arg);
			} else if (arg < 10) {
				n = 4;
				memset(tmp, arg, 4);
				w = wire_put_u32(&q, load32(tmp));
			} else {
				n = 8;
				memset(tmp, arg, 8);
				w = wire_put_u64(&q, ((uint64_t)load32(tmp) << 32) | load32(tmp + 4));
			}
			int room = !qmax || m.len + n <= qmax;
			CHECK((w == WIRE_OK) == room);
			if (w == WIRE_OK)
				model_put(&m, tmp, n);
			break;
		}
		case 11: { /* writer: consume */
			size_t n = arg == 15 ? SIZE_MAX : (size_t)arg * 29;
			wire_buf_consume(&q, n);
			if (n > m.len)
				n = m.len;
			if (n)
				memmove(m.data, m.data + n, m.len - n);
			m.len -= n;
			nmarks = 0; /* marks are offsets from the first unconsumed byte */
			break;
		}
		case 12: { /* writer: begin a packet */
			size_t mark = 0;
			int w = wire_packet_begin(&q, (uint8_t)(arg * 17), &mark);
			int room = !qmax || m.len + 5 <= qmax;
			CHECK((w == WIRE_OK) == room);
			if (w == WIRE_OK) {
				CHECK(mark == m.len);
				uint8_t hdr[5] = { 0, 0, 0, 0, (uint8_t)(arg * 17) };
				model_put(&m, hdr, 5);
				if (nmarks < MAX_MARKS)
					marks[nmarks++] = mark;
			}
			break;
		}
		case 13: /* writer: end the innermost packet */
			if (nmarks) {
				size_t mark = marks[--nmarks];
				CHECK(wire_packet_end(&q, mark) == WIRE_OK);
				uint32_t n = (uint32_t)(m.len - mark - 4);
				m.data[mark] = (uint8_t)(n >> 24);
				m.data[mark + 1] = (uint8_t)(n >> 16);
				m.data[mark + 2] = (uint8_t)(n >> 8);
				m.data[mark + 3] = (uint8_t)n;
			}
			break;
		case 14: /* writer: cut back to the innermost mark, or to a mark made now */
			if (nmarks) {
				size_t mark = marks[--nmarks];
				wire_buf_truncate(&q, mark);
				m.len = mark;
			} else {
				size_t mark = wire_buf_mark(&q);
				CHECK(mark == m.len);
				wire_buf_truncate(&q, mark);
			}
			break;
		case 15: /* writer: reset */
			wire_buf_reset(&q);
			m.len = 0;
			nmarks = 0;
			break;
		}

		CHECK(valid_err(rc));
		CHECK(wire_strerror(rc) != NULL);
		if (rc != WIRE_OK)
			CHECK(r->pos == before);
		CHECK(r->pos <= r->len);
		/* What the outer reader consumed, written back, is the same bytes. */
		CHECK(wire_buf_len(&echo) == stack[0].pos);
		if (stack[0].pos)
			CHECK(memcmp(wire_buf_ptr(&echo), payload, stack[0].pos) == 0);
		check_queue(&q, &m);
	}

	/* Drain the queue in pieces, as a writer loop would. */
	while (wire_buf_len(&q)) {
		size_t n = wire_buf_len(&q) > 100 ? 100 : wire_buf_len(&q);
		CHECK(memcmp(wire_buf_ptr(&q), m.data, n) == 0);
		wire_buf_consume(&q, n);
		memmove(m.data, m.data + n, m.len - n);
		m.len -= n;
		check_queue(&q, &m);
	}

	wire_buf_free(&echo);
	wire_buf_free(&q);
	free(m.data);
	return 0;
}
