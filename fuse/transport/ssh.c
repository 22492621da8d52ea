/*
 * The libssh2 transport: TCP (or ProxyCommand / ProxyJump), host key check
 * against known_hosts, authentication in ssh's order, then one session
 * channel running the sftp subsystem.
 *
 * Connecting and authenticating run with the session in blocking mode (the
 * main thread, before the mount; prompts go to /dev/tty). Then the session
 * turns non-blocking and read/write hide libssh2 1.10's rules:
 *  - a call that returned EAGAIN while part of an outgoing packet is still
 *    unsent must be repeated before any other libssh2 call, or libssh2
 *    answers LIBSSH2_ERROR_BAD_USE (transport.c send_existing). We remember
 *    which call that was (AGAIN_READ or AGAIN_WRITE) and repeat it first.
 *  - libssh2_channel_read is always called with the same length (RBUF_SIZE):
 *    into the caller's buffer when it has room for that much, else into
 *    our own buffer, which read() then hands out.
 *  - a write that returned EAGAIN has already taken the caller's bytes (they
 *    are encrypted in libssh2's output buffer), so the bytes are copied into
 *    our write buffer and reported as accepted; later calls flush that
 *    buffer first.
 * libssh2 may pull channel data off the socket during a write; then the
 * socket shows nothing to read although data waits inside libssh2. When its
 * queue holds data for us (libssh2_poll_channel_read, which does no I/O),
 * pollfds() adds an always-readable eventfd so that poll returns at once.
 * Callers should read until -EAGAIN before they poll.
 */
#include "transport.h"
#include "transport-int.h"
#include "knownhosts.h"
#include "target.h"
#include "log.h"

#include <libssh2.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <malloc.h>
#include <netdb.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define CHANNEL_WINDOW (16u * 1024 * 1024)
#define CHANNEL_PACKET 32768u
#define RBUF_SIZE (64 * 1024)   /* the one length ever passed to channel_read */
#define WBUF_SIZE (256 * 1024)  /* bytes accepted from the caller, not yet sent */
#define USER_TIMEOUT_MS 60000u

#define AT_LINE "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@"

/* The libssh2 call that returned EAGAIN with part of a packet unsent, and
 * that must be repeated (on again_chan) before any other. */
enum again { AGAIN_NONE, AGAIN_READ, AGAIN_WRITE, AGAIN_OPEN, AGAIN_START, AGAIN_FREE };

enum chan_state { CH_QUEUED, CH_OPENING, CH_STARTING, CH_OPEN, CH_FAILED, CH_CLOSING };

/* One channel of the session: the transport's own (main), or one lent to
 * another hashi process (transport_chan_*, for master.c). */
struct transport_chan {
	struct ssh_transport *st;
	LIBSSH2_CHANNEL *channel;
	enum chan_state state;
	unsigned char *rbuf;
	size_t rpos, rlen;
	unsigned char *wbuf;
	size_t wpos, wlen;
	bool eof;
	bool want_read;   /* lent: the reader has room (else its data may wait) */
	bool close_asked; /* lent: closed by its user while still opening */
	char error[256];
	struct transport_chan *next;
};

struct auth_ctx {
	const struct ssh_target *t;
	const char *user;
	const char *prompt_host; /* HostKeyAlias or HostName: "user@host's password: " */
	bool can_prompt;
	bool kbd_gave_password;
	bool kbd_unanswered;
};

struct ssh_transport {
	struct transport base;
	LIBSSH2_SESSION *session;
	struct transport_chan main;
	struct transport_chan *lent; /* more channels, opened one at a time */
	char *server;                /* the subsystem or command they run */
	bool server_is_cmd;
	int sock;
	pid_t proxy_pid;
	int ready_fd; /* an eventfd that is always readable */

	enum again again;
	struct transport_chan *again_chan;
	size_t again_len;

	bool broken;
	bool wipe_frees; /* authenticating: what libssh2 frees may hold a password */

	struct auth_ctx auth;
};

/* ------------------------------------------------------------------ */
/* libssh2's memory: while we authenticate, libssh2 copies passwords and
 * keyboard-interactive answers into buffers it frees later; those are wiped
 * before they go back to malloc. */

static void *lib_alloc(size_t n, void **abstract)
{
	(void)abstract;
	return malloc(n);
}

static void lib_free(void *p, void **abstract)
{
	struct ssh_transport *st = *abstract;
	if (p && st && st->wipe_frees)
		explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

static void *lib_realloc(void *p, size_t n, void **abstract)
{
	struct ssh_transport *st = *abstract;
	if (!p || !st || !st->wipe_frees)
		return realloc(p, n);
	void *q = malloc(n);
	if (q) {
		size_t old = malloc_usable_size(p);
		memcpy(q, p, old < n ? old : n);
		lib_free(p, abstract);
	}
	return q;
}

/* ------------------------------------------------------------------ */
/* small helpers */

static const char *session_errmsg(LIBSSH2_SESSION *s)
{
	char *msg = NULL;
	int len = 0;
	libssh2_session_last_error(s, &msg, &len, 0);
	return msg != NULL && msg[0] != '\0' ? msg : "unknown error";
}

static bool in_list(const char *list, const char *word)
{
	size_t wl = strlen(word);
	const char *p = list;
	while (p != NULL && *p != '\0') {
		const char *c = strchr(p, ',');
		size_t l = c != NULL ? (size_t)(c - p) : strlen(p);
		if (l == wl && strncmp(p, word, wl) == 0)
			return true;
		p = c != NULL ? c + 1 : NULL;
	}
	return false;
}

static int port_number(const char *port)
{
	char *end;
	long v = strtol(port, &end, 10);
	if (*port != '\0' && *end == '\0' && v > 0 && v < 65536)
		return (int)v;
	struct servent *se = getservbyname(port, "tcp");
	return se != NULL ? ntohs((uint16_t)se->s_port) : 22;
}

static void lowercase(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* "host" on port 22, else "[host]:port", as known_hosts writes names. */
static void host_port_name(const char *host, int port, char *out, size_t outlen)
{
	if (port == 22)
		snprintf(out, outlen, "%s", host);
	else
		snprintf(out, outlen, "[%s]:%d", host, port);
}

static void expand_path(const char *in, char *out, size_t outlen)
{
	if (in[0] == '$') {
		const char *v = getenv(in + 1);
		snprintf(out, outlen, "%s", v != NULL ? v : "");
		return;
	}
	knownhosts_expand_tilde(in, out, outlen);
}

/* ------------------------------------------------------------------ */
/* the terminal */

static volatile sig_atomic_t tty_signal;

static void tty_sig_handler(int sig)
{
	tty_signal = sig;
}

static bool tty_available(void)
{
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void tty_write(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* Ask on /dev/tty; false if there is no terminal, on EOF or on a signal
 * (which is re-raised once the terminal is restored). */
static bool tty_prompt(const char *prompt, bool echo, char *out, size_t outlen)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa = { .sa_handler = tty_sig_handler }, old_sa[4];
	struct termios old_tio, tio;
	bool restore = false, got = false;
	size_t n = 0;

	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return false;
	tty_signal = 0;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 4; i++)
		sigaction(sigs[i], &sa, &old_sa[i]);
	if (!echo && tcgetattr(fd, &old_tio) == 0) {
		tio = old_tio;
		tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		if (tcsetattr(fd, TCSAFLUSH, &tio) == 0)
			restore = true;
	}
	tty_write(fd, prompt);
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR && tty_signal == 0)
			continue;
		if (r <= 0)
			break;
		if (c == '\n' || c == '\r') {
			got = true;
			break;
		}
		if (n + 1 < outlen)
			out[n++] = c;
	}
	out[n] = '\0';
	if (restore) {
		tcsetattr(fd, TCSAFLUSH, &old_tio);
		tty_write(fd, "\n");
	}
	close(fd);
	for (int i = 0; i < 4; i++)
		sigaction(sigs[i], &old_sa[i], NULL);
	if (tty_signal != 0) {
		explicit_bzero(out, outlen);
		raise(tty_signal);
		return false;
	}
	return got;
}

/* ------------------------------------------------------------------ */
/* algorithm preferences */

static bool pattern_list_match(const char *alg, const char *patterns)
{
	char *copy = strdup(patterns), *save = NULL;
	bool m = false;
	if (copy == NULL)
		return false;
	for (char *p = strtok_r(copy, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
		if (fnmatch(p, alg, 0) == 0) {
			m = true;
			break;
		}
	}
	free(copy);
	return m;
}

static void append_alg(char *out, size_t outlen, const char *alg)
{
	if (in_list(out, alg))
		return;
	size_t used = strlen(out);
	snprintf(out + used, outlen - used, "%s%s", used > 0 ? "," : "", alg);
}

/* OpenSSH's list syntax ("a,b", "+a", "-a*", "^a") over libssh2's default
 * order, keeping only what libssh2 has. */
static int build_pref(LIBSSH2_SESSION *s, int type, const char *spec, char *out, size_t outlen)
{
	const char **algs = NULL;
	int n = libssh2_session_supported_algs(s, type, &algs);
	out[0] = '\0';
	if (n <= 0)
		return -1;
	if (spec[0] == '+') {
		for (int i = 0; i < n; i++)
			append_alg(out, outlen, algs[i]);
	} else if (spec[0] == '-') {
		for (int i = 0; i < n; i++)
			if (!pattern_list_match(algs[i], spec + 1))
				append_alg(out, outlen, algs[i]);
	} else {
		const char *list = spec[0] == '^' ? spec + 1 : spec;
		char *copy = strdup(list), *save = NULL;
		if (copy != NULL) {
			for (char *p = strtok_r(copy, ",", &save); p != NULL;
			     p = strtok_r(NULL, ",", &save))
				for (int i = 0; i < n; i++)
					if (fnmatch(p, algs[i], 0) == 0)
						append_alg(out, outlen, algs[i]);
			free(copy);
		}
		if (spec[0] == '^')
			for (int i = 0; i < n; i++)
				append_alg(out, outlen, algs[i]);
	}
	libssh2_free(s, algs);
	return out[0] != '\0' ? 0 : -1;
}

static int set_pref(LIBSSH2_SESSION *s, int type, int type2, const char *spec, const char *what,
		    char *err, size_t errlen)
{
	char list[2048];
	if (spec == NULL || spec[0] == '\0')
		return 0;
	if (build_pref(s, type, spec, list, sizeof(list)) < 0) {
		snprintf(err, errlen,
			 "hashi: none of the %s \"%s\" is supported by libssh2 "
			 "(try -o transport=openssh)", what, spec);
		return -1;
	}
	log_debug("%s: %s", what, list);
	if (libssh2_session_method_pref(s, type, list) != 0 ||
	    (type2 >= 0 && libssh2_session_method_pref(s, type2, list) != 0)) {
		snprintf(err, errlen, "hashi: %s \"%s\": %s", what, spec, session_errmsg(s));
		return -1;
	}
	return 0;
}

/* Put the host key types known_hosts already has for this host first, as
 * ssh does, so that the key we are shown is one we can verify. */
static int set_hostkey_pref(LIBSSH2_SESSION *s, const struct ssh_target *t,
			    char *const files[], int nfiles, const char *khname, char *err,
			    size_t errlen)
{
	char types[8][64], base[2048], list[2048] = "";
	int nt = knownhosts_host_key_types(files, nfiles, khname, types, 8);
	const char *spec = t->host_key_algorithms;

	if (nt == 0)
		return set_pref(s, LIBSSH2_METHOD_HOSTKEY, -1, spec, "host key algorithms", err,
				errlen);
	if (build_pref(s, LIBSSH2_METHOD_HOSTKEY, spec != NULL && spec[0] ? spec : "+", base,
		       sizeof(base)) < 0) {
		snprintf(err, errlen,
			 "hashi: none of the host key algorithms \"%s\" is supported by libssh2 "
			 "(try -o transport=openssh)", spec != NULL ? spec : "");
		return -1;
	}
	for (int i = 0; i < nt; i++)
		if (in_list(base, types[i]))
			append_alg(list, sizeof(list), types[i]);
	char *copy = strdup(base), *save = NULL;
	if (copy != NULL) {
		for (char *p = strtok_r(copy, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save))
			append_alg(list, sizeof(list), p);
		free(copy);
	}
	log_debug("host key algorithms: %s", list);
	if (libssh2_session_method_pref(s, LIBSSH2_METHOD_HOSTKEY, list) != 0) {
		snprintf(err, errlen, "hashi: host key algorithms: %s", session_errmsg(s));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* host key verification */

struct kh_files {
	char *files[TARGET_MAX_LIST];
	int n, nuser;
};

/* target.c lists the files as ssh -G does (user files first); none at all
 * means UserKnownHostsFile=none and GlobalKnownHostsFile=none. */
static void known_hosts_files(const struct ssh_target *t, struct kh_files *f)
{
	f->n = t->n_known_hosts < TARGET_MAX_LIST ? t->n_known_hosts : TARGET_MAX_LIST;
	for (int i = 0; i < f->n; i++)
		f->files[i] = t->known_hosts[i];
	f->nuser = t->n_user_known_hosts < f->n ? t->n_user_known_hosts : f->n;
}

static void peer_name(int sock, bool proxied, int port, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	char ip[NI_MAXHOST];

	if (proxied || getpeername(sock, (struct sockaddr *)&ss, &l) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, l, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0) {
		snprintf(out, outlen, "<no hostip for proxy command>");
		return;
	}
	host_port_name(ip, port, out, outlen);
}

static bool confirm_new_host(const char *khname, const char *ipname, const char *label,
			     const char *fp, const char *others, bool other_types)
{
	char prompt[4096], answer[256];

	snprintf(prompt, sizeof(prompt),
		 "The authenticity of host '%.200s (%s)' can't be established%s\n"
		 "%s key fingerprint is %s.\n%s\n"
		 "Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
		 khname, ipname,
		 other_types ? "\nbut keys of different type are already known for this host."
			     : ".",
		 label, fp, others);
	const char *msg = prompt;
	for (;;) {
		if (!tty_prompt(msg, true, answer, sizeof(answer)))
			return false;
		char *p = answer + strspn(answer, " \t");
		p[strcspn(p, " \t\n")] = '\0';
		if (p[0] == '\0' || strcasecmp(p, "no") == 0)
			return false;
		if (strcasecmp(p, "yes") == 0 || strcmp(p, fp) == 0)
			return true;
		msg = "Please type 'yes', 'no' or the fingerprint: ";
	}
}

static int verify_host_key(struct ssh_transport *st, const struct ssh_target *t,
			   const char *hostname, int port, bool proxied, char *err, size_t errlen)
{
	struct kh_files f;
	struct knownhosts_result res;
	char khname[1100], plain[1024], ipname[1100], type[64], fp[128];
	size_t bloblen = 0;
	int keytype = 0;

	known_hosts_files(t, &f);
	const unsigned char *blob =
		(const unsigned char *)libssh2_session_hostkey(st->session, &bloblen, &keytype);
	if (blob == NULL || bloblen == 0) {
		snprintf(err, errlen, "hashi: the server sent no host key");
		return -1;
	}
	knownhosts_blob_type(blob, bloblen, type, sizeof(type));
	const char *label = knownhosts_type_label(type);
	knownhosts_fingerprint(blob, bloblen, fp, sizeof(fp));

	snprintf(plain, sizeof(plain), "%s", t->host_key_alias ? t->host_key_alias : hostname);
	lowercase(plain);
	if (t->host_key_alias != NULL)
		snprintf(khname, sizeof(khname), "%s", plain);
	else
		host_port_name(plain, port, khname, sizeof(khname));
	peer_name(st->sock, proxied, port, ipname, sizeof(ipname));
	log_debug("Server host key: %s %s", type, fp);

	enum knownhosts_status s = knownhosts_check(f.files, f.n, khname, blob, bloblen, &res);
	if (s == KNOWNHOSTS_NEW && t->host_key_alias == NULL && port != 22) {
		struct knownhosts_result r2;
		if (knownhosts_check(f.files, f.n, plain, blob, bloblen, &r2) == KNOWNHOSTS_OK) {
			log_debug("found matching key w/out port");
			s = KNOWNHOSTS_OK;
			res = r2;
		}
	}

	switch (s) {
	case KNOWNHOSTS_OK:
		log_debug("Host '%s' is known and matches the %s host key.", khname, label);
		log_debug("Found key in %s:%lu", res.file, res.line);
		return 0;

	case KNOWNHOSTS_REVOKED:
		fprintf(stderr,
			AT_LINE "\n"
			"@       WARNING: REVOKED HOST KEY DETECTED!               @\n"
			AT_LINE "\n"
			"The %s host key for %s is marked as revoked.\n"
			"This could mean that a stolen key is being used to\n"
			"impersonate this host.\n"
			"%s host key for %.200s was revoked and you have requested strict "
			"checking.\n",
			label, khname, label, khname);
		snprintf(err, errlen, "Host key verification failed.");
		return -1;

	case KNOWNHOSTS_CHANGED:
		fprintf(stderr,
			AT_LINE "\n"
			"@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
			AT_LINE "\n"
			"IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
			"Someone could be eavesdropping on you right now (man-in-the-middle "
			"attack)!\n"
			"It is also possible that a host key has just been changed.\n"
			"The fingerprint for the %s key sent by the remote host is\n%s.\n"
			"Please contact your system administrator.\n",
			label, fp);
		if (f.n > 0) {
			char first[PATH_MAX];
			knownhosts_expand_tilde(f.files[0], first, sizeof(first));
			fprintf(stderr, "Add correct host key in %.100s to get rid of this message.\n",
				first);
		}
		fprintf(stderr,
			"Offending %s key in %s:%lu\n"
			"  remove with:\n"
			"  ssh-keygen -f \"%s\" -R \"%s\"\n"
			"Host key for %.200s has changed and you have requested strict checking.\n",
			label, res.file, res.line, res.file, khname, khname);
		snprintf(err, errlen, "Host key verification failed.");
		return -1;

	case KNOWNHOSTS_NEW:
		break;
	}

	/* A host we have not seen. With no user file to remember it in
	 * (UserKnownHostsFile=none), ssh refuses whatever the mode. */
	if (f.nuser <= 0) {
		snprintf(err, errlen, "Host key verification failed.");
		return -1;
	}
	if (t->strict == SHKC_YES) {
		snprintf(err, errlen,
			 "No %s host key is known for %.200s and you have requested strict "
			 "checking.\nHost key verification failed.",
			 label, khname);
		return -1;
	}
	if (t->strict == SHKC_ASK) {
		char others[2048];
		if (t->batch_mode || !isatty(STDIN_FILENO) || !tty_available()) {
			snprintf(err, errlen, "Host key verification failed.");
			return -1;
		}
		knownhosts_other_names(f.files, f.n, khname, blob, bloblen, others,
				       sizeof(others));
		if (!confirm_new_host(khname, ipname, label, fp, others, res.other_types_known)) {
			snprintf(err, errlen, "Host key verification failed.");
			return -1;
		}
	}

	/* ask (confirmed), accept-new, no: remember the key. */
	char names[2300];
	if (t->check_host_ip && !proxied && t->host_key_alias == NULL &&
	    strcmp(khname, ipname) != 0)
		snprintf(names, sizeof(names), "%s,%s", khname, ipname);
	else
		snprintf(names, sizeof(names), "%s", khname);
	char file[PATH_MAX];
	knownhosts_expand_tilde(f.files[0], file, sizeof(file));
	if (knownhosts_add(file, names, blob, bloblen) != 0)
		fprintf(stderr, "Failed to add the host to the list of known hosts (%.500s).\n",
			file);
	else
		fprintf(stderr, "Warning: Permanently added '%.200s' (%s) to the list of known "
				"hosts.\n", names, label);
	return 0;
}

/* ------------------------------------------------------------------ */
/* identity files */

struct identity {
	char path[PATH_MAX];
	unsigned char pub[8192];
	size_t publen;   /* 0: public key unknown */
	char type[64];   /* "" if unknown */
	bool encrypted;
	bool used;       /* already tried through the agent */
};

static uint32_t get_u32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Read an SSH string at *p (bounded by end). */
static bool get_string(const unsigned char **p, const unsigned char *end,
		       const unsigned char **s, uint32_t *len)
{
	if (end - *p < 4)
		return false;
	uint32_t l = get_u32(*p);
	if (l > (size_t)(end - *p) - 4)
		return false;
	*s = *p + 4;
	*len = l;
	*p += 4 + l;
	return true;
}

/* The base64 body between BEGIN and END lines, decoded. */
static long pem_body(const char *text, unsigned char *out, size_t outlen)
{
	const char *p = strstr(text, "-----BEGIN ");
	if (p == NULL || (p = strchr(p, '\n')) == NULL)
		return -1;
	const char *end = strstr(p, "-----END ");
	if (end == NULL)
		return -1;
	char *b64 = malloc((size_t)(end - p) + 1);
	size_t n = 0;
	if (b64 == NULL)
		return -1;
	for (; p < end; p++)
		if (!isspace((unsigned char)*p))
			b64[n++] = *p;
	long r = knownhosts_base64_decode(b64, n, out, outlen);
	free(b64);
	return r;
}

static void load_pub_file(struct identity *id)
{
	char path[PATH_MAX + 8], line[16384];
	snprintf(path, sizeof(path), "%s.pub", id->path);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return;
	if (fgets(line, sizeof(line), f) != NULL) {
		char *save = NULL;
		char *ty = strtok_r(line, " \t\r\n", &save);
		char *b64 = strtok_r(NULL, " \t\r\n", &save);
		if (ty != NULL && b64 != NULL) {
			long n = knownhosts_base64_decode(b64, strlen(b64), id->pub, sizeof(id->pub));
			if (n > 0) {
				id->publen = (size_t)n;
				knownhosts_blob_type(id->pub, id->publen, id->type, sizeof(id->type));
			}
		}
	}
	fclose(f);
}

/* What the private key file says about itself without decrypting it. */
static void inspect_identity(struct identity *id, const char *text)
{
	if (strstr(text, "-----BEGIN OPENSSH PRIVATE KEY-----") != NULL) {
		size_t cap = strlen(text);
		unsigned char *raw = malloc(cap + 1);
		long n = raw != NULL ? pem_body(text, raw, cap) : -1;
		static const char magic[] = "openssh-key-v1";
		if (n > (long)sizeof(magic) && memcmp(raw, magic, sizeof(magic)) == 0) {
			const unsigned char *p = raw + sizeof(magic), *end = raw + n, *s;
			uint32_t l;
			if (get_string(&p, end, &s, &l)) { /* cipher */
				id->encrypted = !(l == 4 && memcmp(s, "none", 4) == 0);
				if (get_string(&p, end, &s, &l) &&  /* kdf */
				    get_string(&p, end, &s, &l) &&  /* kdf options */
				    end - p >= 4 && get_u32(p) >= 1) {
					p += 4;
					if (get_string(&p, end, &s, &l) && l <= sizeof(id->pub)) {
						memcpy(id->pub, s, l);
						id->publen = l;
						knownhosts_blob_type(id->pub, l, id->type,
								     sizeof(id->type));
					}
				}
			}
		}
		free(raw);
	} else {
		if (strstr(text, "-----BEGIN RSA PRIVATE KEY-----") != NULL)
			snprintf(id->type, sizeof(id->type), "ssh-rsa");
		else if (strstr(text, "-----BEGIN EC PRIVATE KEY-----") != NULL)
			snprintf(id->type, sizeof(id->type), "ecdsa");
		else if (strstr(text, "-----BEGIN DSA PRIVATE KEY-----") != NULL)
			snprintf(id->type, sizeof(id->type), "ssh-dss");
		id->encrypted = strstr(text, "Proc-Type: 4,ENCRYPTED") != NULL ||
				strstr(text, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL;
	}
	if (id->publen == 0)
		load_pub_file(id);
}

/* Gather the identity files that exist (ssh's defaults when none are
 * named). Returns how many. */
static int collect_identities(const struct ssh_target *t, struct identity **out)
{
	static const char *defaults[] = { "~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa" };
	const char *names[TARGET_MAX_LIST];
	int nn = 0;

	if (t->n_identity_files > 0) {
		for (int i = 0; i < t->n_identity_files && i < TARGET_MAX_LIST; i++)
			names[nn++] = t->identity_files[i];
	} else {
		for (int i = 0; i < 3; i++)
			names[nn++] = defaults[i];
	}
	struct identity *ids = calloc((size_t)nn, sizeof(*ids));
	int n = 0;
	if (ids == NULL)
		return 0;
	for (int i = 0; i < nn; i++) {
		struct identity *id = &ids[n];
		char *text = NULL;
		knownhosts_expand_tilde(names[i], id->path, sizeof(id->path));
		FILE *f = fopen(id->path, "re");
		if (f == NULL) {
			log_debug("no such identity: %s: %s", id->path, strerror(errno));
			continue;
		}
		text = calloc(1, 65537);
		if (text != NULL) {
			size_t r = fread(text, 1, 65536, f);
			text[r] = '\0';
			inspect_identity(id, text);
			explicit_bzero(text, 65537);
			free(text);
		}
		fclose(f);
		n++;
	}
	*out = ids;
	return n;
}

static bool key_perms_ok(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return true; /* libssh2 will say what is wrong */
	if (st.st_uid == getuid() && (st.st_mode & 077) != 0) {
		fprintf(stderr,
			AT_LINE "\n"
			"@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\n"
			AT_LINE "\n"
			"Permissions 0%3.3o for '%s' are too open.\n"
			"It is required that your private key files are NOT accessible by others.\n"
			"This private key will be ignored.\n"
			"Load key \"%s\": bad permissions\n",
			(unsigned)(st.st_mode & 0777), path, path);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* authentication */

struct auth_state {
	int tried, tried_rsa;  /* keys offered to the server */
	bool fatal;            /* the connection broke */
};

static bool is_fatal(int rc)
{
	switch (rc) {
	case LIBSSH2_ERROR_SOCKET_SEND:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT:
	case LIBSSH2_ERROR_TIMEOUT:
	case LIBSSH2_ERROR_BAD_SOCKET:
	case LIBSSH2_ERROR_DECRYPT:
	case LIBSSH2_ERROR_INVALID_MAC:
	case LIBSSH2_ERROR_PROTO:
		return true;
	default:
		return false;
	}
}

static void count_key(struct auth_state *as, const char *type)
{
	as->tried++;
	if (strcmp(type, "ssh-rsa") == 0)
		as->tried_rsa++;
}

static int refuse_sign(LIBSSH2_SESSION *s, unsigned char **sig, size_t *sig_len,
		       const unsigned char *data, size_t data_len, void **abstract)
{
	(void)s;
	(void)sig;
	(void)sig_len;
	(void)data;
	(void)data_len;
	*(bool *)*abstract = true;
	return -1;
}

/* Would the server take this public key? (No signature is made.) */
static int server_accepts(LIBSSH2_SESSION *s, const char *user, const struct identity *id)
{
	bool accepted = false;
	void *abstract = &accepted;
	int rc = libssh2_userauth_publickey(s, user, id->pub, id->publen, refuse_sign, &abstract);
	if (rc == 0)
		return 1; /* the server let us in without a signature */
	if (is_fatal(rc))
		return -1;
	return accepted ? 1 : 0;
}

static bool try_identity_file(struct ssh_transport *st, struct identity *id,
			      struct auth_state *as)
{
	LIBSSH2_SESSION *s = st->session;
	const struct auth_ctx *a = &st->auth;
	unsigned ulen = (unsigned)strlen(a->user);
	char pass[1024] = "";
	int rc;

	if (!key_perms_ok(id->path))
		return false;
	log_debug("Trying private key: %s", id->path);
	if (!id->encrypted) {
		rc = libssh2_userauth_publickey_fromfile_ex(s, a->user, ulen, NULL, id->path, "");
		if (rc == 0)
			return true;
		if (rc == LIBSSH2_ERROR_FILE) {
			fprintf(stderr, "Load key \"%s\": invalid format\n", id->path);
			return false;
		}
		if (is_fatal(rc))
			as->fatal = true;
		count_key(as, id->type);
		return false;
	}

	/* Encrypted: ask for the passphrase only if the server would take
	 * the key, as ssh does. */
	if (id->publen > 0) {
		int ok = server_accepts(s, a->user, id);
		if (ok < 0) {
			as->fatal = true;
			return false;
		}
		if (ok == 0) {
			count_key(as, id->type);
			return false;
		}
		if (libssh2_userauth_authenticated(s))
			return true;
	}
	if (!a->can_prompt) {
		log_debug("no passphrase for %s in batch mode", id->path);
		return false;
	}
	char prompt[PATH_MAX + 64];
	snprintf(prompt, sizeof(prompt), "Enter passphrase for key '%.100s': ", id->path);
	int tries = a->t->number_of_password_prompts > 0 ? a->t->number_of_password_prompts : 3;
	for (int i = 0; i < tries; i++) {
		if (!tty_prompt(prompt, false, pass, sizeof(pass)) || pass[0] == '\0')
			break;
		rc = libssh2_userauth_publickey_fromfile_ex(s, a->user, ulen, NULL, id->path, pass);
		explicit_bzero(pass, sizeof(pass));
		if (rc == 0)
			return true;
		if (rc == LIBSSH2_ERROR_FILE) {
			log_debug("bad passphrase given, try again...");
			continue;
		}
		if (is_fatal(rc))
			as->fatal = true;
		count_key(as, id->type);
		return false;
	}
	return false;
}

static bool try_agent(struct ssh_transport *st, struct identity *ids, int nids,
		      struct auth_state *as)
{
	const struct ssh_target *t = st->auth.t;
	const char *conf = t->identity_agent;
	char path[PATH_MAX];
	bool ok = false;

	if (conf == NULL || strcmp(conf, "SSH_AUTH_SOCK") == 0)
		conf = getenv("SSH_AUTH_SOCK");
	if (conf == NULL || conf[0] == '\0' || strcmp(conf, "none") == 0)
		return false;
	expand_path(conf, path, sizeof(path));
	if (path[0] == '\0')
		return false;

	LIBSSH2_AGENT *agent = libssh2_agent_init(st->session);
	if (agent == NULL)
		return false;
	libssh2_agent_set_identity_path(agent, path);
	if (libssh2_agent_connect(agent) != 0) {
		log_debug("ssh-agent at %s: %s", path, session_errmsg(st->session));
		libssh2_agent_free(agent);
		return false;
	}
	if (libssh2_agent_list_identities(agent) != 0) {
		log_debug("ssh-agent: cannot list identities");
		goto out;
	}
	/* Two passes, as ssh orders keys: first the agent's keys that match
	 * identity files, then (unless IdentitiesOnly) the others. */
	for (int pass = 0; pass < 2 && !ok && !as->fatal; pass++) {
		struct libssh2_agent_publickey *id = NULL, *prev = NULL;
		if (pass == 1 && t->identities_only)
			break;
		while (!ok && !as->fatal && libssh2_agent_get_identity(agent, &id, prev) == 0) {
			prev = id;
			int match = -1;
			for (int i = 0; i < nids; i++)
				if (ids[i].publen == id->blob_len &&
				    memcmp(ids[i].pub, id->blob, id->blob_len) == 0)
					match = i;
			if ((pass == 0) != (match >= 0))
				continue;
			if (match >= 0)
				ids[match].used = true;
			char type[64];
			knownhosts_blob_type(id->blob, id->blob_len, type, sizeof(type));
			log_debug("Offering public key: %s %s agent", id->comment ? id->comment : "",
				  type);
			int rc = libssh2_agent_userauth(agent, st->auth.user, id);
			if (rc == 0) {
				ok = true;
			} else if (is_fatal(rc)) {
				as->fatal = true;
			} else if (rc != LIBSSH2_ERROR_AGENT_PROTOCOL) {
				count_key(as, type);
			}
		}
	}
out:
	libssh2_agent_disconnect(agent);
	libssh2_agent_free(agent);
	return ok;
}

static void kbdint_cb(const char *name, int name_len, const char *instruction,
		      int instruction_len, int num_prompts,
		      const LIBSSH2_USERAUTH_KBDINT_PROMPT *prompts,
		      LIBSSH2_USERAUTH_KBDINT_RESPONSE *responses, void **abstract)
{
	struct ssh_transport *st = *abstract;
	struct auth_ctx *a = &st->auth;
	char answer[1024];
	bool shown = false;

	for (int i = 0; i < num_prompts; i++) {
		const char *value = "";
		answer[0] = '\0';
		if (a->t->password != NULL && num_prompts == 1 && !prompts[i].echo &&
		    !a->kbd_gave_password) {
			value = a->t->password;
			a->kbd_gave_password = true;
		} else if (a->can_prompt) {
			int fd;
			if (!shown && (name_len > 0 || instruction_len > 0) &&
			    (fd = open("/dev/tty", O_WRONLY | O_NOCTTY | O_CLOEXEC)) >= 0) {
				char head[2048];
				snprintf(head, sizeof(head), "%.*s%s%.*s%s", name_len, name,
					 name_len > 0 ? "\n" : "", instruction_len, instruction,
					 instruction_len > 0 ? "\n" : "");
				tty_write(fd, head);
				close(fd);
			}
			shown = true;
			char prompt[1024];
			snprintf(prompt, sizeof(prompt), "%.*s", (int)prompts[i].length,
				 prompts[i].text);
			if (tty_prompt(prompt, prompts[i].echo != 0, answer, sizeof(answer)))
				value = answer;
			else
				a->kbd_unanswered = true;
		} else {
			a->kbd_unanswered = true;
		}
		responses[i].text = strdup(value);
		responses[i].length = responses[i].text != NULL ? (unsigned)strlen(value) : 0;
		explicit_bzero(answer, sizeof(answer));
	}
}

static int authenticate(struct ssh_transport *st, const char *hostname, bool *rsa_only,
			char *err, size_t errlen)
{
	LIBSSH2_SESSION *s = st->session;
	struct auth_ctx *a = &st->auth;
	const struct ssh_target *t = a->t;
	unsigned ulen = (unsigned)strlen(a->user);
	struct auth_state as = { 0 };
	struct identity *ids = NULL;
	int nids = 0;
	char methods[512];

	char *list = libssh2_userauth_list(s, a->user, ulen);
	if (list == NULL) {
		if (libssh2_userauth_authenticated(s))
			return 0; /* "none" was enough */
		int rc = libssh2_session_last_errno(s);
		snprintf(err, errlen, "%s@%s: %s", a->user, hostname,
			 is_fatal(rc) ? "Connection closed during authentication"
				      : session_errmsg(s));
		return -1;
	}
	snprintf(methods, sizeof(methods), "%s", list);
	log_debug("Authentications that can continue: %s", methods);

	if (t->pubkey_auth && in_list(methods, "publickey")) {
		nids = collect_identities(t, &ids);
		if (try_agent(st, ids, nids, &as))
			goto ok;
		for (int i = 0; i < nids && !as.fatal; i++) {
			if (ids[i].used)
				continue;
			if (try_identity_file(st, &ids[i], &as))
				goto ok;
		}
	}
	if (as.fatal)
		goto broken;

	/* A refused RSA key may only have been refused for its SHA-1
	 * signature. The caller may fall back to OpenSSH, which signs with
	 * rsa-sha2: do not make the user type a password first. */
	bool rsa_refused = as.tried_rsa > 0;
	bool may_prompt = a->can_prompt && !rsa_refused;

	/* With a password given (password_stdin), each method gets it once;
	 * otherwise ask on the terminal, NumberOfPasswordPrompts times. */
	int tries = t->password != NULL ? 1
		    : t->number_of_password_prompts > 0 ? t->number_of_password_prompts : 3;
	a->can_prompt = may_prompt;
	if (t->kbdint_auth && in_list(methods, "keyboard-interactive") &&
	    (t->password != NULL || may_prompt)) {
		for (int i = 0; i < tries; i++) {
			a->kbd_unanswered = false;
			a->kbd_gave_password = false;
			int rc = libssh2_userauth_keyboard_interactive_ex(s, a->user, ulen, kbdint_cb);
			if (rc == 0)
				goto ok;
			if (is_fatal(rc))
				goto broken;
			if (a->kbd_unanswered)
				break;
		}
	}
	if (t->password_auth && in_list(methods, "password") &&
	    (t->password != NULL || may_prompt)) {
		char prompt[1200], pw[1024];
		snprintf(prompt, sizeof(prompt), "%s@%s's password: ", a->user, a->prompt_host);
		for (int i = 0; i < tries; i++) {
			const char *value = t->password;
			if (value == NULL) {
				if (i > 0)
					fprintf(stderr, "Permission denied, please try again.\n");
				if (!tty_prompt(prompt, false, pw, sizeof(pw)))
					break;
				value = pw;
			}
			int rc = libssh2_userauth_password_ex(s, a->user, ulen, value,
							      (unsigned)strlen(value), NULL);
			explicit_bzero(pw, sizeof(pw));
			if (rc == 0)
				goto ok;
			if (is_fatal(rc))
				goto broken;
		}
	}

	free(ids);
	if (rsa_refused) {
		*rsa_only = true;
		snprintf(err, errlen,
			 "Permission denied (publickey): libssh2 cannot sign with RSA-SHA2; use an "
			 "ed25519 or ecdsa key, or -o transport=openssh");
	} else {
		snprintf(err, errlen, "%s@%s: Permission denied (%s).", a->user, hostname, methods);
	}
	return -1;
ok:
	free(ids);
	log_debug("Authenticated to %s as %s.", hostname, a->user);
	return 0;
broken:
	free(ids);
	snprintf(err, errlen, "%s@%s: connection lost during authentication: %s", a->user,
		 hostname, session_errmsg(s));
	return -1;
}

/* ------------------------------------------------------------------ */
/* connecting */

static int proxy_jump_socket(const struct ssh_target *t, const char *hostname,
			     const char *port, pid_t *pid, char *err, size_t errlen)
{
	char *jumps = strdup(t->proxy_jump);
	char *argv[16];
	char target[1100], *rest = NULL, *last, *user = NULL, *jport = NULL;
	int n = 0;

	if (jumps == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	last = strrchr(jumps, ',');
	if (last != NULL) {
		*last++ = '\0';
		rest = jumps;
	} else {
		last = jumps;
	}
	if (strncmp(last, "ssh://", 6) == 0)
		last += 6;
	char *at = strrchr(last, '@');
	if (at != NULL) {
		*at = '\0';
		user = last;
		last = at + 1;
	}
	/* host:port, [v6]:port */
	if (last[0] == '[') {
		char *close = strchr(last, ']');
		if (close != NULL) {
			*close = '\0';
			if (close[1] == ':')
				jport = close + 2;
			last++;
		}
	} else {
		char *colon = strchr(last, ':');
		if (colon != NULL && strchr(colon + 1, ':') == NULL) {
			*colon = '\0';
			jport = colon + 1;
		}
	}
	snprintf(target, sizeof(target), "[%s]:%s", hostname, port);
	argv[n++] = "ssh";
	if (t->config_file != NULL) {
		argv[n++] = "-F";
		argv[n++] = t->config_file;
	}
	if (rest != NULL) {
		argv[n++] = "-J";
		argv[n++] = rest;
	}
	if (user != NULL) {
		argv[n++] = "-l";
		argv[n++] = user;
	}
	if (jport != NULL && jport[0] != '\0') {
		argv[n++] = "-p";
		argv[n++] = jport;
	}
	if (t->batch_mode)
		argv[n++] = "-oBatchMode=yes";
	argv[n++] = "-W";
	argv[n++] = target;
	argv[n++] = "--";
	argv[n++] = last;
	argv[n] = NULL;
	int fd = transport_spawn(argv, NULL, pid, NULL, err, errlen);
	free(jumps);
	return fd;
}

static int open_socket(const struct ssh_target *t, const char *hostname, const char *port,
		       pid_t *pid, bool *proxied, char *err, size_t errlen)
{
	*pid = 0;
	*proxied = false;
	if (t->proxy_command != NULL && t->proxy_command[0] != '\0' &&
	    strcmp(t->proxy_command, "none") != 0) {
		char *cmd = NULL;
		if (asprintf(&cmd, "exec %s", t->proxy_command) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		*proxied = true;
		int fd = transport_spawn(NULL, cmd, pid, NULL, err, errlen);
		free(cmd);
		return fd;
	}
	if (t->proxy_jump != NULL && t->proxy_jump[0] != '\0' &&
	    strcmp(t->proxy_jump, "none") != 0) {
		*proxied = true;
		return proxy_jump_socket(t, hostname, port, pid, err, errlen);
	}
	return transport_sock_connect(hostname, port, t->address_family, t->connect_timeout,
				      "ssh", err, errlen);
}

static void handshake_error(LIBSSH2_SESSION *s, int rc, const char *hostname, const char *port,
			    char *err, size_t errlen)
{
	switch (rc) {
	case LIBSSH2_ERROR_TIMEOUT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT:
		snprintf(err, errlen,
			 "ssh: connect to host %s port %s: Connection timed out during banner "
			 "exchange", hostname, port);
		break;
	case LIBSSH2_ERROR_BANNER_RECV:
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_SEND:
		snprintf(err, errlen, "Connection closed by %s port %s", hostname, port);
		break;
	case LIBSSH2_ERROR_KEX_FAILURE:
	case LIBSSH2_ERROR_METHOD_NONE:
	case LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE:
		snprintf(err, errlen, "Unable to negotiate with %s port %s: %s", hostname, port,
			 session_errmsg(s));
		break;
	default:
		snprintf(err, errlen, "ssh: %s port %s: %s", hostname, port, session_errmsg(s));
		break;
	}
}

static const struct transport_ops ssh_ops;
static bool settle(struct ssh_transport *st, ssize_t *err);
static void chan_buffers_free(struct transport_chan *ch);

static void ssh_free(struct ssh_transport *st)
{
	if (st->session != NULL && st->base.abandoned && st->sock >= 0) {
		/* Taken for dead: every call from here on fails at once. */
		shutdown(st->sock, SHUT_RDWR);
		st->broken = true;
		st->main.wlen = 0;
		st->again = AGAIN_NONE;
	}
	if (st->session != NULL) {
		/* A call that still owes libssh2 a packet (a read's window
		 * adjust, a lent channel's open or close) gets one more try (in
		 * blocking mode it would wait for data); if that does not
		 * finish, leave without the courtesies. */
		ssize_t e;
		if (st->again != AGAIN_NONE && st->again != AGAIN_WRITE)
			settle(st, &e);
		if (st->again != AGAIN_NONE && st->again != AGAIN_WRITE)
			st->broken = true;
		libssh2_session_set_blocking(st->session, 1);
		libssh2_session_set_timeout(st->session, 2000);
		struct transport_chan *ac = st->again_chan;
		if (st->again == AGAIN_WRITE && ac->wlen > 0)
			libssh2_channel_write_ex(ac->channel, 0, (const char *)ac->wbuf + ac->wpos,
						 st->again_len);
		if (!st->broken)
			libssh2_session_disconnect(st->session, "hashi: closing");
		libssh2_session_free(st->session); /* and every channel */
	}
	while (st->lent != NULL) {
		struct transport_chan *ch = st->lent;
		st->lent = ch->next;
		chan_buffers_free(ch);
		free(ch);
	}
	if (st->sock >= 0)
		close(st->sock);
	if (st->ready_fd >= 0)
		close(st->ready_fd);
	transport_reap(st->proxy_pid);
	chan_buffers_free(&st->main);
	free(st->server);
	free(st);
}

static int libssh2_init_rc = -1;

static void init_libssh2(void)
{
	libssh2_init_rc = libssh2_init(0);
}

struct transport *transport_ssh_connect(const struct ssh_target *t, bool *rsa_only, char *err,
					 size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	char local_user[256];
	const char *hostname = t->hostname != NULL ? t->hostname : t->host_arg;
	const char *port = t->port != NULL && t->port[0] != '\0' ? t->port : "22";
	bool dummy, proxied;

	if (rsa_only == NULL)
		rsa_only = &dummy;
	*rsa_only = false;
	if (hostname == NULL) {
		snprintf(err, errlen, "hashi: no host to connect to");
		return NULL;
	}
	pthread_once(&once, init_libssh2);
	if (libssh2_init_rc != 0) {
		snprintf(err, errlen, "hashi: libssh2_init failed");
		return NULL;
	}

	struct ssh_transport *st = calloc(1, sizeof(*st));
	if (st == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	st->base.ops = &ssh_ops;
	st->sock = -1;
	st->ready_fd = -1;
	st->main.st = st;
	st->main.state = CH_OPEN;
	st->main.want_read = true;
	st->main.rbuf = malloc(RBUF_SIZE);
	st->main.wbuf = malloc(WBUF_SIZE);
	st->ready_fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	if (st->main.rbuf == NULL || st->main.wbuf == NULL || st->ready_fd < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	st->auth.t = t;
	if (t->user != NULL) {
		st->auth.user = t->user;
	} else {
		struct passwd *pw = getpwuid(getuid());
		snprintf(local_user, sizeof(local_user), "%s", pw != NULL ? pw->pw_name : "root");
		st->auth.user = local_user;
	}
	st->auth.prompt_host = t->host_key_alias != NULL ? t->host_key_alias : hostname;
	st->auth.can_prompt = !t->batch_mode && tty_available();

	log_progress("connecting to %s port %s", hostname, port);
	st->sock = open_socket(t, hostname, port, &st->proxy_pid, &proxied, err, errlen);
	if (st->sock < 0)
		goto fail;
	if (!proxied)
		transport_sock_keepalive(st->sock, USER_TIMEOUT_MS);

	st->session = libssh2_session_init_ex(lib_alloc, lib_free, lib_realloc, st);
	if (st->session == NULL) {
		snprintf(err, errlen, "hashi: cannot create an SSH session");
		goto fail;
	}
	LIBSSH2_SESSION *s = st->session;
	libssh2_session_set_blocking(s, 1);

	struct kh_files f;
	char khname[1100], plain[1024];
	int portnum = port_number(port);
	known_hosts_files(t, &f);
	snprintf(plain, sizeof(plain), "%s", t->host_key_alias ? t->host_key_alias : hostname);
	lowercase(plain);
	if (t->host_key_alias != NULL)
		snprintf(khname, sizeof(khname), "%s", plain);
	else
		host_port_name(plain, portnum, khname, sizeof(khname));

	if (set_pref(s, LIBSSH2_METHOD_KEX, -1, t->kex_algorithms, "key exchange algorithms",
		     err, errlen) < 0 ||
	    set_pref(s, LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_CRYPT_SC, t->ciphers, "ciphers",
		     err, errlen) < 0 ||
	    set_pref(s, LIBSSH2_METHOD_MAC_CS, LIBSSH2_METHOD_MAC_SC, t->macs, "MACs", err,
		     errlen) < 0 ||
	    set_hostkey_pref(s, t, f.files, f.n, khname, err, errlen) < 0)
		goto fail;
	if (t->compression)
		libssh2_session_flag(s, LIBSSH2_FLAG_COMPRESS, 1);

	libssh2_session_set_timeout(s, t->connect_timeout > 0 ? t->connect_timeout * 1000L : 0);
	log_progress("SSH handshake with %s", hostname);
	int rc = libssh2_session_handshake(s, st->sock);
	if (rc != 0) {
		handshake_error(s, rc, hostname, port, err, errlen);
		st->broken = true;
		goto fail;
	}
	libssh2_session_set_timeout(s, 0);
	log_debug("Remote protocol version: %s", libssh2_session_banner_get(s));
	log_debug("cipher %s, MAC %s; AES-CTR contexts with batched keystream: %d",
		  libssh2_session_methods(s, LIBSSH2_METHOD_CRYPT_CS),
		  libssh2_session_methods(s, LIBSSH2_METHOD_MAC_CS), transport_ctr_batched());

	log_progress("checking the host key of %s", hostname);
	if (verify_host_key(st, t, hostname, portnum, proxied, err, errlen) < 0)
		goto fail;
	log_progress("authenticating as %s", st->auth.user);
	st->wipe_frees = true;
	int authed = authenticate(st, hostname, rsa_only, err, errlen);
	st->wipe_frees = false;
	if (authed < 0)
		goto fail;
	log_progress("starting the SFTP subsystem");

	st->main.channel = libssh2_channel_open_ex(s, "session", 7, CHANNEL_WINDOW, CHANNEL_PACKET,
						   NULL, 0);
	if (st->main.channel == NULL) {
		snprintf(err, errlen, "channel 0: open failed: %s", session_errmsg(s));
		goto fail;
	}
	libssh2_channel_handle_extended_data2(st->main.channel,
					      LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE);
	const char *server = t->sftp_server != NULL && t->sftp_server[0] != '\0'
				     ? t->sftp_server : "sftp";
	bool is_cmd = strchr(server, '/') != NULL;
	st->server = strdup(server);
	st->server_is_cmd = is_cmd;
	rc = libssh2_channel_process_startup(st->main.channel, is_cmd ? "exec" : "subsystem",
					     is_cmd ? 4 : 9, server, (unsigned)strlen(server));
	if (rc != 0) {
		snprintf(err, errlen, "%s request failed on channel 0",
			 is_cmd ? "exec" : "subsystem");
		goto fail;
	}

	libssh2_session_set_blocking(s, 0);
	st->auth.t = NULL; /* the caller may free the target now */
	st->auth.user = st->auth.prompt_host = NULL;
	return &st->base;

fail:
	ssh_free(st);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* non-blocking I/O */

static bool outbound_blocked(struct ssh_transport *st)
{
	return (libssh2_session_block_directions(st->session) &
		LIBSSH2_SESSION_BLOCK_OUTBOUND) != 0;
}

static void chan_buffers_free(struct transport_chan *ch)
{
	free(ch->rbuf);
	free(ch->wbuf);
	ch->rbuf = ch->wbuf = NULL;
}

/* After EAGAIN: must this call be repeated before any other? */
static void note_again(struct ssh_transport *st, struct transport_chan *ch, enum again what,
		       size_t len, bool eagain)
{
	if (eagain && outbound_blocked(st)) {
		st->again = what;
		st->again_chan = ch;
		st->again_len = len;
	} else if (st->again_chan == ch) {
		st->again = AGAIN_NONE;
	}
}

/* Errors that end the channel, not the session under it. */
static bool channel_error(ssize_t rc)
{
	return rc == LIBSSH2_ERROR_CHANNEL_CLOSED || rc == LIBSSH2_ERROR_CHANNEL_EOF_SENT ||
	       rc == LIBSSH2_ERROR_CHANNEL_FAILURE || rc == LIBSSH2_ERROR_CHANNEL_UNKNOWN ||
	       rc == LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED ||
	       rc == LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED ||
	       rc == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED;
}

/* A call failed: the whole session (the main channel's errors, and broken
 * sockets) or just a lent channel. */
static ssize_t broken(struct transport_chan *ch, ssize_t rc, const char *what)
{
	struct ssh_transport *st = ch->st;
	if (st->again_chan == ch)
		st->again = AGAIN_NONE;
	if (ch != &st->main && channel_error(rc)) {
		ch->state = CH_FAILED;
		snprintf(ch->error, sizeof(ch->error), "%s: %s", what, session_errmsg(st->session));
		return -EPIPE;
	}
	st->broken = true;
	transport_set_error(&st->base, "%s: %s", what, session_errmsg(st->session));
	switch (rc) {
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_CHANNEL_CLOSED:
	case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
		return -EPIPE;
	case LIBSSH2_ERROR_TIMEOUT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT:
		return -ETIMEDOUT;
	case LIBSSH2_ERROR_ALLOC:
		return -ENOMEM;
	default:
		return -ECONNRESET;
	}
}

/* One channel_write of the buffered bytes (or the exact repeat of the one
 * that returned EAGAIN). Returns >0 (sent), 0 (nothing moved: the socket
 * is full or the peer's window is shut) or a negative errno. */
static ssize_t write_buffered(struct transport_chan *ch)
{
	struct ssh_transport *st = ch->st;
	size_t len = st->again == AGAIN_WRITE && st->again_chan == ch ? st->again_len : ch->wlen;
	ssize_t n = libssh2_channel_write_ex(ch->channel, 0, (const char *)ch->wbuf + ch->wpos,
					     len);
	if (n > 0) {
		if (st->again_chan == ch)
			st->again = AGAIN_NONE;
		ch->wpos += (size_t)n;
		ch->wlen -= (size_t)n;
		if (ch->wlen == 0)
			ch->wpos = 0;
		return n;
	}
	if (n == 0 || n == LIBSSH2_ERROR_EAGAIN) {
		/* (the window is shut when not blocked: nothing was taken) */
		note_again(st, ch, AGAIN_WRITE, len, n == LIBSSH2_ERROR_EAGAIN);
		return 0;
	}
	return broken(ch, n, "write");
}

/* Read up to RBUF_SIZE bytes into dst: rbuf, which must then be empty, or
 * a caller's buffer of at least RBUF_SIZE bytes (one copy less). Returns
 * >0, 0 for nothing now, -1 at end of stream, or another negative errno. */
static ssize_t read_channel_to(struct transport_chan *ch, unsigned char *dst)
{
	struct ssh_transport *st = ch->st;
	ssize_t n = libssh2_channel_read_ex(ch->channel, 0, (char *)dst, RBUF_SIZE);
	if (n > 0) {
		if (st->again_chan == ch)
			st->again = AGAIN_NONE;
		if (dst == ch->rbuf) {
			ch->rpos = 0;
			ch->rlen = (size_t)n;
		}
		return n;
	}
	if (n == LIBSSH2_ERROR_EAGAIN || n == 0) {
		/* A read that had to send a window adjust and could not
		 * finish it must be repeated before anything else. */
		note_again(st, ch, AGAIN_READ, 0, n == LIBSSH2_ERROR_EAGAIN);
		if (n == 0 && libssh2_channel_eof(ch->channel)) {
			ch->eof = true;
			return -1;
		}
		return 0;
	}
	return broken(ch, n, "read");
}

static ssize_t read_channel(struct transport_chan *ch)
{
	return read_channel_to(ch, ch->rbuf);
}

static void chan_fail(struct transport_chan *ch, const char *what)
{
	struct ssh_transport *st = ch->st;
	int rc = libssh2_session_last_errno(st->session);
	ch->state = CH_FAILED;
	if (st->again_chan == ch)
		st->again = AGAIN_NONE;
	snprintf(ch->error, sizeof(ch->error), "%s: %s", what, session_errmsg(st->session));
	if (!channel_error(rc) && rc != LIBSSH2_ERROR_CHANNEL_FAILURE &&
	    rc != LIBSSH2_ERROR_REQUEST_DENIED) {
		/* not the server saying no: the session itself failed */
		st->broken = true;
		transport_set_error(&st->base, "%s", ch->error);
	}
}

/* One step of opening a lent channel (the exact repeat of the last one when
 * that returned EAGAIN). libssh2 opens one channel at a time. */
static void chan_open_step(struct transport_chan *ch)
{
	struct ssh_transport *st = ch->st;
	if (ch->state == CH_OPENING) {
		ch->channel = libssh2_channel_open_ex(st->session, "session", 7, CHANNEL_WINDOW,
						      CHANNEL_PACKET, NULL, 0);
		if (ch->channel == NULL) {
			if (libssh2_session_last_errno(st->session) == LIBSSH2_ERROR_EAGAIN)
				note_again(st, ch, AGAIN_OPEN, 0, true);
			else
				chan_fail(ch, "channel open failed");
			return;
		}
		if (st->again_chan == ch)
			st->again = AGAIN_NONE;
		ch->state = CH_STARTING;
	}
	if (ch->state == CH_STARTING) {
		const char *server = st->server != NULL ? st->server : "sftp";
		int rc = libssh2_channel_process_startup(ch->channel,
							 st->server_is_cmd ? "exec" : "subsystem",
							 st->server_is_cmd ? 4 : 9, server,
							 (unsigned)strlen(server));
		if (rc == LIBSSH2_ERROR_EAGAIN) {
			note_again(st, ch, AGAIN_START, 0, true);
			return;
		}
		if (st->again_chan == ch)
			st->again = AGAIN_NONE;
		if (rc != 0) {
			chan_fail(ch, st->server_is_cmd ? "exec request failed"
							: "subsystem request failed");
			return;
		}
		ch->state = CH_OPEN;
		libssh2_channel_handle_extended_data2(ch->channel,
						      LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE);
		if (ch->close_asked)
			ch->state = CH_CLOSING;
	}
}

static void chan_unlink(struct transport_chan *ch)
{
	struct ssh_transport *st = ch->st;
	for (struct transport_chan **pp = &st->lent; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	}
	if (st->again_chan == ch) {
		st->again = AGAIN_NONE;
		st->again_chan = NULL;
	}
	chan_buffers_free(ch);
	free(ch);
}

/* One step of closing a lent channel; true when it is gone. */
static bool chan_free_step(struct transport_chan *ch)
{
	struct ssh_transport *st = ch->st;
	if (ch->channel != NULL && !st->broken) {
		int rc = libssh2_channel_free(ch->channel);
		if (rc == LIBSSH2_ERROR_EAGAIN) {
			note_again(st, ch, AGAIN_FREE, 0, true);
			return false;
		}
	}
	/* (a broken session frees its channels with itself) */
	chan_unlink(ch);
	return true;
}

/* Finish the call libssh2 is waiting for. True when libssh2 is free for any
 * call; *err is set when the session broke. */
static bool settle(struct ssh_transport *st, ssize_t *err)
{
	struct transport_chan *ch = st->again_chan;
	*err = 0;
	switch (st->again) {
	case AGAIN_NONE:
		break;
	case AGAIN_WRITE:
		write_buffered(ch);
		break;
	case AGAIN_READ:
		read_channel(ch);
		break;
	case AGAIN_OPEN:
	case AGAIN_START:
		chan_open_step(ch);
		break;
	case AGAIN_FREE:
		chan_free_step(ch);
		break;
	}
	if (st->broken)
		*err = -ECONNRESET;
	return st->again == AGAIN_NONE && *err == 0;
}

/* Send what the window and the socket take of a channel's write buffer. */
static ssize_t flush(struct transport_chan *ch)
{
	while (ch->wlen > 0 && ch->st->again == AGAIN_NONE) {
		ssize_t r = write_buffered(ch);
		if (r <= 0)
			return r;
	}
	return 0;
}

static ssize_t chan_read(struct transport_chan *ch, void *buf, size_t len)
{
	struct ssh_transport *st = ch->st;
	ssize_t e;

	if (st->broken)
		return -ECONNRESET;
	if (ch->state == CH_FAILED)
		return -EPIPE;
	if (ch->rlen == 0 && !ch->eof) {
		if (!settle(st, &e))
			return e < 0 ? e : -EAGAIN;
		if (ch->state == CH_FAILED)
			return -EPIPE;
		/* Buffered bytes first: they may have waited for the window,
		 * and a read must come last so nothing is left queued inside
		 * libssh2 when we report EAGAIN. */
		if (ch->wlen > 0 && (e = flush(ch)) < 0)
			return e;
		if (ch->rlen == 0 && st->again == AGAIN_NONE) {
			ssize_t r = read_channel_to(ch, len >= RBUF_SIZE ? buf : ch->rbuf);
			if (r < -1 || (r > 0 && len >= RBUF_SIZE))
				return r;
		}
	}
	if (ch->rlen > 0) {
		size_t n = len < ch->rlen ? len : ch->rlen;
		memcpy(buf, ch->rbuf + ch->rpos, n);
		ch->rpos += n;
		ch->rlen -= n;
		return (ssize_t)n;
	}
	if (ch->eof) {
		if (ch == &st->main)
			transport_set_error(&st->base, "the server closed the SFTP channel");
		return 0;
	}
	return -EAGAIN;
}

static ssize_t chan_write(struct transport_chan *ch, const void *buf, size_t len)
{
	struct ssh_transport *st = ch->st;
	ssize_t e;

	if (st->broken)
		return -ECONNRESET;
	if (ch->state == CH_FAILED)
		return -EPIPE;
	if (len == 0)
		return 0;
	if (settle(st, &e) && ch->wlen > 0)
		e = flush(ch);
	if (e < 0)
		return e;
	if (ch->state == CH_FAILED)
		return -EPIPE;

	if (ch->wlen == 0 && st->again == AGAIN_NONE) {
		/* Straight from the caller's buffer. */
		ssize_t n = libssh2_channel_write_ex(ch->channel, 0, buf, len);
		if (n > 0)
			return n;
		if (n == LIBSSH2_ERROR_EAGAIN && outbound_blocked(st)) {
			/* libssh2 has taken (up to) the first 32700 bytes
			 * into a packet it could not finish sending: report
			 * them accepted and keep them for the repeat. */
			size_t k = len < 32700 ? len : 32700;
			memcpy(ch->wbuf, buf, k);
			ch->wpos = 0;
			ch->wlen = k;
			note_again(st, ch, AGAIN_WRITE, k, true);
			return (ssize_t)k;
		}
		if (n != 0 && n != LIBSSH2_ERROR_EAGAIN)
			return broken(ch, n, "write");
		/* The window is shut: buffer below. */
	}

	if (ch->wpos > 0 && ch->wpos + ch->wlen + len > WBUF_SIZE) {
		memmove(ch->wbuf, ch->wbuf + ch->wpos, ch->wlen);
		ch->wpos = 0;
	}
	size_t room = WBUF_SIZE - (ch->wpos + ch->wlen);
	if (room == 0)
		return -EAGAIN;
	size_t k = len < room ? len : room;
	memcpy(ch->wbuf + ch->wpos + ch->wlen, buf, k);
	ch->wlen += k;
	return (ssize_t)k;
}

static ssize_t ssh_read(struct transport *t, void *buf, size_t len)
{
	return chan_read(&((struct ssh_transport *)t)->main, buf, len);
}

static ssize_t ssh_write(struct transport *t, const void *buf, size_t len)
{
	return chan_write(&((struct ssh_transport *)t)->main, buf, len);
}

/* Is there something for a read without waiting? (These libssh2 calls
 * only look at its queue; they do no I/O.) */
static bool chan_readable_now(struct transport_chan *ch)
{
	if (ch->state != CH_OPEN || !ch->want_read)
		return false;
	if (ch->rlen > 0)
		return true;
	return libssh2_poll_channel_read(ch->channel, 0) > 0 ||
	       (!ch->eof && libssh2_channel_eof(ch->channel) > 0);
}

static int ssh_pollfds(struct transport *t, bool want_write, struct pollfd *pfd, int max)
{
	struct ssh_transport *st = (struct ssh_transport *)t;
	bool out = outbound_blocked(st), ready = st->broken || st->main.rlen > 0;
	int n = 0;

	if (max < 1)
		return 0;
	if (st->again == AGAIN_NONE) {
		/* Buffered bytes the peer's window has room for, or room
		 * for the caller's bytes. */
		if (st->main.wlen > 0 && libssh2_channel_window_write(st->main.channel) > 0)
			out = true;
		if (want_write && st->main.wpos + st->main.wlen < WBUF_SIZE)
			out = true;
		ready = ready || chan_readable_now(&st->main);
		for (struct transport_chan *ch = st->lent; ch != NULL; ch = ch->next) {
			if (ch->state != CH_OPEN)
				continue;
			if (ch->wlen > 0 && libssh2_channel_window_write(ch->channel) > 0)
				out = true;
			ready = ready || chan_readable_now(ch);
		}
	}
	pfd[n].fd = st->sock;
	pfd[n].events = POLLIN | (out ? POLLOUT : 0);
	pfd[n].revents = 0;
	n++;
	if (max >= 2 && ready) {
		pfd[n].fd = st->ready_fd; /* always readable: poll returns at once */
		pfd[n].events = POLLIN;
		pfd[n].revents = 0;
		n++;
	}
	return n;
}

static void ssh_after_poll(struct transport *t, const struct pollfd *pfd, int n)
{
	struct ssh_transport *st = (struct ssh_transport *)t;
	ssize_t e;

	if (st->broken || n < 1 || pfd[0].fd != st->sock || pfd[0].revents == 0)
		return;
	/* Finish a pending call, and send buffered bytes while the socket
	 * and the window take them. */
	if (settle(st, &e) && st->main.wlen > 0)
		flush(&st->main);
}

static void ssh_destroy(struct transport *t)
{
	ssh_free((struct ssh_transport *)t);
}

static const struct transport_ops ssh_ops = {
	.name = "ssh",
	.read = ssh_read,
	.write = ssh_write,
	.pollfds = ssh_pollfds,
	.after_poll = ssh_after_poll,
	.destroy = ssh_destroy,
};

/* ------------------------------------------------------------------ */
/* channels lent to other hashi processes */

static struct ssh_transport *as_ssh(struct transport *t)
{
	return t != NULL && t->ops == &ssh_ops ? (struct ssh_transport *)t : NULL;
}

bool transport_can_lend(struct transport *t)
{
	return as_ssh(t) != NULL;
}

struct transport_chan *transport_chan_open(struct transport *t)
{
	struct ssh_transport *st = as_ssh(t);
	if (st == NULL)
		return NULL;
	struct transport_chan *ch = calloc(1, sizeof(*ch));
	if (ch == NULL)
		return NULL;
	ch->st = st;
	ch->state = CH_QUEUED;
	ch->want_read = true;
	ch->rbuf = malloc(RBUF_SIZE);
	ch->wbuf = malloc(WBUF_SIZE);
	if (ch->rbuf == NULL || ch->wbuf == NULL) {
		chan_buffers_free(ch);
		free(ch);
		return NULL;
	}
	struct transport_chan **pp = &st->lent;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = ch;
	return ch;
}

int transport_chan_status(const struct transport_chan *ch)
{
	if (ch->state == CH_OPEN)
		return ch->eof && ch->rlen == 0 ? -1 : 1;
	if (ch->state == CH_FAILED)
		return -1;
	return 0;
}

const char *transport_chan_error(const struct transport_chan *ch)
{
	return ch->error[0] ? ch->error : ch->eof ? "the server closed the SFTP channel"
						  : "the connection is broken";
}

ssize_t transport_chan_read(struct transport_chan *ch, void *buf, size_t len)
{
	if (ch->state != CH_OPEN && ch->state != CH_FAILED)
		return -EAGAIN;
	return chan_read(ch, buf, len);
}

ssize_t transport_chan_write(struct transport_chan *ch, const void *buf, size_t len)
{
	if (ch->state != CH_OPEN && ch->state != CH_FAILED)
		return -EAGAIN;
	return chan_write(ch, buf, len);
}

void transport_chan_want_read(struct transport_chan *ch, bool want)
{
	ch->want_read = want;
}

void transport_chan_close(struct transport_chan *ch)
{
	ch->want_read = false;
	ch->wlen = 0;
	if (ch->state == CH_QUEUED || (ch->state == CH_FAILED && ch->channel == NULL)) {
		chan_unlink(ch);
		return;
	}
	if (ch->state == CH_OPENING || ch->state == CH_STARTING)
		ch->close_asked = true;
	else
		ch->state = CH_CLOSING;
}

void transport_chans_service(struct transport *t)
{
	struct ssh_transport *st = as_ssh(t);
	ssize_t e;
	if (st == NULL || st->lent == NULL)
		return;
	if (!settle(st, &e))
		return;
	struct transport_chan *next;
	bool opening = false;
	for (struct transport_chan *ch = st->lent; ch != NULL && !st->broken; ch = next) {
		next = ch->next;
		if (st->again != AGAIN_NONE)
			return;
		switch (ch->state) {
		case CH_OPEN:
			if (ch->wlen > 0)
				flush(ch);
			break;
		case CH_FAILED:
			if (ch->close_asked)
				chan_free_step(ch);
			break;
		case CH_CLOSING:
			chan_free_step(ch);
			break;
		case CH_OPENING:
		case CH_STARTING:
			chan_open_step(ch);
			opening = opening || ch->state == CH_OPENING || ch->state == CH_STARTING;
			break;
		case CH_QUEUED:
			if (!opening) {
				ch->state = CH_OPENING;
				opening = true;
				chan_open_step(ch);
			}
			break;
		}
	}
}
