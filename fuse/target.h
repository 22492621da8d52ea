/*
 * What to connect to, resolved as ssh would: user@host:dir from the command
 * line, -p/-F/-o options, ~/.ssh/config and /etc/ssh/ssh_config (through
 * `ssh -G` where OpenSSH's client is installed, else a built-in reader for
 * the common keywords).
 */
#ifndef HASHI_TARGET_H
#define HASHI_TARGET_H

#include <stdbool.h>
#include <stddef.h>

enum strict_host_key_checking {
	SHKC_ASK = 0, /* ssh's default */
	SHKC_YES,
	SHKC_ACCEPT_NEW,
	SHKC_NO,
};

#define TARGET_MAX_LIST 32

enum { TARGET_CM_NO = 0, TARGET_CM_YES, TARGET_CM_AUTO };

struct ssh_target {
	char *host_arg;   /* the host as the user wrote it (an alias perhaps) */
	char *hostname;   /* HostName: what to connect to */
	char *user;       /* User (default: the local user) */
	char *port;       /* Port, as a string ("22") */
	char *dir;        /* the remote directory ("" = the login directory) */

	char *identity_files[TARGET_MAX_LIST]; /* IdentityFile, ~ expanded */
	int n_identity_files;
	bool identities_only;
	char *identity_agent; /* IdentityAgent / SSH_AUTH_SOCK: the socket; "none" =
			       * the configuration turns the agent off; NULL = no
			       * SSH_AUTH_SOCK either */
	char *known_hosts[TARGET_MAX_LIST];    /* UserKnownHostsFile then GlobalKnownHostsFile */
	int n_known_hosts;
	int n_user_known_hosts;                /* how many of those are user files */
	enum strict_host_key_checking strict;
	bool check_host_ip;
	char *host_key_alias;  /* HostKeyAlias or NULL */

	bool batch_mode;
	bool pubkey_auth, password_auth, kbdint_auth;
	int number_of_password_prompts;

	char *proxy_command;   /* ProxyCommand with %h %p %r already expanded, or NULL */
	char *proxy_jump;      /* ProxyJump or NULL */
	int address_family;    /* AF_UNSPEC, AF_INET or AF_INET6 */
	int connect_timeout;   /* seconds; 0 = none */
	int server_alive_interval;  /* seconds; 0 = off */
	int server_alive_count_max;
	bool compression;
	char *ciphers, *macs, *kex_algorithms, *host_key_algorithms; /* or NULL */
	char *control_path;    /* ControlPath, expanded, or NULL */
	int control_persist;   /* seconds; -1 = no, 0 = forever */
	int control_master;    /* TARGET_CM_NO, _YES or _AUTO */

	/* hashi's own transport choices (from -o, not from ssh_config) */
	char *sftp_server;     /* -o sftp_server=PATH|SUBSYSTEM, or NULL for "sftp" */
	char *config_file;     /* -F file, passed on to an ssh run for ProxyJump; or NULL */
	bool password_stdin;   /* -o password_stdin: read the password from stdin */
	char *password;        /* filled by the caller when password_stdin */
};

/* A -o/-p/-F option to pass to ssh, as "Keyword=value" (Keyword as ssh spells
 * it: case is normalised by target_canonical_keyword). */
struct target_options {
	char *config_file;     /* -F, or NULL */
	char *opts[128];
	int n;
};

/* Split "[user@]host:[dir]" (host may be "[v6addr]"). Returns 0, or -1 with
 * a one-line message in err. The out strings are malloc'd. */
int target_split(const char *spec, char **user, char **host, char **dir, char *err, size_t errlen);

/* The ssh keyword for a case-insensitive name ("port" -> "Port",
 * "stricthostkeychecking" -> "StrictHostKeyChecking"), or NULL if ssh has
 * no such keyword. */
const char *target_canonical_keyword(const char *name);

/* The i-th keyword of that table (ssh's spelling), NULL past the end: for
 * listing them, and for tests. */
const char *target_keyword_at(int i);

/* Whether the command line alone settles where the control socket is and
 * that a running master may lend us a channel, with no ssh_config read: ssh
 * takes the first -o value of a keyword over any file's, so a literal
 * ControlPath (absolute, no %-token or ~) and a ControlMaster other than
 * yes/ask decide it. Then fills *cp (the ControlPath, malloc'd) and *cm
 * (TARGET_CM_AUTO or _NO) and returns true. */
bool target_cmdline_control(const struct target_options *o, char **cp, int *cm);

/* Resolve everything ssh would for user@host with these options. Returns 0,
 * or -1 with a one-line error in err (e.g. a bad value, or ssh -G failing).
 * user may be NULL (then User from the config, else the local user); it
 * overrides User as ssh's -l does. host is the bare host (no brackets).
 * The resolving is done by `ssh -G` when ssh is on PATH (and the environment
 * has no HASHI_NO_SSH_G=1), else by a built-in reader of ~/.ssh/config and
 * /etc/ssh/ssh_config (or o->config_file; "none" reads no file).
 * In o->opts, hashi's own "sftp_server=X" and "password_stdin" set those
 * fields and are not passed to ssh; every other entry goes to ssh as -o.
 * Identity files, known_hosts files, ControlPath and ProxyCommand come out
 * with ~ and %-tokens expanded; identity_agent is the socket to use (from
 * IdentityAgent or SSH_AUTH_SOCK), "none" or NULL for none. ciphers, macs,
 * kex_algorithms and host_key_algorithms are ssh's final lists (its defaults
 * when not configured). On failure *t is left zeroed. */
int target_resolve(struct ssh_target *t, const char *user, const char *host, const char *dir,
		   const struct target_options *o, char *err, size_t errlen);
void target_free(struct ssh_target *t);

#endif
