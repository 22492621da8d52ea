/*
 * libFuzzer target for hashi's SFTP engine (fuse/sftp-client.c) against a
 * hostile server: the input is what the server sends.
 *
 * A fake struct transport hands the input's bytes to the engine's read()
 * (in pieces; 0 = EOF once they are used up), swallows and checks what the
 * engine writes, and names an always-readable eventfd in pollfds(), so poll()
 * never blocks. Like a real server it answers only what it was sent: a reply
 * whose id has not been written on this connection yet is held back (read()
 * says -EAGAIN) while the engine still has something to write, so that
 * replies are not all read before the requests exist; a reply to an id that
 * is never written, a broken length or anything else goes through as it is
 * (and 100 -EAGAIN in a row release it anyway).
 *
 * Input format:
 *   byte 0    bits 0-1: how read() cuts the stream (0 as much as asked,
 *                       1 pieces of 1-16 bytes, 2 pieces of 1-512, 3 one byte)
 *             bit 2:    write() takes pieces of 1-64 bytes (else everything)
 *             bit 3:    write() fails (-EPIPE) after 0-1023 bytes
 *             bit 4:    thread mode: start the I/O thread, wait for every
 *                       callback, then sftp_client_free(); else the requests
 *                       are driven inline by synchronous sftp_call()s
 *             bit 5:    (thread mode) reconnecting: the stream is cut at each
 *                       RECONNECT_MARK into one stream per connection (at
 *                       most 8); when one ends, the engine's reconnect
 *                       function gets the next; after the last, a well-behaved
 *                       server that answers every request with FAILURE
 *             bits 6-7: seed the piece sizes
 *   bytes 1-2 a mask (byte 1 = bits 0-7): which of the 16 requests in
 *             submit_req() are submitted after sftp_client_new()
 *   the rest  the server's stream(s): VERSION, then replies. Request ids
 *             count from 1: the limits@openssh.com request that
 *             sftp_client_new() sends when VERSION names that extension takes
 *             id 1; then the masked requests in table order; inline, the
 *             first synchronous STAT "/sync"; then, as they happen, the
 *             follow-ups the callbacks send: a HANDLE to OPENDIR is read with
 *             READDIR, a HANDLE to OPEN gets READ (100 bytes), FSTAT and CLOSE
 *             on it (two such handles at most); a short DATA asks for the
 *             rest, a READDIR with names asks again (two of each at most).
 *             Inline, up to 4 synchronous STATs follow one another while the
 *             connection lives and input remains. After a reconnect the
 *             engine reopens its handles (OPEN/OPENDIR by path, READDIRs to
 *             skip what was listed: new ids) and sends the pending requests
 *             again (their old ids).
 *
 * The callbacks parse the replies as fuse/fs.c does (sftp_reply_attrs,
 * sftp_reply_name1, READDIR name lists, DATA strings copied into a buffer of
 * exactly the size asked for, statvfs's eleven u64s, HANDLE strings) and
 * check: each callback runs exactly once (also when the connection is lost,
 * or the client freed); its reply type is one the engine may pass on, with
 * err matching (0 for a data-carrying reply, the status's errno for STATUS,
 * EIO or ESTALE or ETIMEDOUT with no type, or 0 for a CLOSE that a
 * reconnect made moot); a reply reaches the request whose
 * id it carries; the handles the engine gives for OPEN and OPENDIR are its
 * own 8 bytes. The writer checks that the engine sends INIT first on each
 * connection, then requests submitted, in order, byte for byte (a handle the
 * engine gave us goes out as the server's), with increasing ids; on a new
 * connection, only its own reopening requests and requests already sent
 * (their bytes again). The engine's read and write sizes stay within
 * 1 KiB-1 MiB. LeakSanitizer (libFuzzer's -detect_leaks) reports anything
 * left behind; transports are all destroyed and descriptors all closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "attrs.h"
#include "log.h"
#include "sftp-client.h"
#include "sftp-proto.h"
#include "transport/transport.h"
#include "wire.h"

#include "fuzz-common.h"


static volatile uint8_t sink;
static void touch(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc ^= p[i];
	sink = acc;
}

#define MAX_REQ 64
#define MAX_FOLLOWUPS 2
#define MAX_HANDLE_FOLLOWUPS 2
#define MAX_SYNC 4
#define MAX_SEGMENTS 8
#define MAX_EAGAIN 100
#define READ_LEN 1000
#define WRITE_LEN 3000
#define RECONNECT_MARK "\xffRECONNECT\xff"
#define MARK_LEN (sizeof(RECONNECT_MARK) - 1)

/* ------------------------------------------------------------------ */
/* State of one input                                                 */

enum kind { K_ATTRS, K_NAME1, K_HANDLE, K_READDIR, K_READ, K_STATVFS, K_STATUS };

struct req {
	enum kind kind;
	uint8_t type;
	struct wire_buf want; /* the packet's bytes after length, type and id */
	int hoff;             /* where a handle string is in want, or -1 */
	uint8_t h[SFTP_MAX_HANDLE_LEN]; /* that handle */
	uint32_t hlen;
	bool sync;            /* an sftp_call: its callback is the engine's own */
	bool queued;          /* the engine took it (not failed at once) */
	bool written;         /* on some connection */
	uint32_t id;          /* as the engine numbers it (see SUBMIT) */
	int calls;
	uint64_t off;         /* READ: the part of the file it asks for */
	uint32_t len;
};

struct conn;

static struct {
	pthread_mutex_t lock; /* the callbacks and the transport run on the I/O thread */
	pthread_cond_t cv;
	struct req r[MAX_REQ];
	int n;
	int outstanding;      /* submitted, callback not yet run */
	int read_followups, readdir_followups, handle_followups;
	uint32_t next_id;     /* the engine's last id, as we follow it */
	uint32_t last_id;     /* the last new id written on the first connection */
	struct conn *cur;     /* the connection being read */
	uint8_t *readbuf;     /* READ_LEN bytes: where DATA goes, as fs.c's buffer */
	bool threaded, reconnecting;
	bool more_writes;     /* the harness will still submit something */
	/* the server's streams */
	unsigned read_mode;
	bool write_pieces, write_fails;
	uint32_t rng;
	const uint8_t *seg[MAX_SEGMENTS];
	size_t seg_len[MAX_SEGMENTS];
	int nseg, next_seg;
	bool final_ready;     /* the last, well-behaved server got INIT */
	int created, destroyed;
} S;

static bool verbose; /* HASHI_FUZZ_VERBOSE=1: say what happens */
static struct sftp_client *client;
static int always_readable = -1; /* an eventfd with a count that is never read */

static uint32_t next_rand(void)
{
	uint32_t x = S.rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	S.rng = x;
	return x;
}

/* ------------------------------------------------------------------ */
/* Submitting                                                         */

static void put_str(struct wire_buf *b, const void *p, size_t n)
{
	CHECK(wire_put_string(b, p, n) == WIRE_OK);
}

static void put_cstr(struct wire_buf *b, const char *s)
{
	CHECK(wire_put_cstring(b, s) == WIRE_OK);
}

static void reply_cb(void *arg, struct sftp_reply *r);
static bool conn_wrote(const struct conn *f, uint32_t id);
static int conn_gen(const struct conn *f);

/* A new request; with h, its body starts with the handle string. Called
 * with S.lock held. */
static struct req *req_new(enum kind kind, uint8_t type, const uint8_t *h, uint32_t hlen)
{
	CHECK(S.n < MAX_REQ);
	struct req *q = &S.r[S.n++];
	memset(q, 0, sizeof(*q));
	q->kind = kind;
	q->type = type;
	q->hoff = -1;
	wire_buf_init(&q->want, 0);
	if (h) {
		CHECK(hlen <= sizeof(q->h));
		memcpy(q->h, h, hlen);
		q->hlen = hlen;
		q->hoff = 0;
		put_str(&q->want, h, hlen);
	}
	return q;
}

/* Submit through one of the engine's helpers (`call`). The engine numbers
 * requests 1, 2, 3 ... as they are submitted, its own too (limits, and
 * reopening after a reconnect), so we know each one's id: the next. A
 * request submitted on a dead connection takes no id and is failed before
 * the helper returns. (Only one thread submits at a time: this one before
 * the I/O thread starts, the I/O thread's callbacks after.) */
#define SUBMIT(q, call)                                                       \
	do {                                                                  \
		pthread_mutex_lock(&S.lock);                                  \
		S.outstanding++;                                              \
		(q)->id = ++S.next_id;                                        \
		pthread_mutex_unlock(&S.lock);                                \
		call;                                                         \
		pthread_mutex_lock(&S.lock);                                  \
		(q)->queued = (q)->calls == 0;                                \
		if (!(q)->queued) {                                           \
			CHECK(S.next_id == (q)->id);                          \
			S.next_id--;                                          \
			(q)->id = 0;                                          \
		}                                                             \
		pthread_mutex_unlock(&S.lock);                                \
	} while (0)

static struct req *new_req(enum kind kind, uint8_t type, const uint8_t *h, uint32_t hlen)
{
	pthread_mutex_lock(&S.lock);
	struct req *q = req_new(kind, type, h, hlen);
	pthread_mutex_unlock(&S.lock);
	return q;
}

static const uint8_t H[8] = { 0, 0, 0, 0, 0, 0, 0, 1 }; /* not one of the engine's */

static void submit_path(enum kind kind, uint8_t type, const char *path)
{
	struct req *q = new_req(kind, type, NULL, 0);
	put_cstr(&q->want, path);
	SUBMIT(q, sftp_path_req(client, type, path, reply_cb, q));
}

static void submit_handle(enum kind kind, uint8_t type, const uint8_t *h, uint32_t hlen)
{
	struct req *q = new_req(kind, type, h, hlen);
	SUBMIT(q, sftp_handle_req(client, type, h, hlen, reply_cb, q));
}

static void submit_read(const uint8_t *h, uint32_t hlen, uint64_t off, uint32_t len)
{
	struct req *q = new_req(K_READ, SSH_FXP_READ, h, hlen);
	q->off = off;
	q->len = len;
	CHECK(wire_put_u64(&q->want, off) == WIRE_OK);
	CHECK(wire_put_u32(&q->want, len) == WIRE_OK);
	SUBMIT(q, sftp_read_req(client, h, hlen, off, len, reply_cb, q));
}

static void submit_ext_path(enum kind kind, const char *ext, const char *path)
{
	struct req *q = new_req(kind, SSH_FXP_EXTENDED, NULL, 0);
	put_cstr(&q->want, ext);
	put_cstr(&q->want, path);
	struct sftp_msg *m = sftp_msg_new_ext(ext);
	CHECK(wire_put_cstring(sftp_msg_buf(m), path) == WIRE_OK);
	SUBMIT(q, sftp_submit(client, m, reply_cb, q));
}

static void submit_req(int i)
{
	switch (i) {
	case 0:
		submit_path(K_ATTRS, SSH_FXP_LSTAT, "/a");
		break;
	case 1:
		submit_path(K_NAME1, SSH_FXP_READLINK, "/l");
		break;
	case 2:
		submit_path(K_NAME1, SSH_FXP_REALPATH, ".");
		break;
	case 3:
		submit_path(K_HANDLE, SSH_FXP_OPENDIR, "/d");
		break;
	case 4:
		submit_handle(K_READDIR, SSH_FXP_READDIR, H, sizeof(H));
		break;
	case 5:
		submit_handle(K_ATTRS, SSH_FXP_FSTAT, H, sizeof(H));
		break;
	case 6:
		submit_read(H, sizeof(H), 0, READ_LEN);
		break;
	case 7:
		submit_ext_path(K_STATVFS, SFTP_EXT_STATVFS, "/");
		break;
	case 8: {
		static uint8_t data[WRITE_LEN];
		for (size_t k = 0; k < sizeof(data); k++)
			data[k] = (uint8_t)(k * 7);
		struct req *q = new_req(K_STATUS, SSH_FXP_WRITE, H, sizeof(H));
		CHECK(wire_put_u64(&q->want, 4096) == WIRE_OK);
		put_str(&q->want, data, sizeof(data));
		SUBMIT(q, sftp_write_req(client, H, sizeof(H), 4096, data, sizeof(data), reply_cb,
					 q));
		break;
	}
	case 9: {
		struct req *q = new_req(K_STATUS, SSH_FXP_RENAME, NULL, 0);
		put_cstr(&q->want, "/a");
		put_cstr(&q->want, "/b");
		SUBMIT(q, sftp_path2_req(client, SSH_FXP_RENAME, "/a", "/b", reply_cb, q));
		break;
	}
	case 10: {
		struct req *q = new_req(K_STATUS, SSH_FXP_EXTENDED, NULL, 0);
		put_cstr(&q->want, SFTP_EXT_POSIX_RENAME);
		put_cstr(&q->want, "/a");
		put_cstr(&q->want, "/b");
		SUBMIT(q, sftp_ext_path2_req(client, SFTP_EXT_POSIX_RENAME, "/a", "/b", reply_cb,
					     q));
		break;
	}
	case 11: { /* OPEN: path, pflags, ATTRS (built by hand, as fs.c does) */
		struct req *q = new_req(K_HANDLE, SSH_FXP_OPEN, NULL, 0);
		struct sftp_attrs a;
		attrs_clear(&a);
		a.flags = SSH_FILEXFER_ATTR_PERMISSIONS;
		a.perm = 0644;
		put_cstr(&q->want, "/f");
		CHECK(wire_put_u32(&q->want, SSH_FXF_READ | SSH_FXF_WRITE) == WIRE_OK);
		CHECK(attrs_put(&q->want, &a) == WIRE_OK);
		struct sftp_msg *m = sftp_msg_new(SSH_FXP_OPEN);
		CHECK(wire_put_cstring(sftp_msg_buf(m), "/f") == WIRE_OK);
		CHECK(wire_put_u32(sftp_msg_buf(m), SSH_FXF_READ | SSH_FXF_WRITE) == WIRE_OK);
		CHECK(attrs_put(sftp_msg_buf(m), &a) == WIRE_OK);
		SUBMIT(q, sftp_submit(client, m, reply_cb, q));
		break;
	}
	case 12:
		submit_read(H, sizeof(H), 1u << 20, 1); /* one byte: any longer DATA is malformed */
		break;
	case 13:
		submit_handle(K_STATUS, SSH_FXP_CLOSE, H, sizeof(H));
		break;
	case 14: {
		struct req *q = new_req(K_STATVFS, SSH_FXP_EXTENDED, NULL, 0);
		put_cstr(&q->want, SFTP_EXT_FSTATVFS);
		q->hoff = (int)wire_buf_len(&q->want);
		memcpy(q->h, H, sizeof(H));
		q->hlen = sizeof(H);
		put_str(&q->want, H, sizeof(H));
		struct sftp_msg *m = sftp_msg_new_ext(SFTP_EXT_FSTATVFS);
		CHECK(wire_put_string(sftp_msg_buf(m), H, sizeof(H)) == WIRE_OK);
		SUBMIT(q, sftp_submit(client, m, reply_cb, q));
		break;
	}
	case 15:
		submit_ext_path(K_NAME1, SFTP_EXT_EXPAND_PATH, "~/x");
		break;
	}
}

/* ------------------------------------------------------------------ */
/* The callbacks, parsing as fuse/fs.c does                           */

struct followups {
	uint8_t h[SFTP_MAX_HANDLE_LEN];
	uint32_t hlen;
	bool readdir, open_ops;
	uint64_t read_off;
	uint32_t read_len;
};

static void parse_attrs(struct sftp_reply *r)
{
	struct sftp_attrs a;
	if (r->err || sftp_reply_attrs(r, &a))
		return;
	struct stat st;
	memset(&st, 0, sizeof(st));
	attrs_to_stat(&a, &st);
	CHECK(a.ext_count <= SFTP_MAX_ATTR_EXTENSIONS);
}

static void parse_name1(struct sftp_reply *r)
{
	char *name = NULL;
	if (r->err || sftp_reply_name1(r, &name)) {
		CHECK(name == NULL);
		return;
	}
	CHECK(name != NULL && strlen(name) <= 65536);
	free(name);
}

/* fs.c's file_from_reply; OPEN and OPENDIR get the engine's own handles
 * (8 bytes: sftp-client.c's VH_LEN), to be used for what follows. */
static void parse_handle(struct req *q, struct sftp_reply *r, struct followups *fu)
{
	const uint8_t *h;
	uint32_t hlen;
	if (r->type != SSH_FXP_HANDLE || wire_get_string(&r->body, &h, &hlen) || hlen == 0 ||
	    hlen > SFTP_MAX_HANDLE_LEN)
		return;
	if (q->type == SSH_FXP_OPEN || q->type == SSH_FXP_OPENDIR) {
		if (hlen != 8)
			fprintf(stderr, "OPEN/OPENDIR got a %u-byte handle\n", hlen);
		CHECK(hlen == 8);
	}
	if (S.handle_followups >= MAX_HANDLE_FOLLOWUPS)
		return;
	S.handle_followups++;
	memcpy(fu->h, h, hlen);
	fu->hlen = hlen;
	if (q->type == SSH_FXP_OPENDIR)
		fu->readdir = true;
	else
		fu->open_ops = true;
}

static void parse_readdir(struct req *q, struct sftp_reply *r, struct followups *fu)
{
	uint32_t count;
	if (r->err || r->type != SSH_FXP_NAME || wire_get_u32(&r->body, &count))
		return;
	for (uint32_t i = 0; i < count; i++) {
		struct sftp_attrs a;
		char *name, *longname;
		if (wire_get_cstring(&r->body, &name, 4096))
			break;
		/* (fs.c's readdir_cb tests both in one condition and leaks
		 * longname when only attrs_get fails) */
		if (wire_get_cstring(&r->body, &longname, 65536)) {
			free(name);
			break;
		}
		int bad = attrs_get(&r->body, &a);
		free(longname);
		if (bad) {
			free(name);
			break;
		}
		CHECK(strlen(name) <= 4096);
		free(name);
	}
	if (count > 0 && S.readdir_followups < MAX_FOLLOWUPS) {
		S.readdir_followups++;
		memcpy(fu->h, q->h, q->hlen);
		fu->hlen = q->hlen;
		fu->readdir = true;
	}
}

static void parse_read(struct req *q, struct sftp_reply *r, struct followups *fu)
{
	if (r->type != SSH_FXP_DATA)
		return;
	const uint8_t *data;
	uint32_t n;
	if (wire_get_string(&r->body, &data, &n) || n > q->len)
		return; /* fs.c: "malformed DATA reply", EIO */
	/* Where fs.c copies it: its buffer for this part of the file. */
	uint32_t start = q->off < READ_LEN ? (uint32_t)q->off : 0;
	if (q->len > READ_LEN - start)
		return;
	memcpy(S.readbuf + start, data, n);
	if (n > 0 && n < q->len && S.read_followups < MAX_FOLLOWUPS) {
		S.read_followups++;
		memcpy(fu->h, q->h, q->hlen);
		fu->hlen = q->hlen;
		fu->read_off = q->off + n;
		fu->read_len = q->len - n;
	}
}

static void parse_statvfs(struct sftp_reply *r)
{
	uint64_t v[11];
	if (r->err || r->type != SSH_FXP_EXTENDED_REPLY)
		return;
	for (int i = 0; i < 11; i++)
		if (wire_get_u64(&r->body, &v[i]))
			return;
	touch((const uint8_t *)v, sizeof(v));
}

static void check_reply(struct req *q, struct sftp_reply *r)
{
	CHECK(r->body.pos <= r->body.len);
	if (r->body.len > r->body.pos)
		touch(r->body.data + r->body.pos, r->body.len - r->body.pos);
	switch (r->type) {
	case 0: /* lost, malformed, or given up; or a CLOSE done by reconnecting */
		CHECK(r->err == EIO || r->err == ESTALE || r->err == ETIMEDOUT ||
		      (r->err == 0 && q->type == SSH_FXP_CLOSE));
		CHECK(wire_remaining(&r->body) == 0);
		break;
	case SSH_FXP_STATUS:
		CHECK(r->err == attrs_status_to_errno(r->status));
		break;
	case SSH_FXP_HANDLE:
	case SSH_FXP_DATA:
	case SSH_FXP_NAME:
	case SSH_FXP_ATTRS:
	case SSH_FXP_EXTENDED_REPLY:
		CHECK(r->err == 0);
		break;
	default:
		fprintf(stderr, "callback got reply type %u\n", r->type);
		CHECK(!"a reply type the engine should not pass on");
	}
	/* Read from the wire (not made up: those bodies start at 0, but for
	 * HANDLE, rewritten to the engine's own): sent. (After a reconnect, not
	 * necessarily on this connection yet: dispatch() takes a reply to a
	 * request sent on the old one before it is sent again.) */
	if (r->type != 0 && (r->body.pos >= 5 || r->type == SSH_FXP_HANDLE)) {
		if (!(q->queued && q->written))
			fprintf(stderr, "reply type %u to request id %u, which was not sent\n",
				r->type, q->id);
		CHECK(q->queued && q->written);
		CHECK(S.cur && (conn_wrote(S.cur, q->id) || conn_gen(S.cur) > 0));
	}
	/* A reply read from the wire reaches the request with its id.
	 * dispatch() hands most bodies as a reader over the whole packet from
	 * its type byte on, so the id is at data[1..4] (replies it makes up
	 * itself, or rewrites, start at 0 and are skipped). */
	if (r->type != 0 && r->body.len >= 5 && r->body.pos >= 5) {
		uint32_t id = wire_load_u32(r->body.data + 1);
		if (id != q->id) {
			fprintf(stderr, "reply with id %u reached the request sent with id %u\n", id,
				q->id);
			CHECK(id == q->id);
		}
	}
}

static void reply_cb(void *arg, struct sftp_reply *r)
{
	struct req *q = arg;
	struct followups fu;
	memset(&fu, 0, sizeof(fu));

	pthread_mutex_lock(&S.lock);
	CHECK(q >= S.r && q < S.r + S.n);
	if (q->calls != 0) {
		fprintf(stderr, "callback of request %d (type %u) ran twice\n", (int)(q - S.r),
			q->type);
		CHECK(q->calls == 0);
	}
	q->calls++;
	if (verbose)
		fprintf(stderr, "request %d (type %u, id %u%s): reply type %u, status %u, err %d\n",
			(int)(q - S.r), q->type, q->id, q->written ? "" : ", not written", r->type,
			r->status, r->err);
	check_reply(q, r);
	switch (q->kind) {
	case K_ATTRS:
		parse_attrs(r);
		break;
	case K_NAME1:
		parse_name1(r);
		break;
	case K_HANDLE:
		parse_handle(q, r, &fu);
		break;
	case K_READDIR:
		parse_readdir(q, r, &fu);
		break;
	case K_READ:
		parse_read(q, r, &fu);
		break;
	case K_STATVFS:
		parse_statvfs(r);
		break;
	case K_STATUS: /* fs.c takes anything but STATUS as EIO */
		break;
	}
	pthread_mutex_unlock(&S.lock);

	/* Follow-ups, as fs.c sends them from its callbacks. */
	if (fu.readdir)
		submit_handle(K_READDIR, SSH_FXP_READDIR, fu.h, fu.hlen);
	if (fu.read_len)
		submit_read(fu.h, fu.hlen, fu.read_off, fu.read_len);
	if (fu.open_ops) {
		submit_read(fu.h, fu.hlen, 0, 100);
		submit_handle(K_ATTRS, SSH_FXP_FSTAT, fu.h, fu.hlen);
		submit_handle(K_STATUS, SSH_FXP_CLOSE, fu.h, fu.hlen);
	}

	pthread_mutex_lock(&S.lock);
	S.outstanding--;
	CHECK(S.outstanding >= 0);
	pthread_cond_broadcast(&S.cv);
	pthread_mutex_unlock(&S.lock);
}

/* ------------------------------------------------------------------ */
/* The fake transports: one per connection                            */

struct conn {
	struct transport t;
	int gen;              /* 0: the first connection, then one per reconnect */
	bool final;           /* the well-behaved server after the last stream */
	const uint8_t *data;  /* this connection's stream */
	size_t len, pos;
	size_t pkt_end;       /* where the packet being released ends */
	bool after_version;   /* VERSION released, nothing written since */
	unsigned eagains;     /* -EAGAIN in a row */
	uint32_t *ids;        /* ids written on this connection */
	size_t nids, capids;
	struct wire_buf out;  /* written, not yet parsed */
	struct wire_buf replies; /* final: what it says next */
	bool got_init;
	bool write_fails;
	size_t write_budget;  /* write_fails: bytes accepted before -EPIPE */
	int destroyed;
};

static bool conn_wrote(const struct conn *f, uint32_t id)
{
	for (size_t i = 0; i < f->nids; i++)
		if (f->ids[i] == id)
			return true;
	return false;
}

static int conn_gen(const struct conn *f)
{
	return f->gen;
}

/* May the packet starting at `at` reach the engine now? */
static bool causal(const struct conn *f, size_t at)
{
	if (f->len - at < 9)
		return true;
	const uint8_t *p = f->data + at;
	if (wire_load_u32(p) < 5 || p[4] == SSH_FXP_VERSION)
		return true;
	return conn_wrote(f, wire_load_u32(p + 5));
}

/* Will the engine write before it reads again? Then holding a reply back
 * (-EAGAIN) cannot stall it. */
static bool write_expected(const struct conn *f)
{
	if (f->after_version)
		return true; /* sftp_client_new's limits request, reopening, ours */
	pthread_mutex_lock(&S.lock);
	bool pending = S.more_writes;
	for (int i = 0; i < S.n && !pending; i++) {
		const struct req *q = &S.r[i];
		pending = q->queued && q->calls == 0 && (!q->written || !conn_wrote(f, q->id));
	}
	pthread_mutex_unlock(&S.lock);
	return pending;
}

/* The stream in pieces, packet by packet (see the top of the file). */
static ssize_t conn_read(struct transport *t, void *buf, size_t len)
{
	struct conn *f = (struct conn *)t;
	pthread_mutex_lock(&S.lock);
	S.cur = f;
	pthread_mutex_unlock(&S.lock);
	if (f->final) {
		pthread_mutex_lock(&S.lock);
		size_t n = wire_buf_len(&f->replies);
		if (n > len)
			n = len;
		if (n)
			memcpy(buf, wire_buf_ptr(&f->replies), n);
		wire_buf_consume(&f->replies, n);
		pthread_mutex_unlock(&S.lock);
		return n ? (ssize_t)n : -EAGAIN;
	}
	size_t want, n = 0;
	if (f->pos == f->len)
		return 0; /* EOF */
	switch (S.read_mode) {
	case 0:
		want = f->len - f->pos;
		break;
	case 1:
		want = 1 + next_rand() % 16;
		break;
	case 2:
		want = 1 + next_rand() % 512;
		break;
	default:
		want = 1;
		break;
	}
	if (want > len)
		want = len;
	while (n < want && f->pos < f->len) {
		if (f->pos == f->pkt_end) {
			/* the next packet: may it go? */
			if (!causal(f, f->pos) &&
			    (n > 0 || (f->eagains < MAX_EAGAIN && write_expected(f))))
				break;
			size_t left = f->len - f->pos;
			uint64_t plen = left >= 4 ? wire_load_u32(f->data + f->pos) : 0;
			f->pkt_end = left >= 4 && plen <= left - 4 ? f->pos + 4 + (size_t)plen : f->len;
			if (left >= 5 && f->data[f->pos + 4] == SSH_FXP_VERSION)
				f->after_version = true;
		}
		size_t k = f->pkt_end - f->pos;
		if (k > want - n)
			k = want - n;
		memcpy((uint8_t *)buf + n, f->data + f->pos, k);
		f->pos += k;
		n += k;
	}
	if (n == 0) {
		f->eagains++;
		return -EAGAIN;
	}
	f->eagains = 0;
	return (ssize_t)n;
}

/* Does a written request body equal q's? A handle the engine gave us goes
 * out as the server's: any string there. */
static bool same_request(const struct req *q, uint8_t type, const uint8_t *b, size_t n)
{
	const uint8_t *w = wire_buf_ptr(&q->want);
	size_t wl = wire_buf_len(&q->want);
	if (type != q->type)
		return false;
	if (q->hoff < 0 || q->hlen != 8 || wire_load_u32(q->h) == wire_load_u32(H))
		return n == wl && (n == 0 || memcmp(b, w, n) == 0);
	size_t ho = (size_t)q->hoff, after = ho + 4 + q->hlen;
	if (n < ho + 4 || memcmp(b, w, ho) != 0)
		return false;
	uint32_t rl = wire_load_u32(b + ho);
	if (rl == 0 || rl > SFTP_MAX_HANDLE_LEN || rl > n - ho - 4)
		return false;
	size_t rafter = ho + 4 + rl;
	return n - rafter == wl - after && memcmp(b + rafter, w + after, wl - after) == 0;
}

static void final_reply(struct conn *f, const uint8_t *p, size_t n)
{
	CHECK(wire_put_bytes(&f->replies, p, n) == WIRE_OK);
}

/* One whole packet the engine wrote on connection f (S.lock held). */
static void check_written(struct conn *f, const uint8_t *pkt, uint32_t len)
{
	struct wire_reader r;
	uint8_t type;
	uint32_t id;

	wire_reader_init(&r, pkt, len);
	CHECK(wire_get_u8(&r, &type) == WIRE_OK);
	if (!f->got_init) {
		uint32_t v;
		CHECK(type == SSH_FXP_INIT);
		CHECK(wire_get_u32(&r, &v) == WIRE_OK && v == SFTP_VERSION);
		CHECK(wire_remaining(&r) == 0);
		f->got_init = true;
		if (f->final) {
			static const uint8_t version[] = { 0, 0, 0, 5, SSH_FXP_VERSION, 0, 0, 0, 3 };
			final_reply(f, version, sizeof(version));
			S.final_ready = true;
			pthread_cond_broadcast(&S.cv);
		}
		return;
	}
	CHECK(type != SSH_FXP_INIT);
	CHECK(wire_get_u32(&r, &id) == WIRE_OK);
	CHECK(!conn_wrote(f, id)); /* never twice on one connection */
	if (f->nids == f->capids) {
		f->capids = f->capids ? f->capids * 2 : 16;
		f->ids = realloc(f->ids, f->capids * sizeof(*f->ids));
		CHECK(f->ids != NULL);
	}
	f->ids[f->nids++] = id;
	f->after_version = false;
	if (f->final) {
		/* every request fails: "Failure" */
		uint8_t st[] = { 0, 0, 0, 17, SSH_FXP_STATUS, 0, 0, 0, 0, 0, 0, 0, SSH_FX_FAILURE,
				 0, 0, 0, 0, 0, 0, 0, 0 };
		wire_store_u32(st + 5, id);
		final_reply(f, st, sizeof(st));
	}
	const uint8_t *body = r.data + r.pos;
	size_t blen = wire_remaining(&r);

	for (int i = 0; i < S.n; i++) {
		struct req *q = &S.r[i];
		if (!q->queued || q->id != id)
			continue;
		if (!same_request(q, type, body, blen)) {
			fprintf(stderr, "request %d (id %u, type %u) went out as type %u, %zu bytes\n",
				i, id, q->type, type, blen);
			CHECK(same_request(q, type, body, blen));
		}
		if (q->written) {
			CHECK(f->gen > 0); /* sent again after a reconnect */
		} else {
			CHECK(q->calls == 0);
			q->written = true;
			if (f->gen == 0) {
				CHECK(id > S.last_id); /* in the order submitted */
				S.last_id = id;
			}
		}
		return;
	}
	/* The engine's own: limits@openssh.com before ours, reopening after a
	 * reconnect (a keep-alive REALPATH, were one due); numbered as it
	 * makes them. */
	if (id == S.next_id + 1) {
		S.next_id = id;
		if (type == SSH_FXP_EXTENDED && f->gen == 0 && S.n == 0) {
			static const char lim[] = SFTP_EXT_LIMITS;
			const uint8_t *name;
			uint32_t nl;
			CHECK(wire_get_string(&r, &name, &nl) == WIRE_OK);
			CHECK(nl == strlen(lim) && memcmp(name, lim, nl) == 0 &&
			      wire_remaining(&r) == 0);
			return;
		}
		if (f->gen > 0 && (type == SSH_FXP_OPEN || type == SSH_FXP_OPENDIR ||
				   type == SSH_FXP_READDIR))
			return;
		if (type == SSH_FXP_REALPATH)
			return;
	}
	fprintf(stderr, "the engine wrote a request of type %u, id %u, that was not expected\n",
		type, id);
	CHECK(!"an unexpected request");
}

static ssize_t conn_write(struct transport *t, const void *buf, size_t len)
{
	struct conn *f = (struct conn *)t;
	CHECK(len > 0);
	size_t n = len;
	if (S.write_pieces) {
		size_t k = 1 + next_rand() % 64;
		if (n > k)
			n = k;
	}
	if (f->write_fails) {
		if (f->write_budget == 0) {
			snprintf(t->error, sizeof(t->error), "fake: write: Broken pipe");
			return -EPIPE;
		}
		if (n > f->write_budget)
			n = f->write_budget;
		f->write_budget -= n;
	}
	touch(buf, n);
	CHECK(wire_put_bytes(&f->out, buf, n) == WIRE_OK);
	pthread_mutex_lock(&S.lock);
	for (;;) {
		uint32_t plen;
		int ret = wire_peek_packet(wire_buf_ptr(&f->out), wire_buf_len(&f->out),
					   SFTP_MAX_MSG_LENGTH, &plen);
		CHECK(ret >= 0);
		if (ret == 0)
			break;
		check_written(f, wire_buf_ptr(&f->out) + 4, plen);
		wire_buf_consume(&f->out, (size_t)plen + 4);
	}
	pthread_mutex_unlock(&S.lock);
	return (ssize_t)n;
}

static int conn_pollfds(struct transport *t, bool want_write, struct pollfd *pfd, int max)
{
	(void)t;
	CHECK(max >= 1);
	pfd[0].fd = always_readable;
	pfd[0].events = POLLIN | (want_write ? POLLOUT : 0);
	pfd[0].revents = 0;
	return 1;
}

static void conn_destroy(struct transport *t)
{
	struct conn *f = (struct conn *)t;
	CHECK(f->destroyed == 0);
	f->destroyed++;
	pthread_mutex_lock(&S.lock);
	S.destroyed++;
	if (S.cur == f)
		S.cur = NULL;
	pthread_mutex_unlock(&S.lock);
	wire_buf_free(&f->out);
	wire_buf_free(&f->replies);
	free(f->ids);
	free(f);
}

static const struct transport_ops conn_ops = {
	.name = "fuzz",
	.read = conn_read,
	.write = conn_write,
	.pollfds = conn_pollfds,
	.after_poll = NULL,
	.destroy = conn_destroy,
};

/* The next connection: the next stream, or the well-behaved server. */
static struct conn *conn_new(void)
{
	struct conn *f = calloc(1, sizeof(*f));
	CHECK(f != NULL);
	f->t.ops = &conn_ops;
	wire_buf_init(&f->out, 0);
	wire_buf_init(&f->replies, 0);
	pthread_mutex_lock(&S.lock);
	S.created++;
	f->gen = S.next_seg;
	if (S.next_seg < S.nseg) {
		f->data = S.seg[S.next_seg];
		f->len = S.seg_len[S.next_seg];
		S.next_seg++;
		f->write_fails = S.write_fails;
		f->write_budget = next_rand() % 1024;
	} else {
		f->final = true;
	}
	pthread_mutex_unlock(&S.lock);
	if (verbose)
		fprintf(stderr, "connection %d%s\n", f->gen, f->final ? " (the last, well-behaved)" : "");
	return f;
}

static struct transport *reconnect_fn(void *arg, char *err, size_t errlen)
{
	(void)arg;
	(void)err;
	(void)errlen;
	return &conn_new()->t;
}

/* ------------------------------------------------------------------ */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	always_readable = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(always_readable >= 0);
	pthread_mutex_init(&S.lock, NULL);
	pthread_cond_init(&S.cv, NULL);
	/* Logged through syslog() above: formatted, then dropped.
	 * HASHI_FUZZ_LOG_LEVEL=QUIET (or INFO, ...) logs less. */
	const char *lv = getenv("HASHI_FUZZ_LOG_LEVEL");
	enum log_level level = lv ? log_level_from_name(lv) : LOGL_DEBUG3;
	log_init("fuzz-client", level == LOGL_NOT_SET ? LOGL_DEBUG3 : level, LOG_USER, false);
	verbose = getenv("HASHI_FUZZ_VERBOSE") && strcmp(getenv("HASHI_FUZZ_VERBOSE"), "0") != 0;
	if (verbose)
		log_init("fuzz-client", LOGL_DEBUG3, LOG_USER, true);
	return 0;
}

static int lowest_free_fd(void)
{
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(fd >= 0);
	close(fd);
	return fd;
}

static void set_more_writes(bool v)
{
	pthread_mutex_lock(&S.lock);
	S.more_writes = v;
	pthread_mutex_unlock(&S.lock);
}

static struct conn *first_conn; /* inline, it lives until sftp_client_free */

/* Inline: synchronous STATs drive the engine from this thread. */
static void drive_inline(void)
{
	for (int k = 0; k < MAX_SYNC; k++) {
		if (k > 0 && (!sftp_client_alive(client) || first_conn->pos >= first_conn->len))
			break;
		struct req *q = new_req(K_ATTRS, SSH_FXP_STAT, NULL, 0);
		q->sync = true;
		put_cstr(&q->want, "/sync");
		bool alive = sftp_client_alive(client);
		pthread_mutex_lock(&S.lock);
		q->queued = alive;
		if (alive)
			q->id = ++S.next_id;
		S.more_writes = k + 1 < MAX_SYNC;
		pthread_mutex_unlock(&S.lock);
		struct sftp_msg *m = sftp_msg_new(SSH_FXP_STAT);
		CHECK(wire_put_cstring(sftp_msg_buf(m), "/sync") == WIRE_OK);
		uint8_t type = 0xAA, *body = (uint8_t *)1;
		size_t blen = 12345;
		int e = sftp_call(client, m, &type, &body, &blen);
		pthread_mutex_lock(&S.lock);
		q->calls = 1; /* the engine's own callback ran */
		pthread_mutex_unlock(&S.lock);
		if (verbose)
			fprintf(stderr, "sync STAT %d (id %u): %d, type %u\n", k, q->id, e, type);
		if (!alive)
			CHECK(e == EIO && type == 0);
		if (e == 0)
			CHECK(type != 0 && body != NULL); /* STATUS: OK */
		if (type == 0)
			CHECK(e == EIO);
		if (body != NULL) {
			touch(body, blen);
			if (type == SSH_FXP_ATTRS) {
				struct wire_reader r;
				struct sftp_attrs a;
				wire_reader_init(&r, body, blen);
				(void)attrs_get(&r, &a);
			}
		}
		free(body);
	}
	set_more_writes(false);
	/* Whatever is still pending fails in sftp_client_free. */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	const uint8_t hdr = data[0];
	const unsigned mask = data[1] | (unsigned)data[2] << 8;
	const int fd_before = lowest_free_fd();

	pthread_mutex_lock(&S.lock);
	S.n = 0;
	S.outstanding = 0;
	S.read_followups = S.readdir_followups = S.handle_followups = 0;
	S.last_id = 0;
	S.next_id = 0;
	S.cur = NULL;
	S.threaded = hdr & 16;
	S.reconnecting = S.threaded && (hdr & 32);
	S.read_mode = hdr & 3;
	S.write_pieces = hdr & 4;
	S.write_fails = hdr & 8;
	S.rng = 0x9E3779B9u ^ ((uint32_t)(hdr >> 6) * 0x85EBCA6Bu) ^ (uint32_t)mask;
	S.final_ready = false;
	S.created = S.destroyed = 0;
	/* the streams */
	S.nseg = 0;
	S.next_seg = 0;
	const uint8_t *p = data + 3, *end = data + size;
	while (S.reconnecting && S.nseg < MAX_SEGMENTS - 1) {
		const uint8_t *m = memmem(p, (size_t)(end - p), RECONNECT_MARK, MARK_LEN);
		if (!m)
			break;
		S.seg[S.nseg] = p;
		S.seg_len[S.nseg++] = (size_t)(m - p);
		p = m + MARK_LEN;
	}
	S.seg[S.nseg] = p;
	S.seg_len[S.nseg++] = (size_t)(end - p);
	S.more_writes = mask != 0 || !S.threaded;
	pthread_mutex_unlock(&S.lock);
	S.readbuf = malloc(READ_LEN);
	CHECK(S.readbuf != NULL);

	char err[256] = "";
	first_conn = conn_new();
	client = sftp_client_new(&first_conn->t, err, sizeof(err));
	if (verbose)
		fprintf(stderr, "sftp_client_new: %s\n", client ? "ok" : err);
	if (client == NULL) {
		CHECK(err[0] != '\0');
		goto out;
	}
	/* Within our bounds (1 MiB), never below 1 KiB. */
	CHECK(sftp_client_max_read(client) >= 1024 && sftp_client_max_read(client) <= 1024 * 1024);
	CHECK(sftp_client_max_write(client) >= 1024 &&
	      sftp_client_max_write(client) <= 1024 * 1024);

	for (int i = 0; i < 16; i++)
		if (mask & (1u << i))
			submit_req(i);

	if (S.threaded) {
		if (S.reconnecting) {
			sftp_client_set_reconnect(client, reconnect_fn, NULL, 0);
			sftp_client_set_keepalive(client, 3600, 3); /* never, in practice */
		}
		set_more_writes(false);
		CHECK(sftp_client_start(client) == 0);
		/* Every callback runs: the input ends in EOF, which fails what is
		 * pending, or, reconnecting, the last server answers it all. And
		 * reconnecting, free only once the last server is there (no
		 * reconnect thread is left running then). */
		pthread_mutex_lock(&S.lock);
		while (S.outstanding > 0 || (S.reconnecting && !S.final_ready))
			pthread_cond_wait(&S.cv, &S.lock);
		pthread_mutex_unlock(&S.lock);
		if (S.reconnecting)
			CHECK(sftp_client_reconnects(client) <= (unsigned)S.nseg);
	} else {
		drive_inline();
	}
	sftp_client_free(client);
	client = NULL;
	first_conn = NULL;

	for (int i = 0; i < S.n; i++) {
		if (S.r[i].calls != 1) {
			fprintf(stderr, "request %d (type %u) got %d callbacks\n", i, S.r[i].type,
				S.r[i].calls);
			CHECK(S.r[i].calls == 1);
		}
	}
	CHECK(S.outstanding == 0);
out:
	if (S.created != S.destroyed) {
		fprintf(stderr, "%d transports made, %d destroyed\n", S.created, S.destroyed);
		CHECK(S.created == S.destroyed);
	}
	S.more_writes = false;
	for (int i = 0; i < S.n; i++)
		wire_buf_free(&S.r[i].want);
	S.n = 0;
	free(S.readbuf);
	S.readbuf = NULL;
	if (lowest_free_fd() != fd_before) {
		fprintf(stderr, "a file descriptor opened while serving this input is still open\n");
		CHECK(lowest_free_fd() == fd_before);
	}
	return 0;
}
