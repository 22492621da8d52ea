/* hashi: mount a remote directory over SSH. sshfs's command line; connect and
 * authenticate first, mount, then go to the background. */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fuse_lowlevel.h>
#include <grp.h>
#include <glib.h>
#include <pthread.h>
#include <time.h>
#include <libssh2.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "cache.h"
#include "fs.h"
#include "idmap.h"
#include "log.h"
#include "master.h"
#include "sftp-client.h"
#include "sftp-proto.h"
#include "target.h"
#include "transport/transport.h"

struct options {
	char *source;        /* [user@]host:[dir] */
	char *mountpoint;
	bool foreground, debug, show_help, show_version;
	char *ssh_command;   /* -o ssh_command= */
	char *sftp_server;
	char *directport;
	bool passive;
	bool password_stdin;
	bool force_openssh;  /* -o transport=openssh */
	bool compression;
	struct target_options topts;
	GPtrArray *fuse_opts; /* "-o" options for libfuse and the kernel */
	struct fs_config fs;
	bool no_check_root;
	bool mount_helper;    /* run as mount.hashi / mount.fuse.hashi by mount(8) */
	bool noreconnect;
	unsigned timeout_s;   /* -o timeout=: how long a request waits for a reconnect */
	bool reconnecting;    /* connect_transport is called again: no prompts */
	bool sloppy;          /* mount -s: unknown options are not fatal */
	char *setuid_user;    /* -o setuid=USER */
	char *idmap, *uidfile, *gidfile, *nomap;
	/* the cache, as sshfs's options: < 0 where not given */
	bool no_cache;
	double dcache_timeout, dcache_stat, dcache_dir, dcache_link;
	double entry_timeout, attr_timeout, negative_timeout;
	unsigned max_conns;   /* -o max_conns=N: SSH connections (0: not given) */
	char *ctl_cmd;        /* -O check|exit|stop|status */
};

#define MAX_CONNS 16

/* Static, so that what an early exit leaves allocated is still reachable
 * (and not reported as a leak by LeakSanitizer). */
static struct options o;
static char *user, *host, *dir;
static GPtrArray *fargs; /* libfuse's arguments (the parent leaves in fuse_daemonize) */
static char *saved_password;
static int config_alive_interval = -1, config_alive_count = -1;

static void usage(FILE *f)
{
	fprintf(f,
"usage: hashi [user@]host:[dir] mountpoint [options]\n"
"       hashi -O check|exit|stop|status [user@]host [options]\n"
"\n"
"Mount a remote directory over SSH (SFTP), as sshfs does.\n"
"\n"
"general options:\n"
"    -o opt,[opt...]        mount options (below)\n"
"    -h   --help            print this help and exit\n"
"    -V   --version         print the versions (hashi, libssh2, libfuse, FUSE protocol)\n"
"    -f                     stay in the foreground\n"
"    -d   -o debug          debug log, one line per SFTP request and reply (implies -f)\n"
"    -v                     debug log, staying in the background\n"
"    -s                     accepted for sshfs compatibility (hashi's FUSE loop is one thread)\n"
"\n"
"connection options:\n"
"    -p PORT                the server's port (-o Port=PORT)\n"
"    -C                     compression (-o Compression=yes)\n"
"    -F FILE                the ssh configuration file, instead of ~/.ssh/config\n"
"    -o SshOption=VALUE     any ssh_config(5) option, names case-insensitive: IdentityFile,\n"
"                           Port, User, HostName, StrictHostKeyChecking, UserKnownHostsFile,\n"
"                           ConnectTimeout, ServerAliveInterval, ServerAliveCountMax, ProxyJump,\n"
"                           ProxyCommand, BatchMode, PasswordAuthentication, IdentitiesOnly, ...\n"
"    -o password_stdin      read the password from standard input\n"
"    -o transport=openssh   run OpenSSH's ssh instead of the built-in libssh2 connection\n"
"    -o ssh_command=CMD     run CMD instead of ssh (implies transport=openssh)\n"
"    -o sftp_server=SERV    the server's SFTP subsystem name, or the path of its sftp-server\n"
"    -o directport=PORT     connect straight to an SFTP server on PORT, without SSH\n"
"    -o passive             speak SFTP on standard input and output (implies -f)\n"
"    -o reconnect           reconnect when the connection breaks (the default);\n"
"                           open files are reopened and requests sent again\n"
"    -o noreconnect         fail every request with EIO once the connection is lost\n"
"    -o timeout=S           how long a request waits for a reconnect (default 60; 0: for ever)\n"
"    -o ServerAliveInterval=S, ServerAliveCountMax=N  dead-peer check (default 10 s, 3;\n"
"                           ServerAliveInterval=0 turns it off)\n"
"    -o max_conns=N         N SSH connections (default 1, at most 16), each with a thread\n"
"                           of its own: files only read go to the least busy one\n"
"\n"
"connection sharing (as ssh's; the built-in libssh2 connection only):\n"
"    -o ControlMaster=auto  share one connection between the mounts of user@host:port: the\n"
"                           first becomes the master, later ones borrow an SFTP channel on\n"
"                           its connection (no TCP, key exchange or login); yes: be the\n"
"                           master; no (the default): never be one (but borrow from the\n"
"                           master at a ControlPath that is set)\n"
"    -o ControlPath=PATH    the master's socket (%%h %%p %%r %%u %%C %%%% as ssh; default\n"
"                           $XDG_RUNTIME_DIR/hashi/%%C, else ~/.ssh/hashi/%%C; none: off)\n"
"    -o ControlPersist=yes|no|S  how long a master whose own mount is gone stays for new\n"
"                           borrowers (it always stays while borrowers remain)\n"
"    -O check|exit|stop|status [user@]host  ask the master for host, as ssh -O (status:\n"
"                           each mount's connection, requests in flight, bytes, reconnects,\n"
"                           cache hit rate)\n"
"\n"
"cache options:\n"
"    -o dir_cache=yes|no    cache attributes, directory listings, symlink targets and\n"
"                           missing names (default yes; also -o cache=yes|no)\n"
"    -o dcache_timeout=S    seconds a cached answer is used (default 20)\n"
"    -o dcache_stat_timeout=S, dcache_dir_timeout=S, dcache_link_timeout=S\n"
"                           the same for attributes, listings, symlink targets\n"
"    -o dcache_max_size=N   paths cached at most (default 10000)\n"
"                           (sshfs's older names cache_timeout, cache_stat_timeout,\n"
"                           cache_dir_timeout, cache_link_timeout, cache_max_size work too)\n"
"    -o entry_timeout=S     seconds the kernel keeps names (default: dcache_stat_timeout;\n"
"                           0 with dir_cache=no)\n"
"    -o attr_timeout=S      seconds the kernel keeps attributes (the same default)\n"
"    -o negative_timeout=S  seconds the kernel keeps a missing name (the same default)\n"
"    (dcache_clean_interval is accepted)\n"
"    -o kernel_cache        the kernel keeps file contents across opens\n"
"    -o auto_cache          ... as long as a file's size and mtime stay the same\n"
"\n"
"data options:\n"
"    -o sshfs_sync          a write returns once the server has it (default: once it is\n"
"                           sent; errors then come back at fsync and close)\n"
"    -o no_readahead        read only what the kernel asks for (default: a sequential\n"
"                           reader gets up to 16 MiB read ahead)\n"
"    -o sync_create         a create waits for the server (default: a new file in a\n"
"                           directory known writable is answered at once, and an error\n"
"                           the server gives comes back at fsync and close)\n"
"\n"
"mapping options:\n"
"    -o idmap=TYPE          owners shown: none (as the server says; default), user (the\n"
"                           remote login user is you), file (uidfile=, gidfile=), names (by\n"
"                           user and group name, through the server's users-groups-by-id)\n"
"    -o uidfile=FILE        idmap=file: lines 'localname:remoteuid'\n"
"    -o gidfile=FILE        idmap=file: lines 'localgroup:remotegid'\n"
"    -o nomap=TYPE          an id without a mapping: ignore (shown as is) or error\n"
"    -o uid=N, gid=N        show every file as owned by this user / group\n"
"    -o umask=M             clear these permission bits from every file shown\n"
"\n"
"FUSE options:\n"
"    -o allow_other, allow_root, default_permissions, ro, rw, auto_unmount,\n"
"       nodev, nosuid, dev, suid, exec, noexec, atime, noatime, fsname=NAME, subtype=NAME,\n"
"       max_read=N       passed to FUSE and the kernel\n"
"    -o no_check_root       do not check that the remote directory exists\n"
"    -o disable_hardlink    link(2) fails with ENOSYS\n"
"    -o contain_symlinks    (the default) a symbolic link whose target is absolute outside\n"
"                           the remote directory, or climbs above it with \"..\", cannot be\n"
"                           read or followed (EPERM); absolute targets beneath it are shown\n"
"                           relative to the link\n"
"    -o no_contain_symlinks show every link's target as the server gives it\n"
"    -o setuid=USER         (as root, e.g. from fstab) mount as USER, with USER's ssh files\n"
"\n"
"Unmount with: fusermount3 -u mountpoint\n"
"As mount.hashi or mount.fuse.hashi, hashi is mount(8)'s helper for fstab type fuse.hashi.\n");
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p) {
		fprintf(stderr, "hashi: out of memory\n");
		exit(1);
	}
	return p;
}

/* An option given again: the last one counts (as in sshfs). */
static void set_str(char **dst, const char *val)
{
	free(*dst);
	*dst = xstrdup(val);
}

static int add_ssh_opt(struct options *o, const char *kw, const char *val)
{
	if (o->topts.n >= (int)(sizeof(o->topts.opts) / sizeof(o->topts.opts[0]))) {
		fprintf(stderr, "hashi: too many ssh options\n");
		return -1;
	}
	char *s = g_strdup_printf("%s=%s", kw, val);
	o->topts.opts[o->topts.n++] = s;
	return 0;
}

static const char *const fuse_passthrough[] = {
	"allow_other", "allow_root", "default_permissions", "ro", "rw", "auto_unmount",
	"nodev", "nosuid", "dev", "suid", "exec", "noexec", "atime", "noatime",
	"sync", "async", "dirsync", "fsname", "subtype", "max_read", "blkdev", "blksize",
	NULL,
};

/* Words mount(8) and fstab put in an option list that mean nothing here. */
static const char *const ignored[] = {
	"_netdev", "user", "nouser", "users", "auto", "noauto", "nofail", "defaults",
	"nonempty", "big_writes", "transform_symlinks", "workaround",
	"follow_symlinks", "ssh_protocol", "delay_connect", "idmap",
	"sync_readdir",
	"dcache_clean_interval", "dcache_min_clean_interval",
	"cache_clean_interval", "cache_min_clean_interval",
	"writeback_cache", "direct_io", "x-systemd.automount", "comment", "relatime",
	"strictatime", "nodiratime",
	NULL,
};

static bool in_list(const char *const *list, const char *key)
{
	for (size_t i = 0; list[i]; i++)
		if (strcmp(list[i], key) == 0 || (strncmp(key, "x-", 2) == 0 && strcmp(list[i], "x-systemd.automount") == 0))
			return true;
	return false;
}

static bool parse_uint(const char *s, int base, unsigned long *out)
{
	char *end;
	if (!s || !*s)
		return false;
	errno = 0;
	*out = strtoul(s, &end, base);
	return errno == 0 && *end == '\0';
}

static bool parse_double(const char *s, double *out)
{
	char *end;
	if (!s || !*s)
		return false;
	errno = 0;
	*out = strtod(s, &end);
	return errno == 0 && *end == '\0' && *out >= 0;
}

/* Where a timeout option goes (sshfs's dcache_* and older cache_* names,
 * and the kernel's), or NULL. */
static double *timeout_option(struct options *o, const char *key)
{
	const char *k = strncmp(key, "dcache_", 7) == 0 ? key + 1 : key;
	if (strcmp(k, "cache_timeout") == 0)
		return &o->dcache_timeout;
	if (strcmp(k, "cache_stat_timeout") == 0)
		return &o->dcache_stat;
	if (strcmp(k, "cache_dir_timeout") == 0)
		return &o->dcache_dir;
	if (strcmp(k, "cache_link_timeout") == 0)
		return &o->dcache_link;
	if (strcmp(key, "entry_timeout") == 0)
		return &o->entry_timeout;
	if (strcmp(key, "attr_timeout") == 0)
		return &o->attr_timeout;
	if (strcmp(key, "negative_timeout") == 0)
		return &o->negative_timeout;
	return NULL;
}

/* The cache's settings and the kernel's timeouts from the options given:
 * each unset timeout takes dcache_timeout; the kernel keeps what we keep
 * (nothing with dir_cache=no) unless told otherwise. */
static void cache_settings(struct options *o)
{
	struct cache_config *cc = &o->fs.cache;
	double base = o->dcache_timeout >= 0 ? o->dcache_timeout : 20.0;
	cc->enabled = !o->no_cache && base > 0;
	cc->stat_timeout = o->dcache_stat >= 0 ? o->dcache_stat : base;
	cc->dir_timeout = o->dcache_dir >= 0 ? o->dcache_dir : base;
	cc->link_timeout = o->dcache_link >= 0 ? o->dcache_link : base;
	if (cc->max_size == 0)
		cc->max_size = 10000;
	double kernel = cc->enabled ? cc->stat_timeout : 0;
	o->fs.entry_timeout = o->entry_timeout >= 0 ? o->entry_timeout : kernel;
	o->fs.attr_timeout = o->attr_timeout >= 0 ? o->attr_timeout : kernel;
	o->fs.negative_timeout = o->negative_timeout >= 0 ? o->negative_timeout : kernel;
}

/* One -o item. Returns 0, or -1 after printing an error naming it. */
static int handle_opt(struct options *o, char *item)
{
	char *eq = strchr(item, '=');
	char *val = NULL;
	if (eq) {
		*eq = '\0';
		val = eq + 1;
	}
	const char *key = item;
	unsigned long n;
	double d;

	if (!*key)
		return 0;
	if (strcmp(key, "debug") == 0 || strcmp(key, "sshfs_debug") == 0) {
		o->debug = o->foreground = true;
	} else if (strcmp(key, "ssh_command") == 0 && val) {
		set_str(&o->ssh_command, val);
		o->force_openssh = true;
	} else if (strcmp(key, "transport") == 0 && val) {
		if (strcmp(val, "openssh") == 0)
			o->force_openssh = true;
		else if (strcmp(val, "libssh2") == 0)
			o->force_openssh = false;
		else {
			fprintf(stderr, "hashi: bad value for transport: '%s' (openssh or libssh2)\n", val);
			return -1;
		}
	} else if (strcmp(key, "sftp_server") == 0 && val) {
		set_str(&o->sftp_server, val);
	} else if (strcmp(key, "directport") == 0 && val) {
		set_str(&o->directport, val);
	} else if (strcmp(key, "passive") == 0 || strcmp(key, "slave") == 0) {
		/* stdin and stdout are the connection: no daemon */
		o->passive = true;
		o->foreground = true;
	} else if (strcmp(key, "password_stdin") == 0) {
		o->password_stdin = true;
	} else if (strcmp(key, "reconnect") == 0 && !val) {
		o->noreconnect = false;
	} else if (strcmp(key, "noreconnect") == 0 && !val) {
		o->noreconnect = true;
	} else if (strcmp(key, "timeout") == 0) {
		unsigned long t;
		if (!parse_uint(val, 10, &t) || t > 86400 * 365) {
			fprintf(stderr, "hashi: bad value for timeout: '%s' (seconds)\n", val ? val : "");
			return -1;
		}
		o->timeout_s = (unsigned)t;
	} else if (strcmp(key, "setuid") == 0 && val) {
		set_str(&o->setuid_user, val);
	} else if (strcmp(key, "idmap") == 0 && val) {
		set_str(&o->idmap, val);
	} else if (strcmp(key, "uidfile") == 0 && val) {
		set_str(&o->uidfile, val);
	} else if (strcmp(key, "gidfile") == 0 && val) {
		set_str(&o->gidfile, val);
	} else if (strcmp(key, "nomap") == 0 && val) {
		if (strcmp(val, "ignore") != 0 && strcmp(val, "error") != 0) {
			fprintf(stderr, "hashi: bad value for nomap: '%s' (ignore or error)\n", val);
			return -1;
		}
		set_str(&o->nomap, val);
	} else if (strcmp(key, "sshfs_sync") == 0) {
		o->fs.sync_writes = true;
	} else if (strcmp(key, "no_readahead") == 0) {
		o->fs.no_readahead = true;
	} else if (strcmp(key, "sync_create") == 0) {
		o->fs.sync_create = true;
	} else if (strcmp(key, "kernel_cache") == 0) {
		o->fs.kernel_cache = true;
	} else if (strcmp(key, "auto_cache") == 0 || strcmp(key, "noauto_cache") == 0) {
		o->fs.auto_cache = key[0] == 'a';
	} else if (strcmp(key, "max_conns") == 0) {
		if (!parse_uint(val, 10, &n) || n < 1 || n > MAX_CONNS) {
			fprintf(stderr, "hashi: bad value for max_conns: '%s' (1 to %d)\n", val ? val : "",
				MAX_CONNS);
			return -1;
		}
		o->max_conns = (unsigned)n;
	} else if (strcmp(key, "contain_symlinks") == 0 && !val) {
		o->fs.no_contain_symlinks = false;
	} else if (strcmp(key, "no_contain_symlinks") == 0 && !val) {
		o->fs.no_contain_symlinks = true;
	} else if (strcmp(key, "disable_hardlink") == 0) {
		o->fs.disable_hardlink = true;
	} else if (strcmp(key, "no_check_root") == 0) {
		o->no_check_root = true;
	} else if (strcmp(key, "uid") == 0) {
		if (!parse_uint(val, 10, &n)) {
			fprintf(stderr, "hashi: bad value for uid: '%s'\n", val ? val : "");
			return -1;
		}
		o->fs.set_uid = true;
		o->fs.uid = (uid_t)n;
	} else if (strcmp(key, "gid") == 0) {
		if (!parse_uint(val, 10, &n)) {
			fprintf(stderr, "hashi: bad value for gid: '%s'\n", val ? val : "");
			return -1;
		}
		o->fs.set_gid = true;
		o->fs.gid = (gid_t)n;
	} else if (strcmp(key, "umask") == 0) {
		if (!parse_uint(val, 8, &n) || n > 0777) {
			fprintf(stderr, "hashi: bad value for umask: '%s'\n", val ? val : "");
			return -1;
		}
		o->fs.set_umask = true;
		o->fs.umask = (mode_t)n;
	} else if (strcmp(key, "dir_cache") == 0 || strcmp(key, "cache") == 0) {
		if (!val || (strcmp(val, "yes") != 0 && strcmp(val, "no") != 0)) {
			fprintf(stderr, "hashi: bad value for %s: '%s' (yes or no)\n", key, val ? val : "");
			return -1;
		}
		o->no_cache = strcmp(val, "no") == 0;
	} else if (strcmp(key, "dcache_max_size") == 0 || strcmp(key, "cache_max_size") == 0) {
		if (!parse_uint(val, 10, &n) || n == 0 || n > 100000000) {
			fprintf(stderr, "hashi: bad value for %s: '%s'\n", key, val ? val : "");
			return -1;
		}
		o->fs.cache.max_size = (unsigned)n;
	} else if (timeout_option(o, key)) {
		double *slot = timeout_option(o, key);
		if (!parse_double(val, &d) || d > 86400.0 * 365) {
			fprintf(stderr, "hashi: bad value for %s: '%s' (seconds)\n", key, val ? val : "");
			return -1;
		}
		*slot = d;
	} else if (in_list(fuse_passthrough, key)) {
		if (strcmp(key, "ro") == 0)
			o->fs.readonly = true;
		g_ptr_array_add(o->fuse_opts, val ? g_strdup_printf("%s=%s", key, val) : g_strdup(key));
	} else if (strcmp(key, "user") == 0 && val && !o->mount_helper) {
		/* sshfs passes -o user=NAME on to ssh: the remote user (mount(8)
		 * says user=NAME for its own purpose when it runs a helper) */
		return add_ssh_opt(o, "User", val);
	} else if (in_list(ignored, key)) {
		/* accepted for sshfs and fstab compatibility */
	} else {
		const char *kw = target_canonical_keyword(key);
		if (!kw && o->sloppy) {
			fprintf(stderr, "hashi: ignoring unknown option '%s'\n", key);
			return 0;
		}
		if (!kw) {
			fprintf(stderr, "hashi: unknown option '%s'\n", key);
			return -1;
		}
		if (!val) {
			fprintf(stderr, "hashi: option '%s' needs a value (-o %s=VALUE)\n", key, kw);
			return -1;
		}
		if (strcasecmp(kw, "Compression") == 0)
			o->compression = strcasecmp(val, "yes") == 0;
		return add_ssh_opt(o, kw, val);
	}
	return 0;
}

/* -o a,b\,c=d : commas separate, a backslash escapes one. */
static int handle_opt_list(struct options *o, const char *list)
{
	GString *cur = g_string_new(NULL);
	int ret = 0;
	for (const char *p = list;; p++) {
		if (*p == '\\' && p[1]) {
			g_string_append_c(cur, *++p);
		} else if (*p == ',' || *p == '\0') {
			if (cur->len && handle_opt(o, cur->str) < 0) {
				ret = -1;
				break;
			}
			g_string_truncate(cur, 0);
			if (*p == '\0')
				break;
		} else {
			g_string_append_c(cur, *p);
		}
	}
	g_string_free(cur, TRUE);
	return ret;
}

static int parse_args(struct options *o, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *arg = NULL;
		if (a[0] == '-' && a[1] && strchr("opFO", a[1]) && !a[2]) {
			if (i + 1 >= argc) {
				fprintf(stderr, "hashi: option '%s' needs an argument\n", a);
				return -1;
			}
			arg = argv[++i];
		} else if (a[0] == '-' && a[1] && strchr("opFO", a[1]) && a[2]) {
			arg = a + 2;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			o->show_help = true;
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			o->show_version = true;
		} else if (strcmp(a, "-f") == 0) {
			o->foreground = true;
		} else if (strcmp(a, "-d") == 0 || strcmp(a, "--debug") == 0) {
			o->debug = o->foreground = true;
		} else if (strcmp(a, "-v") == 0) {
			/* sshfs passes -v on to ssh; here it shows our debug log */
			o->debug = true;
		} else if (strcmp(a, "-s") == 0) {
			/* sshfs: single-threaded, what we are anyway; mount(8): sloppy */
			if (o->mount_helper)
				o->sloppy = true;
		} else if (o->mount_helper && strcmp(a, "-n") == 0) {
			/* mount(8): do not write mtab */
		} else if (o->mount_helper && (strcmp(a, "-t") == 0 || strcmp(a, "-N") == 0)) {
			/* mount(8): the type (fuse.hashi), or a namespace: ours already */
			if (i + 1 < argc)
				i++;
		} else if (strcmp(a, "-C") == 0) {
			o->compression = true;
			add_ssh_opt(o, "Compression", "yes");
		} else if (a[0] == '-' && a[1] == 'o') {
			if (handle_opt_list(o, arg) < 0)
				return -1;
		} else if (a[0] == '-' && a[1] == 'p') {
			unsigned long port;
			if (!parse_uint(arg, 10, &port) || port == 0 || port > 65535) {
				fprintf(stderr, "hashi: bad port '%s'\n", arg);
				return -1;
			}
			add_ssh_opt(o, "Port", arg);
		} else if (a[0] == '-' && a[1] == 'F') {
			set_str(&o->topts.config_file, arg);
		} else if (a[0] == '-' && a[1] == 'O') {
			set_str(&o->ctl_cmd, arg);
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "hashi: unknown option '%s'\n", a);
			return -1;
		} else if (!o->source) {
			o->source = xstrdup(a);
		} else if (!o->mountpoint) {
			o->mountpoint = xstrdup(a);
		} else {
			fprintf(stderr, "hashi: too many arguments: '%s'\n", a);
			return -1;
		}
	}
	return 0;
}

/* The password read for password_stdin, wiped and freed. */
static void forget_password(void)
{
	if (saved_password) {
		explicit_bzero(saved_password, strlen(saved_password));
		free(saved_password);
		saved_password = NULL;
	}
}

static void options_free(struct options *o)
{
	free(o->source);
	free(o->mountpoint);
	free(o->ssh_command);
	free(o->sftp_server);
	free(o->directport);
	free(o->setuid_user);
	free(o->idmap);
	free(o->uidfile);
	free(o->gidfile);
	free(o->nomap);
	free(o->ctl_cmd);
	forget_password();
	free(o->topts.config_file);
	for (int i = 0; i < o->topts.n; i++)
		g_free(o->topts.opts[i]);
	g_ptr_array_free(o->fuse_opts, TRUE);
	free(o->fs.root);
	if (o->fs.idmap)
		idmap_free(o->fs.idmap);
}

/* -o setuid=USER (fstab lines mounted by root for a user): the rest runs
 * as USER, with USER's home (so ~/.ssh is theirs). */
static int become_user(const char *name)
{
	struct passwd *pw = getpwnam(name);
	if (!pw) {
		fprintf(stderr, "hashi: setuid: no such user '%s'\n", name);
		return -1;
	}
	if (getuid() == pw->pw_uid)
		return 0;
	if (geteuid() != 0) {
		fprintf(stderr, "hashi: setuid=%s needs root\n", name);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		fprintf(stderr, "hashi: setuid=%s: %s\n", name, strerror(errno));
		return -1;
	}
	setenv("HOME", pw->pw_dir, 1);
	setenv("USER", pw->pw_name, 1);
	setenv("LOGNAME", pw->pw_name, 1);
	if (chdir(pw->pw_dir) < 0 && chdir("/") < 0)
		return -1;
	return 0;
}

/* "Still connecting" on the terminal after a second, then at each new step,
 * until the mount is up (or has failed). */
static pthread_mutex_t progress_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t progress_cv = PTHREAD_COND_INITIALIZER;
static bool progress_done;

static void *progress_thread(void *arg)
{
	const char *host = arg;
	unsigned shown = 0;
	char step[256];
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	pthread_mutex_lock(&progress_m);
	while (!progress_done) {
		if (pthread_cond_timedwait(&progress_cv, &progress_m, &until) == ETIMEDOUT) {
			unsigned seq = log_progress_get(step, sizeof(step));
			if (seq != shown && !progress_done) {
				fprintf(stderr, "hashi: still connecting to %s: %s...\n", host,
					step[0] ? step : "starting");
				shown = seq;
			}
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 250 * 1000 * 1000;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
		}
	}
	pthread_mutex_unlock(&progress_m);
	return NULL;
}

static void progress_stop(pthread_t *t, bool *running)
{
	if (!*running)
		return;
	pthread_mutex_lock(&progress_m);
	progress_done = true;
	pthread_cond_signal(&progress_cv);
	pthread_mutex_unlock(&progress_m);
	pthread_join(*t, NULL);
	*running = false;
}

/* -o idmap=, uidfile=, gidfile=, nomap=. */
static int setup_idmap(struct options *opt, struct sftp_client *c, const struct sftp_attrs *root)
{
	enum idmap_mode mode = IDMAP_NONE;
	char err[512];
	if (opt->idmap && idmap_mode_from_name(opt->idmap, &mode) < 0) {
		fprintf(stderr, "hashi: bad value for idmap: '%s' (none, user, file or names)\n",
			opt->idmap);
		return -1;
	}
	if ((opt->uidfile || opt->gidfile) && mode != IDMAP_FILE) {
		if (opt->idmap) {
			fprintf(stderr, "hashi: uidfile= and gidfile= need idmap=file\n");
			return -1;
		}
		mode = IDMAP_FILE; /* as sshfs: a map file implies idmap=file */
	}
	if (mode == IDMAP_FILE && !opt->uidfile && !opt->gidfile) {
		fprintf(stderr, "hashi: idmap=file needs uidfile= or gidfile=\n");
		return -1;
	}
	if (mode == IDMAP_NONE)
		return 0;
	if (mode == IDMAP_NAMES && !(sftp_client_exts(c) & SFTP_HAS_USERS_GROUPS)) {
		fprintf(stderr, "hashi: idmap=names needs the server's users-groups-by-id@openssh.com "
				"extension (OpenSSH 9.1 or later, or hashi-sftp-server)\n");
		return -1;
	}
	/* sshfs's default for idmap=file is nomap=error; for names, an owner
	 * with no local name is shown as its number. */
	bool nomap_error = opt->nomap ? strcmp(opt->nomap, "error") == 0 : mode == IDMAP_FILE;
	struct idmap *m = idmap_new(mode, opt->uidfile, opt->gidfile, nomap_error, err, sizeof(err));
	if (!m) {
		fprintf(stderr, "hashi: %s\n", err);
		return -1;
	}
	if (mode == IDMAP_USER) {
		if (!(root->flags & SSH_FILEXFER_ATTR_UIDGID)) {
			fprintf(stderr, "hashi: idmap=user: the server did not say who owns the remote directory\n");
			idmap_free(m);
			return -1;
		}
		/* As sshfs: the remote user is the owner of the mounted directory. */
		idmap_set_user(m, root->uid, root->gid, getuid(), getgid());
	}
	opt->fs.idmap = m;
	return 0;
}

/* One line from standard input, read a byte at a time (no copy is left in
 * stdio's buffer, and what follows the line stays unread). */
static char *read_password_stdin(void)
{
	char buf[1024];
	size_t n = 0;
	char ch;
	ssize_t r;
	while ((r = read(STDIN_FILENO, &ch, 1)) == 1 || (r < 0 && errno == EINTR)) {
		if (r < 0)
			continue;
		if (ch == '\n')
			break;
		if (n + 1 < sizeof(buf))
			buf[n++] = ch;
	}
	buf[n] = '\0';
	char *pw = r < 0 || (r == 0 && n == 0) ? NULL : xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	ch = 0;
	return pw;
}


/* argv for OpenSSH's ssh, as sshfs builds it. */
static char **openssh_argv(const struct options *o, const char *user, const char *host)
{
	GPtrArray *a = g_ptr_array_new();
	if (o->ssh_command) {
		gchar **words = NULL;
		if (!g_shell_parse_argv(o->ssh_command, NULL, &words, NULL)) {
			fprintf(stderr, "hashi: cannot parse ssh_command '%s'\n", o->ssh_command);
			exit(1);
		}
		for (int i = 0; words[i]; i++)
			g_ptr_array_add(a, g_strdup(words[i]));
		g_strfreev(words);
	} else {
		g_ptr_array_add(a, g_strdup("ssh"));
	}
	g_ptr_array_add(a, g_strdup("-x"));
	g_ptr_array_add(a, g_strdup("-a"));
	g_ptr_array_add(a, g_strdup("-oClearAllForwardings=yes"));
	if (o->topts.config_file) {
		g_ptr_array_add(a, g_strdup("-F"));
		g_ptr_array_add(a, g_strdup(o->topts.config_file));
	}
	for (int i = 0; i < o->topts.n; i++)
		if (strncasecmp(o->topts.opts[i], "Control", 7) != 0) /* (libssh2's alone) */
			g_ptr_array_add(a, g_strdup_printf("-o%s", o->topts.opts[i]));
	if (user) {
		g_ptr_array_add(a, g_strdup("-l"));
		g_ptr_array_add(a, g_strdup(user));
	}
	g_ptr_array_add(a, g_strdup(host));
	const char *serv = o->sftp_server ? o->sftp_server : "sftp";
	if (strchr(serv, '/')) {
		g_ptr_array_add(a, g_strdup(serv));
	} else {
		g_ptr_array_add(a, g_strdup("-s"));
		g_ptr_array_add(a, g_strdup(serv));
	}
	g_ptr_array_add(a, NULL);
	return (char **)g_ptr_array_free(a, FALSE);
}

static bool have_ssh(void)
{
	gchar *p = g_find_program_in_path("ssh");
	bool ok = p != NULL;
	g_free(p);
	return ok;
}


/* The value of -o kw=value (the last one given), or NULL. */
static const char *ssh_opt_value(const struct options *o, const char *kw)
{
	size_t l = strlen(kw);
	const char *v = NULL;
	for (int i = 0; i < o->topts.n; i++)
		if (strncasecmp(o->topts.opts[i], kw, l) == 0 && o->topts.opts[i][l] == '=')
			v = o->topts.opts[i] + l + 1;
	return v;
}

/* The control socket as -o ControlPath= and the rest say (none: off). */
static int control_settings(const struct options *o, const struct ssh_target *t,
			    struct master_settings *ms, char *err, size_t errlen)
{
	const char *cp = ssh_opt_value(o, "ControlPath");
	if (master_settings_get(t, cp != NULL, ms, err, errlen) < 0)
		return -1;
	if (cp != NULL && strcasecmp(cp, "none") == 0) {
		ms->control_master = TARGET_CM_NO;
		ms->path[0] = '\0';
	}
	return 0;
}

struct ssh_connect_ctx {
	const struct ssh_target *t;
	bool rsa_only;
};

static struct transport *ssh_connect(void *arg, char *err, size_t errlen)
{
	struct ssh_connect_ctx *x = arg;
	return transport_ssh_connect(x->t, &x->rsa_only, err, errlen);
}

static unsigned n_connects;

/* A mount whose command line names the control socket borrows before the
 * target is resolved (target_cmdline_control says why that is what ssh
 * would do): ssh -G's fork and exec would be most of its time to mount.
 * ssh_config's ServerAlive* are then not read: as for ssh's multiplexed
 * sessions, keeping the connection alive is the master's business (those
 * given with -o still apply to our engine). */
static struct transport *borrow_early(struct options *o)
{
	struct ssh_target t;
	struct master_settings ms;
	struct transport *tr = NULL;
	char err[256];
	memset(&t, 0, sizeof(t));
	if (!target_cmdline_control(&o->topts, &t.control_path, &t.control_master))
		return NULL;
	if (master_settings_get(&t, true, &ms, err, sizeof(err)) == 0)
		tr = master_borrow(&ms, o->mountpoint);
	free(t.control_path);
	if (tr == NULL)
		return NULL;
	n_connects++;
	if (o->password_stdin && !saved_password)
		saved_password = read_password_stdin(); /* for a login of our own later */
	return tr;
}

static struct transport *connect_transport(struct options *o, const char *user, const char *host,
					   const char *dir, char *err, size_t errlen)
{
	if (o->passive)
		return transport_fds(STDIN_FILENO, STDOUT_FILENO, err, errlen);
	if (o->directport)
		return transport_tcp_connect(host, o->directport, err, errlen);
	if (!o->force_openssh) {
		struct transport *early = o->reconnecting ? NULL : borrow_early(o);
		if (early)
			return early;
		struct ssh_target t;
		memset(&t, 0, sizeof(t));
		if (target_resolve(&t, user, host, dir, &o->topts, err, errlen) < 0)
			return NULL;
		t.sftp_server = o->sftp_server ? xstrdup(o->sftp_server) : NULL;
		t.password_stdin = o->password_stdin;
		if (o->password_stdin) {
			/* read once; a reconnect logs in with it again */
			if (!saved_password)
				saved_password = read_password_stdin();
			t.password = saved_password ? xstrdup(saved_password) : NULL;
		}
		if (!o->reconnecting) {
			config_alive_interval = t.server_alive_interval;
			config_alive_count = t.server_alive_count_max;
		} else if (t.connect_timeout == 0) {
			t.connect_timeout = 15; /* a reconnect attempt never waits for ever */
		}
		if (o->reconnecting)
			t.batch_mode = true; /* nobody is at a terminal now */
		struct ssh_connect_ctx x = { &t, false };
		struct master_settings ms;
		struct transport *tr = NULL;
		if (control_settings(o, &t, &ms, err, errlen) == 0)
			tr = master_transport(&ms, o->mountpoint, n_connects++, ssh_connect, &x, err,
					      errlen);
		bool rsa_only = x.rsa_only;
		target_free(&t);
		if (tr || !rsa_only || !have_ssh())
			return tr;
		fprintf(stderr, "hashi: %s\nhashi: falling back to OpenSSH's ssh (-o transport=openssh)\n", err);
	}
	char **argv = openssh_argv(o, user, host);
	if (o->debug) {
		gchar *line = g_strjoinv(" ", argv);
		log_debug("running: %s", line);
		g_free(line);
	}
	struct transport *tr = transport_command_start(argv, err, errlen);
	g_strfreev(argv);
	return tr;
}

/* A new connection after the old one broke (the engine's reconnect thread). */
static struct transport *reconnect_transport(void *arg, char *err, size_t errlen)
{
	struct options *opt = arg;
	opt->reconnecting = true;
	return connect_transport(opt, user, host, dir, err, errlen);
}

/* ServerAliveInterval / ServerAliveCountMax: from -o if given there (0 turns
 * the check off, as in ssh), else from ssh_config if set there, else 10 s
 * and 3: a dead link is found within about 30 s. */
static void keepalive_settings(const struct options *opt, unsigned *interval, unsigned *count)
{
	*interval = 10;
	*count = 3;
	if (config_alive_interval > 0)
		*interval = (unsigned)config_alive_interval;
	if (config_alive_count > 0)
		*count = (unsigned)config_alive_count;
	for (int i = 0; i < opt->topts.n; i++) {
		const char *s = opt->topts.opts[i];
		if (strncasecmp(s, "ServerAliveInterval=", 20) == 0)
			*interval = (unsigned)strtoul(s + 20, NULL, 10);
		else if (strncasecmp(s, "ServerAliveCountMax=", 20) == 0)
			*count = (unsigned)strtoul(s + 20, NULL, 10);
	}
}

/* max_conns: the connections after the first are made once the mount is
 * up, by a thread of their own (the mount never waits for them, and one
 * that cannot be made, say for want of a password nobody can type now, is
 * left out with a line in the log). */
struct extra_conns {
	struct sftp_client *first;
	unsigned want;
	struct sftp_client *peers[MAX_CONNS];
	unsigned n;
	pthread_t thread;
	bool running;
	volatile bool stop;
};

static void *extra_conns_thread(void *arg)
{
	struct extra_conns *x = arg;
	unsigned interval, count;
	keepalive_settings(&o, &interval, &count);
	for (unsigned i = 1; i < x->want && !x->stop; i++) {
		char err[1024];
		struct transport *t = reconnect_transport(&o, err, sizeof(err));
		struct sftp_client *c = t ? sftp_client_new(t, err, sizeof(err)) : NULL;
		if (!c) {
			log_error("connection %u of %u: %s", i + 1, x->want, err);
			break;
		}
		sftp_client_set_keepalive(c, interval, count);
		if (!o.noreconnect)
			sftp_client_set_reconnect(c, reconnect_transport, &o, o.timeout_s);
		if (sftp_client_start(c) != 0 || sftp_client_add_peer(x->first, c) != 0) {
			sftp_client_free(c);
			break;
		}
		x->peers[x->n++] = c;
		log_debug("connection %u of %u is up", i + 1, x->want);
	}
	return NULL;
}

static void extra_conns_start(struct extra_conns *x, struct sftp_client *first, unsigned want)
{
	memset(x, 0, sizeof(*x));
	x->first = first;
	x->want = want;
	if (want > 1)
		x->running = pthread_create(&x->thread, NULL, extra_conns_thread, x) == 0;
}

static void extra_conns_free(struct extra_conns *x)
{
	x->stop = true;
	if (x->running)
		pthread_join(x->thread, NULL);
	for (unsigned i = 0; i < x->n; i++)
		sftp_client_free(x->peers[i]);
}

/* The absolute path of dir on the server, which must be a directory. */
static char *resolve_root(struct sftp_client *c, const char *dir, bool check,
			  struct sftp_attrs *root_attrs, char *err, size_t errlen)
{
	attrs_clear(root_attrs);
	struct sftp_msg *m = sftp_msg_new(SSH_FXP_REALPATH);
	wire_put_cstring(sftp_msg_buf(m), dir[0] ? dir : ".");
	uint8_t type, *body = NULL;
	size_t len = 0;
	int e = sftp_call(c, m, &type, &body, &len);
	char *root = NULL;
	if (e == 0 && type == SSH_FXP_NAME) {
		struct sftp_reply r = { .type = type };
		wire_reader_init(&r.body, body, len);
		if (sftp_reply_name1(&r, &root))
			root = NULL;
	}
	free(body);
	if (!root) {
		snprintf(err, errlen, "remote directory '%s': %s", dir[0] ? dir : "(home)",
			 strerror(e ? e : EIO));
		return NULL;
	}
	if (!check)
		return root;
	m = sftp_msg_new(SSH_FXP_STAT);
	wire_put_cstring(sftp_msg_buf(m), root);
	e = sftp_call(c, m, &type, &body, &len);
	if (e == 0 && type == SSH_FXP_ATTRS) {
		struct wire_reader r;
		struct sftp_attrs a;
		wire_reader_init(&r, body, len);
		if (attrs_get(&r, &a) == 0 && (a.flags & SSH_FILEXFER_ATTR_PERMISSIONS) &&
		    !S_ISDIR(a.perm))
			e = ENOTDIR;
		*root_attrs = a;
	} else if (e == 0) {
		e = EIO;
	}
	free(body);
	if (e) {
		snprintf(err, errlen, "remote directory '%s': %s", dir[0] ? dir : root, strerror(e));
		free(root);
		return NULL;
	}
	return root;
}

/* hashi -O check|exit|stop|status [user@]host: as ssh -O. */
static int control_command(struct options *opt)
{
	char err[1024];
	if (!opt->source) {
		fprintf(stderr, "hashi: -O %s needs a [user@]host\n", opt->ctl_cmd);
		return 255;
	}
	log_init("hashi", opt->debug ? LOGL_DEBUG1 : LOGL_INFO, LOG_DAEMON, true);
	char *spec = strchr(opt->source, ':') ? xstrdup(opt->source)
					       : g_strdup_printf("%s:", opt->source);
	char *u = NULL, *h = NULL, *d = NULL;
	struct ssh_target t;
	struct master_settings ms;
	memset(&t, 0, sizeof(t));
	int ret = 255;
	if (target_split(spec, &u, &h, &d, err, sizeof(err)) < 0 ||
	    target_resolve(&t, u, h, "", &opt->topts, err, sizeof(err)) < 0 ||
	    control_settings(opt, &t, &ms, err, sizeof(err)) < 0)
		fprintf(stderr, "hashi: %s\n", err);
	else if (!ms.path[0])
		fprintf(stderr, "No ControlPath specified for \"-O\" command\n");
	else
		ret = master_command(opt->ctl_cmd, ms.path);
	target_free(&t);
	free(u);
	free(h);
	free(d);
	g_free(spec);
	options_free(opt);
	return ret;
}

/* hashi -O status: what this mount's engine and cache say. */
struct stats_src {
	struct sftp_client *c;
	struct fs *fs;
};

static void mount_stats(void *arg, struct master_stats *s)
{
	const struct stats_src *src = arg;
	struct sftp_client_stats cs;
	sftp_client_get_stats(src->c, &cs);
	s->connected = cs.connected;
	s->in_flight = cs.in_flight;
	s->bytes_sent = cs.bytes_sent;
	s->bytes_received = cs.bytes_received;
	s->reconnects = cs.reconnects;
	struct cache_stats st;
	cache_stats(fs_cache(src->fs), &st);
	s->cache_hits = st.attr_hits + st.negative_hits + st.dir_hits + st.link_hits;
	s->cache_lookups = s->cache_hits + st.attr_misses + st.dir_misses + st.link_misses;
}

int main(int argc, char **argv)
{
	char err[1024] = "";
	memset(&o, 0, sizeof(o));
	o.fuse_opts = g_ptr_array_new_with_free_func(g_free);
	o.dcache_timeout = o.dcache_stat = o.dcache_dir = o.dcache_link = -1;
	o.entry_timeout = o.attr_timeout = o.negative_timeout = -1;
	o.timeout_s = 60;
	signal(SIGPIPE, SIG_IGN);

	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	o.mount_helper = strncmp(base, "mount.", 6) == 0;
	if (parse_args(&o, argc, argv) < 0) {
		fprintf(stderr, "see 'hashi -h' for usage\n");
		return 1;
	}
	cache_settings(&o);
	if (o.show_help) {
		usage(stdout);
		return 0;
	}
	if (o.show_version) {
		printf("hashi version %s\nlibssh2 version %s\nFUSE library version %s\n", HASHI_VERSION,
		       libssh2_version(0), fuse_pkgversion());
		fflush(stdout);
		fuse_lowlevel_version(); /* "using FUSE kernel interface version 7.N" */
		return 0;
	}
	if (o.ctl_cmd)
		return control_command(&o);
	if (!o.source || !o.mountpoint) {
		fprintf(stderr, "hashi: %s\nsee 'hashi -h' for usage\n",
			!o.source ? "missing host:dir argument" : "missing mountpoint");
		return 1;
	}
	log_init("hashi", o.debug ? LOGL_DEBUG1 : LOGL_INFO, LOG_DAEMON, true);
	/* The mount point as given is relative to where we were started. */
	char *absmp = realpath(o.mountpoint, NULL);
	if (absmp) {
		free(o.mountpoint);
		o.mountpoint = absmp;
	}
	if (o.setuid_user && become_user(o.setuid_user) < 0)
		return 1;

	if (target_split(o.source, &user, &host, &dir, err, sizeof(err)) < 0) {
		fprintf(stderr, "hashi: %s\n", err);
		return 1;
	}
	struct stat mst;
	if (stat(o.mountpoint, &mst) < 0 || !S_ISDIR(mst.st_mode)) {
		fprintf(stderr, "hashi: bad mount point '%s': %s\n", o.mountpoint,
			stat(o.mountpoint, &mst) < 0 ? strerror(errno) : "Not a directory");
		return 1;
	}
	/* The daemon runs in /: it must know its mount point absolutely. */
	char *absmnt = realpath(o.mountpoint, NULL);
	if (absmnt) {
		free(o.mountpoint);
		o.mountpoint = absmnt;
	}

	/* Only where a person watches: not for -o passive, nor a pipe. */
	pthread_t prog;
	bool prog_running = !o.passive && isatty(STDERR_FILENO) &&
			    pthread_create(&prog, NULL, progress_thread, host) == 0;
	struct transport *tr = connect_transport(&o, user, host, dir, err, sizeof(err));
	if (!tr) {
		progress_stop(&prog, &prog_running);
		bool prefixed = strncmp(err, "ssh:", 4) == 0 || strncmp(err, "hashi:", 6) == 0 ||
				strchr(err, '\n');
		fprintf(stderr, "%s%s\n", prefixed ? "" : "hashi: ", err);
		return 1;
	}
	log_progress("starting SFTP");
	struct sftp_client *c = sftp_client_new(tr, err, sizeof(err));
	if (!c) {
		progress_stop(&prog, &prog_running);
		fprintf(stderr, "hashi: %s\n", err);
		return 1;
	}
	log_progress("looking up the remote directory");
	struct sftp_attrs root_attrs;
	bool need_owner = o.idmap && strcmp(o.idmap, "user") == 0;
	char *root = resolve_root(c, dir, !o.no_check_root || need_owner, &root_attrs, err,
				  sizeof(err));
	progress_stop(&prog, &prog_running);
	if (!root) {
		fprintf(stderr, "hashi: %s\n", err);
		sftp_client_free(c);
		return 1;
	}
	o.fs.root = root;
	if (setup_idmap(&o, c, &root_attrs) < 0) {
		sftp_client_free(c);
		return 1;
	}

	/* libfuse's arguments: the mount options, and our source as fsname. */
	fargs = g_ptr_array_new_with_free_func(g_free);
	g_ptr_array_add(fargs, g_strdup(argv[0]));
	GString *mopts = g_string_new(NULL);
	bool has_fsname = false, has_subtype = false;
	for (guint i = 0; i < o.fuse_opts->len; i++) {
		const char *s = o.fuse_opts->pdata[i];
		has_fsname |= strncmp(s, "fsname=", 7) == 0;
		has_subtype |= strncmp(s, "subtype=", 8) == 0;
		g_string_append_printf(mopts, "%s%s", mopts->len ? "," : "", s);
	}
	if (!has_fsname) {
		gchar *esc = g_strescape(o.source, NULL);
		GString *fsn = g_string_new(NULL);
		for (const char *p = o.source; *p; p++) {
			if (*p == ',' || *p == '\\')
				g_string_append_c(fsn, '\\');
			g_string_append_c(fsn, *p);
		}
		g_string_append_printf(mopts, "%sfsname=%s", mopts->len ? "," : "", fsn->str);
		g_string_free(fsn, TRUE);
		g_free(esc);
	}
	if (!has_subtype)
		g_string_append_printf(mopts, "%ssubtype=hashi", mopts->len ? "," : "");
	g_ptr_array_add(fargs, g_strdup("-o"));
	g_ptr_array_add(fargs, g_string_free(mopts, FALSE));
	if (o.debug)
		g_ptr_array_add(fargs, g_strdup("-d"));
	struct fuse_args args = FUSE_ARGS_INIT((int)fargs->len, (char **)fargs->pdata);

	/* Each failure below undoes what was done before it (the labels at the
	 * end, in reverse order) and exits 1. */
	int ret = 1;
	struct fs *fs = fs_new(c, &o.fs);
	struct fuse_session *se = fuse_session_new(&args, fs_ops(), sizeof(struct fuse_lowlevel_ops), fs);
	if (!se) {
		fprintf(stderr, "hashi: cannot create the FUSE session (see the message above)\n");
		goto out_fs;
	}
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, o.mountpoint) != 0) {
		fprintf(stderr, "hashi: cannot mount on '%s'\n", o.mountpoint);
		goto out_handlers;
	}
	/* Every error so far reached the terminal; now the background. */
	if (fuse_daemonize(o.foreground) != 0)
		goto out_mounted;
	if (!o.foreground) {
		log_init("hashi", o.debug ? LOGL_DEBUG1 : LOGL_INFO, LOG_DAEMON, false);
		log_set_prefix(o.mountpoint);
	}
	unsigned ka_interval, ka_count;
	keepalive_settings(&o, &ka_interval, &ka_count);
	sftp_client_set_keepalive(c, ka_interval, ka_count);
	if (!o.noreconnect && !o.passive)
		sftp_client_set_reconnect(c, reconnect_transport, &o, o.timeout_s);
	master_start();
	if (o.noreconnect || o.passive)
		forget_password(); /* (kept only to log in again after a reconnect) */
	if (sftp_client_start(c) != 0) {
		log_error("cannot start the I/O thread");
		master_shutdown();
		goto out_mounted;
	}
	/* One connection by default (as sshfs): an open file stays on one
	 * connection, so a single stream gains nothing from more, and each
	 * costs a login. -o passive has only the one. */
	struct extra_conns extra;
	extra_conns_start(&extra, c, o.passive || !o.max_conns ? 1 : o.max_conns);
	/* 0 at unmount; a positive number is the signal (SIGTERM, SIGINT) that
	 * ended the loop, which is a clean unmount too. */
	static struct stats_src stats_src;
	stats_src = (struct stats_src){ c, fs };
	master_set_stats(o.mountpoint, mount_stats, &stats_src);
	ret = fuse_session_loop(se);
	if (ret > 0)
		ret = 0;
	else if (ret < 0)
		log_error("the FUSE session ended with an error: %s", strerror(-ret));
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	extra_conns_free(&extra);
	master_linger(); /* while other mounts borrow our connection */
	master_shutdown();
	goto out_session;

out_mounted:
	fuse_session_unmount(se);
out_handlers:
	fuse_remove_signal_handlers(se);
out_session:
	/* The I/O thread answers the kernel's requests through the session:
	 * stop it (what is pending is answered now) before the session goes. */
	sftp_client_free(c);
	c = NULL;
	fuse_session_destroy(se);
out_fs:
	sftp_client_free(c);
	fs_free(fs);
	fuse_opt_free_args(&args);
	g_ptr_array_free(fargs, TRUE);
	if (sftp_client_orphans()) {
		/* A reconnect thread is still inside a connect: it reads these,
		 * and libcrypto, whose exit handlers would free the locks and
		 * ciphers under it (a SIGSEGV at unmount). Leave without them. */
		fflush(NULL);
		_exit(ret == 0 ? 0 : 1);
	}
	options_free(&o);
	free(user);
	free(host);
	free(dir);
	return ret == 0 ? 0 : 1;
}
