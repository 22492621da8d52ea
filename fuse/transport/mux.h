/*
 * hashi's control socket protocol (the master: fuse/master.c; the client:
 * transport/mux.c). Packets are framed as SFTP's: uint32 length, byte
 * type, then the fields.
 *
 *   master -> client at once:  HELLO   string "hashi-control", uint32 version, uint32 pid
 *   client -> master:          BORROW  string mountpoint, uint32 reconnects so far
 *                              REPORT  string mountpoint
 *                              CHECK | EXIT | STOP | STATUS   (no fields)
 *   master -> client:          OK      uint32 pid
 *                              FAIL    uint32 code (MUX_FAIL_*), string why
 *                              TEXT    string text (the answer to STATUS)
 *
 * After OK to a BORROW, the connection carries the raw bytes of an SFTP
 * session: the master relays them to and from a new channel on its SSH
 * session.
 *
 * After a REPORT (sent by a borrower once it has its channel, on a second
 * connection it keeps; it does not wait for the OK), the master asks for the borrower's own
 * figures whenever `hashi -O status` asks it:
 *   master -> borrower:        STATS_REQ uint32 seq
 *   borrower -> master:        STATS     uint32 seq, uint32 pid, byte connected,
 *                              uint64 in flight, uint64 sent, uint64 received,
 *                              uint32 reconnects, uint64 cache hits,
 *                              uint64 cache lookups (0: no cache figures)
 */
#ifndef HASHI_MUX_H
#define HASHI_MUX_H

#include <stdint.h>

#include "transport.h"

#define MUX_MAGIC "hashi-control"
#define MUX_VERSION 1
#define MUX_MAX_PACKET 65536

enum {
	MUX_HELLO = 1,
	MUX_BORROW = 2,
	MUX_CHECK = 3,
	MUX_EXIT = 4,
	MUX_STOP = 5,
	MUX_STATUS = 6,
	MUX_REPORT = 7,
	MUX_OK = 10,
	MUX_FAIL = 11,
	MUX_TEXT = 12,
	MUX_STATS_REQ = 13,
	MUX_STATS = 14,
};

enum {
	MUX_FAIL_CHANNEL = 1, /* the server refused another channel (MaxSessions) */
	MUX_FAIL_BUSY = 2,    /* the master lends no more channels */
};

/* What a borrow or a request came to. */
enum mux_result {
	MUX_DONE = 0,
	MUX_NO_MASTER,   /* no socket, or nobody listening on it (a stale socket) */
	MUX_REFUSED,     /* the master answered but lends no channel now */
	MUX_UNUSABLE,    /* something else is there (not a hashi master, another uid) */
	MUX_NO_ANSWER,   /* the master took no answer in time (it may be reconnecting), or left */
};

/* Borrow an SFTP channel from the master at path. On success a transport
 * whose bytes are an SFTP session; else NULL, *res says why and err
 * carries a line in ssh's words ("Control socket connect(PATH): No such
 * file or directory"). */
struct transport *transport_mux_borrow(const char *path, const char *mountpoint,
				       unsigned reconnects, enum mux_result *res, char *err,
				       size_t errlen);

/* One control request (MUX_CHECK, EXIT, STOP or STATUS). Returns 0 with the
 * master's pid (and for STATUS, *text: malloc'd), or -1 with *res and err. */
int transport_mux_request(const char *path, uint8_t type, uint32_t *pid, char **text,
			  enum mux_result *res, char *err, size_t errlen);

/* Open the REPORT connection to the master at path for this mount (see
 * above). Returns the socket (blocking, no timeout), or -1 with *res and
 * err. */
int transport_mux_report(const char *path, const char *mountpoint, enum mux_result *res,
			 char *err, size_t errlen);

/* Blocking helpers shared with master.c: read one packet (within the
 * socket's receive timeout) into buf; returns its length or -1. Write all
 * of a buffer; 0 or -1. */
int mux_read_packet(int fd, uint8_t *buf, size_t max);
int mux_write_all(int fd, const void *buf, size_t len);

#endif
