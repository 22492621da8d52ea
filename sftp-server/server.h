/*
 * hashi-sftp-server's packet loop and the interface its request handlers use.
 *
 * server_run() owns the loop: read from the client, cut packets, dispatch
 * by type (requests.c for the core requests, extensions.c for
 * SSH_FXP_EXTENDED), queue replies, write them, apply back-pressure.
 */
#ifndef HASHI_SERVER_H
#define HASHI_SERVER_H

#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "handles.h"
#include "paths.h"
#include "wire.h"

struct server_opts {
	bool readonly;          /* -R */
	const char *allowlist;  /* -p: comma-separated request names, or NULL */
	const char *denylist;   /* -P */
	const char *user;       /* login user's name (for logs) */
	const char *home;       /* login user's home directory */
	uid_t uid;
	const char *client_addr; /* for logs: from SSH_CONNECTION, or "UNKNOWN" */
	const struct paths *paths; /* -r: where paths may lead; NULL for anywhere */
};

struct server;

/* A request handler reads its arguments from r (the packet after the id) and
 * queues exactly one reply. It returns 0, or a WIRE_E* code when the request
 * is malformed, in which case the server replies SSH_FX_BAD_MESSAGE. */
typedef int (*request_fn)(struct server *s, uint32_t id, struct wire_reader *r);

struct request_def {
	const char *name;     /* the name -P/-p/-Q use */
	const char *ext_name; /* SSH_FXP_EXTENDED request name, or NULL */
	const char *ext_version; /* advertised in VERSION, for extensions */
	uint8_t type;         /* packet type, for core requests */
	request_fn fn;
	bool mutating;        /* refused under -R */
};

/* Tables, each ended by an entry with name == NULL. */
extern const struct request_def requests_core[];      /* requests.c */
extern const struct request_def requests_extensions[]; /* extensions.c */
extern const struct request_def requests_hashi[];      /* hashi-ext.c */
/* The extension tables in the order VERSION advertises them, NULL-ended. */
extern const struct request_def *const request_ext_tables[];

struct server *server_new(const struct server_opts *opts);
void server_free(struct server *s);
/* Serve on the two descriptors until the client closes; returns the exit
 * status for the process. */
int server_run(struct server *s, int in, int out);
/* Fuzzing and tests: hand bytes to the server as if read from the client.
 * Complete packets are processed and their replies queued (see
 * server_output) until about 1 MiB of replies waits: consume the output and
 * call server_feed(s, NULL, 0) to go on. Returns 0, or -1 when the session
 * must end (bad framing, packet before INIT, more input than the server
 * buffers, ...). */
int server_feed(struct server *s, const void *data, size_t len);
struct wire_buf *server_output(struct server *s);
/* Log "forced close" for open handles and "session closed" (at exit). */
void server_log_close(struct server *s);

/* Zero-copy READ: true when the reply's data may be queued as a file range
 * (server_queue_file) rather than copied into the output buffer. */
bool server_zero_copy(const struct server *s);
/* Queue len bytes of h's file at off to follow what is queued now. The
 * handle stays open until they are sent. */
void server_queue_file(struct server *s, struct handle *h, off_t off, size_t len);

/* Look ahead in the input: the k-th (0-based) complete packet after the one
 * being handled, as bytes after its length prefix; false if not there yet.
 * server_skip_next(s, n) makes the next n packets count as handled. */
bool server_peek_next(struct server *s, size_t k, const uint8_t **pkt, uint32_t *len);
void server_skip_next(struct server *s, size_t n);

/* For handlers. */

/* A request whose arguments are one path (remove, rmdir) or two (rename,
 * symlink, posix-rename, hardlink) and whose answer is fn's errno. Each path
 * is resolved (paths.h, PATHS_LAST) before fn sees it; for symlink the first
 * (the link's target) is stored as given: raw_first. The log line is
 * OpenSSH's: 'VERB name "a"' or 'VERB old "a" new "b"'. */
int server_path1_op(struct server *s, uint32_t id, struct wire_reader *r, const char *verb,
		    int (*fn)(const struct spath *));
int server_path2_op(struct server *s, uint32_t id, struct wire_reader *r, const char *verb,
		    bool raw_first, int (*fn)(const struct spath *, const struct spath *));
/* opts->paths, for paths_*() calls. */
const struct paths *server_paths(const struct server *s);

const struct server_opts *server_opts(const struct server *s);
struct handle_table *server_handles(struct server *s);
struct wire_buf *server_out(struct server *s);
bool server_request_permitted(const struct server *s, const struct request_def *def);

void server_send_status(struct server *s, uint32_t id, uint32_t status);
void server_send_status_msg(struct server *s, uint32_t id, uint32_t status, const char *msg);
/* The status for err; once the client turned errno@hashi on, err itself too. */
void server_send_errno(struct server *s, uint32_t id, int err);
/* errno@hashi: whether failure statuses carry the errno. */
void server_set_errno_ext(struct server *s, bool on);
void server_send_handle(struct server *s, uint32_t id, const struct handle *h);
/* A NAME reply with one entry whose name and longname are both name, and no attributes. */
void server_send_name1(struct server *s, uint32_t id, const char *name);
void server_send_attrs(struct server *s, uint32_t id, const struct stat *st);
/* Begin and end a reply the handler builds itself with wire_put_*. */
size_t server_reply_begin(struct server *s, uint8_t type, uint32_t id);
void server_reply_end(struct server *s, size_t mark);

/* Read a handle string and look it up; *h is NULL when it names no open
 * handle of that kind (kind HANDLE_ANY accepts both). */
int server_get_handle(struct server *s, struct wire_reader *r, int kind, struct handle **h);

/* An open(2)ed descriptor becomes a file handle (as OPEN makes them): a
 * regular file or directory loses the O_NONBLOCK it was opened with. NULL
 * (and fd closed) when the table is full. */
struct handle *server_add_file_handle(struct server *s, const char *name, int fd, int flags);

/* True inside server_run: its loop retries requests that wait. Under
 * server_feed alone nothing would, so a request must not wait there. */
bool server_loop_running(const struct server *s);

/* hashi-ext.c's state in the server: requests that wait (lock@hashi with
 * HASHI_LOCK_WAIT). The loop polls at most hashi_ext_timeout() ms (-1: no
 * limit) and then calls hashi_ext_retry(). */
struct hashi_ext;
struct hashi_ext **server_hashi_ext(struct server *s);
int hashi_ext_timeout(struct server *s);
void hashi_ext_retry(struct server *s);
void hashi_ext_free(struct hashi_ext *hx);

/* Log 'set "name" modtime YYYYmmdd-HH:MM:SS' at INFO, as OpenSSH does. */
void server_log_modtime(const char *name, uint32_t mtime);

/* OpenSSH-style "ls -l" line for READDIR's longname. */
void server_longname(struct server *s, char *buf, size_t size, const char *name, const struct stat *st);

#endif
