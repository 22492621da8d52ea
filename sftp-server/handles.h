/* hashi-sftp-server's handle table: bounded, with generation numbers so that
 * a handle string from a closed handle is refused, never silently reused. */
#ifndef HASHI_HANDLES_H
#define HASHI_HANDLES_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>

enum handle_kind { HANDLE_UNUSED = 0, HANDLE_FILE = 1, HANDLE_DIR = 2, HANDLE_ANY = 3 };

#define HANDLE_STRING_LEN 8

struct handle {
	enum handle_kind kind;
	int fd;        /* file: its descriptor; dir: dirfd(dir) */
	DIR *dir;
	char *name;    /* the path it was opened by */
	int flags;     /* open(2) flags */
	uint64_t bytes_read, bytes_written;
	uint32_t index, gen;
	/* Zero-copy READ replies still queued from this file: its close waits
	 * for them (closing: CLOSE was answered, lookups fail). */
	uint32_t busy;
	bool closing;
	bool regular;       /* a regular file (sendfile-able) */
	uint64_t size_hint; /* its size when last looked at */
};

struct handle_table {
	struct handle *v;
	uint32_t cap;   /* slots allocated */
	uint32_t max;   /* most open at once */
	uint32_t used;
	uint32_t next_gen;
};

void handles_init(struct handle_table *t, uint32_t max);
/* Takes ownership of fd/dir on success only. NULL with errno EMFILE when full. */
struct handle *handles_new(struct handle_table *t, enum handle_kind kind, const char *name,
			   int fd, DIR *dir, int flags);
/* NULL unless the string names an open handle of that kind and generation. */
struct handle *handles_lookup(struct handle_table *t, const uint8_t *str, uint32_t len,
			      enum handle_kind kind);
void handles_encode(const struct handle *h, uint8_t out[HANDLE_STRING_LEN]);
/* The open handle in slot index with generation gen (closing or not), or NULL. */
struct handle *handles_slot(struct handle_table *t, uint32_t index, uint32_t gen);
/* Closes and frees the slot; returns close(2)'s result (errno set). */
int handles_close(struct handle_table *t, struct handle *h);
/* Calls fn for each open handle, then closes them all. */
void handles_close_all(struct handle_table *t, void (*fn)(struct handle *h, void *arg), void *arg);

#endif
