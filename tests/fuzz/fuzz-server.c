/*
 * libFuzzer target for hashi-sftp-server's packet processing (server_feed).
 *
 * SAFETY: the fuzzer produces remove, rename, setstat, symlink, write ...
 * requests on arbitrary paths, and we may run as root. LLVMFuzzerInitialize
 * therefore confines the whole process first (fuzz-jail.c: a private mount
 * namespace, a chroot into a throwaway size-limited tmpfs, the corpus and
 * artifact directories bound in, nothing else of the host reachable) and
 * aborts if that fails. It never runs unconfined.
 *
 * Input format:
 *   byte 0    0xff: the rest is the raw client stream (no INIT is sent first)
 *             else: bits 0-1 how the stream is cut into server_feed() calls
 *                   (0 whole, 1 pieces of 1-16 bytes, 2 pieces of 1-512 bytes,
 *                   3 one byte at a time); bits 2-4 the options (5: -R,
 *                   6: a deny list, 7: an allow list, else none); bits 5-7 seed
 *                   the piece sizes
 *   the rest  SFTP packets (uint32 length, type, id, ...) as a client sends
 *             them; unless byte 0 is 0xff, a valid INIT (version 3) goes first
 *
 * Every input starts from the same playground (fuzz-jail.c: jail_reset) and a
 * fresh server, which is freed at the end (closing its handles); memory and
 * descriptors still held after that are reported as leaks.
 *
 * Beyond the sanitizers, the replies are checked against a model of the
 * request stream: every request after INIT gets exactly one reply, in order,
 * with its id, of a type that request may get, well formed, with nothing
 * after it (a failure STATUS may end in an errno once errno@hashi is on);
 * server_feed() returns -1 exactly when the stream must end the
 * session (a zero-length packet, a request before INIT, a packet too short
 * for an id, a length over 256 KiB).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include "attrs.h"
#include "fuzz-jail.h"
#include "hattrs.h"
#include "log.h"
#include "server.h"
#include "sftp-proto.h"
#include "wire.h"

#include "fuzz-common.h"


/* Descriptors: few enough that the handle table can fill up (the server
 * allows RLIMIT_NOFILE - 16 handles). */
#define FUZZ_NOFILE 128

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	jail_enter(argc, argv);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > FUZZ_NOFILE) {
		rl.rlim_cur = FUZZ_NOFILE;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			perror("setrlimit");
	}
	/* Everything logged, to syslog() above: formatted, then dropped.
	 * HASHI_FUZZ_LOG_LEVEL=QUIET (or INFO, ...) logs less. */
	const char *lv = getenv("HASHI_FUZZ_LOG_LEVEL");
	enum log_level level = lv ? log_level_from_name(lv) : LOGL_DEBUG3;
	log_init("fuzz-server", level == LOGL_NOT_SET ? LOGL_DEBUG3 : level, LOG_USER, false);
	log_info("fuzz-server: warming up the logger");
	return 0;
}

/* ------------------------------------------------------------------ */
/* What each request may get back                                     */

enum ext {
	EXT_NONE, EXT_UNKNOWN, EXT_POSIX_RENAME, EXT_STATVFS, EXT_FSTATVFS, EXT_HARDLINK,
	EXT_FSYNC, EXT_LSETSTAT, EXT_LIMITS, EXT_EXPAND_PATH, EXT_COPY_DATA, EXT_HOME_DIR,
	EXT_USERS_GROUPS,
	/* hashi's own (man/PROTOCOL.hashi) */
	EXT_HX_ERRNO, EXT_HX_STAT, EXT_HX_READDIR, EXT_HX_SETSTAT, EXT_HX_OPEN, EXT_HX_MKNOD,
	EXT_HX_GETXATTR, EXT_HX_SETXATTR, EXT_HX_LISTXATTR, EXT_HX_REMOVEXATTR, EXT_HX_LOCK,
	EXT_HX_FALLOCATE, EXT_HX_LSEEK,
};

static const struct {
	const char *name;
	enum ext ext;
} ext_names[] = {
	{ SFTP_EXT_POSIX_RENAME, EXT_POSIX_RENAME }, { SFTP_EXT_STATVFS, EXT_STATVFS },
	{ SFTP_EXT_FSTATVFS, EXT_FSTATVFS }, { SFTP_EXT_HARDLINK, EXT_HARDLINK },
	{ SFTP_EXT_FSYNC, EXT_FSYNC }, { SFTP_EXT_LSETSTAT, EXT_LSETSTAT },
	{ SFTP_EXT_LIMITS, EXT_LIMITS }, { SFTP_EXT_EXPAND_PATH, EXT_EXPAND_PATH },
	{ SFTP_EXT_COPY_DATA, EXT_COPY_DATA }, { SFTP_EXT_HOME_DIR, EXT_HOME_DIR },
	{ SFTP_EXT_USERS_GROUPS, EXT_USERS_GROUPS },
	{ SFTP_EXT_HASHI_ERRNO, EXT_HX_ERRNO }, { SFTP_EXT_HASHI_STAT, EXT_HX_STAT },
	{ SFTP_EXT_HASHI_READDIR, EXT_HX_READDIR }, { SFTP_EXT_HASHI_SETSTAT, EXT_HX_SETSTAT },
	{ SFTP_EXT_HASHI_OPEN, EXT_HX_OPEN }, { SFTP_EXT_HASHI_MKNOD, EXT_HX_MKNOD },
	{ SFTP_EXT_HASHI_GETXATTR, EXT_HX_GETXATTR }, { SFTP_EXT_HASHI_SETXATTR, EXT_HX_SETXATTR },
	{ SFTP_EXT_HASHI_LISTXATTR, EXT_HX_LISTXATTR },
	{ SFTP_EXT_HASHI_REMOVEXATTR, EXT_HX_REMOVEXATTR }, { SFTP_EXT_HASHI_LOCK, EXT_HX_LOCK },
	{ SFTP_EXT_HASHI_FALLOCATE, EXT_HX_FALLOCATE }, { SFTP_EXT_HASHI_LSEEK, EXT_HX_LSEEK },
};

struct expect {
	bool init;          /* an INIT: VERSION expected */
	uint8_t type;       /* request type */
	uint32_t id;
	enum ext ext;
	bool have_read_len; /* READ: the length asked for */
	uint32_t read_len;
	bool have_ids;      /* users-groups-by-id: how many names per list */
	uint32_t nuids, ngids;
	uint32_t version;   /* the client's, as of this request (STATUS has
			     * no message before version 3) */
	bool have_arg;      /* errno@hashi: its argument */
	uint32_t arg;
};

static void describe_request(const uint8_t *pkt, uint32_t len, struct expect *e)
{
	struct wire_reader r;
	memset(e, 0, sizeof(*e));
	wire_reader_init(&r, pkt, len);
	CHECK(wire_get_u8(&r, &e->type) == WIRE_OK);
	CHECK(wire_get_u32(&r, &e->id) == WIRE_OK);
	if (e->type == SSH_FXP_READ) {
		const uint8_t *h;
		uint32_t hl;
		uint64_t off;
		if (wire_get_string(&r, &h, &hl) == WIRE_OK && wire_get_u64(&r, &off) == WIRE_OK &&
		    wire_get_u32(&r, &e->read_len) == WIRE_OK)
			e->have_read_len = true;
	} else if (e->type == SSH_FXP_EXTENDED) {
		const uint8_t *name;
		uint32_t nl;
		if (wire_get_string(&r, &name, &nl) != WIRE_OK)
			return; /* BAD_MESSAGE */
		e->ext = EXT_UNKNOWN;
		for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++)
			if (strlen(ext_names[i].name) == nl && memcmp(ext_names[i].name, name, nl) == 0)
				e->ext = ext_names[i].ext;
		if (e->ext == EXT_HX_ERRNO && wire_get_u32(&r, &e->arg) == WIRE_OK)
			e->have_arg = true;
		if (e->ext == EXT_USERS_GROUPS) {
			struct wire_reader u, g;
			if (wire_get_sub(&r, &u) == WIRE_OK && wire_get_sub(&r, &g) == WIRE_OK) {
				e->have_ids = true;
				e->nuids = (uint32_t)(wire_remaining(&u) / 4);
				e->ngids = (uint32_t)(wire_remaining(&g) / 4);
			}
		}
	}
}

/* The reply types a request may get besides STATUS (0: STATUS only). */
static void allowed_replies(const struct expect *e, uint8_t out[2])
{
	out[0] = out[1] = 0;
	switch (e->type) {
	case SSH_FXP_OPEN:
	case SSH_FXP_OPENDIR:
		out[0] = SSH_FXP_HANDLE;
		break;
	case SSH_FXP_READ:
		out[0] = SSH_FXP_DATA;
		break;
	case SSH_FXP_LSTAT:
	case SSH_FXP_FSTAT:
	case SSH_FXP_STAT:
		out[0] = SSH_FXP_ATTRS;
		break;
	case SSH_FXP_READDIR:
	case SSH_FXP_REALPATH:
	case SSH_FXP_READLINK:
		out[0] = SSH_FXP_NAME;
		break;
	case SSH_FXP_EXTENDED:
		switch (e->ext) {
		case EXT_STATVFS:
		case EXT_FSTATVFS:
		case EXT_LIMITS:
		case EXT_USERS_GROUPS:
		case EXT_HX_STAT:
		case EXT_HX_READDIR:
		case EXT_HX_SETSTAT:
		case EXT_HX_OPEN:
		case EXT_HX_MKNOD:
		case EXT_HX_GETXATTR:
		case EXT_HX_LISTXATTR:
		case EXT_HX_LOCK:
		case EXT_HX_LSEEK:
			out[0] = SSH_FXP_EXTENDED_REPLY;
			break;
		case EXT_EXPAND_PATH:
		case EXT_HOME_DIR:
			out[0] = SSH_FXP_NAME;
			break;
		default:
			break;
		}
		break;
	default:
		break;
	}
}

static bool known_request_type(uint8_t t)
{
	return (t >= SSH_FXP_OPEN && t <= SSH_FXP_SYMLINK) || t == SSH_FXP_EXTENDED;
}

/* ------------------------------------------------------------------ */
/* Checking one reply                                                 */

static void check_string(struct wire_reader *r)
{
	const uint8_t *p;
	uint32_t n;
	CHECK(wire_get_string(r, &p, &n) == WIRE_OK);
}

static void check_version(struct wire_reader *r)
{
	uint32_t v;
	CHECK(wire_get_u32(r, &v) == WIRE_OK && v == SFTP_VERSION);
	while (wire_remaining(r) > 0) {
		const uint8_t *name;
		uint32_t nl;
		CHECK(wire_get_string(r, &name, &nl) == WIRE_OK);
		bool known = false;
		for (size_t i = 0; i < sizeof(ext_names) / sizeof(ext_names[0]); i++)
			if (strlen(ext_names[i].name) == nl && memcmp(ext_names[i].name, name, nl) == 0)
				known = true;
		CHECK(known);
		check_string(r);
	}
}

static void check_hattrs(struct wire_reader *r)
{
	struct hattrs a;
	CHECK(hattrs_get(r, &a) == WIRE_OK);
	CHECK(a.mask & HATTR_TYPE);
}

/* hashi's replies (PROTOCOL.hashi). */
static void check_hashi_reply(struct wire_reader *r, const struct expect *e)
{
	switch (e->ext) {
	case EXT_HX_STAT:
	case EXT_HX_SETSTAT:
	case EXT_HX_MKNOD:
		check_hattrs(r);
		break;
	case EXT_HX_OPEN: {
		const uint8_t *h;
		uint32_t hl;
		CHECK(wire_get_string(r, &h, &hl) == WIRE_OK && hl == HANDLE_STRING_LEN);
		check_hattrs(r);
		break;
	}
	case EXT_HX_READDIR: {
		uint32_t count;
		CHECK(wire_get_u32(r, &count) == WIRE_OK && count >= 1);
		for (uint32_t i = 0; i < count; i++) {
			char *name;
			CHECK(wire_get_cstring(r, &name, SFTP_MAX_MSG_LENGTH) == WIRE_OK);
			CHECK(name[0] != '\0' && strchr(name, '/') == NULL);
			free(name);
			check_hattrs(r);
		}
		break;
	}
	case EXT_HX_GETXATTR:
	case EXT_HX_LISTXATTR: {
		const uint8_t *v;
		uint32_t vl;
		CHECK(wire_get_string(r, &v, &vl) == WIRE_OK && vl <= HASHI_XATTR_MAX);
		break;
	}
	case EXT_HX_LOCK: {
		uint32_t type, pid;
		uint64_t start, len;
		CHECK(wire_get_u32(r, &type) == WIRE_OK && type <= HASHI_LOCK_UNLCK);
		CHECK(wire_get_u64(r, &start) == WIRE_OK && wire_get_u64(r, &len) == WIRE_OK);
		CHECK(wire_get_u32(r, &pid) == WIRE_OK);
		break;
	}
	case EXT_HX_LSEEK: {
		uint64_t off;
		CHECK(wire_get_u64(r, &off) == WIRE_OK && off <= (uint64_t)INT64_MAX);
		break;
	}
	default:
		break;
	}
}

/* errno_on: errno@hashi is on (a failure STATUS may carry an errno);
 * updated by the reply to errno@hashi itself. */
static void check_reply(const uint8_t *pkt, uint32_t len, const struct expect *e, bool *errno_on)
{
	struct wire_reader r;
	uint8_t type;
	uint32_t id;

	wire_reader_init(&r, pkt, len);
	CHECK(wire_get_u8(&r, &type) == WIRE_OK);
	if (e->init) {
		CHECK(type == SSH_FXP_VERSION);
		check_version(&r);
		return;
	}
	CHECK(wire_get_u32(&r, &id) == WIRE_OK);
	if (id != e->id) {
		fprintf(stderr, "reply id %u (type %u) to request id %u (type %u)\n", id, type,
			e->id, e->type);
		CHECK(id == e->id);
	}
	uint8_t allowed[2];
	allowed_replies(e, allowed);
	if (type != SSH_FXP_STATUS && type != allowed[0] && type != allowed[1]) {
		fprintf(stderr, "reply type %u to request type %u (extension %d)\n", type,
			e->type, (int)e->ext);
		CHECK(!"a reply type this request may not get");
	}
	switch (type) {
	case SSH_FXP_STATUS: {
		uint32_t code;
		CHECK(wire_get_u32(&r, &code) == WIRE_OK);
		CHECK(code <= SSH_FX_MAX);
		if (!known_request_type(e->type) || e->ext == EXT_UNKNOWN)
			CHECK(code == SSH_FX_OP_UNSUPPORTED);
		if (e->version >= 3) {
			check_string(&r);
			check_string(&r);
			if (wire_remaining(&r) == 4) {
				uint32_t err;
				CHECK(*errno_on && code != SSH_FX_OK && code != SSH_FX_EOF);
				CHECK(wire_get_u32(&r, &err) == WIRE_OK && err > 0 && err < 4096);
			}
		}
		if (e->ext == EXT_HX_ERRNO && code == SSH_FX_OK) {
			CHECK(e->have_arg);
			*errno_on = e->arg != 0;
		}
		break;
	}
	case SSH_FXP_HANDLE: {
		const uint8_t *h;
		uint32_t hl;
		CHECK(wire_get_string(&r, &h, &hl) == WIRE_OK);
		CHECK(hl == HANDLE_STRING_LEN);
		break;
	}
	case SSH_FXP_DATA: {
		const uint8_t *d;
		uint32_t dl;
		CHECK(wire_get_string(&r, &d, &dl) == WIRE_OK);
		CHECK(dl <= SFTP_MAX_READ_LENGTH);
		CHECK(e->have_read_len && dl <= e->read_len);
		break;
	}
	case SSH_FXP_NAME: {
		uint32_t count;
		CHECK(wire_get_u32(&r, &count) == WIRE_OK);
		CHECK(count >= 1);
		if (e->type != SSH_FXP_READDIR)
			CHECK(count == 1);
		for (uint32_t i = 0; i < count; i++) {
			struct sftp_attrs a;
			char *name, *longname;
			CHECK(wire_get_cstring(&r, &name, SFTP_MAX_MSG_LENGTH) == WIRE_OK);
			CHECK(wire_get_cstring(&r, &longname, SFTP_MAX_MSG_LENGTH) == WIRE_OK);
			CHECK(attrs_get(&r, &a) == WIRE_OK);
			if (e->type == SSH_FXP_READDIR) {
				/* "ls -l" ending in the name */
				size_t nl = strlen(name), ll = strlen(longname);
				CHECK(nl > 0 && strchr(name, '/') == NULL);
				CHECK(ll > nl && strcmp(longname + ll - nl, name) == 0);
				CHECK(a.flags & SSH_FILEXFER_ATTR_PERMISSIONS);
			}
			free(name);
			free(longname);
		}
		break;
	}
	case SSH_FXP_ATTRS: {
		struct sftp_attrs a;
		CHECK(attrs_get(&r, &a) == WIRE_OK);
		break;
	}
	case SSH_FXP_EXTENDED_REPLY:
		check_hashi_reply(&r, e);
		if (e->ext == EXT_STATVFS || e->ext == EXT_FSTATVFS) {
			CHECK(wire_skip(&r, 11 * 8) == WIRE_OK);
		} else if (e->ext == EXT_LIMITS) {
			uint64_t v[4];
			for (int i = 0; i < 4; i++)
				CHECK(wire_get_u64(&r, &v[i]) == WIRE_OK);
			CHECK(v[0] == SFTP_MAX_MSG_LENGTH && v[1] == SFTP_MAX_READ_LENGTH &&
			      v[2] == SFTP_MAX_WRITE_LENGTH && v[3] > 0);
		} else if (e->ext == EXT_USERS_GROUPS) {
			CHECK(e->have_ids);
			for (int list = 0; list < 2; list++) {
				struct wire_reader names;
				uint32_t n = 0;
				CHECK(wire_get_sub(&r, &names) == WIRE_OK);
				while (wire_remaining(&names) > 0) {
					check_string(&names);
					n++;
				}
				CHECK(n == (list == 0 ? e->nuids : e->ngids));
			}
		}
		break;
	default:
		fprintf(stderr, "reply of type %u\n", type);
		CHECK(!"an unknown reply type");
	}
	if (wire_remaining(&r) != 0) {
		fprintf(stderr, "%zu bytes after a reply of type %u to request type %u\n",
			wire_remaining(&r), type, e->type);
		CHECK(!"bytes after the end of a reply");
	}
}

/* ------------------------------------------------------------------ */
/* The model of the client stream                                     */

struct model {
	const uint8_t *stream;
	size_t fed;       /* bytes given to the server so far */
	size_t framed;    /* bytes cut into packets so far */
	bool init_seen;
	bool ended;       /* the stream must have ended the session */
	uint32_t version; /* from the last INIT */
	bool errno_on;    /* errno@hashi */
	struct expect *pending;
	size_t npending, cap, next; /* replies expected: pending[next..npending) */
};

static void expect_push(struct model *m, const struct expect *e)
{
	if (m->npending == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->pending = realloc(m->pending, m->cap * sizeof(*m->pending));
		CHECK(m->pending != NULL);
	}
	m->pending[m->npending++] = *e;
}

/* Cut the bytes fed so far into packets, as the server must. */
static void model_advance(struct model *m)
{
	while (!m->ended && m->fed - m->framed >= 4) {
		const uint8_t *p = m->stream + m->framed;
		uint32_t len = wire_load_u32(p);
		if (len > SFTP_MAX_MSG_LENGTH) {
			m->ended = true;
			break;
		}
		if (m->fed - m->framed - 4 < len)
			break;
		m->framed += 4 + (size_t)len;
		const uint8_t *pkt = p + 4;
		struct expect e;
		memset(&e, 0, sizeof(e));
		if (len == 0) {
			m->ended = true;
		} else if (pkt[0] == SSH_FXP_INIT) {
			e.init = true;
			m->version = len >= 5 ? wire_load_u32(pkt + 1) : SFTP_VERSION;
			m->init_seen = true;
			expect_push(m, &e);
		} else if (!m->init_seen || len < 5) {
			m->ended = true;
		} else {
			describe_request(pkt, len, &e);
			e.version = m->version;
			expect_push(m, &e);
		}
	}
}

/* Take every reply out of the server's queue and check it. */
static void drain_output(struct server *s, struct model *m)
{
	struct wire_buf *out = server_output(s);
	while (wire_buf_len(out) > 0) {
		CHECK(wire_buf_len(out) >= 4);
		const uint8_t *p = wire_buf_ptr(out);
		uint32_t len = wire_load_u32(p);
		CHECK(len >= 1 && wire_buf_len(out) - 4 >= len);
		if (m->next >= m->npending) {
			fprintf(stderr, "an unexpected reply of type %u\n", p[4]);
			CHECK(!"a reply to no request");
		}
		check_reply(p + 4, len, &m->pending[m->next], &m->errno_on);
		m->next++;
		wire_buf_consume(out, 4 + (size_t)len);
	}
}

static uint32_t xorshift(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

#define MAX_PACKETS_PER_FEED 48

static const uint8_t init_packet[] = { 0, 0, 0, 5, SSH_FXP_INIT, 0, 0, 0, SFTP_VERSION };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t hdr = data[0];
	const bool raw = hdr == 0xff;

	/* The stream: INIT then the input, in one buffer of its exact size. */
	size_t slen = (raw ? 0 : sizeof(init_packet)) + size - 1;
	uint8_t *stream = malloc(slen ? slen : 1);
	CHECK(stream != NULL);
	if (!raw)
		memcpy(stream, init_packet, sizeof(init_packet));
	memcpy(stream + (raw ? 0 : sizeof(init_packet)), data + 1, size - 1);

	struct server_opts opts;
	memset(&opts, 0, sizeof(opts));
	opts.user = "root";
	opts.home = "/home/fuzz";
	opts.uid = 0;
	opts.client_addr = "UNKNOWN";
	switch (raw ? 0 : (hdr >> 2) & 7) {
	case 5:
		opts.readonly = true;
		break;
	case 6:
		opts.denylist = "write,remove,rmdir,posix-rename,hardlink,copy-data";
		break;
	case 7:
		opts.allowlist = "open,close,read,stat,lstat,fstat,opendir,readdir,realpath,"
				 "readlink,limits,expand-path,statvfs,home-directory";
		break;
	default:
		break;
	}

	jail_reset_if_changed();
	jail_fds_begin();
	jail_leaks_begin();

	struct server *s = server_new(&opts);
	CHECK(s != NULL);
	struct model m;
	memset(&m, 0, sizeof(m));
	m.stream = stream;
	m.version = SFTP_VERSION;

	/* Where each packet of the stream ends. server_feed() answers complete
	 * packets until about 1 MiB of replies waits; we empty the queue and
	 * feed nothing to go on. Calls are also kept to MAX_PACKETS_PER_FEED
	 * packets, so that the input the server buffers stays bounded. */
	size_t *ends = malloc((slen / 4 + 1) * sizeof(*ends));
	size_t nends = 0, next_end = 0;
	CHECK(ends != NULL);
	for (size_t pos = 0; slen - pos >= 4;) {
		uint32_t plen = wire_load_u32(stream + pos);
		if (plen > SFTP_MAX_MSG_LENGTH || slen - pos - 4 < plen)
			break;
		pos += 4 + (size_t)plen;
		ends[nends++] = pos;
	}

	uint32_t rng = 0x9e3779b9u ^ ((uint32_t)hdr << 24) ^ (uint32_t)size;
	const unsigned mode = raw ? 0 : hdr & 3;
	while (m.fed < slen) {
		size_t piece;
		switch (mode) {
		case 0: piece = slen; break;
		case 1: piece = 1 + xorshift(&rng) % 16; break;
		case 2: piece = 1 + xorshift(&rng) % 512; break;
		default: piece = 1; break;
		}
		if (piece > slen - m.fed)
			piece = slen - m.fed;
		while (next_end < nends && ends[next_end] <= m.fed)
			next_end++;
		if (next_end + MAX_PACKETS_PER_FEED - 1 < nends &&
		    ends[next_end + MAX_PACKETS_PER_FEED - 1] < m.fed + piece)
			piece = ends[next_end + MAX_PACKETS_PER_FEED - 1] - m.fed;
		int ret = server_feed(s, stream + m.fed, piece);
		m.fed += piece;
		model_advance(&m);
		drain_output(s, &m);
		/* server_feed stops at about 1 MiB of replies: with the output
		 * consumed, an empty feed goes on with what is left. */
		while (ret == 0) {
			ret = server_feed(s, NULL, 0);
			if (wire_buf_len(server_output(s)) == 0)
				break;
			drain_output(s, &m);
		}
		if (ret < 0) {
			if (!m.ended) {
				fprintf(stderr, "server_feed ended the session after %zu bytes; "
					"the stream does not end it\n", m.fed);
				CHECK(!"session ended early");
			}
			break;
		}
		CHECK(ret == 0);
		if (m.ended) {
			fprintf(stderr, "the stream ends the session after %zu bytes; server_feed "
				"returned 0\n", m.fed);
			CHECK(!"session not ended");
		}
	}
	if (m.next != m.npending) {
		fprintf(stderr, "%zu request(s) got no reply (first: id %u type %u)\n",
			m.npending - m.next, m.pending[m.next].id, m.pending[m.next].type);
		CHECK(!"requests without replies");
	}

	server_log_close(s);
	server_free(s);
	free(ends);
	free(m.pending);
	free(stream);
	jail_leaks_end("server_free()");
	jail_fds_end("server_free()");
	return 0;
}
