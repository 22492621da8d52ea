/* hashi-sftp-server: OpenSSH sftp-server's command line, then server_run(). */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"
#include "server.h"

static const char *progname = "hashi-sftp-server";

/* OpenSSH's usage text, word for word; -r/--root and --no-sandbox are
 * described in hashi-sftp-server(8). */
static void usage(void)
{
	fprintf(stderr,
		"usage: %s [-ehR] [-d start_directory] [-f log_facility] [-l log_level]\n"
		"\t[-P denied_requests] [-p allowed_requests] [-u umask]\n"
		"       %s -Q protocol_feature\n",
		progname, progname);
	exit(1);
}

/* ~ and ~user at the start of the -d argument. */
static char *tilde_expand(const char *path, const struct passwd *self)
{
	char *out;
	if (path[0] != '~')
		return strdup(path);
	const char *rest = strchr(path, '/');
	size_t ulen = rest ? (size_t)(rest - path - 1) : strlen(path + 1);
	const char *home;
	if (ulen == 0) {
		home = self->pw_dir;
	} else {
		char user[256];
		if (ulen >= sizeof(user))
			log_fatal("tilde_expand: user name too long");
		memcpy(user, path + 1, ulen);
		user[ulen] = '\0';
		struct passwd *pw = getpwnam(user);
		if (!pw)
			log_fatal("tilde_expand_filename: No such user %s", user);
		home = pw->pw_dir;
	}
	if (asprintf(&out, "%s%s", home, rest ? rest : "") < 0)
		log_fatal("out of memory");
	return out;
}

/* %d home, %u user name, %U uid, %% a percent sign. */
static char *percent_expand(const char *in, const struct passwd *pw)
{
	char uid[32];
	size_t cap = strlen(in) + 1, len = 0;
	char *out = malloc(cap);
	if (!out)
		log_fatal("out of memory");
	snprintf(uid, sizeof(uid), "%llu", (unsigned long long)pw->pw_uid);
	for (const char *p = in; *p; p++) {
		const char *add;
		char one[2] = { *p, '\0' };
		if (*p != '%') {
			add = one;
		} else {
			p++;
			switch (*p) {
			case 'd': add = pw->pw_dir; break;
			case 'u': add = pw->pw_name; break;
			case 'U': add = uid; break;
			case '%': add = "%"; break;
			case '\0': log_fatal("percent_expand: invalid format");
			default: log_fatal("percent_expand: unknown key %%%c", *p);
			}
		}
		size_t n = strlen(add);
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			char *np = realloc(out, cap);
			if (!np)
				log_fatal("out of memory");
			out = np;
		}
		memcpy(out + len, add, n);
		len += n;
	}
	out[len] = '\0';
	return out;
}

int main(int argc, char **argv)
{
	enum log_level level = LOGL_ERROR;
	int facility = LOG_AUTH;
	bool log_stderr = false, skipargs = false, sandbox = true;
	struct server_opts opts = { 0 };
	char *start_dir = NULL, *root_dir = NULL;
	int ch;
	static const struct option longopts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "no-sandbox", no_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};

	if (argv[0] && strrchr(argv[0], '/'))
		progname = strrchr(argv[0], '/') + 1;
	else if (argv[0] && argv[0][0])
		progname = argv[0];
	log_init(progname, level, facility, log_stderr);

	struct passwd *pwent = getpwuid(getuid());
	if (!pwent) {
		fprintf(stderr, "No user found for uid %lu\n", (unsigned long)getuid());
		return 1;
	}
	struct passwd pw = *pwent;
	pw.pw_name = strdup(pwent->pw_name);
	pw.pw_dir = strdup(pwent->pw_dir);

	opterr = 0; /* as OpenSSH: the usage text says it all */
	while (!skipargs &&
	       (ch = getopt_long(argc, argv, "d:f:l:P:p:Q:r:u:cehR", longopts, NULL)) != -1) {
		switch (ch) {
		case 'Q':
			if (strcasecmp(optarg, "requests") != 0) {
				fprintf(stderr, "Invalid query type\n");
				exit(1);
			}
			for (const struct request_def *d = requests_core; d->name; d++)
				printf("%s\n", d->name);
			for (const struct request_def *const *t = request_ext_tables; *t; t++)
				for (const struct request_def *d = *t; d->name; d++)
					printf("%s\n", d->name);
			exit(0);
		case 'R':
			opts.readonly = true;
			break;
		case 'S':
			sandbox = false;
			break;
		case 'c':
			/* Invoked as a shell ("sftp-server -c command"): ignore the rest. */
			skipargs = true;
			break;
		case 'e':
			log_stderr = true;
			break;
		case 'l':
			level = log_level_from_name(optarg);
			if (level == LOGL_NOT_SET) {
				fprintf(stderr, "Invalid log level \"%s\"\n", optarg);
				exit(1);
			}
			break;
		case 'f':
			facility = log_facility_from_name(optarg);
			if (facility < 0) {
				fprintf(stderr, "Invalid log facility \"%s\"\n", optarg);
				exit(1);
			}
			break;
		case 'd':
		case 'r': {
			char *t = tilde_expand(optarg, &pw);
			char **dst = ch == 'd' ? &start_dir : &root_dir;
			free(*dst);
			*dst = percent_expand(t, &pw);
			free(t);
			break;
		}
		case 'p':
			if (opts.allowlist)
				log_fatal("Permitted requests already set");
			opts.allowlist = optarg;
			break;
		case 'P':
			if (opts.denylist)
				log_fatal("Refused requests already set");
			opts.denylist = optarg;
			break;
		case 'u': {
			char *end;
			errno = 0;
			long mask = strtol(optarg, &end, 8);
			if (mask < 0 || mask > 0777 || *end != '\0' || end == optarg ||
			    (mask == 0 && errno != 0))
				log_fatal("Invalid umask \"%s\"", optarg);
			umask((mode_t)mask);
			break;
		}
		case 'h':
		default:
			usage();
		}
	}
	log_init(progname, level, facility, log_stderr);

	/* As OpenSSH: no core dumps and no ptrace of the server by the user,
	 * so that SFTP access does not imply access to /proc/self/mem. */
	prctl(PR_SET_DUMPABLE, 0);
	signal(SIGPIPE, SIG_IGN);
	tzset();

	char *client_addr;
	const char *conn = getenv("SSH_CONNECTION");
	if (conn) {
		client_addr = strdup(conn);
		char *sp = client_addr ? strchr(client_addr, ' ') : NULL;
		if (!sp) {
			log_error("Malformed SSH_CONNECTION variable: \"%s\"", conn);
			return 255;
		}
		*sp = '\0';
	} else {
		client_addr = strdup("UNKNOWN");
	}
	opts.user = pw.pw_name;
	opts.home = pw.pw_dir;
	opts.uid = pw.pw_uid;
	opts.client_addr = client_addr;

	struct paths *paths = NULL;
	if (root_dir) {
		/* Every path resolved beneath it by the kernel (paths.h); -d
		 * names a directory inside it. */
		paths = paths_new_root(root_dir, start_dir);
		if (!paths) {
			int e = errno;
			const char *why = e == ENOSYS ? " (openat2 needs Linux 5.6 or later)" : "";
			/* One line on stderr, whether the log goes there or not. */
			if (!log_stderr)
				fprintf(stderr, "%s: root directory \"%s\": %s%s\n", progname,
					root_dir, strerror(e), why);
			log_error("root directory \"%s\": %s%s", root_dir, strerror(e), why);
			free(start_dir);
			free(root_dir);
			free(client_addr);
			free(pw.pw_name);
			free(pw.pw_dir);
			return 1;
		}
		opts.paths = paths;
	}
	log_info("session opened for local user %s from [%s]", opts.user, opts.client_addr);
	if (paths) {
		if (fchdir(paths_start_fd(paths)) != 0)
			log_error("chdir to root failed: %s", strerror(errno));
	} else if (start_dir && chdir(start_dir) != 0) {
		log_error("chdir to \"%s\" failed: %s", start_dir, strerror(errno));
	}

	struct server *s = server_new(&opts);
	if (!s)
		log_fatal("out of memory");
	if (sandbox) {
		/* What the sandbox would refuse later: connect to syslog, load
		 * the user database's modules. */
		log_open_now();
		getgrgid(getgid());
		struct sandbox_opts so = { .readonly = opts.readonly, .root = paths_root_dir(paths) };
		sandbox_enter(&so);
	}
	int status = server_run(s, STDIN_FILENO, STDOUT_FILENO);
	server_log_close(s);
	server_free(s);
	paths_free(paths);
	free(start_dir);
	free(root_dir);
	free(client_addr);
	free(pw.pw_name);
	free(pw.pw_dir);
	return status;
}
