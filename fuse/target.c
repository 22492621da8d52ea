/*
 * What to connect to, resolved as ssh would.
 *
 * Where OpenSSH's client is installed, `ssh -G` does the resolving: it reads
 * the same files with the same rules as the ssh the user knows, and prints
 * the result. Without it (or with HASHI_NO_SSH_G=1), a built-in reader
 * follows OpenSSH 9.2's rules for the keywords hashi uses and prints the
 * same text; one parser (apply_dump) turns either text into a struct
 * ssh_target, so both paths end the same way.
 *
 * The built-in reader's limits: it checks the values only of the keywords it
 * uses (others are accepted unread), and it does no DNS canonicalisation
 * (CanonicalizeHostname, CanonicalDomains). Host, Match (all, host,
 * originalhost, user, localuser, exec, canonical, final), Include and
 * IgnoreUnknown work as in ssh.
 */
#include "target.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

#define MAX_IDENTITY_FILES 100   /* ssh's SSH_MAX_IDENTITY_FILES */
#define MAX_HOSTS_FILES 32       /* ssh's SSH_MAX_HOSTS_FILES */
#define MAX_INCLUDE_DEPTH 16
#define MAX_SSH_OUTPUT (1024 * 1024)

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		abort();
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void lowercase(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* A growing string. */
struct buf {
	char *s;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	if ((size_t)n < sizeof(small)) {
		buf_add(b, small, (size_t)n);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_add(b, big, (size_t)n);
	free(big);
}

/* The string, never NULL; the buffer gives it up. */
static char *buf_steal(struct buf *b)
{
	char *s = b->s ? b->s : xstrdup("");

	b->s = NULL;
	b->len = b->cap = 0;
	return s;
}

/* A list of strings. */
struct strv {
	char **v;
	int n, cap;
};

static void strv_add(struct strv *l, const char *s)
{
	if (l->n + 1 >= l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xrealloc(l->v, sizeof(*l->v) * (size_t)l->cap);
	}
	l->v[l->n++] = xstrdup(s);
	l->v[l->n] = NULL;
}

static void strv_free(struct strv *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* ------------------------------------------------------------------ */
/* ssh_config keywords (OpenSSH 9.2 with Debian's additions)           */

enum op {
	OP_OTHER = 0,   /* a keyword ssh knows and hashi does not use */
	OP_IGNORE,      /* deprecated or unsupported: ssh ignores it */
	OP_HOST, OP_MATCH, OP_INCLUDE, OP_IGNOREUNKNOWN,
	OP_HOSTNAME, OP_USER, OP_PORT,
	OP_IDENTITYFILE, OP_IDENTITIESONLY, OP_IDENTITYAGENT,
	OP_USERKH, OP_GLOBALKH, OP_STRICT, OP_CHECKHOSTIP, OP_HOSTKEYALIAS,
	OP_BATCHMODE, OP_PUBKEY, OP_PASSWORD, OP_KBDINT, OP_NPROMPTS,
	OP_PROXYCOMMAND, OP_PROXYJUMP, OP_ADDRESSFAMILY,
	OP_CONNECTTIMEOUT, OP_SAI, OP_SACM, OP_COMPRESSION,
	OP_CIPHERS, OP_MACS, OP_KEX, OP_HKA,
	OP_CONTROLPATH, OP_CONTROLPERSIST, OP_CONTROLMASTER,
};

static const struct keyword {
	const char *name;
	enum op op;
} keywords[] = {
	/* deprecated, unsupported or ignored by ssh */
	{ "Protocol", OP_IGNORE },
	{ "Cipher", OP_IGNORE },
	{ "FallBackToRsh", OP_IGNORE },
	{ "GlobalKnownHostsFile2", OP_IGNORE },
	{ "RhostsAuthentication", OP_IGNORE },
	{ "UserKnownHostsFile2", OP_IGNORE },
	{ "UseRoaming", OP_IGNORE },
	{ "UseRsh", OP_IGNORE },
	{ "UsePrivilegedPort", OP_IGNORE },
	{ "AFSTokenPassing", OP_IGNORE },
	{ "KerberosAuthentication", OP_IGNORE },
	{ "KerberosTGTPassing", OP_IGNORE },
	{ "RSAAuthentication", OP_IGNORE },
	{ "RhostsRSAAuthentication", OP_IGNORE },
	{ "CompressionLevel", OP_IGNORE },
	{ "UseBlacklistedKeys", OP_IGNORE },
	/* GSSAPI (with Debian's key exchange patch) */
	{ "GSSAPIAuthentication", OP_OTHER },
	{ "GSSAPIDelegateCredentials", OP_OTHER },
	{ "GSSAPIClientIdentity", OP_OTHER },
	{ "GSSAPIServerIdentity", OP_OTHER },
	{ "GSSAPIKeyExchange", OP_OTHER },
	{ "GSSAPIRenewalForcesRekey", OP_OTHER },
	{ "GSSAPITrustDns", OP_OTHER },
	{ "GSSAPIKexAlgorithms", OP_OTHER },
	{ "PKCS11Provider", OP_OTHER },
	{ "SmartcardDevice", OP_OTHER },
	{ "ForwardAgent", OP_OTHER },
	{ "ForwardX11", OP_OTHER },
	{ "ForwardX11Trusted", OP_OTHER },
	{ "ForwardX11Timeout", OP_OTHER },
	{ "ExitOnForwardFailure", OP_OTHER },
	{ "XAuthLocation", OP_OTHER },
	{ "GatewayPorts", OP_OTHER },
	{ "PasswordAuthentication", OP_PASSWORD },
	{ "KbdInteractiveAuthentication", OP_KBDINT },
	{ "KbdInteractiveDevices", OP_OTHER },
	{ "ChallengeResponseAuthentication", OP_KBDINT },
	{ "SkeyAuthentication", OP_KBDINT },
	{ "TISAuthentication", OP_KBDINT },
	{ "PubkeyAuthentication", OP_PUBKEY },
	{ "DSAAuthentication", OP_PUBKEY },
	{ "HostbasedAuthentication", OP_OTHER },
	{ "IdentityFile", OP_IDENTITYFILE },
	{ "IdentityFile2", OP_IDENTITYFILE },
	{ "IdentitiesOnly", OP_IDENTITIESONLY },
	{ "CertificateFile", OP_OTHER },
	{ "AddKeysToAgent", OP_OTHER },
	{ "IdentityAgent", OP_IDENTITYAGENT },
	{ "HostName", OP_HOSTNAME },
	{ "HostKeyAlias", OP_HOSTKEYALIAS },
	{ "ProxyCommand", OP_PROXYCOMMAND },
	{ "Port", OP_PORT },
	{ "Ciphers", OP_CIPHERS },
	{ "MACs", OP_MACS },
	{ "RemoteForward", OP_OTHER },
	{ "LocalForward", OP_OTHER },
	{ "PermitRemoteOpen", OP_OTHER },
	{ "User", OP_USER },
	{ "Host", OP_HOST },
	{ "Match", OP_MATCH },
	{ "EscapeChar", OP_OTHER },
	{ "GlobalKnownHostsFile", OP_GLOBALKH },
	{ "UserKnownHostsFile", OP_USERKH },
	{ "ConnectionAttempts", OP_OTHER },
	{ "BatchMode", OP_BATCHMODE },
	{ "CheckHostIP", OP_CHECKHOSTIP },
	{ "StrictHostKeyChecking", OP_STRICT },
	{ "Compression", OP_COMPRESSION },
	{ "TCPKeepAlive", OP_OTHER },
	{ "KeepAlive", OP_OTHER },
	{ "NumberOfPasswordPrompts", OP_NPROMPTS },
	{ "SyslogFacility", OP_OTHER },
	{ "LogLevel", OP_OTHER },
	{ "LogVerbose", OP_OTHER },
	{ "DynamicForward", OP_OTHER },
	{ "PreferredAuthentications", OP_OTHER },
	{ "HostKeyAlgorithms", OP_HKA },
	{ "CASignatureAlgorithms", OP_OTHER },
	{ "BindAddress", OP_OTHER },
	{ "BindInterface", OP_OTHER },
	{ "ClearAllForwardings", OP_OTHER },
	{ "EnableSSHKeysign", OP_OTHER },
	{ "VerifyHostKeyDNS", OP_OTHER },
	{ "NoHostAuthenticationForLocalhost", OP_OTHER },
	{ "RekeyLimit", OP_OTHER },
	{ "ConnectTimeout", OP_CONNECTTIMEOUT },
	{ "AddressFamily", OP_ADDRESSFAMILY },
	{ "ServerAliveInterval", OP_SAI },
	{ "ServerAliveCountMax", OP_SACM },
	{ "SendEnv", OP_OTHER },
	{ "SetEnv", OP_OTHER },
	{ "ControlPath", OP_CONTROLPATH },
	{ "ControlMaster", OP_CONTROLMASTER },
	{ "ControlPersist", OP_CONTROLPERSIST },
	{ "HashKnownHosts", OP_OTHER },
	{ "Include", OP_INCLUDE },
	{ "Tunnel", OP_OTHER },
	{ "TunnelDevice", OP_OTHER },
	{ "LocalCommand", OP_OTHER },
	{ "PermitLocalCommand", OP_OTHER },
	{ "RemoteCommand", OP_OTHER },
	{ "VisualHostKey", OP_OTHER },
	{ "KexAlgorithms", OP_KEX },
	{ "IPQoS", OP_OTHER },
	{ "RequestTTY", OP_OTHER },
	{ "SessionType", OP_OTHER },
	{ "StdinNull", OP_OTHER },
	{ "ForkAfterAuthentication", OP_OTHER },
	{ "ProxyUseFdpass", OP_OTHER },
	{ "CanonicalDomains", OP_OTHER },
	{ "CanonicalizeFallbackLocal", OP_OTHER },
	{ "CanonicalizeHostname", OP_OTHER },
	{ "CanonicalizeMaxDots", OP_OTHER },
	{ "CanonicalizePermittedCNAMEs", OP_OTHER },
	{ "StreamLocalBindMask", OP_OTHER },
	{ "StreamLocalBindUnlink", OP_OTHER },
	{ "RevokedHostKeys", OP_OTHER },
	{ "FingerprintHash", OP_OTHER },
	{ "UpdateHostKeys", OP_OTHER },
	{ "HostbasedAcceptedAlgorithms", OP_OTHER },
	{ "HostbasedKeyTypes", OP_OTHER },
	{ "PubkeyAcceptedAlgorithms", OP_OTHER },
	{ "PubkeyAcceptedKeyTypes", OP_OTHER },
	{ "IgnoreUnknown", OP_IGNOREUNKNOWN },
	{ "ProxyJump", OP_PROXYJUMP },
	{ "SecurityKeyProvider", OP_OTHER },
	{ "KnownHostsCommand", OP_OTHER },
	{ "RequiredRSASize", OP_OTHER },
	{ "EnableEscapeCommandline", OP_OTHER },
	/* newer OpenSSH (9.3 to 10.x): known, so that they pass through */
	{ "ChannelTimeout", OP_OTHER },
	{ "ObscureKeystrokeTiming", OP_OTHER },
	{ "RefuseConnection", OP_OTHER },
	{ "Tag", OP_OTHER },
	{ "VersionAddendum", OP_OTHER },
	{ "WarnWeakCrypto", OP_OTHER },
	/* Debian's keepalive patch: both are ServerAliveInterval */
	{ "ProtocolKeepAlives", OP_SAI },
	{ "SetupTimeOut", OP_SAI },
};

static const struct keyword *keyword_find(const char *name)
{
	for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (strcasecmp(name, keywords[i].name) == 0)
			return &keywords[i];
	return NULL;
}

const char *target_canonical_keyword(const char *name)
{
	const struct keyword *k = name ? keyword_find(name) : NULL;

	return k ? k->name : NULL;
}

const char *target_keyword_at(int i)
{
	if (i < 0 || (size_t)i >= sizeof(keywords) / sizeof(keywords[0]))
		return NULL;
	return keywords[i].name;
}

/* ------------------------------------------------------------------ */
/* Words and patterns, with ssh_config's rules                         */

/*
 * Split s into words: blanks separate; "..." and '...' group; a backslash
 * escapes a quote, a backslash, or (outside quotes) a blank; a word that
 * starts with '#' ends the line. Returns -1 on an unterminated quote.
 */
static int split_words(const char *s, struct strv *out)
{
	size_t i = 0, len = strlen(s);
	char *word = xmalloc(len + 1);

	while (i < len) {
		if (s[i] == ' ' || s[i] == '\t') {
			i++;
			continue;
		}
		if (s[i] == '#')
			break;
		size_t j = 0;
		char quote = 0;
		for (; i < len; i++) {
			char c = s[i];
			if (c == '\\' && i + 1 < len &&
			    (s[i + 1] == '\'' || s[i + 1] == '"' || s[i + 1] == '\\' ||
			     (quote == 0 && s[i + 1] == ' '))) {
				word[j++] = s[++i];
			} else if (quote == 0 && (c == ' ' || c == '\t')) {
				break;
			} else if (quote == 0 && (c == '"' || c == '\'')) {
				quote = c;
			} else if (quote != 0 && c == quote) {
				quote = 0;
			} else {
				word[j++] = c;
			}
		}
		if (quote != 0) {
			free(word);
			strv_free(out);
			return -1;
		}
		word[j] = '\0';
		strv_add(out, word);
	}
	free(word);
	return 0;
}

/* ssh's match_pattern: '*' and '?' wildcards, case-sensitive. */
static bool match_pattern(const char *s, const char *p)
{
	for (;;) {
		if (*p == '\0')
			return *s == '\0';
		if (*p == '*') {
			while (*p == '*')
				p++;
			if (*p == '\0')
				return true;
			for (; *s; s++)
				if (match_pattern(s, p))
					return true;
			return false;
		}
		if (*s == '\0')
			return false;
		if (*p != '?' && *p != *s)
			return false;
		s++;
		p++;
	}
}

/* A comma-separated pattern list with !negation: 1 if a positive pattern
 * matched and no negated one did, -1 if a negated one matched, else 0. */
static int match_pattern_list(const char *s, const char *list, bool dolower)
{
	int positive = 0;
	const char *p = list;

	while (*p) {
		bool negated = false;
		if (*p == '!') {
			negated = true;
			p++;
		}
		size_t n = strcspn(p, ",");
		char *sub = xstrndup(p, n);
		if (dolower)
			lowercase(sub);
		bool m = match_pattern(s, sub);
		free(sub);
		if (m) {
			if (negated)
				return -1;
			positive = 1;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return positive;
}

static bool match_hostname(const char *host, const char *list)
{
	char *h = xstrdup(host);
	int r;

	lowercase(h);
	r = match_pattern_list(h, list, true);
	free(h);
	return r == 1;
}

/* ------------------------------------------------------------------ */
/* Expansions: ~, %x tokens and ${ENV}                                 */

/* ~, ~/path, ~user/path as ssh expands them (from the password database,
 * not $HOME). */
static char *tilde_expand(const char *path, char *err, size_t errlen)
{
	const char *rest = NULL;
	struct passwd *pw;

	if (path[0] != '~')
		return xstrdup(path);
	const char *p = path + 1;
	if (*p == '\0' || *p == '/') {
		p += strspn(p, "/");
		rest = *p ? p : NULL;
		pw = getpwuid(getuid());
		if (pw == NULL) {
			seterr(err, errlen, "No such uid %ld", (long)getuid());
			return NULL;
		}
	} else {
		size_t n = strcspn(p, "/");
		char *name = xstrndup(p, n);
		p += n;
		p += strspn(p, "/");
		rest = *p ? p : NULL;
		pw = getpwnam(name);
		if (pw == NULL) {
			seterr(err, errlen, "No such user %s", name);
			free(name);
			return NULL;
		}
		free(name);
	}
	size_t dl = strlen(pw->pw_dir);
	bool slash = dl == 0 || pw->pw_dir[dl - 1] != '/';
	struct buf b = { 0 };
	buf_adds(&b, pw->pw_dir);
	if (slash)
		buf_adds(&b, "/");
	if (rest)
		buf_adds(&b, rest);
	return buf_steal(&b);
}

struct token {
	char key;
	const char *val;
};

/* Expand %x tokens from toks (and %%), and ${VAR} when dollar. */
static char *percent_expand(const char *s, const struct token *toks, int ntoks, bool dollar,
			    const char *what, char *err, size_t errlen)
{
	struct buf b = { 0 };

	buf_adds(&b, "");
	for (; *s; s++) {
		if (dollar && s[0] == '$' && s[1] == '{') {
			const char *name = s + 2, *end = strchr(name, '}');
			if (end == NULL) {
				seterr(err, errlen, "%s: environment variable '%s' missing closing '}'",
				       what, name);
				goto fail;
			}
			if (end == name) {
				seterr(err, errlen, "%s: zero-length environment variable", what);
				goto fail;
			}
			char *var = xstrndup(name, (size_t)(end - name));
			const char *val = getenv(var);
			if (val == NULL) {
				seterr(err, errlen, "%s: env var ${%s} has no value", what, var);
				free(var);
				goto fail;
			}
			free(var);
			buf_adds(&b, val);
			s = end;
			continue;
		}
		if (*s != '%') {
			buf_add(&b, s, 1);
			continue;
		}
		s++;
		if (*s == '%') {
			buf_add(&b, "%", 1);
			continue;
		}
		if (*s == '\0') {
			seterr(err, errlen, "%s: invalid format (trailing %%)", what);
			goto fail;
		}
		int i;
		for (i = 0; i < ntoks; i++)
			if (toks[i].key == *s)
				break;
		if (i == ntoks) {
			seterr(err, errlen, "%s: unknown key %%%c", what, *s);
			goto fail;
		}
		buf_adds(&b, toks[i].val);
	}
	return buf_steal(&b);
fail:
	free(b.s);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* SHA-1, for %C (the hash of "%l%h%p%r")                              */

struct sha1 {
	uint32_t h[5];
	uint64_t len;
	unsigned char block[64];
	size_t used;
};

static uint32_t rol32(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void sha1_block(struct sha1 *c, const unsigned char *p)
{
	uint32_t w[80], a, b, d, e, f, k, t, cc;

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	a = c->h[0];
	b = c->h[1];
	cc = c->h[2];
	d = c->h[3];
	e = c->h[4];
	for (int i = 0; i < 80; i++) {
		if (i < 20) {
			f = (b & cc) | (~b & d);
			k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ cc ^ d;
			k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & cc) | (b & d) | (cc & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ cc ^ d;
			k = 0xca62c1d6;
		}
		t = rol32(a, 5) + f + e + k + w[i];
		e = d;
		d = cc;
		cc = rol32(b, 30);
		b = a;
		a = t;
	}
	c->h[0] += a;
	c->h[1] += b;
	c->h[2] += cc;
	c->h[3] += d;
	c->h[4] += e;
}

static void sha1_init(struct sha1 *c)
{
	static const uint32_t iv[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };

	memset(c, 0, sizeof(*c));
	memcpy(c->h, iv, sizeof(iv));
}

static void sha1_update(struct sha1 *c, const void *data, size_t n)
{
	const unsigned char *p = data;

	c->len += n;
	while (n > 0) {
		size_t take = 64 - c->used;
		if (take > n)
			take = n;
		memcpy(c->block + c->used, p, take);
		c->used += take;
		p += take;
		n -= take;
		if (c->used == 64) {
			sha1_block(c, c->block);
			c->used = 0;
		}
	}
}

static void sha1_hex(struct sha1 *c, char out[41])
{
	uint64_t bits = c->len * 8;
	unsigned char pad = 0x80, zero = 0, lenb[8];

	sha1_update(c, &pad, 1);
	while (c->used != 56)
		sha1_update(c, &zero, 1);
	for (int i = 0; i < 8; i++)
		lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
	sha1_update(c, lenb, 8);
	for (int i = 0; i < 5; i++)
		snprintf(out + 8 * i, 9, "%08x", c->h[i]);
}

/* ------------------------------------------------------------------ */
/* The connection facts that %-tokens stand for                        */

struct conn_info {
	char thishost[HOST_NAME_MAX + 1], shorthost[HOST_NAME_MAX + 1];
	char uidstr[32], portstr[16], hash[41];
	char homedir[PATH_MAX], locuser[256]; /* copies: getpw* reuse their buffer */
	const char *keyalias, *host_arg, *remhost, *remuser;
};

static int conn_info_init(struct conn_info *ci, const char *host_arg, const char *hostname,
			  const char *port, const char *user, const char *hostkeyalias,
			  char *err, size_t errlen)
{
	struct passwd *pw = getpwuid(getuid());
	struct sha1 c;

	if (pw == NULL) {
		seterr(err, errlen, "No user exists for uid %lu", (unsigned long)getuid());
		return -1;
	}
	memset(ci, 0, sizeof(*ci));
	if (gethostname(ci->thishost, sizeof(ci->thishost) - 1) != 0)
		ci->thishost[0] = '\0';
	snprintf(ci->shorthost, sizeof(ci->shorthost), "%.*s",
		 (int)strcspn(ci->thishost, "."), ci->thishost);
	snprintf(ci->uidstr, sizeof(ci->uidstr), "%llu", (unsigned long long)pw->pw_uid);
	snprintf(ci->portstr, sizeof(ci->portstr), "%s", port);
	ci->keyalias = hostkeyalias ? hostkeyalias : host_arg;
	ci->host_arg = host_arg;
	ci->remhost = hostname;
	ci->remuser = user;
	snprintf(ci->homedir, sizeof(ci->homedir), "%s", pw->pw_dir);
	snprintf(ci->locuser, sizeof(ci->locuser), "%s", pw->pw_name);
	sha1_init(&c);
	sha1_update(&c, ci->thishost, strlen(ci->thishost));
	sha1_update(&c, hostname, strlen(hostname));
	sha1_update(&c, ci->portstr, strlen(ci->portstr));
	sha1_update(&c, user, strlen(user));
	sha1_hex(&c, ci->hash);
	return 0;
}

/* ~ then ssh's default client tokens (%C %L %i %k %l %n %p %d %h %r %u)
 * and ${ENV}: what IdentityFile, ControlPath, IdentityAgent and
 * UserKnownHostsFile get. */
#define N_CLIENT_TOKENS 11

static void client_tokens(const struct conn_info *ci, struct token toks[N_CLIENT_TOKENS])
{
	const struct token t[N_CLIENT_TOKENS] = {
		{ 'C', ci->hash }, { 'L', ci->shorthost }, { 'i', ci->uidstr },
		{ 'k', ci->keyalias }, { 'l', ci->thishost }, { 'n', ci->host_arg },
		{ 'p', ci->portstr }, { 'd', ci->homedir }, { 'h', ci->remhost },
		{ 'r', ci->remuser }, { 'u', ci->locuser },
	};

	memcpy(toks, t, sizeof(t));
}

static char *client_expand(const struct conn_info *ci, const char *s, const char *what,
			   char *err, size_t errlen)
{
	struct token toks[N_CLIENT_TOKENS];
	char *t = tilde_expand(s, err, errlen), *r;

	if (t == NULL)
		return NULL;
	client_tokens(ci, toks);
	r = percent_expand(t, toks, N_CLIENT_TOKENS, true, what, err, errlen);
	free(t);
	return r;
}

/* ------------------------------------------------------------------ */
/* Algorithm lists (OpenSSH 9.2's, as `ssh -Q` and `ssh -G` print them) */

static const char all_ciphers[] =
	"3des-cbc,aes128-cbc,aes192-cbc,aes256-cbc,aes128-ctr,aes192-ctr,aes256-ctr,"
	"aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com";
static const char def_ciphers[] =
	"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,"
	"aes128-gcm@openssh.com,aes256-gcm@openssh.com";
static const char all_macs[] =
	"hmac-sha1,hmac-sha1-96,hmac-sha2-256,hmac-sha2-512,hmac-md5,hmac-md5-96,"
	"umac-64@openssh.com,umac-128@openssh.com,hmac-sha1-etm@openssh.com,"
	"hmac-sha1-96-etm@openssh.com,hmac-sha2-256-etm@openssh.com,"
	"hmac-sha2-512-etm@openssh.com,hmac-md5-etm@openssh.com,hmac-md5-96-etm@openssh.com,"
	"umac-64-etm@openssh.com,umac-128-etm@openssh.com";
static const char def_macs[] =
	"umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,"
	"hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,"
	"umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1";
static const char all_kex[] =
	"diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,"
	"diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,"
	"diffie-hellman-group-exchange-sha1,diffie-hellman-group-exchange-sha256,"
	"ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,curve25519-sha256,"
	"curve25519-sha256@libssh.org,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com";
static const char def_kex[] =
	"sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,"
	"curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,"
	"diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,"
	"diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";
static const char all_keys[] =
	"ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519@openssh.com,"
	"sk-ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256,"
	"ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384,"
	"ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521,"
	"ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,"
	"sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,webauthn-sk-ecdsa-sha2-nistp256@openssh.com,"
	"ssh-dss,ssh-dss-cert-v01@openssh.com,ssh-rsa,ssh-rsa-cert-v01@openssh.com,"
	"rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com,rsa-sha2-512,"
	"rsa-sha2-512-cert-v01@openssh.com";
static const char def_hostkeys[] =
	"ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,"
	"ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,"
	"sk-ssh-ed25519-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,"
	"rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519,"
	"ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,"
	"sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256";

static bool name_in_list(const char *list, const char *name, size_t n)
{
	const char *p = list;

	while (*p) {
		size_t l = strcspn(p, ",");
		if (l == n && strncmp(p, name, n) == 0)
			return true;
		p += l;
		if (*p == ',')
			p++;
	}
	return false;
}

/* Every name of list is in all (a wildcard name must match one of all). */
static bool names_valid(const char *list, const char *all, bool wildcards)
{
	const char *p = list;

	if (*p == '\0')
		return false;
	while (*p) {
		size_t n = strcspn(p, ",");
		if (n == 0)
			break; /* ssh stops at an empty name */
		char *name = xstrndup(p, n);
		bool ok;
		if (wildcards && strpbrk(name, "*?") != NULL) {
			ok = false;
			for (const char *q = all; *q && !ok;) {
				size_t m = strcspn(q, ",");
				char *cand = xstrndup(q, m);
				ok = match_pattern_list(cand, name, false) == 1;
				free(cand);
				q += m;
				if (*q == ',')
					q++;
			}
		} else {
			ok = name_in_list(all, name, n);
		}
		free(name);
		if (!ok)
			return false;
		p += n;
		if (*p == ',')
			p++;
	}
	return true;
}

/* a, then the names of b not already there. */
static void names_cat(struct buf *out, const char *b)
{
	const char *p = b;

	while (*p) {
		size_t n = strcspn(p, ",");
		if (n > 0 && !(out->s && name_in_list(out->s, p, n))) {
			if (out->len)
				buf_adds(out, ",");
			buf_add(out, p, n);
		}
		p += n;
		if (*p == ',')
			p++;
	}
}

/* The names of list (in its order) that do (keep) or do not match filter. */
static void names_filter(struct buf *out, const char *list, const char *filter, bool keep)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");
		char *name = xstrndup(p, n);
		bool m = match_pattern_list(name, filter, false) == 1;
		if (m == keep) {
			if (out->len)
				buf_adds(out, ",");
			buf_adds(out, name);
		}
		free(name);
		p += n;
		if (*p == ',')
			p++;
	}
}

/* ssh's kex_assemble_names: +list appends to the defaults, -list removes
 * from them, ^list puts first; a plain list replaces them. Patterns are
 * matched against every supported name. NULL if the result is empty. */
static char *assemble_names(const char *spec, const char *def, const char *all)
{
	struct buf list = { 0 }, ret = { 0 };

	if (spec == NULL || *spec == '\0')
		return xstrdup(def);
	if (spec[0] == '-') {
		names_filter(&ret, def, spec + 1, false);
		return buf_steal(&ret);
	}
	if (spec[0] == '+') {
		buf_adds(&list, def);
		names_cat(&list, spec + 1);
	} else if (spec[0] == '^') {
		buf_adds(&list, "");
		names_cat(&list, spec + 1);
		names_cat(&list, def);
	} else {
		buf_adds(&list, spec);
	}
	const char *p = list.s;
	while (*p) {
		size_t n = strcspn(p, ",");
		char *pat = xstrndup(p, n);
		struct buf m = { 0 };
		if (pat[0] == '!') {
			free(pat);
			free(list.s);
			free(ret.s);
			return NULL;
		}
		names_filter(&m, all, pat, true);
		if (m.s)
			names_cat(&ret, m.s);
		free(m.s);
		free(pat);
		p += n;
		if (*p == ',')
			p++;
	}
	free(list.s);
	if (ret.len == 0) {
		free(ret.s);
		return NULL;
	}
	return buf_steal(&ret);
}

/* ------------------------------------------------------------------ */
/* The built-in ssh_config reader                                      */

#define CONF_USER 1       /* a user's file: ~ allowed, relative Include in ~/.ssh */
#define CONF_CHECKPERM 2  /* refuse a file others may write */
#define CONF_NEVERMATCH 4 /* inside an inactive Include: no block applies */

/* Options as ssh holds them while reading: -1 or NULL = not yet set. */
struct reader {
	const char *host_arg;  /* the host as written */
	const char *match_host; /* what Host patterns see */
	bool final_pass, want_final;
	char *home, *locuser; /* the local user's, copied */
	char *err;
	size_t errlen;

	char *hostname, *user;
	int port;
	struct strv idfiles;
	int identities_only;
	char *identity_agent;
	struct strv ukh, gkh;
	int strict, check_host_ip;
	char *host_key_alias;
	int batch_mode, pubkey, password, kbdint, nprompts;
	char *proxy_command, *jump;
	int af, connect_timeout, sai, sacm, compression;
	char *ciphers, *macs, *kex, *hka, *control_path, *control_master;
	int control_persist, control_persist_timeout;
	char *ignore_unknown;
};

static void reader_init(struct reader *r, const char *host_arg, const struct passwd *pw,
			char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->host_arg = host_arg;
	r->match_host = host_arg;
	r->home = xstrdup(pw->pw_dir);
	r->locuser = xstrdup(pw->pw_name);
	r->err = err;
	r->errlen = errlen;
	r->port = r->identities_only = r->strict = r->check_host_ip = -1;
	r->batch_mode = r->pubkey = r->password = r->kbdint = r->nprompts = -1;
	r->af = r->connect_timeout = r->sai = r->sacm = r->compression = -1;
	r->control_persist = -1;
}

static void reader_free(struct reader *r)
{
	free(r->home);
	free(r->locuser);
	free(r->hostname);
	free(r->user);
	strv_free(&r->idfiles);
	free(r->identity_agent);
	strv_free(&r->ukh);
	strv_free(&r->gkh);
	free(r->host_key_alias);
	free(r->proxy_command);
	free(r->jump);
	free(r->ciphers);
	free(r->macs);
	free(r->kex);
	free(r->hka);
	free(r->control_path);
	free(r->control_master);
	free(r->ignore_unknown);
}

struct multistate {
	const char *key;
	int val;
};

static const struct multistate ms_flag[] = {
	{ "true", 1 }, { "false", 0 }, { "yes", 1 }, { "no", 0 }, { NULL, -1 },
};
static const struct multistate ms_strict[] = {
	{ "true", SHKC_YES }, { "false", SHKC_NO }, { "yes", SHKC_YES }, { "no", SHKC_NO },
	{ "ask", SHKC_ASK }, { "off", SHKC_NO }, { "accept-new", SHKC_ACCEPT_NEW }, { NULL, -1 },
};
static const struct multistate ms_af[] = {
	{ "inet", AF_INET }, { "inet6", AF_INET6 }, { "any", AF_UNSPEC }, { NULL, -1 },
};
/* 2 and 3 are ssh's "unbound" and "host-bound": both mean yes to us */
static const struct multistate ms_pubkey[] = {
	{ "true", 1 }, { "false", 0 }, { "yes", 1 }, { "no", 0 },
	{ "unbound", 2 }, { "host-bound", 3 }, { NULL, -1 },
};
static const struct multistate ms_compression[] = {
	{ "yes", 1 }, { "no", 0 }, { NULL, -1 },
};

static int multistate_value(const char *arg, const struct multistate *ms)
{
	for (int i = 0; arg && ms[i].key; i++)
		if (strcasecmp(arg, ms[i].key) == 0)
			return ms[i].val;
	return -1;
}

static const char *multistate_name(int val, const struct multistate *ms)
{
	for (int i = 0; ms[i].key; i++)
		if (ms[i].val == val)
			return ms[i].key;
	return "unknown";
}

/* ssh's convtime: "90", "1m30s", "1h"...; -1 if bad. */
static long convtime(const char *s)
{
	long total = 0;

	if (s == NULL || *s == '\0')
		return -1;
	while (*s) {
		char *end;
		errno = 0;
		long v = strtol(s, &end, 10), mult = 1;
		if (end == s || errno == ERANGE || v < 0)
			return -1;
		switch (*end) {
		case '\0':
			break;
		case 's': case 'S':
			end++;
			break;
		case 'm': case 'M':
			mult = 60;
			end++;
			break;
		case 'h': case 'H':
			mult = 3600;
			end++;
			break;
		case 'd': case 'D':
			mult = 86400;
			end++;
			break;
		case 'w': case 'W':
			mult = 604800;
			end++;
			break;
		default:
			return -1;
		}
		if (v > INT_MAX / mult || total > INT_MAX - v * mult)
			return -1;
		total += v * mult;
		s = end;
	}
	return total;
}

/* strtonum(s, lo, hi): the value, or NULL with *why set. */
static bool str_to_num(const char *s, long long lo, long long hi, long long *v, const char **why)
{
	char *end;

	if (s == NULL || *s == '\0') {
		*why = "missing";
		return false;
	}
	errno = 0;
	*v = strtoll(s, &end, 10);
	if (*end != '\0' || end == s) {
		*why = "invalid";
		return false;
	}
	if (errno == ERANGE || *v < lo) {
		*why = (errno == ERANGE && *v > 0) ? "too large" : "too small";
		return false;
	}
	if (*v > hi) {
		*why = "too large";
		return false;
	}
	return true;
}

/* ssh's a2port: a number 1-65535 or a service name; -1 if bad. */
static int a2port(const char *s)
{
	long long v;
	const char *why;
	struct servent *se;

	if (str_to_num(s, 0, 65535, &v, &why))
		return (int)v;
	if ((se = getservbyname(s, "tcp")) != NULL)
		return ntohs(se->s_port);
	return -1;
}

static bool valid_env_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

static int rd_error(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int rd_error(struct reader *r, const char *fmt, ...)
{
	va_list ap;

	if (r->err && r->errlen) {
		va_start(ap, fmt);
		vsnprintf(r->err, r->errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int read_file(struct reader *r, const char *path, int flags, int *activep, int depth,
		     bool *opened);

/* [user@]host[:port], [user@][v6]:port or ssh://[user@]host[:port]. */
static bool jump_hop_valid(const char *hop)
{
	const char *h = hop, *at;

	if (strncmp(h, "ssh://", 6) == 0) {
		h += 6;
		size_t n = strlen(h);
		if (n && h[n - 1] == '/')
			n--;
		char *tmp = xstrndup(h, n);
		bool ok = strchr(tmp, '/') == NULL && jump_hop_valid(tmp);
		free(tmp);
		return ok;
	}
	if ((at = strrchr(h, '@')) != NULL) {
		if (at == h)
			return false;
		h = at + 1;
	}
	if (*h == '[') {
		const char *close = strchr(h, ']');
		if (close == NULL || close == h + 1)
			return false;
		h = close + 1;
		if (*h == '\0')
			return true;
		if (*h != ':')
			return false;
		return a2port(h + 1) > 0;
	}
	const char *colon = strchr(h, ':');
	if (colon == h || *h == '\0')
		return false;
	if (colon == NULL)
		return true;
	if (strchr(colon + 1, ':') != NULL)
		return false;
	return a2port(colon + 1) > 0;
}

static bool jump_valid(const char *s)
{
	bool ok = true;
	char *copy = xstrdup(s), *p = copy, *hop;

	if (strcasecmp(s, "none") == 0) {
		free(copy);
		return true;
	}
	while (ok && (hop = strsep(&p, ",")) != NULL)
		ok = *hop != '\0' && jump_hop_valid(hop);
	free(copy);
	return ok;
}

/* Match exec: run the command (tokens expanded) with the user's shell, as
 * ssh does; 1 if it exits 0, 0 if not, -1 if it could not be run. */
static int match_exec(struct reader *r, const char *cmd, const char *host, const char *file,
		      int line)
{
	struct conn_info ci;
	struct token toks[N_CLIENT_TOKENS];
	char portstr[16], *x;
	const char *ruser = r->user ? r->user : r->locuser;
	const char *shell = getenv("SHELL");
	int status;
	pid_t pid;

	snprintf(portstr, sizeof(portstr), "%d", r->port > 0 ? r->port : 22);
	if (conn_info_init(&ci, r->host_arg, host, portstr, ruser,
			   r->host_key_alias ? r->host_key_alias : host, r->err, r->errlen))
		return -1;
	client_tokens(&ci, toks);
	x = percent_expand(cmd, toks, N_CLIENT_TOKENS, false, "Match exec", r->err, r->errlen);
	if (x == NULL)
		return -1;
	if (shell == NULL || *shell == '\0')
		shell = "/bin/sh";
	if (access(shell, X_OK) != 0) {
		rd_error(r, "Shell \"%s\" is not executable: %s", shell, strerror(errno));
		free(x);
		return -1;
	}
	log_debug("%s line %d: Match exec %s", file, line, x);
	pid = fork();
	if (pid < 0) {
		rd_error(r, "fork: %s", strerror(errno));
		free(x);
		return -1;
	}
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);
		if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0)
			_exit(1);
		for (int i = 3; i < 1024; i++)
			close(i);
		execl(shell, shell, "-c", x, (char *)NULL);
		_exit(1);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			rd_error(r, "waitpid: %s", strerror(errno));
			free(x);
			return -1;
		}
	}
	if (!WIFEXITED(status)) {
		rd_error(r, "%.200s line %d: match exec '%.100s' error", file, line, x);
		free(x);
		return -1;
	}
	free(x);
	return WEXITSTATUS(status) == 0;
}

/* One Match line: 1 if it applies, 0 if not, -1 if bad. */
static int match_line(struct reader *r, struct strv *w, int *wi, const char *file, int line)
{
	int result = 1, attributes = 0;
	char *host;

	if (r->final_pass)
		host = xstrdup(r->hostname ? r->hostname : r->host_arg);
	else if (r->hostname != NULL) {
		const struct token h = { 'h', r->host_arg };
		host = percent_expand(r->hostname, &h, 1, false, "HostName", r->err, r->errlen);
		if (host == NULL)
			return -1;
	} else
		host = xstrdup(r->host_arg);

	while (*wi < w->n) {
		const char *attr = w->v[(*wi)++], *arg;
		bool negate = attr[0] == '!';
		if (negate)
			attr++;
		if (strcasecmp(attr, "all") == 0) {
			if (attributes > 1 || *wi < w->n) {
				rd_error(r, "%s line %d: '%s' cannot be combined with other Match attributes",
					 file, line, w->v[*wi - 1]);
				result = -1;
				goto out;
			}
			if (result)
				result = negate ? 0 : 1;
			attributes++;
			goto out;
		}
		attributes++;
		if (strcasecmp(attr, "canonical") == 0 || strcasecmp(attr, "final") == 0) {
			if (strcasecmp(attr, "final") == 0)
				r->want_final = true;
			if (r->final_pass == negate)
				result = 0;
			continue;
		}
		if (*wi >= w->n) {
			rd_error(r, "Missing Match criteria for %s", attr);
			result = -1;
			goto out;
		}
		arg = w->v[(*wi)++];
		bool m;
		if (strcasecmp(attr, "host") == 0) {
			m = match_hostname(host, arg);
		} else if (strcasecmp(attr, "originalhost") == 0) {
			m = match_hostname(r->host_arg, arg);
		} else if (strcasecmp(attr, "user") == 0) {
			m = match_pattern_list(r->user ? r->user : r->locuser, arg, false) == 1;
		} else if (strcasecmp(attr, "localuser") == 0) {
			m = match_pattern_list(r->locuser, arg, false) == 1;
		} else if (strcasecmp(attr, "exec") == 0) {
			if (result != 1)
				continue; /* ssh skips it once the line cannot match */
			int e = match_exec(r, arg, host, file, line);
			if (e < 0) {
				result = -1;
				goto out;
			}
			m = e == 1;
		} else {
			rd_error(r, "Unsupported Match attribute %s", attr);
			result = -1;
			goto out;
		}
		if (m == negate)
			result = 0;
	}
	if (attributes == 0) {
		rd_error(r, "One or more attributes required for Match");
		result = -1;
	}
out:
	free(host);
	return result;
}

/* Every ${VAR} is well formed and set (ssh's dollar_expand succeeds). */
static bool dollar_ok(const char *s)
{
	for (const char *d = strstr(s, "${"); d; d = strstr(d, "${")) {
		const char *name = d + 2, *end = strchr(name, '}');
		if (end == NULL || end == name)
			return false;
		char *var = xstrndup(name, (size_t)(end - name));
		bool set = getenv(var) != NULL;
		free(var);
		if (!set)
			return false;
		d = end + 1;
	}
	return true;
}

static int set_flag(struct reader *r, int *field, const struct multistate *ms, const char *arg,
		    bool active, const char *file, int line)
{
	int v;

	if (arg == NULL || *arg == '\0')
		return rd_error(r, "%s line %d: missing argument.", file, line);
	if ((v = multistate_value(arg, ms)) == -1)
		return rd_error(r, "%s line %d: unsupported option \"%s\".", file, line, arg);
	if (active && *field == -1)
		*field = v;
	return 0;
}

static int set_time(struct reader *r, int *field, const char *arg, bool active, const char *file,
		    int line)
{
	long v;

	if (arg == NULL || *arg == '\0')
		return rd_error(r, "%s line %d: missing time value.", file, line);
	if (strcmp(arg, "none") == 0)
		v = -1;
	else if ((v = convtime(arg)) == -1)
		return rd_error(r, "%s line %d: invalid time value.", file, line);
	if (active && *field == -1)
		*field = (int)v;
	return 0;
}

static int set_int(struct reader *r, int *field, const char *arg, bool active, const char *file,
		   int line)
{
	long long v;
	const char *why;

	if (!str_to_num(arg, 0, INT_MAX, &v, &why))
		return rd_error(r, "%s line %d: integer value %s.", file, line, why);
	if (active && *field == -1)
		*field = (int)v;
	return 0;
}

static int set_string(struct reader *r, char **field, const char *arg, bool active,
		      const char *file, int line)
{
	if (arg == NULL || *arg == '\0')
		return rd_error(r, "%.200s line %d: Missing argument.", file, line);
	if (active && *field == NULL)
		*field = xstrdup(arg);
	return 0;
}

static int set_algos(struct reader *r, char **field, const char *arg, const char *all,
		     bool wildcards, const char *what, bool active, const char *file, int line)
{
	if (arg == NULL || *arg == '\0')
		return rd_error(r, "%.200s line %d: Missing argument.", file, line);
	if (*arg != '-' &&
	    !names_valid(*arg == '+' || *arg == '^' ? arg + 1 : arg, all, wildcards))
		return rd_error(r, "%.200s line %d: %s '%s'.", file, line, what, arg);
	if (active && *field == NULL)
		*field = xstrdup(arg);
	return 0;
}

static int set_list(struct reader *r, struct strv *field, struct strv *w, int *wi,
		    const char *kw, bool active, const char *file, int line)
{
	bool was_empty = field->n == 0;
	int i = 0;

	while (*wi < w->n) {
		const char *arg = w->v[(*wi)++];
		if (*arg == '\0')
			return rd_error(r, "%s line %d: keyword %s empty argument", file, line, kw);
		if (strcasecmp(arg, "none") == 0 && (i > 0 || *wi < w->n))
			return rd_error(r, "%s line %d: keyword %s \"none\" argument must appear alone.",
					file, line, kw);
		i++;
		if (active && was_empty) {
			if (field->n >= MAX_HOSTS_FILES)
				return rd_error(r, "%s line %d: too many %s entries.", file, line, kw);
			strv_add(field, arg);
		}
	}
	return 0;
}

static int do_include(struct reader *r, struct strv *w, int *wi, int *activep, int flags,
		      int depth, const char *file, int line)
{
	while (*wi < w->n) {
		const char *arg = w->v[(*wi)++];
		char *pattern;
		glob_t gl;
		int rc;

		if (*arg == '\0')
			return rd_error(r, "%s line %d: keyword include empty argument", file, line);
		if (*arg == '~' && !(flags & CONF_USER))
			return rd_error(r, "%.200s line %d: bad include path %s.", file, line, arg);
		if (*arg != '/' && *arg != '~') {
			size_t n = strlen(arg) + 16;
			pattern = xmalloc(n);
			snprintf(pattern, n, "%s/%s", (flags & CONF_USER) ? "~/.ssh" : "/etc/ssh", arg);
		} else {
			pattern = xstrdup(arg);
		}
		memset(&gl, 0, sizeof(gl));
		rc = glob(pattern, GLOB_TILDE, NULL, &gl);
		if (rc == GLOB_NOMATCH) {
			free(pattern);
			continue;
		} else if (rc != 0) {
			rd_error(r, "%.200s line %d: glob failed for %s.", file, line, pattern);
			free(pattern);
			return -1;
		}
		free(pattern);
		int oactive = *activep;
		for (size_t i = 0; i < gl.gl_pathc; i++) {
			bool opened = false;
			int e = read_file(r, gl.gl_pathv[i],
					  flags | CONF_CHECKPERM | (oactive ? 0 : CONF_NEVERMATCH),
					  activep, depth + 1, &opened);
			*activep = oactive;
			if (e != 0) {
				globfree(&gl);
				return -1;
			}
			if (!opened && errno != ENOENT) {
				rd_error(r, "Can't open user config file %.100s: %.100s",
					 gl.gl_pathv[i], strerror(errno));
				globfree(&gl);
				return -1;
			}
		}
		globfree(&gl);
	}
	return 0;
}

/* One line of a file (activep != NULL) or of -o (activep == NULL, file
 * "command-line", line 0). Returns 0, or -1 with the error in r->err. */
static int process_line(struct reader *r, const char *text, const char *file, int line,
			int *activep, int flags, int depth)
{
	int cmdline_active = 1;
	bool cmdline = activep == NULL;
	char *copy = xstrdup(text), *kw, *rest, *p;
	size_t len = strlen(copy);
	struct strv w = { 0 };
	int wi = 0, rc = -1;
	const struct keyword *k;

	if (cmdline)
		activep = &cmdline_active;
	while (len > 0 && strchr(" \t\r\n\f", copy[len - 1]))
		copy[--len] = '\0';
	p = copy + strspn(copy, " \t\r\n");
	if (*p == '\0' || *p == '#') {
		rc = 0;
		goto out;
	}
	kw = p;
	p += strcspn(p, " \t=");
	bool eq = *p == '=';
	if (*p)
		*p++ = '\0';
	p += strspn(p, " \t");
	if (!eq && *p == '=') {
		p++;
		p += strspn(p, " \t");
	}
	rest = p;
	lowercase(kw);
	if (*rest == '\0') {
		rd_error(r, "%s line %d: no argument after keyword \"%s\"", file, line, kw);
		goto out;
	}
	k = keyword_find(kw);
	if (k == NULL) {
		if (r->ignore_unknown && match_pattern_list(kw, r->ignore_unknown, true) == 1) {
			rc = 0;
			goto out;
		}
		rd_error(r, "%s: line %d: Bad configuration option: %s", file, line, kw);
		goto out;
	}
	if (split_words(rest, &w) != 0) {
		rd_error(r, "%s line %d: invalid quotes", file, line);
		goto out;
	}

	bool active = *activep != 0;
	const char *arg = w.n > 0 ? w.v[wi] : NULL;
	const char *raw;

	switch (k->op) {
	case OP_OTHER:
	case OP_IGNORE:
		wi = w.n; /* values not checked here: ssh would */
		break;
	case OP_HOST:
		if (cmdline) {
			rd_error(r, "Host directive not supported as a command-line option");
			goto out;
		}
		*activep = 0;
		while (wi < w.n) {
			const char *pat = w.v[wi++];
			if (*pat == '\0') {
				rd_error(r, "%s line %d: keyword %s empty argument", file, line, kw);
				goto out;
			}
			if (flags & CONF_NEVERMATCH) {
				wi = w.n;
				break;
			}
			bool negated = *pat == '!';
			if (negated)
				pat++;
			if (match_pattern(r->match_host, pat)) {
				if (negated) {
					*activep = 0;
					wi = w.n;
					break;
				}
				*activep = 1;
			}
		}
		break;
	case OP_MATCH: {
		if (cmdline) {
			rd_error(r, "Host directive not supported as a command-line option");
			goto out;
		}
		int m = match_line(r, &w, &wi, file, line);
		if (m < 0) {
			/* the specific reason is already in err */
			goto out;
		}
		*activep = (flags & CONF_NEVERMATCH) ? 0 : m;
		break;
	}
	case OP_INCLUDE:
		if (cmdline) {
			rd_error(r, "Include directive not supported as a command-line option");
			goto out;
		}
		if (depth >= MAX_INCLUDE_DEPTH) {
			rd_error(r, "Too many recursive configuration includes");
			goto out;
		}
		if (do_include(r, &w, &wi, activep, flags, depth, file, line) != 0)
			goto out;
		break;
	case OP_IGNOREUNKNOWN:
		wi++;
		if (set_string(r, &r->ignore_unknown, arg, active, file, line))
			goto out;
		break;
	case OP_HOSTNAME:
		wi++;
		if (set_string(r, &r->hostname, arg, active, file, line))
			goto out;
		break;
	case OP_USER:
		wi++;
		if (set_string(r, &r->user, arg, active, file, line))
			goto out;
		break;
	case OP_HOSTKEYALIAS:
		wi++;
		if (set_string(r, &r->host_key_alias, arg, active, file, line))
			goto out;
		break;
	case OP_CONTROLPATH:
		wi++;
		if (set_string(r, &r->control_path, arg, active, file, line))
			goto out;
		break;
	case OP_CONTROLMASTER:
		wi++;
		if (set_string(r, &r->control_master, arg, active, file, line))
			goto out;
		break;
	case OP_PORT: {
		wi++;
		if (arg == NULL || *arg == '\0') {
			rd_error(r, "%.200s line %d: Missing argument.", file, line);
			goto out;
		}
		int v = a2port(arg);
		if (v <= 0) {
			rd_error(r, "%.200s line %d: Bad port '%s'.", file, line, arg);
			goto out;
		}
		if (active && r->port == -1)
			r->port = v;
		break;
	}
	case OP_IDENTITYFILE:
		wi++;
		if (arg == NULL || *arg == '\0') {
			rd_error(r, "%.200s line %d: Missing argument.", file, line);
			goto out;
		}
		if (active) {
			if (r->idfiles.n >= MAX_IDENTITY_FILES) {
				rd_error(r, "%.200s line %d: Too many identity files specified (max %d).",
					 file, line, MAX_IDENTITY_FILES);
				goto out;
			}
			bool dup = false;
			for (int i = 0; i < r->idfiles.n; i++)
				dup |= strcmp(r->idfiles.v[i], arg) == 0;
			if (!dup)
				strv_add(&r->idfiles, arg);
		}
		break;
	case OP_IDENTITYAGENT: {
		wi++;
		if (arg == NULL || *arg == '\0') {
			rd_error(r, "%.200s line %d: Missing argument.", file, line);
			goto out;
		}
		/* ssh expands ${VAR} here only to check it */
		if (!dollar_ok(arg)) {
			rd_error(r, "%.200s line %d: Invalid environment expansion %s.", file, line,
				 arg);
			goto out;
		}
		if (arg[0] == '$' && arg[1] != '{' && !valid_env_name(arg + 1)) {
			rd_error(r, "%.200s line %d: Invalid environment name %s.", file, line, arg);
			goto out;
		}
		if (active && r->identity_agent == NULL)
			r->identity_agent = xstrdup(arg);
		break;
	}
	case OP_USERKH:
		if (set_list(r, &r->ukh, &w, &wi, kw, active, file, line))
			goto out;
		break;
	case OP_GLOBALKH:
		if (set_list(r, &r->gkh, &w, &wi, kw, active, file, line))
			goto out;
		break;
	case OP_STRICT:
		wi++;
		if (set_flag(r, &r->strict, ms_strict, arg, active, file, line))
			goto out;
		break;
	case OP_CHECKHOSTIP:
		wi++;
		if (set_flag(r, &r->check_host_ip, ms_flag, arg, active, file, line))
			goto out;
		break;
	case OP_IDENTITIESONLY:
		wi++;
		if (set_flag(r, &r->identities_only, ms_flag, arg, active, file, line))
			goto out;
		break;
	case OP_BATCHMODE:
		wi++;
		if (set_flag(r, &r->batch_mode, ms_flag, arg, active, file, line))
			goto out;
		break;
	case OP_PUBKEY:
		wi++;
		if (set_flag(r, &r->pubkey, ms_pubkey, arg, active, file, line))
			goto out;
		break;
	case OP_PASSWORD:
		wi++;
		if (set_flag(r, &r->password, ms_flag, arg, active, file, line))
			goto out;
		break;
	case OP_KBDINT:
		wi++;
		if (set_flag(r, &r->kbdint, ms_flag, arg, active, file, line))
			goto out;
		break;
	case OP_ADDRESSFAMILY:
		wi++;
		if (set_flag(r, &r->af, ms_af, arg, active, file, line))
			goto out;
		break;
	case OP_COMPRESSION:
		wi++;
		if (set_flag(r, &r->compression, ms_compression, arg, active, file, line))
			goto out;
		break;
	case OP_NPROMPTS:
		wi++;
		if (set_int(r, &r->nprompts, arg, active, file, line))
			goto out;
		break;
	case OP_SACM:
		wi++;
		if (set_int(r, &r->sacm, arg, active, file, line))
			goto out;
		break;
	case OP_CONNECTTIMEOUT:
		wi++;
		if (set_time(r, &r->connect_timeout, arg, active, file, line))
			goto out;
		break;
	case OP_SAI:
		wi++;
		if (set_time(r, &r->sai, arg, active, file, line))
			goto out;
		break;
	case OP_CONTROLPERSIST: {
		wi++;
		int v, t = 0;
		if (arg == NULL || *arg == '\0') {
			rd_error(r, "%.200s line %d: Missing ControlPersist argument.", file, line);
			goto out;
		}
		if (strcmp(arg, "no") == 0 || strcmp(arg, "false") == 0)
			v = 0;
		else if (strcmp(arg, "yes") == 0 || strcmp(arg, "true") == 0)
			v = 1;
		else if ((t = (int)convtime(arg)) >= 0)
			v = 1;
		else {
			rd_error(r, "%.200s line %d: Bad ControlPersist argument.", file, line);
			goto out;
		}
		if (active && r->control_persist == -1) {
			r->control_persist = v;
			r->control_persist_timeout = t;
		}
		break;
	}
	case OP_CIPHERS:
		wi++;
		if (set_algos(r, &r->ciphers, arg, all_ciphers, false, "Bad SSH2 cipher spec",
			      active, file, line))
			goto out;
		break;
	case OP_MACS:
		wi++;
		if (set_algos(r, &r->macs, arg, all_macs, false, "Bad SSH2 MAC spec", active, file,
			      line))
			goto out;
		break;
	case OP_KEX:
		wi++;
		if (arg && *arg && *arg != '-') {
			/* ssh names the first unknown one before the line's error */
			const char *q = *arg == '+' || *arg == '^' ? arg + 1 : arg;
			while (*q) {
				size_t n = strcspn(q, ",");
				if (n == 0)
					break;
				if (!name_in_list(all_kex, q, n)) {
					rd_error(r, "Unsupported KEX algorithm \"%.*s\"",
						 (int)(n > 100 ? 100 : n), q);
					goto out;
				}
				q += n + (q[n] == ',');
			}
		}
		if (set_algos(r, &r->kex, arg, all_kex, false, "Bad SSH2 KexAlgorithms", active,
			      file, line))
			goto out;
		break;
	case OP_HKA:
		wi++;
		if (arg == NULL || *arg == '\0') {
			rd_error(r, "%.200s line %d: Missing argument.", file, line);
			goto out;
		}
		if (*arg != '-' &&
		    !names_valid(*arg == '+' || *arg == '^' ? arg + 1 : arg, all_keys, true)) {
			rd_error(r, "%s line %d: Bad key types '%s'.", file, line, arg);
			goto out;
		}
		if (active && r->hka == NULL)
			r->hka = xstrdup(arg);
		break;
	case OP_PROXYCOMMAND:
		/* the rest of the line as written, for a shell */
		raw = rest + strspn(rest, " \t\r\n=");
		wi = w.n;
		/* after a ProxyJump (but "ProxyJump none" does not count here) */
		if (active && r->proxy_command == NULL &&
		    (r->jump == NULL || strcasecmp(r->jump, "none") == 0))
			r->proxy_command = xstrdup(raw);
		break;
	case OP_PROXYJUMP: {
		raw = rest + strspn(rest, " \t\r\n=");
		wi = w.n;
		char *spec = xstrdup(raw);
		spec[strcspn(spec, "#")] = '\0';
		size_t n = strlen(spec);
		while (n > 0 && strchr(" \t\r\n", spec[n - 1]))
			spec[--n] = '\0';
		if (!jump_valid(spec)) {
			rd_error(r, "%.200s line %d: Invalid ProxyJump \"%s\"", file, line, raw);
			free(spec);
			goto out;
		}
		if (active && r->proxy_command == NULL && r->jump == NULL) {
			r->jump = spec;
			if (strcasecmp(spec, "none") != 0)
				r->proxy_command = xstrdup("none");
		} else {
			free(spec);
		}
		break;
	}
	}
	if (wi < w.n) {
		rd_error(r, "%.200s line %d: keyword %s extra arguments at end of line", file, line,
			 kw);
		goto out;
	}
	rc = 0;
out:
	strv_free(&w);
	free(copy);
	return rc;
}

/* Read a file: 0 (*opened says whether it could be opened, errno why
 * not), or -1 with the error in r->err. */
static int read_file(struct reader *r, const char *path, int flags, int *activep, int depth,
		     bool *opened)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	int linenum = 0, rc = 0;

	*opened = false;
	if (depth > MAX_INCLUDE_DEPTH)
		return rd_error(r, "Too many recursive configuration includes");
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	*opened = true;
	if (flags & CONF_CHECKPERM) {
		struct stat st;
		if (fstat(fileno(f), &st) != 0) {
			rd_error(r, "fstat %s: %s", path, strerror(errno));
			fclose(f);
			return -1;
		}
		if ((st.st_uid != 0 && st.st_uid != getuid()) || (st.st_mode & 022) != 0) {
			rd_error(r, "Bad owner or permissions on %s", path);
			fclose(f);
			return -1;
		}
	}
	while (getline(&line, &cap, f) != -1) {
		linenum++;
		if (process_line(r, line, path, linenum, activep, flags, depth) != 0) {
			rc = -1;
			break;
		}
	}
	free(line);
	fclose(f);
	return rc;
}

static int read_config_files(struct reader *r, const char *config_file)
{
	int active = 1;
	bool opened;

	if (config_file != NULL) {
		if (strcasecmp(config_file, "none") == 0)
			return 0;
		if (read_file(r, config_file, CONF_USER, &active, 0, &opened) != 0)
			return -1;
		if (!opened)
			return rd_error(r, "Can't open user config file %.100s: %.100s", config_file,
					strerror(errno));
		return 0;
	}
	size_t n = strlen(r->home) + 32;
	char *user_conf = xmalloc(n);
	snprintf(user_conf, n, "%s/.ssh/config", r->home);
	int rc = read_file(r, user_conf, CONF_USER | CONF_CHECKPERM, &active, 0, &opened);
	free(user_conf);
	if (rc != 0)
		return -1;
	active = 1;
	return read_file(r, "/etc/ssh/ssh_config", 0, &active, 0, &opened);
}

/* Lowercase a name; put a numeric address in its canonical form, as ssh
 * does ("0:0::1" -> "::1"). */
static char *canonical_host(const char *h)
{
	struct addrinfo hints, *ai = NULL;
	char num[NI_MAXHOST];

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(h, NULL, &hints, &ai) == 0 && ai != NULL) {
		int e = getnameinfo(ai->ai_addr, ai->ai_addrlen, num, sizeof(num), NULL, 0,
				    NI_NUMERICHOST);
		freeaddrinfo(ai);
		if (e == 0)
			return xstrdup(num);
		return xstrdup(h);
	}
	char *s = xstrdup(h);
	lowercase(s);
	return s;
}

static void dump_list(struct buf *b, const char *kw, struct strv *l)
{
	buf_adds(b, kw);
	for (int i = 0; i < l->n; i++) {
		buf_adds(b, " ");
		buf_adds(b, l->v[i]);
	}
	buf_adds(b, "\n");
}

/* What ssh -G would print for these options (the keywords hashi uses). */
static char *builtin_resolve(const char *user, const char *host, const struct target_options *o,
			     char *err, size_t errlen)
{
	struct reader r;
	struct passwd *pw = getpwuid(getuid());
	struct buf b = { 0 };
	char *hostname = NULL, *ret = NULL;
	struct conn_info ci;

	if (pw == NULL) {
		seterr(err, errlen, "No user exists for uid %lu", (unsigned long)getuid());
		return NULL;
	}
	reader_init(&r, host, pw, err, errlen);
	if (user)
		r.user = xstrdup(user); /* -l comes first */
	for (int i = 0; o && i < o->n; i++)
		if (process_line(&r, o->opts[i], "command-line", 0, NULL, CONF_USER, 0) != 0)
			goto out;
	if (read_config_files(&r, o ? o->config_file : NULL) != 0)
		goto out;

	if (r.hostname) {
		const struct token h = { 'h', host };
		char *x = percent_expand(r.hostname, &h, 1, false, "HostName", err, errlen);
		if (x == NULL)
			goto out;
		hostname = canonical_host(x);
		free(x);
	} else {
		hostname = canonical_host(host);
	}
	if (r.want_final) {
		/* "Match final": read everything again with the final name */
		r.final_pass = true;
		free(r.hostname);
		r.hostname = xstrdup(hostname);
		r.match_host = hostname;
		if (read_config_files(&r, o ? o->config_file : NULL) != 0)
			goto out;
	}

	/* ssh's defaults */
	if (r.user == NULL)
		r.user = xstrdup(r.locuser);
	if (r.port <= 0)
		r.port = 22;
	if (r.idfiles.n == 0) {
		static const char *const ids[] = {
			"~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk",
			"~/.ssh/id_ed25519", "~/.ssh/id_ed25519_sk", "~/.ssh/id_xmss",
			"~/.ssh/id_dsa",
		};
		for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
			strv_add(&r.idfiles, ids[i]);
	}
	if (r.gkh.n == 0) {
		strv_add(&r.gkh, "/etc/ssh/ssh_known_hosts");
		strv_add(&r.gkh, "/etc/ssh/ssh_known_hosts2");
	}
	if (r.ukh.n == 0) {
		strv_add(&r.ukh, "~/.ssh/known_hosts");
		strv_add(&r.ukh, "~/.ssh/known_hosts2");
	}
	if (r.host_key_alias)
		lowercase(r.host_key_alias);

	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", r.port);
	if (conn_info_init(&ci, host, hostname, portstr, r.user, r.host_key_alias, err, errlen))
		goto out;

	buf_printf(&b, "host %s\nuser %s\nhostname %s\nport %d\n", host, r.user, hostname, r.port);
	buf_printf(&b, "addressfamily %s\n", multistate_name(r.af == -1 ? AF_UNSPEC : r.af, ms_af));
	buf_printf(&b, "batchmode %s\n", r.batch_mode == 1 ? "yes" : "no");
	buf_printf(&b, "checkhostip %s\n", r.check_host_ip == 1 ? "yes" : "no");
	buf_printf(&b, "compression %s\n", r.compression == 1 ? "yes" : "no");
	buf_printf(&b, "identitiesonly %s\n", r.identities_only == 1 ? "yes" : "no");
	buf_printf(&b, "kbdinteractiveauthentication %s\n", r.kbdint == 0 ? "no" : "yes");
	buf_printf(&b, "passwordauthentication %s\n", r.password == 0 ? "no" : "yes");
	buf_printf(&b, "pubkeyauthentication %s\n",
		   r.pubkey == -1 ? "true" : r.pubkey == 1 ? "true" : r.pubkey == 0 ? "false" :
		   multistate_name(r.pubkey, ms_pubkey));
	buf_printf(&b, "stricthostkeychecking %s\n",
		   r.strict == -1 ? "ask" : r.strict == SHKC_YES ? "true" :
		   r.strict == SHKC_NO ? "false" : multistate_name(r.strict, ms_strict));
	buf_printf(&b, "numberofpasswordprompts %d\n", r.nprompts == -1 ? 3 : r.nprompts);
	buf_printf(&b, "serveralivecountmax %d\n", r.sacm == -1 ? 3 : r.sacm);
	/* Debian's ssh: BatchMode makes the default ServerAliveInterval 300 */
	buf_printf(&b, "serveraliveinterval %d\n",
		   r.sai != -1 ? r.sai : r.batch_mode == 1 ? 300 : 0);

	static const struct {
		const char *kw, *def, *all;
		size_t off;
	} algos[] = {
		{ "ciphers", def_ciphers, all_ciphers, offsetof(struct reader, ciphers) },
		{ "hostkeyalgorithms", def_hostkeys, all_keys, offsetof(struct reader, hka) },
		{ "kexalgorithms", def_kex, all_kex, offsetof(struct reader, kex) },
		{ "macs", def_macs, all_macs, offsetof(struct reader, macs) },
	};
	for (size_t i = 0; i < sizeof(algos) / sizeof(algos[0]); i++) {
		const char *spec = *(char **)((char *)&r + algos[i].off);
		char *list = assemble_names(spec, algos[i].def, algos[i].all);
		if (list == NULL) {
			seterr(err, errlen, "%s: no algorithms left in '%s'", algos[i].kw, spec);
			goto out;
		}
		buf_printf(&b, "%s %s\n", algos[i].kw, list);
		free(list);
	}

	if (r.host_key_alias)
		buf_printf(&b, "hostkeyalias %s\n", r.host_key_alias);
	if (r.identity_agent) {
		char *x = client_expand(&ci, r.identity_agent, "IdentityAgent", err, errlen);
		if (x == NULL)
			goto out;
		buf_printf(&b, "identityagent %s\n", x);
		free(x);
	}
	for (int i = 0; i < r.idfiles.n; i++)
		buf_printf(&b, "identityfile %s\n", r.idfiles.v[i]);
	dump_list(&b, "globalknownhostsfile", &r.gkh);
	if (strcasecmp(r.ukh.v[0], "none") != 0) {
		for (int i = 0; i < r.ukh.n; i++) {
			char *x = client_expand(&ci, r.ukh.v[i], "UserKnownHostsFile", err, errlen);
			if (x == NULL)
				goto out;
			free(r.ukh.v[i]);
			r.ukh.v[i] = x;
		}
	}
	dump_list(&b, "userknownhostsfile", &r.ukh);
	if (r.connect_timeout == -1)
		buf_adds(&b, "connecttimeout none\n");
	else
		buf_printf(&b, "connecttimeout %d\n", r.connect_timeout);
	if (r.control_path && strcasecmp(r.control_path, "none") != 0) {
		char *x = client_expand(&ci, r.control_path, "ControlPath", err, errlen);
		if (x == NULL)
			goto out;
		buf_printf(&b, "controlpath %s\n", x);
		free(x);
	}
	if (r.control_master)
		buf_printf(&b, "controlmaster %s\n", r.control_master);
	if (r.control_persist <= 0)
		buf_adds(&b, "controlpersist no\n");
	else if (r.control_persist_timeout == 0)
		buf_adds(&b, "controlpersist yes\n");
	else
		buf_printf(&b, "controlpersist %d\n", r.control_persist_timeout);
	if (r.jump && strcasecmp(r.jump, "none") != 0)
		buf_printf(&b, "proxyjump %s\n", r.jump);
	else if (r.proxy_command && strcasecmp(r.proxy_command, "none") != 0)
		buf_printf(&b, "proxycommand %s\n", r.proxy_command);
	ret = buf_steal(&b);
out:
	free(b.s);
	free(hostname);
	reader_free(&r);
	return ret;
}

/* ------------------------------------------------------------------ */
/* ssh -G                                                              */

/* The full path of ssh on PATH, or NULL. */
static char *find_ssh(void)
{
	const char *path = getenv("PATH");
	struct stat st;

	if (path == NULL || *path == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	while (path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		char *cand = xmalloc(n + 8);
		if (n == 0)
			snprintf(cand, n + 8, "./ssh");
		else
			snprintf(cand, n + 8, "%.*s/ssh", (int)n, path);
		if (access(cand, X_OK) == 0 && stat(cand, &st) == 0 && S_ISREG(st.st_mode))
			return cand;
		free(cand);
		path = end ? end + 1 : NULL;
	}
	return NULL;
}

/* The line of ssh's stderr that says what went wrong. */
static void ssh_error_line(char *text, int status, char *err, size_t errlen)
{
	char *save = NULL;

	for (char *l = strtok_r(text, "\r\n", &save); l; l = strtok_r(NULL, "\r\n", &save)) {
		/* not the error: the tty notice, and warnings ssh goes on after */
		if (*l == '\0' || strncmp(l, "Pseudo-terminal will not be allocated", 37) == 0 ||
		    strstr(l, ": Unsupported option \"") != NULL)
			continue;
		/* drop a C function name ssh puts first ("percent_expand: ...") */
		size_t fn = strspn(l, "abcdefghijklmnopqrstuvwxyz0123456789_");
		if (fn > 0 && strncmp(l + fn, ": ", 2) == 0 && l[fn + 2] != '\0')
			l += fn + 2;
		seterr(err, errlen, "%s", l);
		return;
	}
	if (WIFEXITED(status))
		seterr(err, errlen, "ssh -G failed (exit status %d)", WEXITSTATUS(status));
	else
		seterr(err, errlen, "ssh -G failed (signal %d)", WTERMSIG(status));
}

/* ssh -G's output, or NULL with the error; *fallback says ssh could not
 * run or does not know -G (then the built-in reader should answer). */
static char *ssh_g(const char *ssh, const char *user, const char *host,
		   const struct target_options *o, bool *fallback, char *err, size_t errlen)
{
	int out[2] = { -1, -1 }, errp[2] = { -1, -1 }, devnull = -1, status = 0;
	const char **argv = xmalloc(sizeof(*argv) * (size_t)(12 + 2 * (o ? o->n : 0)));
	int ac = 0;
	struct buf ob = { 0 }, eb = { 0 };
	char *ret = NULL;
	pid_t pid;

	argv[ac++] = "ssh";
	argv[ac++] = "-G";
	argv[ac++] = "-T";
	if (o && o->config_file) {
		argv[ac++] = "-F";
		argv[ac++] = o->config_file;
	}
	if (user) {
		argv[ac++] = "-l";
		argv[ac++] = user;
	}
	for (int i = 0; o && i < o->n; i++) {
		argv[ac++] = "-o";
		argv[ac++] = o->opts[i];
	}
	argv[ac++] = "--";
	argv[ac++] = host;
	argv[ac] = NULL;

	if (pipe2(out, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 ||
	    (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		seterr(err, errlen, "ssh -G: %s", strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		seterr(err, errlen, "ssh -G: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		if (dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(127);
		execv(ssh, (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	close(errp[1]);
	out[1] = errp[1] = -1;

	struct pollfd pfd[2] = { { out[0], POLLIN, 0 }, { errp[0], POLLIN, 0 } };
	int open_fds = 2;
	bool too_much = false;
	while (open_fds > 0) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char chunk[4096];
			ssize_t n = read(pfd[i].fd, chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				pfd[i].fd = -1;
				open_fds--;
				continue;
			}
			struct buf *b = i == 0 ? &ob : &eb;
			if (b->len + (size_t)n > MAX_SSH_OUTPUT)
				too_much = true;
			else
				buf_add(b, chunk, (size_t)n);
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (too_much) {
		seterr(err, errlen, "ssh -G: too much output");
		goto out;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if ((WIFEXITED(status) && WEXITSTATUS(status) == 127 && eb.len == 0) ||
		    (eb.s && (strstr(eb.s, "option -- G") || strstr(eb.s, "option -- 'G'")))) {
			*fallback = true;
			seterr(err, errlen, "%s does not support -G", ssh);
		} else {
			ssh_error_line(eb.s ? eb.s : (char *)"", status, err, errlen);
		}
		goto out;
	}
	ret = buf_steal(&ob);
out:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	if (devnull >= 0)
		close(devnull);
	free(ob.s);
	free(eb.s);
	free(argv);
	return ret;
}

/* ------------------------------------------------------------------ */
/* From ssh -G's text to struct ssh_target                             */

struct dumped {
	char *user, *hostname, *port, *identitiesonly, *identityagent, *ukh, *gkh, *strict;
	char *checkhostip, *hostkeyalias, *batchmode, *pubkey, *password, *kbdint, *nprompts;
	char *proxycommand, *proxyjump, *af, *connecttimeout, *sai, *sacm, *compression;
	char *ciphers, *macs, *kex, *hka, *controlpath, *controlpersist, *controlmaster;
	const char *idfiles[MAX_IDENTITY_FILES];
	int n_idfiles;
};

static const struct {
	const char *kw;
	size_t off;
} dumped_fields[] = {
	{ "user", offsetof(struct dumped, user) },
	{ "hostname", offsetof(struct dumped, hostname) },
	{ "port", offsetof(struct dumped, port) },
	{ "identitiesonly", offsetof(struct dumped, identitiesonly) },
	{ "identityagent", offsetof(struct dumped, identityagent) },
	{ "userknownhostsfile", offsetof(struct dumped, ukh) },
	{ "globalknownhostsfile", offsetof(struct dumped, gkh) },
	{ "stricthostkeychecking", offsetof(struct dumped, strict) },
	{ "checkhostip", offsetof(struct dumped, checkhostip) },
	{ "hostkeyalias", offsetof(struct dumped, hostkeyalias) },
	{ "batchmode", offsetof(struct dumped, batchmode) },
	{ "pubkeyauthentication", offsetof(struct dumped, pubkey) },
	{ "passwordauthentication", offsetof(struct dumped, password) },
	{ "kbdinteractiveauthentication", offsetof(struct dumped, kbdint) },
	{ "numberofpasswordprompts", offsetof(struct dumped, nprompts) },
	{ "proxycommand", offsetof(struct dumped, proxycommand) },
	{ "proxyjump", offsetof(struct dumped, proxyjump) },
	{ "addressfamily", offsetof(struct dumped, af) },
	{ "connecttimeout", offsetof(struct dumped, connecttimeout) },
	{ "serveraliveinterval", offsetof(struct dumped, sai) },
	{ "serveralivecountmax", offsetof(struct dumped, sacm) },
	{ "compression", offsetof(struct dumped, compression) },
	{ "ciphers", offsetof(struct dumped, ciphers) },
	{ "macs", offsetof(struct dumped, macs) },
	{ "kexalgorithms", offsetof(struct dumped, kex) },
	{ "hostkeyalgorithms", offsetof(struct dumped, hka) },
	{ "controlpath", offsetof(struct dumped, controlpath) },
	{ "controlpersist", offsetof(struct dumped, controlpersist) },
	{ "controlmaster", offsetof(struct dumped, controlmaster) },
};

static bool parse_yesno(const char *v, bool def, bool *out)
{
	if (v == NULL) {
		*out = def;
		return true;
	}
	int x = multistate_value(v, ms_pubkey); /* yes/no/true/false (+ pubkey's) */
	if (x < 0)
		return false;
	*out = x != 0;
	return true;
}

/* ControlMaster as ssh -G prints it (or as written in a file): ask is yes
 * and autoask is auto, hashi having no one to ask. */
static int control_master_value(const char *v)
{
	if (v == NULL)
		return TARGET_CM_NO;
	if (strcasecmp(v, "auto") == 0 || strcasecmp(v, "autoask") == 0)
		return TARGET_CM_AUTO;
	if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "ask") == 0)
		return TARGET_CM_YES;
	return TARGET_CM_NO;
}

static bool parse_nonneg(const char *v, int def, int *out)
{
	long long x;
	const char *why;

	if (v == NULL) {
		*out = def;
		return true;
	}
	if (!str_to_num(v, 0, INT_MAX, &x, &why))
		return false;
	*out = (int)x;
	return true;
}

/* Split a space-separated list of files into t->known_hosts. */
static int add_known_hosts(struct ssh_target *t, char *list, char *err, size_t errlen)
{
	char *save = NULL;

	if (list == NULL)
		return 0;
	for (char *f = strtok_r(list, " ", &save); f; f = strtok_r(NULL, " ", &save)) {
		if (strcasecmp(f, "none") == 0)
			continue;
		if (t->n_known_hosts >= TARGET_MAX_LIST) {
			seterr(err, errlen, "too many known_hosts files (max %d)", TARGET_MAX_LIST);
			return -1;
		}
		char *x = tilde_expand(f, err, errlen);
		if (x == NULL)
			return -1;
		t->known_hosts[t->n_known_hosts++] = x;
	}
	return 0;
}

static int apply_dump(struct ssh_target *t, char *text, const char *host_arg, char *err,
		      size_t errlen)
{
	struct dumped d;
	char *save = NULL;
	struct conn_info ci;

	memset(&d, 0, sizeof(d));
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		size_t n = strlen(l);
		if (n && l[n - 1] == '\r')
			l[--n] = '\0';
		char *v = strchr(l, ' ');
		if (v == NULL)
			continue;
		*v++ = '\0';
		lowercase(l);
		if (strcmp(l, "identityfile") == 0) {
			if (strcasecmp(v, "none") == 0)
				continue;
			if (d.n_idfiles >= MAX_IDENTITY_FILES)
				continue;
			d.idfiles[d.n_idfiles++] = v;
			continue;
		}
		for (size_t i = 0; i < sizeof(dumped_fields) / sizeof(dumped_fields[0]); i++)
			if (strcmp(l, dumped_fields[i].kw) == 0) {
				char **f = (char **)((char *)&d + dumped_fields[i].off);
				if (*f == NULL)
					*f = v;
				break;
			}
	}
	if (d.hostname == NULL || d.user == NULL || d.port == NULL) {
		seterr(err, errlen, "ssh -G printed no hostname, user or port");
		return -1;
	}
	t->hostname = xstrdup(d.hostname);
	t->user = xstrdup(d.user);
	t->port = xstrdup(d.port);
	if (d.hostkeyalias)
		t->host_key_alias = xstrdup(d.hostkeyalias);
	if (conn_info_init(&ci, host_arg, t->hostname, t->port, t->user, t->host_key_alias, err,
			   errlen))
		return -1;

	for (int i = 0; i < d.n_idfiles; i++) {
		if (t->n_identity_files >= TARGET_MAX_LIST) {
			seterr(err, errlen, "too many identity files (max %d)", TARGET_MAX_LIST);
			return -1;
		}
		char *x = client_expand(&ci, d.idfiles[i], "IdentityFile", err, errlen);
		if (x == NULL)
			return -1;
		t->identity_files[t->n_identity_files++] = x;
	}

	/* as ssh: IdentityAgent's socket, else SSH_AUTH_SOCK's; "none" when
	 * the configuration turns the agent off, so that no one falls back to
	 * SSH_AUTH_SOCK */
	const char *agent = d.identityagent;
	if (agent == NULL || strcmp(agent, "SSH_AUTH_SOCK") == 0) {
		agent = getenv("SSH_AUTH_SOCK");
		if (agent != NULL && *agent == '\0')
			agent = NULL;
	} else if (agent[0] == '$' && agent[1] != '{') {
		agent = getenv(agent + 1);
		if (agent == NULL || *agent == '\0')
			agent = "none";
	}
	t->identity_agent = agent ? xstrdup(agent) : NULL;

	if (add_known_hosts(t, d.ukh, err, errlen))
		return -1;
	t->n_user_known_hosts = t->n_known_hosts;
	if (add_known_hosts(t, d.gkh, err, errlen))
		return -1;

	const char *bad = NULL;
	int strict = d.strict ? multistate_value(d.strict, ms_strict) : SHKC_ASK;
	if (strict < 0)
		bad = "stricthostkeychecking";
	else
		t->strict = (enum strict_host_key_checking)strict;
	if (!parse_yesno(d.identitiesonly, false, &t->identities_only))
		bad = "identitiesonly";
	if (!parse_yesno(d.checkhostip, false, &t->check_host_ip))
		bad = "checkhostip";
	if (!parse_yesno(d.batchmode, false, &t->batch_mode))
		bad = "batchmode";
	if (!parse_yesno(d.pubkey, true, &t->pubkey_auth))
		bad = "pubkeyauthentication";
	if (!parse_yesno(d.password, true, &t->password_auth))
		bad = "passwordauthentication";
	if (!parse_yesno(d.kbdint, true, &t->kbdint_auth))
		bad = "kbdinteractiveauthentication";
	if (!parse_yesno(d.compression, false, &t->compression))
		bad = "compression";
	if (!parse_nonneg(d.nprompts, 3, &t->number_of_password_prompts))
		bad = "numberofpasswordprompts";
	if (!parse_nonneg(d.sai, 0, &t->server_alive_interval))
		bad = "serveraliveinterval";
	if (!parse_nonneg(d.sacm, 3, &t->server_alive_count_max))
		bad = "serveralivecountmax";
	if (d.connecttimeout == NULL || strcmp(d.connecttimeout, "none") == 0)
		t->connect_timeout = 0;
	else if (!parse_nonneg(d.connecttimeout, 0, &t->connect_timeout))
		bad = "connecttimeout";
	if (d.af == NULL)
		t->address_family = AF_UNSPEC;
	else if ((t->address_family = multistate_value(d.af, ms_af)) < 0)
		bad = "addressfamily";
	if (d.controlpersist == NULL || strcmp(d.controlpersist, "no") == 0 ||
	    strcmp(d.controlpersist, "false") == 0)
		t->control_persist = -1;
	else if (strcmp(d.controlpersist, "yes") == 0 || strcmp(d.controlpersist, "true") == 0)
		t->control_persist = 0;
	else if (!parse_nonneg(d.controlpersist, 0, &t->control_persist))
		bad = "controlpersist";
	if (bad) {
		seterr(err, errlen, "ssh -G: unexpected value for %s", bad);
		return -1;
	}

	if (d.proxyjump && strcasecmp(d.proxyjump, "none") != 0)
		t->proxy_jump = xstrdup(d.proxyjump);
	else if (d.proxycommand && strcasecmp(d.proxycommand, "none") != 0) {
		const struct token toks[] = {
			{ 'h', t->hostname }, { 'k', ci.keyalias }, { 'n', host_arg },
			{ 'p', t->port }, { 'r', t->user },
		};
		t->proxy_command = percent_expand(d.proxycommand, toks, 5, false, "ProxyCommand",
						  err, errlen);
		if (t->proxy_command == NULL)
			return -1;
	}
	if (d.controlpath && strcasecmp(d.controlpath, "none") != 0)
		t->control_path = xstrdup(d.controlpath);
	t->control_master = control_master_value(d.controlmaster);
	if (d.ciphers)
		t->ciphers = xstrdup(d.ciphers);
	if (d.macs)
		t->macs = xstrdup(d.macs);
	if (d.kex)
		t->kex_algorithms = xstrdup(d.kex);
	if (d.hka)
		t->host_key_algorithms = xstrdup(d.hka);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The public functions                                                */

int target_split(const char *spec, char **user, char **host, char **dir, char *err, size_t errlen)
{
	const char *p, *colon = NULL, *at = NULL;
	bool bracket = false;

	*user = *host = *dir = NULL;
	if (spec == NULL)
		spec = "";
	/* the first ':' outside [...] ends [user@]host */
	for (p = spec; *p; p++) {
		if (*p == '[')
			bracket = true;
		else if (*p == ']')
			bracket = false;
		else if (*p == ':' && !bracket) {
			colon = p;
			break;
		}
	}
	if (colon == NULL && bracket) {
		seterr(err, errlen, "invalid remote '%s': unterminated '[' in host name", spec);
		return -1;
	}
	if (colon == NULL) {
		seterr(err, errlen, "invalid remote '%s': expected [user@]host:[dir] (missing ':')",
		       spec);
		return -1;
	}
	/* ssh takes the last '@' before the host */
	for (p = spec; p < colon; p++)
		if (*p == '@')
			at = p;
	const char *h = at ? at + 1 : spec;
	size_t hl = (size_t)(colon - h);
	if (at && at == spec) {
		seterr(err, errlen, "invalid remote '%s': empty user name", spec);
		return -1;
	}
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0) {
		seterr(err, errlen, "invalid remote '%s': empty host name", spec);
		return -1;
	}
	if (memchr(h, '[', hl) || memchr(h, ']', hl)) {
		seterr(err, errlen, "invalid remote '%s': bad brackets in host name", spec);
		return -1;
	}
	if (h[0] == '-') {
		seterr(err, errlen, "invalid remote '%s': host name may not begin with '-'", spec);
		return -1;
	}
	for (size_t i = 0; i < hl; i++)
		if (isspace((unsigned char)h[i]) || iscntrl((unsigned char)h[i])) {
			seterr(err, errlen, "invalid remote '%s': blank or control character in host name",
			       spec);
			return -1;
		}
	if (at)
		*user = xstrndup(spec, (size_t)(at - spec));
	*host = xstrndup(h, hl);
	*dir = xstrdup(colon + 1);
	return 0;
}

/* hashi's own -o options, which never reach ssh: true if opt is one. */
static bool hashi_option(struct ssh_target *t, const char *opt)
{
	size_t n = strcspn(opt, "= \t");
	const char *v = opt + n;

	v += strspn(v, " \t");
	if (*v == '=')
		v++;
	v += strspn(v, " \t");
	if (n == 11 && strncasecmp(opt, "sftp_server", n) == 0) {
		free(t->sftp_server);
		t->sftp_server = *v ? xstrdup(v) : NULL;
		return true;
	}
	if (n == 14 && strncasecmp(opt, "password_stdin", n) == 0) {
		t->password_stdin = *v == '\0' || multistate_value(v, ms_flag) != 0;
		return true;
	}
	return false;
}

/* The first -o value of keyword kw (as ssh keeps it), or NULL. */
static const char *first_opt(const struct target_options *o, const char *kw)
{
	size_t n = strlen(kw);
	for (int i = 0; o != NULL && i < o->n; i++) {
		const char *s = o->opts[i];
		if (s == NULL || strncasecmp(s, kw, n) != 0 || strchr("= \t", s[n]) == NULL ||
		    s[n] == '\0')
			continue;
		s += n + strspn(s + n, " \t");
		if (*s == '=')
			s++;
		return s + strspn(s, " \t");
	}
	return NULL;
}

bool target_cmdline_control(const struct target_options *o, char **cp, int *cm)
{
	const char *p = first_opt(o, "ControlPath"), *m = first_opt(o, "ControlMaster");
	if (p == NULL || m == NULL || p[0] != '/' || strpbrk(p, "%~\"' \t") != NULL)
		return false;
	if (strcasecmp(m, "auto") == 0 || strcasecmp(m, "autoask") == 0)
		*cm = TARGET_CM_AUTO;
	else if (strcasecmp(m, "no") == 0 || strcasecmp(m, "false") == 0)
		*cm = TARGET_CM_NO;
	else
		return false;
	*cp = xstrdup(p);
	return true;
}

int target_resolve(struct ssh_target *t, const char *user, const char *host, const char *dir,
		   const struct target_options *o, char *err, size_t errlen)
{
	struct target_options ssh_opts;
	char *text = NULL, *ssh = NULL;
	const char *no_g = getenv("HASHI_NO_SSH_G");
	int rc = -1;

	memset(t, 0, sizeof(*t));
	memset(&ssh_opts, 0, sizeof(ssh_opts));
	if (host == NULL || *host == '\0') {
		seterr(err, errlen, "no host name");
		return -1;
	}
	if (host[0] == '-') {
		seterr(err, errlen, "host name '%s' may not begin with '-'", host);
		return -1;
	}
	if (user && *user == '\0')
		user = NULL;
	if (o) {
		ssh_opts.config_file = o->config_file;
		if (o->config_file && !(t->config_file = strdup(o->config_file))) {
			seterr(err, errlen, "out of memory");
			return -1;
		}
		for (int i = 0; i < o->n && i < (int)(sizeof(o->opts) / sizeof(o->opts[0])); i++) {
			if (o->opts[i] == NULL || hashi_option(t, o->opts[i]))
				continue;
			ssh_opts.opts[ssh_opts.n++] = o->opts[i];
		}
	}
	t->host_arg = xstrdup(host);
	t->dir = xstrdup(dir ? dir : "");

	if (!(no_g && *no_g && strcmp(no_g, "0") != 0))
		ssh = find_ssh();
	if (ssh) {
		bool fallback = false;
		log_debug("resolving %s with %s -G", host, ssh);
		text = ssh_g(ssh, user, host, &ssh_opts, &fallback, err, errlen);
		if (text == NULL && fallback) {
			log_debug("%s; using the built-in ssh_config reader", err);
			text = builtin_resolve(user, host, &ssh_opts, err, errlen);
		}
	} else {
		log_debug("resolving %s with the built-in ssh_config reader", host);
		text = builtin_resolve(user, host, &ssh_opts, err, errlen);
	}
	if (text == NULL)
		goto out;
	rc = apply_dump(t, text, host, err, errlen);
out:
	free(text);
	free(ssh);
	if (rc != 0) {
		target_free(t);
		memset(t, 0, sizeof(*t));
	}
	return rc;
}

void target_free(struct ssh_target *t)
{
	if (t == NULL)
		return;
	free(t->host_arg);
	free(t->config_file);
	free(t->hostname);
	free(t->user);
	free(t->port);
	free(t->dir);
	for (int i = 0; i < t->n_identity_files; i++)
		free(t->identity_files[i]);
	free(t->identity_agent);
	for (int i = 0; i < t->n_known_hosts; i++)
		free(t->known_hosts[i]);
	free(t->host_key_alias);
	free(t->proxy_command);
	free(t->proxy_jump);
	free(t->ciphers);
	free(t->macs);
	free(t->kex_algorithms);
	free(t->host_key_algorithms);
	free(t->control_path);
	free(t->sftp_server);
	if (t->password) {
		explicit_bzero(t->password, strlen(t->password));
		free(t->password);
	}
	memset(t, 0, sizeof(*t));
}
