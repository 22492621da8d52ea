/*
 * The ControlMaster-like control socket: one hashi process per
 * user@host:port holds the SSH connection (the master) and lends SFTP
 * channels on it to later hashi processes, which then start with no TCP,
 * key exchange or authentication at all. Options as ssh's: ControlMaster,
 * ControlPath, ControlPersist; `hashi -O check|exit|stop|status host`.
 *
 * Threads: the master's accept thread answers control requests and queues
 * borrowers; the connection's I/O thread (sftp-client) opens their channels
 * and relays bytes, through the transport that master_transport() wraps
 * around the libssh2 one.
 */
#ifndef HASHI_MASTER_H
#define HASHI_MASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "target.h"
#include "transport/transport.h"

struct master_settings {
	int control_master;    /* TARGET_CM_NO, _YES, _AUTO */
	bool path_configured;  /* ControlPath was set (-o or ssh_config) */
	char path[108];        /* the socket (expanded); "" when none */
	int persist;           /* seconds; -1 = no, 0 = for ever */
};

/* The settings for a resolved target. With no ControlPath configured, the
 * socket is $XDG_RUNTIME_DIR/hashi/%C, else ~/.ssh/hashi/%C (%C as ssh's:
 * a hash of the local host name, host, port and user). ControlPath=none
 * turns everything off. from_cmdline: ControlPath came from hashi's own -o
 * (else it is ssh's from ssh_config, and hashi's socket is PATH.hashi, so
 * that it never takes the place of an OpenSSH master's). */
int master_settings_get(const struct ssh_target *t, bool from_cmdline,
			struct master_settings *ms, char *err, size_t errlen);

/* Make the connection for a mount, through the control socket as the
 * settings say: borrow a channel from a running master; else connect
 * (connect_fn) and, for ControlMaster=auto|yes, become the master. A master
 * whose session refuses another channel (sshd's MaxSessions) makes the
 * borrower connect on its own. Called again to reconnect (the master
 * reconnects for everyone; a borrower re-borrows, or becomes the master if
 * the old one is gone). */
typedef struct transport *(*master_connect_fn)(void *arg, char *err, size_t errlen);
struct transport *master_transport(const struct master_settings *ms, const char *mountpoint,
				   unsigned reconnects, master_connect_fn connect_fn, void *arg,
				   char *err, size_t errlen);

/* Only borrow: a channel from the master at ms->path if one lends it now,
 * else NULL (logged at debug level; the caller then takes the whole way,
 * master_transport). For a mount whose command line names the socket
 * (target_cmdline_control), before the target is resolved. */
struct transport *master_borrow(const struct master_settings *ms, const char *mountpoint);

/* Start answering on the control socket: after fuse_daemonize (whose fork
 * keeps no thread); a master elected later starts at once. */
void master_start(void);

/* For `hashi -O status`: what the mount's engine and cache say. */
struct master_stats {
	bool connected;
	uint64_t in_flight;
	uint64_t bytes_sent, bytes_received;
	unsigned reconnects;
	/* The cache's counters: filled when fs.c's cache registers them
	 * (cache_lookups 0 = no cache statistics: shown as "n/a"). */
	uint64_t cache_hits, cache_lookups;
};
typedef void (*master_stats_fn)(void *arg, struct master_stats *s);
void master_set_stats(const char *mountpoint, master_stats_fn fn, void *arg);

/* After this process's own mount is gone: while borrowers remain, and then
 * for ControlPersist, keep the connection (returns when the master may
 * exit). Returns at once when this process is no master. */
void master_linger(void);

/* Stop listening and remove the socket (at exit). */
void master_shutdown(void);

/* `hashi -O CMD`: check, exit, stop or status, for the master at path.
 * Prints as ssh -O does; returns the exit status (0, or 255). */
int master_command(const char *cmd, const char *path);

#endif
