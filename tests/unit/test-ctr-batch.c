/* fuse/transport/ctr-batch.c: AES-CTR contexts set up with EVP_CipherInit
 * (as libssh2 1.10 does) get their keystream in batches; every output byte
 * must equal what libcrypto alone gives for the same key, IV and calls.
 * The reference contexts are set up with EVP_CipherInit_ex, which the file
 * does not intercept, so they run on libcrypto alone. */
#include "transport-int.h"

#include <glib.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define TOTAL (1024 * 1024 + 7)

/* Feed the same bytes, cut in the same varying pieces, to both contexts. */
static void same_stream(EVP_CIPHER_CTX *mine, EVP_CIPHER_CTX *ref, GRand *r, size_t total)
{
	unsigned char *in = g_malloc(total), *a = g_malloc(total), *b = g_malloc(total);
	for (size_t i = 0; i < total; i++)
		in[i] = (unsigned char)g_rand_int(r);
	for (size_t off = 0; off < total;) {
		/* mostly single blocks, as libssh2 calls it, and odd sizes */
		size_t n = g_rand_int_range(r, 0, 4) ? 16 : (size_t)g_rand_int_range(r, 1, 40000);
		if (n > total - off)
			n = total - off;
		g_assert_cmpint(EVP_Cipher(mine, a + off, in + off, (unsigned)n), !=, -1);
		g_assert_cmpint(EVP_Cipher(ref, b + off, in + off, (unsigned)n), !=, -1);
		off += n;
	}
	g_assert_true(memcmp(a, b, total) == 0);
	g_assert_true(memcmp(a, in, total) != 0);
	g_free(in);
	g_free(a);
	g_free(b);
}

static void check_cipher(const EVP_CIPHER *c, int enc, gboolean batched)
{
	unsigned char key[32], iv[16];
	GRand *r = g_rand_new_with_seed(42);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)g_rand_int(r);
	for (size_t i = 0; i < sizeof(iv); i++)
		iv[i] = (unsigned char)(0xf0 + i); /* the counter carries across bytes */
	int before = transport_ctr_batched();
	EVP_CIPHER_CTX *mine = EVP_CIPHER_CTX_new(), *ref = EVP_CIPHER_CTX_new();
	g_assert_cmpint(EVP_CipherInit(mine, c, key, iv, enc), ==, 1);
	g_assert_cmpint(EVP_CipherInit_ex(ref, c, NULL, key, iv, enc), ==, 1);
	g_assert_cmpint(transport_ctr_batched(), ==, before + (batched ? 1 : 0));
	same_stream(mine, ref, r, EVP_CIPHER_CTX_get_block_size(mine) == 1 ? TOTAL : TOTAL - 7);

	/* A new key on the same context (a rekey) starts from the new key's
	 * keystream, not from what was computed ahead for the old one. */
	key[0] ^= 1;
	g_assert_cmpint(EVP_CipherInit(mine, c, key, iv, enc), ==, 1);
	g_assert_cmpint(EVP_CipherInit_ex(ref, c, NULL, key, iv, enc), ==, 1);
	g_assert_cmpint(transport_ctr_batched(), ==, before + (batched ? 1 : 0));
	same_stream(mine, ref, r, 4096);

	EVP_CIPHER_CTX_free(mine);
	EVP_CIPHER_CTX_free(ref);
	g_assert_cmpint(transport_ctr_batched(), ==, before);
	g_rand_free(r);
}

static void test_ctr(void)
{
	check_cipher(EVP_aes_128_ctr(), 1, TRUE);
	check_cipher(EVP_aes_128_ctr(), 0, TRUE);
	check_cipher(EVP_aes_192_ctr(), 1, TRUE);
	check_cipher(EVP_aes_256_ctr(), 0, TRUE);
}

/* Other modes pass straight through. */
static void test_cbc_untouched(void)
{
	check_cipher(EVP_aes_128_cbc(), 1, FALSE);
	check_cipher(EVP_aes_256_cbc(), 0, FALSE);
}

/* Many contexts at once (several sessions, one per I/O thread). */
static void test_many(void)
{
	unsigned char key[16] = { 1 }, iv[16] = { 2 };
	EVP_CIPHER_CTX *c[8];
	for (int i = 0; i < 8; i++) {
		c[i] = EVP_CIPHER_CTX_new();
		iv[15] = (unsigned char)i;
		g_assert_cmpint(EVP_CipherInit(c[i], EVP_aes_128_ctr(), key, iv, 1), ==, 1);
	}
	g_assert_cmpint(transport_ctr_batched(), ==, 8);
	for (int i = 0; i < 8; i++)
		EVP_CIPHER_CTX_free(c[i]);
	g_assert_cmpint(transport_ctr_batched(), ==, 0);
}

/* A reset context is a plain one again: reused through EVP_CipherInit_ex
 * it must give libcrypto's bytes, not the old batch's. */
static void test_reset(void)
{
	unsigned char key[16] = { 3 }, iv[16] = { 4 }, in[64] = { 0 }, a[64], b[64];
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new(), *ref = EVP_CIPHER_CTX_new();
	g_assert_cmpint(EVP_CipherInit(c, EVP_aes_128_ctr(), key, iv, 1), ==, 1);
	g_assert_cmpint(EVP_Cipher(c, a, in, 16), ==, 16);
	g_assert_cmpint(transport_ctr_batched(), ==, 1);
	g_assert_cmpint(EVP_CIPHER_CTX_reset(c), ==, 1);
	g_assert_cmpint(transport_ctr_batched(), ==, 0);
	key[0] = 5;
	g_assert_cmpint(EVP_CipherInit_ex(c, EVP_aes_128_ctr(), NULL, key, iv, 1), ==, 1);
	g_assert_cmpint(EVP_CipherInit_ex(ref, EVP_aes_128_ctr(), NULL, key, iv, 1), ==, 1);
	for (int i = 0; i < 4; i++) {
		g_assert_cmpint(EVP_Cipher(c, a + 16 * i, in + 16 * i, 16), !=, -1);
		g_assert_cmpint(EVP_Cipher(ref, b + 16 * i, in + 16 * i, 16), !=, -1);
	}
	g_assert_true(memcmp(a, b, sizeof(a)) == 0);
	EVP_CIPHER_CTX_free(c);
	EVP_CIPHER_CTX_free(ref);
}

/* HASHI_NO_CTR_BATCH=1 leaves every context to libcrypto. */
static void test_disabled(void)
{
	if (g_test_subprocess()) {
		g_setenv("HASHI_NO_CTR_BATCH", "1", TRUE);
		check_cipher(EVP_aes_128_ctr(), 1, FALSE);
		return;
	}
	g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
	g_test_trap_assert_passed();
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/ctr-batch/ctr", test_ctr);
	g_test_add_func("/ctr-batch/cbc-untouched", test_cbc_untouched);
	g_test_add_func("/ctr-batch/many", test_many);
	g_test_add_func("/ctr-batch/reset", test_reset);
	g_test_add_func("/ctr-batch/disabled", test_disabled);
	return g_test_run();
}
