/*
 * hashi's filesystem: FUSE low-level operations turned into SFTP requests,
 * and the inode table (inode <-> remote path). Every operation submits its
 * requests and returns; the replies to the kernel are made from the
 * connection's I/O thread when the server answers.
 */
#ifndef HASHI_FS_H
#define HASHI_FS_H

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <sys/types.h>

#include "cache.h"
#include "idmap.h"
#include "sftp-client.h"

struct fs_config {
	char *root;            /* absolute remote path of the mount's root */
	double entry_timeout;  /* seconds the kernel may keep a name */
	double attr_timeout;   /* seconds the kernel may keep attributes */
	double negative_timeout; /* seconds the kernel may keep "no such file" */
	struct cache_config cache; /* our own attribute, listing and link cache */
	bool set_uid, set_gid, set_umask;
	uid_t uid;             /* -o uid= : owner shown for every file */
	gid_t gid;
	mode_t umask;          /* -o umask= : bits cleared from every mode shown */
	bool readonly;
	bool disable_hardlink; /* link(2) fails with ENOSYS, as sshfs's option */
	bool no_contain_symlinks; /* show every link's target as the server gives it */
	struct idmap *idmap;   /* owners: remote <-> local (NULL: shown as they are) */
	bool sync_writes;      /* -o sshfs_sync: a write returns once the server has it */
	bool no_readahead;     /* -o no_readahead: read only what the kernel asks for */
	bool kernel_cache;     /* -o kernel_cache: the kernel keeps file pages across opens */
	bool auto_cache;       /* -o auto_cache: ... while a file's mtime and size stay */
	bool sync_create;      /* -o sync_create: a create waits for the server's handle */
};

struct fs;

struct fs *fs_new(struct sftp_client *c, const struct fs_config *cfg);
void fs_free(struct fs *fs);
const struct fuse_lowlevel_ops *fs_ops(void);
/* The metadata cache (for its hit and miss counters). */
struct cache *fs_cache(struct fs *fs);

#endif
