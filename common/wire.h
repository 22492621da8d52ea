/*
 * Bounds-checked SFTP packet reading and writing.
 *
 * Reading: a struct wire_reader is a window over bytes that we do not trust.
 * Every wire_get_* returns 0 or a negative WIRE_E* code and never reads past
 * the end; on failure the reader's position is unchanged.
 *
 * Writing: a struct wire_buf is a growable byte queue with a hard size limit.
 * Every wire_put_* returns 0 or a negative WIRE_E* code.
 */
#ifndef HASHI_WIRE_H
#define HASHI_WIRE_H

#include <stddef.h>
#include <stdint.h>

enum {
	WIRE_OK = 0,
	WIRE_ESHORT = -1,   /* not enough bytes left */
	WIRE_ETOOLONG = -2, /* a length exceeds what is allowed */
	WIRE_EFORMAT = -3,  /* bytes present but not valid (e.g. NUL in a name) */
	WIRE_ENOMEM = -4,   /* allocation failed or buffer limit reached */
};

const char *wire_strerror(int err);

struct wire_reader {
	const uint8_t *data;
	size_t len;
	size_t pos;
};

void wire_reader_init(struct wire_reader *r, const void *data, size_t len);
size_t wire_remaining(const struct wire_reader *r);
int wire_get_u8(struct wire_reader *r, uint8_t *v);
int wire_get_u32(struct wire_reader *r, uint32_t *v);
int wire_get_u64(struct wire_reader *r, uint64_t *v);
/* A string: *data points into the reader's bytes (not NUL-terminated). */
int wire_get_string(struct wire_reader *r, const uint8_t **data, uint32_t *len);
/* A string that must contain no NUL and be at most maxlen bytes; copied into
 * a new NUL-terminated allocation that the caller frees. */
int wire_get_cstring(struct wire_reader *r, char **out, size_t maxlen);
/* A string as a sub-reader over its bytes. */
int wire_get_sub(struct wire_reader *r, struct wire_reader *sub);
int wire_skip(struct wire_reader *r, size_t n);

/* Peek at a length-prefixed packet at the front of bytes: returns 1 and sets
 * *pktlen (body length, without the 4-byte prefix) when a whole packet is
 * there, 0 when more bytes are needed, WIRE_ETOOLONG if over max. */
int wire_peek_packet(const uint8_t *data, size_t avail, size_t max, uint32_t *pktlen);

struct wire_buf {
	uint8_t *data;
	size_t start; /* first unconsumed byte */
	size_t end;   /* one past the last byte */
	size_t cap;
	size_t max;   /* hard limit on end - start (0: no limit) */
};

void wire_buf_init(struct wire_buf *b, size_t max);
void wire_buf_free(struct wire_buf *b);
/* Start b, empty, on data: cap bytes from malloc, which b owns from now. */
void wire_buf_init_mem(struct wire_buf *b, uint8_t *data, size_t cap, size_t max);
/* Take b's memory (for reuse; its size in *cap) and leave b as freed. */
uint8_t *wire_buf_steal(struct wire_buf *b, size_t *cap);
static inline size_t wire_buf_len(const struct wire_buf *b) { return b->end - b->start; }
static inline uint8_t *wire_buf_ptr(const struct wire_buf *b) { return b->data ? b->data + b->start : NULL; }
void wire_buf_reset(struct wire_buf *b);
void wire_buf_consume(struct wire_buf *b, size_t n);
/* Make room for n more bytes at the end; returns a pointer to them (not yet
 * counted in the length: call wire_buf_commit with what was filled). */
uint8_t *wire_buf_reserve(struct wire_buf *b, size_t n);
void wire_buf_commit(struct wire_buf *b, size_t n);
/* Marks are offsets from the first unconsumed byte, so they survive the
 * buffer growing or sliding. Cut the buffer back to a mark. */
static inline size_t wire_buf_mark(const struct wire_buf *b) { return b->end - b->start; }
void wire_buf_truncate(struct wire_buf *b, size_t mark);

int wire_put_u8(struct wire_buf *b, uint8_t v);
int wire_put_u32(struct wire_buf *b, uint32_t v);
int wire_put_u64(struct wire_buf *b, uint64_t v);
int wire_put_bytes(struct wire_buf *b, const void *data, size_t len);
int wire_put_string(struct wire_buf *b, const void *data, size_t len);
int wire_put_cstring(struct wire_buf *b, const char *s);
/* Overwrite a u32 already in the buffer at mark off. */
void wire_poke_u32(struct wire_buf *b, size_t off, uint32_t v);

/* Packets: wire_packet_begin reserves the 4-byte length and writes the type;
 * wire_packet_end fills the length in. Returns the mark to pass to _end. */
int wire_packet_begin(struct wire_buf *b, uint8_t type, size_t *mark);
int wire_packet_end(struct wire_buf *b, size_t mark);

static inline uint32_t wire_load_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline void wire_store_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

#endif
