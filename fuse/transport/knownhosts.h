/*
 * known_hosts files as OpenSSH reads them: plain and hashed (|1|salt|hash)
 * host patterns with wildcards and negation, [host]:port names, and the
 * @revoked and @cert-authority markers (which libssh2's own knownhost API
 * does not understand). Keys are compared as raw public key blobs, so any
 * key type works, including ones libssh2 cannot use.
 *
 * Knows nothing of libssh2: the caller passes the server's key blob.
 */
#ifndef HASHI_KNOWNHOSTS_H
#define HASHI_KNOWNHOSTS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

enum knownhosts_status {
	KNOWNHOSTS_NEW = 0, /* no line names this host with a key of this type */
	KNOWNHOSTS_OK,      /* a line names this host with exactly this key */
	KNOWNHOSTS_CHANGED, /* lines name this host with another key of this type */
	KNOWNHOSTS_REVOKED, /* an @revoked line holds this key */
};

struct knownhosts_result {
	enum knownhosts_status status;
	/* OK: the matching line; CHANGED: the first offending line;
	 * REVOKED: the @revoked line. */
	char file[PATH_MAX];
	unsigned long line;
	/* NEW: some line names this host with a key of another type. */
	bool other_types_known;
};

/* Check the key blob (SSH wire format: string type, then the key) for name,
 * which is "host" or "[host]:port" as it appears in known_hosts. Files that
 * do not exist are skipped; a leading "~/" is expanded. */
enum knownhosts_status knownhosts_check(char *const files[], int nfiles, const char *name,
					const unsigned char *blob, size_t bloblen,
					struct knownhosts_result *res);

/* The distinct key types ("ssh-ed25519", "ecdsa-sha2-nistp256", ...) that
 * plain (unmarked) lines name for this host, in file order, at most max.
 * Returns how many. Used to prefer host key algorithms we can verify. */
int knownhosts_host_key_types(char *const files[], int nfiles, const char *name,
			      char types[][64], int max);

/* OpenSSH's "other names" text for a new key: "This key is not known by any
 * other names." or "This host key is known by the following other
 * names/addresses:\n    ~/.ssh/known_hosts:3: host2" ... Written into out. */
void knownhosts_other_names(char *const files[], int nfiles, const char *name,
			    const unsigned char *blob, size_t bloblen, char *out, size_t outlen);

/* Append "names keytype base64" to file (creating it 0600, and its directory
 * 0700 if that is missing). Returns 0, or -1 with errno set. */
int knownhosts_add(const char *file, const char *names, const unsigned char *blob,
		   size_t bloblen);

/* The key type string at the front of a blob, copied into out; "" if the
 * blob is malformed. */
const char *knownhosts_blob_type(const unsigned char *blob, size_t bloblen, char *out,
				 size_t outlen);
/* OpenSSH's short name for a key type: "ED25519", "ECDSA", "RSA", "DSA",
 * "ED25519-SK", "ECDSA-SK", else the type itself. */
const char *knownhosts_type_label(const char *keytype);
/* "SHA256:<base64 without padding>" of the blob. */
void knownhosts_fingerprint(const unsigned char *blob, size_t bloblen, char *out, size_t outlen);

/* Does name match an OpenSSH host pattern list ("a,*.b,!c.b", or a hashed
 * "|1|salt|hash")? 1 = yes, 0 = no, -1 = a negated pattern matched. */
int knownhosts_match_hosts(const char *patterns, size_t patlen, const char *name);

/* Base64 (standard alphabet, padding optional, no whitespace). Returns the
 * decoded length, or -1 on bad input or if out is too small. */
long knownhosts_base64_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen);
/* Returns the encoded length (without the NUL written after it), or -1 if
 * out is too small. pad: add '=' padding. */
long knownhosts_base64_encode(const unsigned char *in, size_t inlen, char *out, size_t outlen,
			      bool pad);

/* "~/x" -> "$HOME/x"; other paths copied. Returns out. */
const char *knownhosts_expand_tilde(const char *path, char *out, size_t outlen);

#endif
