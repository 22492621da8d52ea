#include "wire.h"

#include <stdlib.h>
#include <string.h>

const char *wire_strerror(int err)
{
	switch (err) {
	case WIRE_OK: return "success";
	case WIRE_ESHORT: return "message is truncated";
	case WIRE_ETOOLONG: return "length is too large";
	case WIRE_EFORMAT: return "invalid format";
	case WIRE_ENOMEM: return "out of memory or buffer full";
	}
	return "unknown error";
}

void wire_reader_init(struct wire_reader *r, const void *data, size_t len)
{
	r->data = data;
	r->len = data ? len : 0;
	r->pos = 0;
}

size_t wire_remaining(const struct wire_reader *r)
{
	return r->len - r->pos;
}

int wire_skip(struct wire_reader *r, size_t n)
{
	if (n > wire_remaining(r))
		return WIRE_ESHORT;
	r->pos += n;
	return WIRE_OK;
}

int wire_get_u8(struct wire_reader *r, uint8_t *v)
{
	if (wire_remaining(r) < 1)
		return WIRE_ESHORT;
	*v = r->data[r->pos++];
	return WIRE_OK;
}

int wire_get_u32(struct wire_reader *r, uint32_t *v)
{
	if (wire_remaining(r) < 4)
		return WIRE_ESHORT;
	*v = wire_load_u32(r->data + r->pos);
	r->pos += 4;
	return WIRE_OK;
}

int wire_get_u64(struct wire_reader *r, uint64_t *v)
{
	if (wire_remaining(r) < 8)
		return WIRE_ESHORT;
	const uint8_t *p = r->data + r->pos;
	*v = ((uint64_t)wire_load_u32(p) << 32) | wire_load_u32(p + 4);
	r->pos += 8;
	return WIRE_OK;
}

int wire_get_string(struct wire_reader *r, const uint8_t **data, uint32_t *len)
{
	if (wire_remaining(r) < 4)
		return WIRE_ESHORT;
	uint32_t n = wire_load_u32(r->data + r->pos);
	if (n > wire_remaining(r) - 4)
		return WIRE_ESHORT;
	*data = r->data + r->pos + 4;
	*len = n;
	r->pos += 4 + (size_t)n;
	return WIRE_OK;
}

int wire_get_cstring(struct wire_reader *r, char **out, size_t maxlen)
{
	size_t save = r->pos;
	const uint8_t *p;
	uint32_t n;
	int err = wire_get_string(r, &p, &n);
	if (err)
		return err;
	if (n > maxlen) {
		r->pos = save;
		return WIRE_ETOOLONG;
	}
	if (n > 0 && memchr(p, '\0', n) != NULL) {
		r->pos = save;
		return WIRE_EFORMAT;
	}
	char *s = malloc((size_t)n + 1);
	if (!s) {
		r->pos = save;
		return WIRE_ENOMEM;
	}
	memcpy(s, p, n);
	s[n] = '\0';
	*out = s;
	return WIRE_OK;
}

int wire_get_sub(struct wire_reader *r, struct wire_reader *sub)
{
	const uint8_t *p;
	uint32_t n;
	int err = wire_get_string(r, &p, &n);
	if (err)
		return err;
	wire_reader_init(sub, p, n);
	return WIRE_OK;
}

int wire_peek_packet(const uint8_t *data, size_t avail, size_t max, uint32_t *pktlen)
{
	if (avail < 4)
		return 0;
	uint32_t n = wire_load_u32(data);
	if (n > max)
		return WIRE_ETOOLONG;
	*pktlen = n;
	return avail - 4 >= n ? 1 : 0;
}

void wire_buf_init(struct wire_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void wire_buf_free(struct wire_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void wire_buf_init_mem(struct wire_buf *b, uint8_t *data, size_t cap, size_t max)
{
	wire_buf_init(b, max);
	b->data = data;
	b->cap = data ? cap : 0;
}

uint8_t *wire_buf_steal(struct wire_buf *b, size_t *cap)
{
	uint8_t *p = b->data;
	*cap = b->cap;
	memset(b, 0, sizeof(*b));
	return p;
}

void wire_buf_reset(struct wire_buf *b)
{
	b->start = b->end = 0;
}

void wire_buf_consume(struct wire_buf *b, size_t n)
{
	if (n > wire_buf_len(b))
		n = wire_buf_len(b);
	b->start += n;
	if (b->start == b->end)
		b->start = b->end = 0;
}

uint8_t *wire_buf_reserve(struct wire_buf *b, size_t n)
{
	size_t len = wire_buf_len(b);
	if (n > SIZE_MAX / 2 - len)
		return NULL;
	if (b->max && len + n > b->max)
		return NULL;
	if (b->data && b->cap - b->end >= n) /* a fresh buffer has no bytes to point at yet */
		return b->data + b->end;
	/* Slide the unconsumed bytes down when that frees enough room and the
	 * consumed prefix is the bigger part, else grow. */
	if (b->start > 0 && b->cap - len >= n && b->start >= len) {
		memmove(b->data, b->data + b->start, len);
		b->start = 0;
		b->end = len;
		return b->data + b->end;
	}
	size_t want = b->cap ? b->cap : 4096;
	while (want - b->end < n)
		want *= 2;
	uint8_t *p = realloc(b->data, want);
	if (!p)
		return NULL;
	b->data = p;
	b->cap = want;
	return b->data + b->end;
}

void wire_buf_commit(struct wire_buf *b, size_t n)
{
	if (n > b->cap - b->end)
		abort(); /* a bug in our own code, not bad input */
	b->end += n;
}

void wire_buf_truncate(struct wire_buf *b, size_t mark)
{
	if (mark > wire_buf_len(b))
		abort();
	b->end = b->start + mark;
}

int wire_put_bytes(struct wire_buf *b, const void *data, size_t len)
{
	uint8_t *p = wire_buf_reserve(b, len);
	if (!p)
		return WIRE_ENOMEM;
	if (len)
		memcpy(p, data, len);
	b->end += len;
	return WIRE_OK;
}

int wire_put_u8(struct wire_buf *b, uint8_t v)
{
	return wire_put_bytes(b, &v, 1);
}

int wire_put_u32(struct wire_buf *b, uint32_t v)
{
	uint8_t p[4];
	wire_store_u32(p, v);
	return wire_put_bytes(b, p, 4);
}

int wire_put_u64(struct wire_buf *b, uint64_t v)
{
	uint8_t p[8];
	wire_store_u32(p, (uint32_t)(v >> 32));
	wire_store_u32(p + 4, (uint32_t)v);
	return wire_put_bytes(b, p, 8);
}

int wire_put_string(struct wire_buf *b, const void *data, size_t len)
{
	if (len > UINT32_MAX)
		return WIRE_ETOOLONG;
	uint8_t *p = wire_buf_reserve(b, len + 4);
	if (!p)
		return WIRE_ENOMEM;
	wire_store_u32(p, (uint32_t)len);
	if (len)
		memcpy(p + 4, data, len);
	b->end += len + 4;
	return WIRE_OK;
}

int wire_put_cstring(struct wire_buf *b, const char *s)
{
	return wire_put_string(b, s, strlen(s));
}

void wire_poke_u32(struct wire_buf *b, size_t off, uint32_t v)
{
	if (off > wire_buf_len(b) || wire_buf_len(b) - off < 4)
		abort();
	wire_store_u32(b->data + b->start + off, v);
}

int wire_packet_begin(struct wire_buf *b, uint8_t type, size_t *mark)
{
	*mark = wire_buf_len(b);
	uint8_t *p = wire_buf_reserve(b, 5);
	if (!p)
		return WIRE_ENOMEM;
	wire_store_u32(p, 0);
	p[4] = type;
	b->end += 5;
	return WIRE_OK;
}

int wire_packet_end(struct wire_buf *b, size_t mark)
{
	size_t n = wire_buf_len(b) - mark - 4;
	if (n > UINT32_MAX)
		return WIRE_ETOOLONG;
	wire_poke_u32(b, mark, (uint32_t)n);
	return WIRE_OK;
}
