/*
 * Batched AES-CTR keystream for libssh2 1.10.
 *
 * libssh2 1.10 encrypts and decrypts a packet one cipher block at a time:
 * one EVP_Cipher call per 16 bytes. With OpenSSL 3 each call goes through
 * the provider's dispatch and runs AES-NI on a single block, so on this
 * kind of machine about half of hashi's CPU in a bulk transfer went to
 * those calls (measured with perf: 16-byte EVP_Cipher moves ~460 MB/s,
 * one 16 KiB call ~7 GB/s).
 *
 * In CTR mode the keystream does not depend on the data: output = input
 * XOR E(key, counter++). So for the contexts libssh2 sets up with
 * EVP_CipherInit on an AES-CTR cipher, this file computes the keystream
 * KS_BATCH bytes at a time (one real EVP_Cipher over zeros, which moves
 * the context's counter past them) and answers each call by XOR with the
 * next bytes of that batch. Every byte still gets exactly the keystream
 * byte OpenSSL would have used, in the same order, because every call on
 * such a context comes through here. The wire is unchanged.
 *
 * It works by interposition: hashi's executable defines EVP_CipherInit,
 * EVP_Cipher, EVP_CIPHER_CTX_free and EVP_CIPHER_CTX_reset, which the dynamic linker resolves
 * ahead of libcrypto's for libssh2 (and for hashi), and each forwards to
 * libcrypto's own through dlsym(RTLD_NEXT). Only contexts initialised
 * with EVP_CipherInit (the legacy call, which only libssh2 makes in this
 * process) with a key and a CTR-mode cipher are batched; every other
 * context and call passes straight through. A context is tied to its batch
 * through a slot of a fixed table: EVP_CIPHER_CTX_get_app_data is trusted
 * only when it points into that table and the slot names the same context.
 * HASHI_NO_CTR_BATCH=1 in the environment turns the batching off.
 *
 * A context (and so its batch) is used by one thread at a time: a libssh2
 * session belongs to one thread. Slots are taken and given back under a
 * mutex (at key exchange and at the end of a session only).
 */
#include "transport-int.h"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KS_BATCH (16 * 1024)
#define SLOTS 256

struct batch {
	EVP_CIPHER_CTX *ctx; /* NULL: free slot */
	size_t pos, len;     /* keystream[pos..len) not yet used */
	unsigned char *ks;
};

static struct batch slots[SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

typedef int (*cipher_init_fn)(EVP_CIPHER_CTX *, const EVP_CIPHER *, const unsigned char *,
			      const unsigned char *, int);
typedef int (*cipher_fn)(EVP_CIPHER_CTX *, unsigned char *, const unsigned char *, unsigned int);
typedef void (*ctx_free_fn)(EVP_CIPHER_CTX *);
typedef int (*ctx_reset_fn)(EVP_CIPHER_CTX *);

static cipher_init_fn real_init;
static cipher_fn real_cipher;
static ctx_free_fn real_free;
static ctx_reset_fn real_reset;
static bool disabled;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Each thread remembers the last context it ciphered with and its batch
 * (EVP_Cipher runs once per 16 bytes: this saves the look-up), valid while
 * no batch has been attached or released since (gen). */
static unsigned long gen = 1;
#define HOT __thread __attribute__((tls_model("initial-exec"))) /* no call to reach them */
static HOT EVP_CIPHER_CTX *hot_ctx;
static HOT struct batch *hot_batch;
static HOT unsigned long hot_gen;

static void *next_symbol(const char *name)
{
	void *p = dlvsym(RTLD_NEXT, name, "OPENSSL_3.0.0");
	return p != NULL ? p : dlsym(RTLD_NEXT, name);
}

static void resolve(void)
{
	real_init = (cipher_init_fn)next_symbol("EVP_CipherInit");
	real_cipher = (cipher_fn)next_symbol("EVP_Cipher");
	real_free = (ctx_free_fn)next_symbol("EVP_CIPHER_CTX_free");
	real_reset = (ctx_reset_fn)next_symbol("EVP_CIPHER_CTX_reset");
	const char *e = getenv("HASHI_NO_CTR_BATCH");
	disabled = e != NULL && e[0] != '\0' && strcmp(e, "0") != 0;
	if (real_init == NULL || real_cipher == NULL || real_free == NULL || real_reset == NULL)
		abort(); /* libcrypto is linked in: this cannot happen */
}

static struct batch *batch_of(EVP_CIPHER_CTX *ctx)
{
	struct batch *b = EVP_CIPHER_CTX_get_app_data(ctx);
	if ((uintptr_t)b < (uintptr_t)&slots[0] || (uintptr_t)b >= (uintptr_t)&slots[SLOTS])
		return NULL;
	if (((uintptr_t)b - (uintptr_t)&slots[0]) % sizeof(slots[0]) != 0 || b->ctx != ctx)
		return NULL;
	return b;
}

static void release(EVP_CIPHER_CTX *ctx)
{
	struct batch *b = batch_of(ctx);
	if (b == NULL)
		return;
	EVP_CIPHER_CTX_set_app_data(ctx, NULL);
	OPENSSL_cleanse(b->ks, KS_BATCH);
	free(b->ks);
	pthread_mutex_lock(&slots_lock);
	b->ks = NULL;
	b->pos = b->len = 0;
	b->ctx = NULL;
	__atomic_add_fetch(&gen, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&slots_lock);
}

static void attach(EVP_CIPHER_CTX *ctx)
{
	unsigned char *ks = malloc(KS_BATCH);
	if (ks == NULL)
		return; /* unbatched: still correct */
	pthread_mutex_lock(&slots_lock);
	for (int i = 0; i < SLOTS; i++)
		if (slots[i].ctx == NULL) {
			slots[i].ctx = ctx;
			slots[i].ks = ks;
			slots[i].pos = slots[i].len = 0;
			EVP_CIPHER_CTX_set_app_data(ctx, &slots[i]);
			__atomic_add_fetch(&gen, 1, __ATOMIC_RELEASE);
			ks = NULL;
			break;
		}
	pthread_mutex_unlock(&slots_lock);
	free(ks);
}

/* out = in ^ k; out may be in (libssh2 passes a separate buffer). */
static void xor_bytes(unsigned char *out, const unsigned char *in, const unsigned char *k,
		      size_t n)
{
	typedef unsigned char v16 __attribute__((vector_size(16)));
	size_t i = 0;
	/* 16 bytes in one store: libssh2 reads the block back with a 16-byte
	 * load, which two 8-byte stores could not forward to. */
	for (; i + 16 <= n; i += 16) {
		v16 a, b;
		memcpy(&a, in + i, 16);
		memcpy(&b, k + i, 16);
		a ^= b;
		memcpy(out + i, &a, 16);
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t a, b;
		memcpy(&a, in + i, 8);
		memcpy(&b, k + i, 8);
		a ^= b;
		memcpy(out + i, &a, 8);
	}
	for (; i < n; i++)
		out[i] = in[i] ^ k[i];
}

__attribute__((visibility("default"))) int EVP_CipherInit(EVP_CIPHER_CTX *ctx,
							 const EVP_CIPHER *cipher,
							 const unsigned char *key,
							 const unsigned char *iv, int enc)
{
	pthread_once(&once, resolve);
	/* A new key or IV: what was computed ahead belongs to the old one. */
	release(ctx);
	int rc = real_init(ctx, cipher, key, iv, enc);
	if (rc == 1 && !disabled && key != NULL && EVP_CIPHER_CTX_get0_cipher(ctx) != NULL &&
	    EVP_CIPHER_CTX_get_mode(ctx) == EVP_CIPH_CTR_MODE &&
	    EVP_CIPHER_CTX_get_app_data(ctx) == NULL)
		attach(ctx);
	return rc;
}

/* Everything but one block from the current batch of the context used last. */
static __attribute__((noinline)) int cipher_slow(EVP_CIPHER_CTX *ctx, unsigned char *out,
						  const unsigned char *in, unsigned int inl)
{
	struct batch *b;
	unsigned long g = __atomic_load_n(&gen, __ATOMIC_ACQUIRE);
	if (ctx == hot_ctx && g == hot_gen) {
		b = hot_batch;
	} else {
		pthread_once(&once, resolve);
		b = batch_of(ctx);
		hot_ctx = ctx;
		hot_batch = b;
		hot_gen = g;
	}
	if (b == NULL)
		return real_cipher(ctx, out, in, inl);
	if (in == NULL || inl == 0)
		return 0; /* CTR has nothing to finish */
	for (unsigned int done = 0; done < inl;) {
		if (b->pos == b->len) {
			static const unsigned char zeros[KS_BATCH];
			if (real_cipher(ctx, b->ks, zeros, KS_BATCH) <= 0) {
				b->pos = b->len = 0;
				return -1;
			}
			b->pos = 0;
			b->len = KS_BATCH;
		}
		size_t n = b->len - b->pos;
		if (n > inl - done)
			n = inl - done;
		xor_bytes(out + done, in + done, b->ks + b->pos, n);
		b->pos += n;
		done += n;
	}
	return (int)inl;
}

/* libssh2 1.10's call: one 16-byte block on the context it used last. */
__attribute__((visibility("default"))) int EVP_Cipher(EVP_CIPHER_CTX *ctx, unsigned char *out,
						     const unsigned char *in, unsigned int inl)
{
	struct batch *b = hot_batch;
	if (__builtin_expect(ctx == hot_ctx && b != NULL && inl == 16 &&
			     hot_gen == __atomic_load_n(&gen, __ATOMIC_ACQUIRE) &&
			     b->len - b->pos >= 16 && in != NULL, 1)) {
		typedef unsigned char v16 __attribute__((vector_size(16)));
		v16 x, k;
		memcpy(&x, in, 16);
		memcpy(&k, b->ks + b->pos, 16);
		x ^= k;
		memcpy(out, &x, 16);
		b->pos += 16;
		return 16;
	}
	return cipher_slow(ctx, out, in, inl);
}

__attribute__((visibility("default"))) void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx)
{
	pthread_once(&once, resolve);
	if (ctx != NULL)
		release(ctx);
	real_free(ctx);
}

/* (libssh2 does not reset its contexts; whoever does gets a plain one.) */
__attribute__((visibility("default"))) int EVP_CIPHER_CTX_reset(EVP_CIPHER_CTX *ctx)
{
	pthread_once(&once, resolve);
	if (ctx != NULL)
		release(ctx);
	return real_reset(ctx);
}

int transport_ctr_batched(void)
{
	int n = 0;
	pthread_mutex_lock(&slots_lock);
	for (int i = 0; i < SLOTS; i++)
		n += slots[i].ctx != NULL;
	pthread_mutex_unlock(&slots_lock);
	return n;
}
