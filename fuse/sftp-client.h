/*
 * hashi's asynchronous SFTP engine.
 *
 * Requests are built by any thread (sftp_msg_new + wire_put_* on its buffer,
 * or the typed helpers below) and submitted with a callback; any number may
 * be in flight. One I/O thread per connection owns the transport: it writes
 * queued requests, reads replies, matches them to requests by id and runs
 * the callbacks (which may call fuse_reply_*). Nothing here waits on the
 * network while holding a lock.
 */
#ifndef HASHI_SFTP_CLIENT_H
#define HASHI_SFTP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "attrs.h"
#include "transport/transport.h"
#include "wire.h"

struct sftp_client;

/* Extensions the server advertised. */
enum {
	SFTP_HAS_POSIX_RENAME = 1 << 0,
	SFTP_HAS_STATVFS = 1 << 1,
	SFTP_HAS_FSTATVFS = 1 << 2,
	SFTP_HAS_HARDLINK = 1 << 3,
	SFTP_HAS_FSYNC = 1 << 4,
	SFTP_HAS_LSETSTAT = 1 << 5,
	SFTP_HAS_LIMITS = 1 << 6,
	SFTP_HAS_EXPAND_PATH = 1 << 7,
	SFTP_HAS_COPY_DATA = 1 << 8,
	SFTP_HAS_HOME_DIR = 1 << 9,
	SFTP_HAS_USERS_GROUPS = 1 << 10,
	/* hashi's own (man/PROTOCOL.hashi) */
	SFTP_HAS_HASHI_ERRNO = 1 << 11,
	SFTP_HAS_HASHI_STAT = 1 << 12,
	SFTP_HAS_HASHI_READDIR = 1 << 13,
	SFTP_HAS_HASHI_SETSTAT = 1 << 14,
	SFTP_HAS_HASHI_OPEN = 1 << 15,
	SFTP_HAS_HASHI_MKNOD = 1 << 16,
	SFTP_HAS_HASHI_XATTR = 1 << 17, /* all four of get/set/list/removexattr@hashi */
	SFTP_HAS_HASHI_LOCK = 1 << 18,
	SFTP_HAS_HASHI_FALLOCATE = 1 << 19,
	SFTP_HAS_HASHI_LSEEK = 1 << 20,
};

/* What a callback receives. body reads the reply after its id and is valid
 * only during the callback. err is 0 for a successful reply (STATUS OK or a
 * data-carrying reply), else the errno a local filesystem would give. */
struct sftp_reply {
	uint8_t type;     /* SSH_FXP_*, or 0 when the connection was lost */
	uint32_t status;  /* for SSH_FXP_STATUS */
	int err;
	int sys_errno;    /* the server's own errno (errno@hashi), 0 when not given;
			   * err is then that errno */
	struct wire_reader body;
};

typedef void (*sftp_cb)(void *arg, struct sftp_reply *r);

struct sftp_msg;

/* Connect the engine to a ready transport: exchange INIT/VERSION and read the
 * server's limits, driving the transport from the calling thread. Returns
 * NULL with a one-line error in err. Takes ownership of t. */
struct sftp_client *sftp_client_new(struct transport *t, char *err, size_t errlen);
/* Reconnecting: fn makes a new, ready transport (it runs on a thread of its
 * own, with back-off between attempts). While the connection is down,
 * requests wait up to timeout_s seconds (0: for ever), then fail with
 * ETIMEDOUT. Handles are reopened by path and requests sent again. Without
 * fn, a lost connection fails every request with EIO. */
typedef struct transport *(*sftp_reconnect_fn)(void *arg, char *err, size_t errlen);
void sftp_client_set_reconnect(struct sftp_client *c, sftp_reconnect_fn fn, void *arg,
			       unsigned timeout_s);
/* Dead-peer detection: a request when the server has said nothing for
 * interval_s; after interval_s * count_max of silence the connection is
 * declared lost. interval_s 0 turns it off. */
void sftp_client_set_keepalive(struct sftp_client *c, unsigned interval_s, unsigned count_max);
unsigned sftp_client_reconnects(const struct sftp_client *c);
/* For hashi -O status (counters read without the I/O thread's care). */
struct sftp_client_stats {
	bool connected;
	uint64_t in_flight;
	uint64_t bytes_sent, bytes_received;
	unsigned reconnects;
};
void sftp_client_get_stats(struct sftp_client *c, struct sftp_client_stats *s);

/* max_conns: peer (a new client, with no handle yet) joins first's group.
 * A request carrying a handle goes to the connection the handle lives on,
 * whichever client it is submitted to. Free the peers before first. */
int sftp_client_add_peer(struct sftp_client *first, struct sftp_client *peer);
/* The least busy live connection of c's group (c when alone). */
struct sftp_client *sftp_client_pick(struct sftp_client *c);
unsigned sftp_client_conns(const struct sftp_client *c);

/* Start the I/O thread (after fuse_daemonize). */
int sftp_client_start(struct sftp_client *c);
/* Stop the thread, fail what is pending, close the transport, free. */
void sftp_client_free(struct sftp_client *c);
/* Whether sftp_client_free left a reconnect thread running (inside a
 * blocking connect): what its reconnect callback uses must then stay until
 * the process exits. */
bool sftp_client_orphans(void);

uint32_t sftp_client_exts(const struct sftp_client *c);
uint32_t sftp_client_max_read(const struct sftp_client *c);
uint32_t sftp_client_max_write(const struct sftp_client *c);
/* False once the connection is lost. */
bool sftp_client_alive(const struct sftp_client *c);

/* Build a request: the buffer already holds length, type and id; append
 * the arguments, then submit. */
struct sftp_msg *sftp_msg_new(uint8_t type);
struct sftp_msg *sftp_msg_new_ext(const char *ext_name);
struct wire_buf *sftp_msg_buf(struct sftp_msg *m);
void sftp_msg_free(struct sftp_msg *m);
/* Send m (its ownership passes) and call cb(arg, reply) once, from the I/O
 * thread, or at once from this thread if the connection is gone. */
void sftp_submit(struct sftp_client *c, struct sftp_msg *m, sftp_cb cb, void *arg);

/* Give m, an OPEN or OPENDIR to be submitted on c (sftp_submit), its
 * handle at once, before the server answers: requests on it may be
 * submitted right after m. They go out when the HANDLE comes, or at once
 * on the handle foreseen where the server lets us foresee it (OpenSSH's
 * does); if the OPEN fails, they fail with its error. */
#define SFTP_VHANDLE_LEN 8
void sftp_msg_early_handle(struct sftp_client *c, struct sftp_msg *m,
			   uint8_t handle[SFTP_VHANDLE_LEN]);

/* Synchronous call: waits for the reply (or drives the transport itself if
 * the I/O thread has not started). *body is a malloc'd copy of the reply
 * after the id (free it), *type its type. Returns 0 or the errno. */
int sftp_call(struct sftp_client *c, struct sftp_msg *m, uint8_t *type, uint8_t **body,
	      size_t *body_len);

/* Typed helpers for the common requests. */
void sftp_path_req(struct sftp_client *c, uint8_t type, const char *path, sftp_cb cb, void *arg);
void sftp_path2_req(struct sftp_client *c, uint8_t type, const char *a, const char *b, sftp_cb cb,
		    void *arg);
void sftp_ext_path2_req(struct sftp_client *c, const char *ext, const char *a, const char *b,
			sftp_cb cb, void *arg);
void sftp_handle_req(struct sftp_client *c, uint8_t type, const uint8_t *h, uint32_t hlen,
		     sftp_cb cb, void *arg);
void sftp_read_req(struct sftp_client *c, const uint8_t *h, uint32_t hlen, uint64_t off,
		   uint32_t len, sftp_cb cb, void *arg);
void sftp_write_req(struct sftp_client *c, const uint8_t *h, uint32_t hlen, uint64_t off,
		    const void *data, uint32_t len, sftp_cb cb, void *arg);
/* The same WRITE built (the bytes copied), to pass to sftp_submit later. */
struct sftp_msg *sftp_write_msg(const uint8_t *h, uint32_t hlen, uint64_t off, const void *data,
				uint32_t len);

/* A hashi request naming a file by path or handle ("target, flags"). */
void sftp_target_put(struct wire_buf *b, const char *path, const uint8_t *h, uint32_t hlen,
		     uint32_t flags);

/* Parse helpers for reply bodies. */
int sftp_reply_attrs(struct sftp_reply *r, struct sftp_attrs *a);
/* The first name of a NAME reply, malloc'd. */
int sftp_reply_name1(struct sftp_reply *r, char **name);

#endif
