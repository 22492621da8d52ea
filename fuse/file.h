/*
 * An open file of the mount: its handle on one connection, the writes
 * still on their way (write-behind) and the reads run ahead of a sequential
 * reader (read-ahead). fs.c opens and closes; everything that moves a
 * file's bytes is here. Every function answers its FUSE request itself, now
 * or later from a connection's I/O thread, and never waits.
 */
#ifndef HASHI_FILE_H
#define HASHI_FILE_H

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "sftp-client.h"
#include "sftp-proto.h"

struct files_config {
	bool sync_writes;       /* -o sshfs_sync: a write returns once the server has it */
	bool no_readahead;      /* -o no_readahead */
	size_t wb_file_bytes;   /* write-behind bounds: per file (inode) ... */
	unsigned wb_file_reqs;
	size_t wb_total_bytes;  /* ... and for the whole mount */
	unsigned wb_total_reqs;
	size_t ra_min, ra_max;  /* read-ahead window: where it starts, how far it grows */
};

struct files;
struct fnode;
struct ra;

struct file {
	uint8_t handle[SFTP_MAX_HANDLE_LEN];
	uint32_t hlen;
	fuse_ino_t ino;
	/* the rest is file.c's */
	struct sftp_client *c;  /* the connection the handle lives on */
	struct files *fl;
	struct fnode *fn;
	int flags;              /* open(2) flags */
	int refs;               /* the open file, each write and read in flight */
	int err;                /* a write-behind error not yet reported */
	unsigned reqs;          /* WRITE requests of this file not yet answered */
	unsigned parked;        /* its writes waiting for room */
	GSList *waiters;        /* run when reqs drops to 0 and nothing is parked */
	struct ra *ra;
	/* The attributes the file had when this open made it (O_EXCL), kept
	 * up to date by this open's own writes and setattrs: valid while
	 * nothing else changed the inode (fnode's gen is still known_gen). */
	struct fattr known;
	bool known_ok;
	bool known_mtime;       /* known.mtime is exact (no write since it was set) */
	unsigned known_gen;
	int64_t known_at;       /* g_get_monotonic_time() when learnt from the server */
	/* The size the file had at open, as the attribute cache said: reads
	 * may take it for EOF until size_until (monotonic) while nothing of
	 * ours changed the inode (fnode's gen is still size_gen). */
	uint64_t size;
	int64_t size_until;
	unsigned size_gen;
	bool size_ok;
	/* Created behind (file_new_pending): its OPEN is not answered yet
	 * (its requests go out on the handle given at once). */
	bool pending;
	int open_err;           /* the OPEN failed: every operation fails so */
};

struct files *files_new(const struct files_config *cfg);
void files_free(struct files *fl);

/* A new open file from a HANDLE reply (NULL when the reply is malformed). */
struct file *file_from_handle(struct files *fl, struct sftp_client *c, struct sftp_reply *r,
			      fuse_ino_t ino, int flags);
/* Create behind: room for one more file whose OPEN is on its way (at most
 * FILES_BEHIND_MAX), taken until that OPEN is answered; false: create as
 * before. */
#define FILES_BEHIND_MAX 64
bool files_behind_reserve(struct files *fl);
/* An open file (reserved) whose OPEN is on its way, with the handle
 * sftp_open_early gave. Flush, fsync and release wait for the OPEN as for
 * a write. a: the attributes it is believed to have (its known attributes,
 * mtime not exact). */
struct file *file_new_pending(struct files *fl, struct sftp_client *c, fuse_ino_t ino, int flags,
			      const struct fattr *a, const uint8_t *handle, uint32_t hlen);
/* The OPEN is answered: err 0, or its error, which flush, fsync, close and
 * every later operation on f then give. */
void file_open_settle(struct file *f, int err);
/* Wait (block) until f's OPEN is answered; 0 or its error. */
int file_wait_open(struct file *f);
bool file_is_pending(struct file *f);

/* Close a handle nobody waits for (an error path), and free f. */
void file_discard(struct file *f);
/* Drop the open file's own reference without a word to the server: at exit,
 * for a file whose RELEASE never came (the connection is already gone). */
void file_forget(struct file *f);
/* The inode of an open file is known only after it is made (create). */
void file_set_ino(struct file *f, fuse_ino_t ino);
/* Another reference to f (a setattr borrowing an open file), and its end. */
void file_hold(struct file *f);
void file_put(struct file *f);

/* What the server said of a file this open has just made (after
 * file_set_ino). */
void file_set_known(struct file *f, const struct fattr *a);
/* f's known attributes, if nothing but f changed the file since (and they
 * were learnt less than max_age seconds ago); *mtime_exact is false once f
 * wrote since (the server then set an mtime of its own). */
bool file_known(struct file *f, double max_age, struct fattr *a, bool *mtime_exact);
/* Send FSETSTAT of set on f's handle, behind f's writes, and answer nobody:
 * as a write-behind, a failure is held for flush, fsync or close (EACCES
 * as EPERM when owner_only). after becomes f's known attributes. */
void file_setstat_behind(struct file *f, const struct sftp_attrs *set, const struct fattr *after,
			 bool owner_only);

/* The file's size as the cache knows it at open, valid ttl seconds more:
 * a read that reaches it needs no READ past it to learn of EOF. */
void file_set_size(struct file *f, uint64_t size, double ttl);
void file_read(struct file *f, fuse_req_t req, size_t size, off_t off);
void file_write(struct file *f, fuse_req_t req, const char *buf, size_t size, off_t off);
void file_flush(struct file *f, fuse_req_t req);
void file_fsync(struct file *f, fuse_req_t req, int datasync);
/* Waits for f's writes, sends CLOSE, answers, frees f. */
void file_release(struct file *f, fuse_req_t req);
/* fn(arg) once every write of f is answered (at once if none is out). */
void file_after_writes(struct file *f, void (*fn)(void *), void *arg);
/* The file's bytes changed other than by file_write (truncate, copy):
 * what was read ahead for ino is stale. */
void files_changed(struct files *fl, fuse_ino_t ino);

#endif
