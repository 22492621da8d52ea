#include "handles.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire.h"

void handles_init(struct handle_table *t, uint32_t max)
{
	memset(t, 0, sizeof(*t));
	t->max = max ? max : 1;
	t->next_gen = 1;
}

struct handle *handles_new(struct handle_table *t, enum handle_kind kind, const char *name,
			   int fd, DIR *dir, int flags)
{
	uint32_t i;

	if (t->used >= t->max) {
		errno = EMFILE;
		return NULL;
	}
	for (i = 0; i < t->cap; i++)
		if (t->v[i].kind == HANDLE_UNUSED)
			break;
	if (i == t->cap) {
		uint32_t ncap = t->cap ? t->cap * 2 : 16;
		if (ncap > t->max)
			ncap = t->max;
		struct handle *nv = realloc(t->v, (size_t)ncap * sizeof(*nv));
		if (!nv) {
			errno = ENOMEM;
			return NULL;
		}
		memset(nv + t->cap, 0, (size_t)(ncap - t->cap) * sizeof(*nv));
		for (uint32_t j = t->cap; j < ncap; j++)
			nv[j].index = j;
		t->v = nv;
		t->cap = ncap;
	}
	char *copy = strdup(name);
	if (!copy) {
		errno = ENOMEM;
		return NULL;
	}
	struct handle *h = &t->v[i];
	h->kind = kind;
	h->fd = fd;
	h->dir = dir;
	h->name = copy;
	h->flags = flags;
	h->bytes_read = h->bytes_written = 0;
	h->busy = 0;
	h->closing = false;
	h->regular = false;
	h->size_hint = 0;
	h->gen = t->next_gen++;
	if (t->next_gen == 0)
		t->next_gen = 1;
	t->used++;
	return h;
}

void handles_encode(const struct handle *h, uint8_t out[HANDLE_STRING_LEN])
{
	wire_store_u32(out, h->index);
	wire_store_u32(out + 4, h->gen);
}

struct handle *handles_lookup(struct handle_table *t, const uint8_t *str, uint32_t len,
			      enum handle_kind kind)
{
	if (len != HANDLE_STRING_LEN)
		return NULL;
	uint32_t idx = wire_load_u32(str), gen = wire_load_u32(str + 4);
	if (idx >= t->cap)
		return NULL;
	struct handle *h = &t->v[idx];
	if (h->kind == HANDLE_UNUSED || h->gen != gen || h->closing)
		return NULL;
	if (kind != HANDLE_ANY && h->kind != kind)
		return NULL;
	return h;
}

struct handle *handles_slot(struct handle_table *t, uint32_t index, uint32_t gen)
{
	if (index >= t->cap || t->v[index].kind == HANDLE_UNUSED || t->v[index].gen != gen)
		return NULL;
	return &t->v[index];
}

int handles_close(struct handle_table *t, struct handle *h)
{
	int ret;

	if (h->kind == HANDLE_DIR)
		ret = closedir(h->dir);
	else
		ret = close(h->fd);
	int saved = errno;
	free(h->name);
	uint32_t idx = h->index;
	memset(h, 0, sizeof(*h));
	h->index = idx;
	t->used--;
	errno = saved;
	return ret;
}

void handles_close_all(struct handle_table *t, void (*fn)(struct handle *h, void *arg), void *arg)
{
	for (uint32_t i = 0; i < t->cap; i++) {
		if (t->v[i].kind == HANDLE_UNUSED)
			continue;
		if (fn)
			fn(&t->v[i], arg);
		handles_close(t, &t->v[i]);
	}
	free(t->v);
	t->v = NULL;
	t->cap = 0;
}
