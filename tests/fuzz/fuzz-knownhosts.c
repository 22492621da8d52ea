/*
 * libFuzzer target for fuse/transport/knownhosts.c: the input is a
 * known_hosts file.
 *
 * Input format:
 *   byte 0    bits 0-1: the server's key (0 ssh-ed25519, 1 ssh-rsa,
 *                       2 ecdsa-sha2-nistp256, 3 a malformed blob)
 *             bits 2-3: the name looked up (0 "host.example.com",
 *                       1 "[host.example.com]:2222", 2 "192.0.2.7",
 *                       3 "HOST.Example.COM")
 *   the rest  the file
 *
 * The file lives in a memfd (nothing on disk, nothing left behind however the
 * process ends), named as ~/N with HOME=/proc/self/fd, N its descriptor;
 * the list of files also names one that does not exist and a fixed second
 * file (another memfd). Each input runs
 * knownhosts_check, knownhosts_host_key_types, knownhosts_other_names,
 * then knownhosts_add of the key for the name and knownhosts_check again;
 * and over the raw bytes knownhosts_match_hosts, the base64 decoder and
 * encoder, knownhosts_blob_type, knownhosts_fingerprint and
 * knownhosts_expand_tilde.
 *
 * Checked besides the sanitizers: a result names a file of the list and a
 * line that exists (none for NEW); a key that is OK or CHANGED has its type
 * among the host's key types; after knownhosts_add the key is OK (or still
 * REVOKED); matching ignores the name's case; base64 decoding what was
 * encoded gives the bytes back; blob types are printable and as long as
 * the blob says.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "knownhosts.h"

#include "fuzz-common.h"


static int kh_fd = -1, global_fd = -1;
static char kh_path[64], kh_tilde[32], global_path[64];
static char *files[3];

static const char *const names[4] = {
	"host.example.com", "[host.example.com]:2222", "192.0.2.7", "HOST.Example.COM",
};

struct blob {
	unsigned char b[160];
	size_t len;
};
static struct blob keys[4];

static void blob_put(struct blob *k, const void *p, size_t n)
{
	CHECK(k->len + 4 + n <= sizeof(k->b));
	k->b[k->len++] = (unsigned char)(n >> 24);
	k->b[k->len++] = (unsigned char)(n >> 16);
	k->b[k->len++] = (unsigned char)(n >> 8);
	k->b[k->len++] = (unsigned char)n;
	memcpy(k->b + k->len, p, n);
	k->len += n;
}

static void make_keys(void)
{
	unsigned char raw[65];
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(i * 37 + 11);
	blob_put(&keys[0], "ssh-ed25519", 11);
	blob_put(&keys[0], raw, 32);
	blob_put(&keys[1], "ssh-rsa", 7);
	blob_put(&keys[1], "\x01\x00\x01", 3);
	blob_put(&keys[1], raw, 65);
	blob_put(&keys[2], "ecdsa-sha2-nistp256", 19);
	blob_put(&keys[2], "nistp256", 8);
	raw[0] = 4;
	blob_put(&keys[2], raw, 65);
	memcpy(keys[3].b, "\0\0\0\x40ssh", 7); /* the type runs past the end */
	keys[3].len = 7;
}

/* Replace the contents of memfd fd. */
static void set_file(int fd, const void *data, size_t len)
{
	CHECK(ftruncate(fd, 0) == 0);
	const char *p = data;
	off_t off = 0;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		CHECK(n > 0);
		p += n;
		off += n;
		len -= (size_t)n;
	}
}

static int new_memfd(const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(fchmod(fd, 0600) == 0);
	return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	CHECK(access("/proc/self/fd", F_OK) == 0);
	kh_fd = new_memfd("hashi-fuzz-known_hosts");
	global_fd = new_memfd("hashi-fuzz-global");
	CHECK(setenv("HOME", "/proc/self/fd", 1) == 0);
	snprintf(kh_path, sizeof(kh_path), "/proc/self/fd/%d", kh_fd);
	snprintf(kh_tilde, sizeof(kh_tilde), "~/%d", kh_fd);
	snprintf(global_path, sizeof(global_path), "/proc/self/fd/%d", global_fd);
	files[0] = kh_tilde;
	files[1] = (char *)"/nonexistent/hashi-fuzz/known_hosts";
	files[2] = global_path;
	make_keys();

	/* The second file: the ed25519 key under other names, a CA line. */
	char b64[512], text[2048];
	CHECK(knownhosts_base64_encode(keys[0].b, keys[0].len, b64, sizeof(b64), true) > 0);
	snprintf(text, sizeof(text),
		 "# global\n"
		 "other.example.org,10.1.2.3 ssh-ed25519 %s\n"
		 "@cert-authority *.example.com ssh-ed25519 %s\n"
		 "|1|AAAAAAAAAAAAAAAAAAAAAAAAAAA=|AAAAAAAAAAAAAAAAAAAAAAAAAAA= ssh-ed25519 %s\n",
		 b64, b64, b64);
	set_file(global_fd, text, strlen(text));
	return 0;
}

/* How many lines getline() sees in these bytes. */
static unsigned long count_lines(const uint8_t *p, size_t n)
{
	unsigned long lines = 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\n')
			lines++;
	if (n > 0 && p[n - 1] != '\n')
		lines++;
	return lines;
}

static unsigned long global_lines = 4;

static void check_result(const struct knownhosts_result *res, enum knownhosts_status st,
			 unsigned long kh_lines)
{
	CHECK(res->status == st);
	CHECK(st == KNOWNHOSTS_NEW || st == KNOWNHOSTS_OK || st == KNOWNHOSTS_CHANGED ||
	      st == KNOWNHOSTS_REVOKED);
	CHECK(memchr(res->file, '\0', sizeof(res->file)) != NULL);
	if (st == KNOWNHOSTS_NEW) {
		CHECK(res->file[0] == '\0' && res->line == 0);
		return;
	}
	if (strcmp(res->file, kh_path) == 0) {
		CHECK(res->line >= 1 && res->line <= kh_lines);
	} else {
		if (strcmp(res->file, global_path) != 0)
			fprintf(stderr, "result names file \"%s\"\n", res->file);
		CHECK(strcmp(res->file, global_path) == 0);
		CHECK(res->line >= 1 && res->line <= global_lines);
	}
}

#define MAX_TYPES 16

static bool has_type(char types[][64], int n, const char *t)
{
	for (int i = 0; i < n; i++)
		if (strcmp(types[i], t) == 0)
			return true;
	return false;
}

static void check_base64(const uint8_t *data, size_t size)
{
	/* Decode the bytes as base64, encode that, decode again. */
	size_t cap = size;
	unsigned char *dec = malloc(cap + 1);
	char *enc = malloc(cap * 4 / 3 + 8);
	unsigned char *dec2 = malloc(cap + 1);
	CHECK(dec && enc && dec2);
	long n = knownhosts_base64_decode((const char *)data, size, dec, cap);
	CHECK(n >= -1 && n <= (long)cap);
	if (n >= 0) {
		long e = knownhosts_base64_encode(dec, (size_t)n, enc, cap * 4 / 3 + 8,
						  size > 0 && data[size - 1] == '=');
		CHECK(e >= 0 && (size_t)e == strlen(enc));
		long m = knownhosts_base64_decode(enc, (size_t)e, dec2, cap);
		CHECK(m == n && memcmp(dec, dec2, (size_t)n) == 0);
	}
	/* Encode the bytes (with and without padding), decode them back; a
	 * buffer too small is refused, not overrun. */
	for (int pad = 0; pad < 2; pad++) {
		size_t ecap = (size + 2) / 3 * 4 + 1;
		char *e2 = malloc(ecap);
		unsigned char *back = malloc(size + 1);
		CHECK(e2 && back);
		long e = knownhosts_base64_encode(data, size, e2, ecap, pad);
		CHECK(e >= 0 && (size_t)e == strlen(e2));
		CHECK(pad ? (size_t)e == ecap - 1 : (size_t)e == (size * 4 + 2) / 3);
		long m = knownhosts_base64_decode(e2, (size_t)e, back, size);
		CHECK(m == (long)size && memcmp(back, data, size) == 0);
		if (size > 0)
			CHECK(knownhosts_base64_decode(e2, (size_t)e, back, size - 1) == -1);
		CHECK(knownhosts_base64_encode(data, size, e2, (size_t)e, pad) == -1);
		free(e2);
		free(back);
	}
	free(dec);
	free(enc);
	free(dec2);
}

static void check_blob_helpers(const uint8_t *data, size_t size)
{
	char type[64];
	const char *t = knownhosts_blob_type(data, size, type, sizeof(type));
	CHECK(t == type && strlen(type) < sizeof(type));
	if (type[0]) {
		size_t l = strlen(type);
		CHECK(size >= 4 + l);
		CHECK((((uint32_t)data[0] << 24) | ((uint32_t)data[1] << 16) |
		       ((uint32_t)data[2] << 8) | data[3]) == l);
		for (size_t i = 0; i < l; i++)
			CHECK(isgraph((unsigned char)type[i]));
		CHECK(knownhosts_type_label(type) != NULL);
	}
	char fp[80];
	knownhosts_fingerprint(data, size, fp, sizeof(fp));
	CHECK(strncmp(fp, "SHA256:", 7) == 0 && strlen(fp) == 7 + 43);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const struct blob *key = &keys[data[0] & 3];
	const char *name = names[(data[0] >> 2) & 3];
	const uint8_t *text = data + 1;
	size_t len = size - 1;
	const unsigned long kh_lines = count_lines(text, len);
	char keytype[64];
	knownhosts_blob_type(key->b, key->len, keytype, sizeof(keytype));

	set_file(kh_fd, text, len);

	struct knownhosts_result res;
	enum knownhosts_status st = knownhosts_check(files, 3, name, key->b, key->len, &res);
	check_result(&res, st, kh_lines);

	char types[MAX_TYPES][64];
	int nt = knownhosts_host_key_types(files, 3, name, types, MAX_TYPES);
	CHECK(nt >= 0 && nt <= MAX_TYPES);
	for (int i = 0; i < nt; i++) {
		CHECK(types[i][0] != '\0' && strlen(types[i]) < 64);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(types[i], types[j]) != 0);
	}
	if (nt < MAX_TYPES) {
		if (st == KNOWNHOSTS_OK || st == KNOWNHOSTS_CHANGED)
			CHECK(keytype[0] && has_type(types, nt, keytype));
		if (res.other_types_known) {
			bool other = false;
			for (int i = 0; i < nt; i++)
				other |= strcmp(types[i], keytype) != 0;
			CHECK(other);
		}
	}

	char other[1024];
	knownhosts_other_names(files, 3, name, key->b, key->len, other, sizeof(other));
	CHECK(memchr(other, '\0', sizeof(other)) != NULL);
	CHECK(strncmp(other, "This ", 5) == 0);

	/* Add the key under the name: from then on it is known. */
	if (knownhosts_add(files[0], name, key->b, key->len) == 0) {
		CHECK(keytype[0] != '\0');
		struct knownhosts_result res2;
		unsigned long lines2 = kh_lines + 1; /* the line added (after a "\n" if needed) */
		enum knownhosts_status st2 =
			knownhosts_check(files, 3, name, key->b, key->len, &res2);
		check_result(&res2, st2, lines2);
		if (st2 != KNOWNHOSTS_OK && st2 != KNOWNHOSTS_REVOKED) {
			fprintf(stderr, "after knownhosts_add(\"%s\"): status %d\n", name, (int)st2);
			CHECK(st2 == KNOWNHOSTS_OK || st2 == KNOWNHOSTS_REVOKED);
		}
		CHECK((st2 == KNOWNHOSTS_REVOKED) == (st == KNOWNHOSTS_REVOKED));
	} else {
		CHECK(keytype[0] == '\0');
	}

	/* The raw bytes as a pattern list, against each name: the case of the
	 * name does not matter. */
	int m0 = knownhosts_match_hosts((const char *)text, len, "host.example.com");
	int m3 = knownhosts_match_hosts((const char *)text, len, "HOST.Example.COM");
	CHECK(m0 >= -1 && m0 <= 1 && m0 == m3);
	int m1 = knownhosts_match_hosts((const char *)text, len, name);
	CHECK(m1 >= -1 && m1 <= 1);
	/* The first line's first field, as the file reader cuts it. */
	size_t fl = 0;
	while (fl < len && text[fl] != ' ' && text[fl] != '\t' && text[fl] != '\n' &&
	       text[fl] != '\r' && text[fl] != '\0')
		fl++;
	int m2 = knownhosts_match_hosts((const char *)text, fl, name);
	CHECK(m2 >= -1 && m2 <= 1);

	check_base64(text, len);
	check_blob_helpers(text, len);

	char *path = malloc(len + 1);
	CHECK(path != NULL);
	memcpy(path, text, len);
	path[len] = '\0';
	char out[256];
	CHECK(knownhosts_expand_tilde(path, out, sizeof(out)) == out);
	CHECK(strlen(out) < sizeof(out));
	free(path);
	return 0;
}
