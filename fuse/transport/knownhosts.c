/*
 * known_hosts parsing and matching, as OpenSSH does it (hostfile.c and
 * match.c are the reference for the behaviour; this is our own code).
 *
 * A line is: [@marker] patterns keytype base64-blob [comment]. Patterns are
 * comma-separated globs (* and ?), each possibly negated with '!', or one
 * hashed name "|1|base64(salt)|base64(HMAC-SHA1(salt, name))".
 */
#include "knownhosts.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#define MAX_BLOB 16384 /* an RSA-16384 key blob is about 2 KiB */

/* ------------------------------------------------------------------ */
/* base64 */

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long knownhosts_base64_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0, i;

	while (inlen > 0 && in[inlen - 1] == '=')
		inlen--;
	for (i = 0; i < inlen; i++) {
		int v = b64val((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= outlen)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	if (bits >= 6) /* one stray character: not valid base64 */
		return -1;
	return (long)n;
}

long knownhosts_base64_encode(const unsigned char *in, size_t inlen, char *out, size_t outlen,
			      bool pad)
{
	size_t n = 0, i;

	for (i = 0; i < inlen; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t left = inlen - i;
		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		char q[4] = { b64chars[(v >> 18) & 63], b64chars[(v >> 12) & 63],
			      left > 1 ? b64chars[(v >> 6) & 63] : '=',
			      left > 2 ? b64chars[v & 63] : '=' };
		for (int k = 0; k < 4; k++) {
			if (q[k] == '=' && !pad)
				break;
			if (n + 1 >= outlen)
				return -1;
			out[n++] = q[k];
		}
	}
	if (n >= outlen)
		return -1;
	out[n] = '\0';
	return (long)n;
}

/* ------------------------------------------------------------------ */
/* small helpers */

const char *knownhosts_expand_tilde(const char *path, char *out, size_t outlen)
{
	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
		const char *home = getenv("HOME");
		if (home == NULL || home[0] == '\0') {
			struct passwd *pw = getpwuid(getuid());
			home = pw != NULL ? pw->pw_dir : "/";
		}
		snprintf(out, outlen, "%s%s", home, path + 1);
	} else {
		snprintf(out, outlen, "%s", path);
	}
	return out;
}

const char *knownhosts_blob_type(const unsigned char *blob, size_t bloblen, char *out,
				 size_t outlen)
{
	out[0] = '\0';
	if (bloblen < 4 || outlen == 0)
		return out;
	uint32_t l = ((uint32_t)blob[0] << 24) | ((uint32_t)blob[1] << 16) |
		     ((uint32_t)blob[2] << 8) | blob[3];
	if (l > bloblen - 4 || l >= outlen || l == 0)
		return out;
	for (uint32_t i = 0; i < l; i++) {
		if (!isgraph(blob[4 + i]))
			return out;
	}
	memcpy(out, blob + 4, l);
	out[l] = '\0';
	return out;
}

const char *knownhosts_type_label(const char *t)
{
	if (strcmp(t, "ssh-ed25519") == 0)
		return "ED25519";
	if (strncmp(t, "ecdsa-sha2-", 11) == 0)
		return "ECDSA";
	if (strcmp(t, "ssh-rsa") == 0)
		return "RSA";
	if (strcmp(t, "ssh-dss") == 0)
		return "DSA";
	if (strcmp(t, "sk-ssh-ed25519@openssh.com") == 0)
		return "ED25519-SK";
	if (strcmp(t, "sk-ecdsa-sha2-nistp256@openssh.com") == 0)
		return "ECDSA-SK";
	return t;
}

void knownhosts_fingerprint(const unsigned char *blob, size_t bloblen, char *out, size_t outlen)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	unsigned int mdlen = 0;
	char b64[64];

	if (!EVP_Digest(blob, bloblen, md, &mdlen, EVP_sha256(), NULL) ||
	    knownhosts_base64_encode(md, mdlen, b64, sizeof(b64), false) < 0) {
		snprintf(out, outlen, "SHA256:?");
		return;
	}
	snprintf(out, outlen, "SHA256:%s", b64);
}

static void lowercase(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* ------------------------------------------------------------------ */
/* host patterns */

static bool match_hashed(const char *pat, size_t patlen, const char *name)
{
	/* |1|salt|hash */
	const char *salt = pat + 3, *end = pat + patlen;
	const char *bar = memchr(salt, '|', (size_t)(end - salt));
	unsigned char key[256], want[64], got[EVP_MAX_MD_SIZE];
	unsigned int gotlen = 0;

	if (bar == NULL)
		return false;
	long klen = knownhosts_base64_decode(salt, (size_t)(bar - salt), key, sizeof(key));
	long wlen = knownhosts_base64_decode(bar + 1, (size_t)(end - bar - 1), want, sizeof(want));
	if (klen != SHA_DIGEST_LENGTH || wlen != SHA_DIGEST_LENGTH)
		return false;
	if (HMAC(EVP_sha1(), key, (int)klen, (const unsigned char *)name, strlen(name), got,
		 &gotlen) == NULL || gotlen != SHA_DIGEST_LENGTH)
		return false;
	return memcmp(got, want, SHA_DIGEST_LENGTH) == 0;
}

int knownhosts_match_hosts(const char *patterns, size_t patlen, const char *name_in)
{
	char name[1100];
	bool positive = false;

	snprintf(name, sizeof(name), "%s", name_in);
	lowercase(name);

	if (patlen >= 3 && memcmp(patterns, "|1|", 3) == 0)
		return match_hashed(patterns, patlen, name) ? 1 : 0;

	const char *p = patterns, *end = patterns + patlen;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma != NULL ? comma : end;
		bool neg = false;
		char pat[1100];

		if (p < e && *p == '!') {
			neg = true;
			p++;
		}
		size_t l = (size_t)(e - p);
		if (l > 0 && l < sizeof(pat)) {
			memcpy(pat, p, l);
			pat[l] = '\0';
			lowercase(pat);
			/* OpenSSH's globs know only * and ?; escape the rest
			 * that fnmatch would treat specially ([ and \). */
			char glob[2300];
			size_t g = 0;
			for (size_t i = 0; i < l; i++) {
				if (pat[i] == '[' || pat[i] == ']' || pat[i] == '\\')
					glob[g++] = '\\';
				glob[g++] = pat[i];
			}
			glob[g] = '\0';
			if (fnmatch(glob, name, 0) == 0) {
				if (neg)
					return -1;
				positive = true;
			}
		}
		p = e + 1;
	}
	return positive ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* line parsing */

enum marker { MARK_NONE, MARK_REVOKED, MARK_CA, MARK_BAD };

struct kh_line {
	enum marker marker;
	const char *hosts;
	size_t hostslen;
	char type[64];      /* from the blob */
	unsigned char *blob;
	size_t bloblen;
};

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static size_t field_len(const char *p)
{
	size_t n = 0;
	while (p[n] != '\0' && p[n] != ' ' && p[n] != '\t' && p[n] != '\n' && p[n] != '\r')
		n++;
	return n;
}

/* Parse one line; returns false for comments, blank and malformed lines. */
static bool parse_line(const char *s, struct kh_line *l, unsigned char *blobbuf, size_t bloblen)
{
	const char *p = skip_ws(s);
	size_t n;

	if (*p == '\0' || *p == '#' || *p == '\n' || *p == '\r')
		return false;
	l->marker = MARK_NONE;
	if (*p == '@') {
		n = field_len(p);
		if (n == 8 && memcmp(p, "@revoked", 8) == 0)
			l->marker = MARK_REVOKED;
		else if (n == 15 && memcmp(p, "@cert-authority", 15) == 0)
			l->marker = MARK_CA;
		else
			return false; /* an unknown marker: OpenSSH skips the line */
		p = skip_ws(p + n);
	}
	l->hosts = p;
	l->hostslen = field_len(p);
	if (l->hostslen == 0)
		return false;
	p = skip_ws(p + l->hostslen);
	n = field_len(p); /* the key type as written */
	if (n == 0)
		return false;
	p = skip_ws(p + n);
	n = field_len(p);
	if (n == 0)
		return false;
	long bl = knownhosts_base64_decode(p, n, blobbuf, bloblen);
	if (bl <= 0)
		return false;
	l->blob = blobbuf;
	l->bloblen = (size_t)bl;
	knownhosts_blob_type(blobbuf, (size_t)bl, l->type, sizeof(l->type));
	return l->type[0] != '\0';
}

typedef void (*line_fn)(void *ctx, const char *file, unsigned long lineno,
			const struct kh_line *l);

static void foreach_line(char *const files[], int nfiles, line_fn fn, void *ctx)
{
	unsigned char *blob = malloc(MAX_BLOB);
	char *buf = NULL;
	size_t cap = 0;

	if (blob == NULL)
		return;
	for (int i = 0; i < nfiles; i++) {
		char path[PATH_MAX];
		knownhosts_expand_tilde(files[i], path, sizeof(path));
		FILE *f = fopen(path, "re");
		if (f == NULL)
			continue;
		unsigned long lineno = 0;
		while (getline(&buf, &cap, f) > 0) {
			struct kh_line l;
			lineno++;
			if (parse_line(buf, &l, blob, MAX_BLOB))
				fn(ctx, path, lineno, &l);
		}
		fclose(f);
	}
	free(buf);
	free(blob);
}

/* ------------------------------------------------------------------ */
/* checking */

struct check_ctx {
	const char *name;
	const unsigned char *blob;
	size_t bloblen;
	char type[64];
	struct knownhosts_result *res;
	bool ok, changed, revoked;
};

static void check_cb(void *vctx, const char *file, unsigned long lineno, const struct kh_line *l)
{
	struct check_ctx *c = vctx;
	bool same = l->bloblen == c->bloblen && memcmp(l->blob, c->blob, c->bloblen) == 0;

	if (l->marker == MARK_CA)
		return; /* certificates: libssh2 cannot use them */
	if (l->marker == MARK_REVOKED) {
		/* A revoked key is refused whatever names the line gives. */
		if (same && !c->revoked) {
			c->revoked = true;
			snprintf(c->res->file, sizeof(c->res->file), "%s", file);
			c->res->line = lineno;
		}
		return;
	}
	if (knownhosts_match_hosts(l->hosts, l->hostslen, c->name) != 1)
		return;
	if (strcmp(l->type, c->type) != 0) {
		c->res->other_types_known = true;
		return;
	}
	if (same) {
		if (!c->ok && !c->revoked) {
			snprintf(c->res->file, sizeof(c->res->file), "%s", file);
			c->res->line = lineno;
		}
		c->ok = true;
	} else if (!c->changed) {
		c->changed = true;
		if (!c->ok && !c->revoked) {
			snprintf(c->res->file, sizeof(c->res->file), "%s", file);
			c->res->line = lineno;
		}
	}
}

enum knownhosts_status knownhosts_check(char *const files[], int nfiles, const char *name,
					const unsigned char *blob, size_t bloblen,
					struct knownhosts_result *res)
{
	struct check_ctx c = { .name = name, .blob = blob, .bloblen = bloblen, .res = res };

	memset(res, 0, sizeof(*res));
	knownhosts_blob_type(blob, bloblen, c.type, sizeof(c.type));
	foreach_line(files, nfiles, check_cb, &c);
	if (c.revoked)
		res->status = KNOWNHOSTS_REVOKED;
	else if (c.ok)
		res->status = KNOWNHOSTS_OK;
	else if (c.changed)
		res->status = KNOWNHOSTS_CHANGED;
	else
		res->status = KNOWNHOSTS_NEW;
	if (res->status == KNOWNHOSTS_NEW) {
		res->file[0] = '\0';
		res->line = 0;
	}
	return res->status;
}

struct types_ctx {
	const char *name;
	char (*types)[64];
	int n, max;
};

static void types_cb(void *vctx, const char *file, unsigned long lineno, const struct kh_line *l)
{
	struct types_ctx *c = vctx;
	(void)file;
	(void)lineno;
	if (l->marker != MARK_NONE || c->n >= c->max)
		return;
	if (knownhosts_match_hosts(l->hosts, l->hostslen, c->name) != 1)
		return;
	for (int i = 0; i < c->n; i++) {
		if (strcmp(c->types[i], l->type) == 0)
			return;
	}
	snprintf(c->types[c->n++], 64, "%s", l->type);
}

int knownhosts_host_key_types(char *const files[], int nfiles, const char *name,
			      char types[][64], int max)
{
	struct types_ctx c = { .name = name, .types = types, .max = max };
	foreach_line(files, nfiles, types_cb, &c);
	return c.n;
}

#define MAX_OTHER_NAMES 8

struct other_ctx {
	const char *name;
	const unsigned char *blob;
	size_t bloblen;
	char *out;
	size_t outlen;
	int n;
};

static void tilde_unexpand(const char *path, char *out, size_t outlen)
{
	const char *home = getenv("HOME");
	size_t l = home != NULL ? strlen(home) : 0;
	if (l > 1 && strncmp(path, home, l) == 0 && path[l] == '/')
		snprintf(out, outlen, "~/%s", path + l + 1);
	else
		snprintf(out, outlen, "%s", path);
}

static void other_cb(void *vctx, const char *file, unsigned long lineno, const struct kh_line *l)
{
	struct other_ctx *c = vctx;
	char path[PATH_MAX];
	size_t used = strlen(c->out);

	if (l->marker != MARK_NONE || l->bloblen != c->bloblen ||
	    memcmp(l->blob, c->blob, c->bloblen) != 0)
		return;
	if (knownhosts_match_hosts(l->hosts, l->hostslen, c->name) == 1)
		return;
	c->n++;
	if (c->n > MAX_OTHER_NAMES)
		return;
	tilde_unexpand(file, path, sizeof(path));
	if (l->hostslen >= 3 && memcmp(l->hosts, "|1|", 3) == 0)
		snprintf(c->out + used, c->outlen - used, "\n    %s:%lu: [hashed name]", path,
			 lineno);
	else
		snprintf(c->out + used, c->outlen - used, "\n    %s:%lu: %.*s", path, lineno,
			 (int)l->hostslen, l->hosts);
}

void knownhosts_other_names(char *const files[], int nfiles, const char *name,
			    const unsigned char *blob, size_t bloblen, char *out, size_t outlen)
{
	static const char head[] = "This host key is known by the following other names/addresses:";
	struct other_ctx c = { .name = name, .blob = blob, .bloblen = bloblen, .out = out,
			       .outlen = outlen };

	snprintf(out, outlen, "%s", head);
	foreach_line(files, nfiles, other_cb, &c);
	if (c.n == 0) {
		snprintf(out, outlen, "This key is not known by any other names.");
	} else if (c.n > MAX_OTHER_NAMES) {
		size_t used = strlen(out);
		snprintf(out + used, outlen - used, "\n    (%d additional names omitted)",
			 c.n - MAX_OTHER_NAMES);
	}
}

/* ------------------------------------------------------------------ */
/* adding */

int knownhosts_add(const char *file_in, const char *names, const unsigned char *blob,
		   size_t bloblen)
{
	char file[PATH_MAX], type[64];
	size_t b64cap = bloblen * 4 / 3 + 8;
	char *b64 = malloc(b64cap);
	int fd, saved;

	if (b64 == NULL)
		return -1;
	knownhosts_expand_tilde(file_in, file, sizeof(file));
	knownhosts_blob_type(blob, bloblen, type, sizeof(type));
	if (type[0] == '\0' || knownhosts_base64_encode(blob, bloblen, b64, b64cap, true) < 0) {
		free(b64);
		errno = EINVAL;
		return -1;
	}
	fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT) {
		/* Like ssh, create the missing directory (~/.ssh) itself,
		 * but not a whole path. */
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", file);
		char *slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			if (mkdir(dir, 0700) == 0 || errno == EEXIST)
				fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
			else
				errno = ENOENT;
		}
	}
	if (fd < 0) {
		saved = errno;
		free(b64);
		errno = saved;
		return -1;
	}

	/* Start on a new line if the file does not end with one. */
	const char *nl = "";
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		char last;
		int rfd = open(file, O_RDONLY | O_CLOEXEC);
		if (rfd >= 0) {
			if (pread(rfd, &last, 1, st.st_size - 1) == 1 && last != '\n')
				nl = "\n";
			close(rfd);
		}
	}
	char *line = NULL;
	int len = asprintf(&line, "%s%s %s %s\n", nl, names, type, b64);
	free(b64);
	if (len < 0) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	ssize_t w = write(fd, line, (size_t)len);
	saved = errno;
	free(line);
	if (close(fd) != 0 && w == len) {
		return -1;
	}
	if (w != len) {
		errno = w < 0 ? saved : EIO;
		return -1;
	}
	return 0;
}
