#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "attrs.h"
#include "log.h"
#include "sftp-proto.h"

/* Stop reading and processing requests while this much output is queued. */
#define OUT_HIGH_WATER (1024 * 1024)
/* Hard limits on the queues (a bug, not the client, could reach them). */
#define OUT_MAX (16 * 1024 * 1024)
#define IN_READ_CHUNK (256 * 1024)
#define IN_MAX (SFTP_MAX_MSG_LENGTH + 4 + IN_READ_CHUNK)
/* Handles open at once, at most. */
#define MAX_HANDLES_CAP 4096

#define NAME_CACHE_SIZE 64

struct name_cache_entry {
	bool valid;
	uint32_t id;
	char name[64];
};

/* File bytes to send with sendfile(2) once the output stream reaches
 * position at (a zero-copy READ reply's data). */
struct out_seg {
	uint64_t at;
	uint32_t index, gen;   /* the handle, which stays open until sent */
	int fd;
	off_t off;
	size_t len;
	struct out_seg *next;
};

struct server {
	struct server_opts opts;
	struct wire_buf in, out;
	uint64_t out_consumed;        /* bytes of out written so far, ever */
	struct out_seg *seg_head, *seg_tail;
	size_t seg_bytes;             /* file bytes queued in segments */
	bool zero_copy;               /* output is a descriptor: segments allowed */
	size_t cur_end;               /* input offset just past the packet being handled */
	size_t skip_end;              /* ... and past packets a handler took with it */
	struct handle_table handles;
	bool init_done;
	uint32_t version;
	struct name_cache_entry users[NAME_CACHE_SIZE], groups[NAME_CACHE_SIZE];
	time_t now;
	bool errno_ext;               /* errno@hashi is on */
	bool looping;                 /* in server_run */
	struct hashi_ext *hx;
};

const struct request_def *const request_ext_tables[] = { requests_extensions, requests_hashi, NULL };

static uint32_t compute_max_handles(void)
{
	struct rlimit rl;
	uint64_t n = MAX_HANDLES_CAP;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		/* stdio, syslog and a few spare descriptors (copy-data, readdir). */
		uint64_t avail = rl.rlim_cur > 16 ? rl.rlim_cur - 16 : 1;
		if (avail < n)
			n = avail;
	}
	return (uint32_t)n;
}

struct server *server_new(const struct server_opts *opts)
{
	struct server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->opts = *opts;
	wire_buf_init(&s->in, IN_MAX);
	wire_buf_init(&s->out, OUT_MAX);
	handles_init(&s->handles, compute_max_handles());
	return s;
}

static void segs_drop(struct server *s);

static void log_forced_close(struct handle *h, void *arg)
{
	(void)arg;
	if (h->kind == HANDLE_FILE)
		log_info("forced close \"%s\" bytes read %llu written %llu", h->name,
			 (unsigned long long)h->bytes_read, (unsigned long long)h->bytes_written);
	else
		log_info("forced closedir \"%s\"", h->name);
}

void server_log_close(struct server *s)
{
	segs_drop(s);
	handles_close_all(&s->handles, log_forced_close, NULL);
	log_info("session closed for local user %s from [%s]", s->opts.user, s->opts.client_addr);
}

static void seg_release(struct server *s, struct out_seg *g)
{
	struct handle *h = handles_slot(&s->handles, g->index, g->gen);
	if (h && --h->busy == 0 && h->closing)
		handles_close(&s->handles, h);
	s->seg_bytes -= g->len;
	free(g);
}

static void segs_drop(struct server *s)
{
	while (s->seg_head) {
		struct out_seg *g = s->seg_head;
		s->seg_head = g->next;
		seg_release(s, g);
	}
	s->seg_tail = NULL;
}

void server_free(struct server *s)
{
	if (!s)
		return;
	segs_drop(s);
	hashi_ext_free(s->hx);
	handles_close_all(&s->handles, NULL, NULL);
	wire_buf_free(&s->in);
	wire_buf_free(&s->out);
	free(s);
}

struct wire_buf *server_output(struct server *s) { return &s->out; }
bool server_zero_copy(const struct server *s) { return s->zero_copy; }

void server_queue_file(struct server *s, struct handle *h, off_t off, size_t len)
{
	struct out_seg *g = calloc(1, sizeof(*g));
	if (!g)
		log_fatal("out of memory");
	g->at = s->out_consumed + wire_buf_len(&s->out);
	g->index = h->index;
	g->gen = h->gen;
	g->fd = h->fd;
	g->off = off;
	g->len = len;
	h->busy++;
	s->seg_bytes += len;
	if (s->seg_tail)
		s->seg_tail->next = g;
	else
		s->seg_head = g;
	s->seg_tail = g;
}

bool server_peek_next(struct server *s, size_t k, const uint8_t **pkt, uint32_t *len)
{
	size_t pos = s->cur_end;
	for (;;) {
		uint32_t plen;
		if (pos > wire_buf_len(&s->in))
			return false;
		if (wire_peek_packet(wire_buf_ptr(&s->in) + pos, wire_buf_len(&s->in) - pos,
				     SFTP_MAX_MSG_LENGTH, &plen) != 1)
			return false;
		if (k == 0) {
			*pkt = wire_buf_ptr(&s->in) + pos + 4;
			*len = plen;
			return true;
		}
		pos += (size_t)plen + 4;
		k--;
	}
}

void server_skip_next(struct server *s, size_t n)
{
	size_t pos = s->cur_end;
	for (size_t i = 0; i < n; i++) {
		uint32_t plen;
		if (wire_peek_packet(wire_buf_ptr(&s->in) + pos, wire_buf_len(&s->in) - pos,
				     SFTP_MAX_MSG_LENGTH, &plen) != 1)
			abort(); /* only packets seen by server_peek_next may be skipped */
		pos += (size_t)plen + 4;
	}
	s->skip_end = pos;
}

static size_t out_pending(const struct server *s)
{
	return wire_buf_len(&s->out) + s->seg_bytes;
}

/* sendfile(2) could not serve this pair of descriptors: put the segment's
 * bytes into the byte queue where they belong (at its front) and stop
 * using segments. */
static int seg_fallback(struct server *s, struct out_seg *g)
{
	struct wire_buf nb;
	wire_buf_init(&nb, 0);
	uint8_t *p = wire_buf_reserve(&nb, g->len);
	if (!p)
		return -1;
	size_t got = 0;
	while (got < g->len) {
		ssize_t n = pread(g->fd, p + got, g->len - got, g->off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	memset(p + got, 0, g->len - got); /* the file shrank: keep the stream whole */
	wire_buf_commit(&nb, g->len);
	if (wire_put_bytes(&nb, wire_buf_ptr(&s->out), wire_buf_len(&s->out))) {
		wire_buf_free(&nb);
		return -1;
	}
	wire_buf_free(&s->out);
	s->out = nb;
	s->out.max = OUT_MAX + SFTP_MAX_MSG_LENGTH;
	s->seg_head = g->next;
	if (!s->seg_head)
		s->seg_tail = NULL;
	/* Later segments now sit further along the byte queue by that much. */
	for (struct out_seg *x = g->next; x; x = x->next)
		x->at += g->len;
	seg_release(s, g);
	s->zero_copy = false;
	return 0;
}

/* Write what can be written now. Returns 1 when everything queued is out,
 * 0 when the descriptor would block, -1 when the client is gone. */
static int output_some(struct server *s, int out)
{
	static const uint8_t zeros[4096];
	for (;;) {
		struct out_seg *g = s->seg_head;
		if (g && s->out_consumed == g->at) {
			ssize_t n = sendfile(out, g->fd, &g->off, g->len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				return 0;
			if (n < 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
				if (seg_fallback(s, g) < 0)
					return -1;
				continue;
			}
			if (n < 0)
				return -1;
			if (n == 0) {
				/* The file shrank since the reply's length was sent. */
				n = write(out, zeros, g->len < sizeof(zeros) ? g->len : sizeof(zeros));
				if (n < 0 && errno == EAGAIN)
					return 0;
				if (n <= 0)
					return -1;
			}
			g->len -= (size_t)n;
			s->seg_bytes -= (size_t)n;
			if (g->len == 0) {
				s->seg_head = g->next;
				if (!s->seg_head)
					s->seg_tail = NULL;
				seg_release(s, g);
			}
			continue;
		}
		size_t avail = wire_buf_len(&s->out);
		if (g && g->at - s->out_consumed < avail)
			avail = (size_t)(g->at - s->out_consumed);
		if (avail == 0)
			return 1;
		ssize_t n = write(out, wire_buf_ptr(&s->out), avail);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		wire_buf_consume(&s->out, (size_t)n);
		s->out_consumed += (uint64_t)n;
	}
}
const struct server_opts *server_opts(const struct server *s) { return &s->opts; }
const struct paths *server_paths(const struct server *s) { return s->opts.paths; }
struct handle_table *server_handles(struct server *s) { return &s->handles; }
struct wire_buf *server_out(struct server *s) { return &s->out; }
struct hashi_ext **server_hashi_ext(struct server *s) { return &s->hx; }
void server_set_errno_ext(struct server *s, bool on) { s->errno_ext = on; }
bool server_loop_running(const struct server *s) { return s->looping; }

/* -P / -p lists: comma-separated names, matched exactly (as OpenSSH's match_list). */
static bool name_in_list(const char *name, const char *list)
{
	size_t n = strlen(name);
	const char *p = list;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

bool server_request_permitted(const struct server *s, const struct request_def *def)
{
	if (s->opts.readonly && def->mutating) {
		log_verbose("Refusing %s request in read-only mode", def->name);
		return false;
	}
	if (s->opts.denylist && name_in_list(def->name, s->opts.denylist)) {
		log_verbose("Refusing denylisted %s request", def->name);
		return false;
	}
	if (s->opts.allowlist) {
		if (name_in_list(def->name, s->opts.allowlist)) {
			log_debug2("Permitting allowlisted %s request", def->name);
			return true;
		}
		log_verbose("Refusing non-allowlisted %s request", def->name);
		return false;
	}
	return true;
}

/* Replies. Our replies are bounded and back-pressure keeps the queue far
 * below OUT_MAX, so a failed put is a bug of ours. */
static void check_put(int err)
{
	if (err)
		log_fatal("internal error: reply queue: %s", wire_strerror(err));
}

size_t server_reply_begin(struct server *s, uint8_t type, uint32_t id)
{
	size_t mark;
	check_put(wire_packet_begin(&s->out, type, &mark));
	check_put(wire_put_u32(&s->out, id));
	return mark;
}

void server_reply_end(struct server *s, size_t mark)
{
	check_put(wire_packet_end(&s->out, mark));
}

/* err: the errno behind a failure, sent after the language tag when
 * errno@hashi is on (0: none). */
static void send_status(struct server *s, uint32_t id, uint32_t status, const char *msg, int err)
{
	log_debug3("request %u: sent status %u", id, status);
	if (log_get_level() > LOGL_VERBOSE || (status != SSH_FX_OK && status != SSH_FX_EOF))
		log_info("sent status %s", attrs_status_message(status));
	size_t mark = server_reply_begin(s, SSH_FXP_STATUS, id);
	check_put(wire_put_u32(&s->out, status));
	if (s->version >= 3) {
		check_put(wire_put_cstring(&s->out, msg ? msg : attrs_status_message(status)));
		check_put(wire_put_cstring(&s->out, ""));
		if (s->errno_ext && err > 0 && status != SSH_FX_OK)
			check_put(wire_put_u32(&s->out, (uint32_t)err));
	}
	server_reply_end(s, mark);
}

void server_send_status_msg(struct server *s, uint32_t id, uint32_t status, const char *msg)
{
	send_status(s, id, status, msg, 0);
}

void server_send_status(struct server *s, uint32_t id, uint32_t status)
{
	server_send_status_msg(s, id, status, NULL);
}

void server_send_errno(struct server *s, uint32_t id, int err)
{
	send_status(s, id, attrs_errno_to_status(err), NULL, err);
}

void server_send_handle(struct server *s, uint32_t id, const struct handle *h)
{
	uint8_t str[HANDLE_STRING_LEN];
	handles_encode(h, str);
	log_debug("request %u: sent handle handle %u", id, h->index);
	size_t mark = server_reply_begin(s, SSH_FXP_HANDLE, id);
	check_put(wire_put_string(&s->out, str, sizeof(str)));
	server_reply_end(s, mark);
}

void server_send_name1(struct server *s, uint32_t id, const char *name)
{
	struct sftp_attrs a;
	attrs_clear(&a);
	log_debug("request %u: sent names count 1", id);
	size_t mark = server_reply_begin(s, SSH_FXP_NAME, id);
	check_put(wire_put_u32(&s->out, 1));
	check_put(wire_put_cstring(&s->out, name));
	check_put(wire_put_cstring(&s->out, name));
	check_put(attrs_put(&s->out, &a));
	server_reply_end(s, mark);
}

void server_send_attrs(struct server *s, uint32_t id, const struct stat *st)
{
	struct sftp_attrs a;
	attrs_from_stat(st, &a);
	log_debug("request %u: sent attrib have 0x%x", id, a.flags);
	size_t mark = server_reply_begin(s, SSH_FXP_ATTRS, id);
	check_put(attrs_put(&s->out, &a));
	server_reply_end(s, mark);
}

int server_path1_op(struct server *s, uint32_t id, struct wire_reader *r, const char *verb,
		    int (*fn)(const struct spath *))
{
	char *a;
	struct spath pa;
	int err = wire_get_cstring(r, &a, SFTP_MAX_MSG_LENGTH);
	if (err)
		return err;
	log_info("%s name \"%s\"", verb, a);
	if (paths_resolve(s->opts.paths, a, PATHS_LAST, &pa) < 0) {
		server_send_errno(s, id, errno);
	} else {
		server_send_errno(s, id, fn(&pa) < 0 ? errno : 0);
		spath_done(&pa);
	}
	free(a);
	return 0;
}

int server_path2_op(struct server *s, uint32_t id, struct wire_reader *r, const char *verb,
		    bool raw_first, int (*fn)(const struct spath *, const struct spath *))
{
	char *a, *b;
	struct spath pa, pb;
	int err = wire_get_cstring(r, &a, SFTP_MAX_MSG_LENGTH);
	if (err)
		return err;
	if ((err = wire_get_cstring(r, &b, SFTP_MAX_MSG_LENGTH))) {
		free(a);
		return err;
	}
	log_info("%s old \"%s\" new \"%s\"", verb, a, b);
	if (raw_first)
		paths_resolve(NULL, a, PATHS_LAST, &pa); /* as given */
	else if (paths_resolve(s->opts.paths, a, PATHS_LAST, &pa) < 0)
		goto fail;
	if (paths_resolve(s->opts.paths, b, PATHS_LAST, &pb) < 0) {
		spath_done(&pa);
		goto fail;
	}
	server_send_errno(s, id, fn(&pa, &pb) < 0 ? errno : 0);
	spath_done(&pa);
	spath_done(&pb);
	goto out;
fail:
	server_send_errno(s, id, errno);
out:
	free(a);
	free(b);
	return 0;
}

int server_get_handle(struct server *s, struct wire_reader *r, int kind, struct handle **h)
{
	const uint8_t *p;
	uint32_t len;
	int err = wire_get_string(r, &p, &len);
	if (err)
		return err;
	*h = handles_lookup(&s->handles, p, len, (enum handle_kind)kind);
	return WIRE_OK;
}

/* ls -l, as OpenSSH's ls_file() with remote=0: names from the local user database. */
static const char *cached_name(struct name_cache_entry *cache, uint32_t id, bool user)
{
	struct name_cache_entry *e = &cache[id % NAME_CACHE_SIZE];
	if (!e->valid || e->id != id) {
		const char *name = NULL;
		if (user) {
			struct passwd *pw = getpwuid((uid_t)id);
			name = pw ? pw->pw_name : NULL;
		} else {
			struct group *gr = getgrgid((gid_t)id);
			name = gr ? gr->gr_name : NULL;
		}
		if (name && strlen(name) < sizeof(e->name))
			snprintf(e->name, sizeof(e->name), "%s", name);
		else
			snprintf(e->name, sizeof(e->name), "%u", id);
		e->id = id;
		e->valid = true;
	}
	return e->name;
}

static void mode_string(mode_t m, char out[12])
{
	switch (m & S_IFMT) {
	case S_IFDIR: out[0] = 'd'; break;
	case S_IFCHR: out[0] = 'c'; break;
	case S_IFBLK: out[0] = 'b'; break;
	case S_IFREG: out[0] = '-'; break;
	case S_IFLNK: out[0] = 'l'; break;
	case S_IFSOCK: out[0] = 's'; break;
	case S_IFIFO: out[0] = 'p'; break;
	default: out[0] = '?'; break;
	}
	out[1] = (m & S_IRUSR) ? 'r' : '-';
	out[2] = (m & S_IWUSR) ? 'w' : '-';
	out[3] = (m & S_ISUID) ? ((m & S_IXUSR) ? 's' : 'S') : ((m & S_IXUSR) ? 'x' : '-');
	out[4] = (m & S_IRGRP) ? 'r' : '-';
	out[5] = (m & S_IWGRP) ? 'w' : '-';
	out[6] = (m & S_ISGID) ? ((m & S_IXGRP) ? 's' : 'S') : ((m & S_IXGRP) ? 'x' : '-');
	out[7] = (m & S_IROTH) ? 'r' : '-';
	out[8] = (m & S_IWOTH) ? 'w' : '-';
	out[9] = (m & S_ISVTX) ? ((m & S_IXOTH) ? 't' : 'T') : ((m & S_IXOTH) ? 'x' : '-');
	out[10] = ' ';
	out[11] = '\0';
}

void server_longname(struct server *s, char *buf, size_t size, const char *name, const struct stat *st)
{
	char mode[12], tbuf[32];
	struct tm tm;
	time_t mt = st->st_mtime;

	mode_string(st->st_mode, mode);
	const char *user = cached_name(s->users, (uint32_t)st->st_uid, true);
	const char *group = cached_name(s->groups, (uint32_t)st->st_gid, false);
	tbuf[0] = '\0';
	if (localtime_r(&mt, &tm) != NULL) {
		if (s->now - (365 * 24 * 60 * 60) / 2 < mt && s->now >= mt)
			strftime(tbuf, sizeof(tbuf), "%b %e %H:%M", &tm);
		else
			strftime(tbuf, sizeof(tbuf), "%b %e  %Y", &tm);
	}
	int ulen = (int)strlen(user), glen = (int)strlen(group);
	snprintf(buf, size, "%s %3u %-*s %-*s %8llu %s %s", mode, (unsigned)st->st_nlink,
		 ulen > 8 ? ulen : 8, user, glen > 8 ? glen : 8, group,
		 (unsigned long long)st->st_size, tbuf, name);
}

void server_log_modtime(const char *name, uint32_t mtime)
{
	if (!log_enabled(LOGL_INFO))
		return;
	char buf[64];
	struct tm tm;
	time_t t = (time_t)mtime;
	buf[0] = '\0';
	if (localtime_r(&t, &tm))
		strftime(buf, sizeof(buf), "%Y%m%d-%H:%M:%S", &tm);
	log_info("set \"%s\" modtime %s", name, buf);
}

/* VERSION: our version and every extension the -P/-p/-R settings allow. */
static void process_init(struct server *s, struct wire_reader *r)
{
	if (wire_get_u32(r, &s->version) != WIRE_OK) {
		log_error("Truncated INIT packet");
		s->version = SFTP_VERSION;
	}
	log_verbose("received client version %u", s->version);
	size_t mark;
	check_put(wire_packet_begin(&s->out, SSH_FXP_VERSION, &mark));
	check_put(wire_put_u32(&s->out, SFTP_VERSION));
	for (const struct request_def *const *t = request_ext_tables; *t; t++) {
		for (const struct request_def *d = *t; d->name; d++) {
			if (!d->ext_version)
				continue;
			if (!server_request_permitted(s, d)) {
				log_debug2("refusing to advertise disallowed extension %s", d->ext_name);
				continue;
			}
			check_put(wire_put_cstring(&s->out, d->ext_name));
			check_put(wire_put_cstring(&s->out, d->ext_version));
		}
	}
	server_reply_end(s, mark);
}

static void run_handler(struct server *s, const struct request_def *d, uint32_t id,
			struct wire_reader *r)
{
	if (!server_request_permitted(s, d)) {
		server_send_status(s, id, SSH_FX_PERMISSION_DENIED);
		return;
	}
	size_t mark = wire_buf_mark(&s->out);
	int err = d->fn(s, id, r);
	if (err) {
		wire_buf_truncate(&s->out, mark);
		log_error("request %u: malformed %s request: %s", id, d->name, wire_strerror(err));
		server_send_status(s, id, SSH_FX_BAD_MESSAGE);
	}
}

/* One packet (without its length prefix). Returns -1 to end the session. */
static int process_packet(struct server *s, const uint8_t *pkt, uint32_t len)
{
	struct wire_reader r;
	uint8_t type;
	uint32_t id;

	wire_reader_init(&r, pkt, len);
	if (wire_get_u8(&r, &type) != WIRE_OK) {
		log_error("Empty packet from %s local user %s", s->opts.client_addr, s->opts.user);
		return -1;
	}
	if (type == SSH_FXP_INIT) {
		process_init(s, &r);
		s->init_done = true;
		return 0;
	}
	if (!s->init_done) {
		log_error("Received %u request before init", type);
		return -1;
	}
	if (wire_get_u32(&r, &id) != WIRE_OK) {
		log_error("Packet type %u too short to hold a request id", type);
		return -1;
	}
	if (type == SSH_FXP_EXTENDED) {
		const uint8_t *name;
		uint32_t nlen;
		if (wire_get_string(&r, &name, &nlen) != WIRE_OK) {
			log_error("request %u: malformed extended request", id);
			server_send_status(s, id, SSH_FX_BAD_MESSAGE);
			return 0;
		}
		for (const struct request_def *const *t = request_ext_tables; *t; t++) {
			for (const struct request_def *d = *t; d->name; d++) {
				if (strlen(d->ext_name) == nlen && memcmp(d->ext_name, name, nlen) == 0) {
					run_handler(s, d, id, &r);
					return 0;
				}
			}
		}
		log_error("Unknown extended request \"%.*s\"", (int)(nlen > 100 ? 100 : nlen),
			  (const char *)name);
		server_send_status(s, id, SSH_FX_OP_UNSUPPORTED);
		return 0;
	}
	for (const struct request_def *d = requests_core; d->name; d++) {
		if (d->type == type) {
			run_handler(s, d, id, &r);
			return 0;
		}
	}
	/* OpenSSH sends nothing here and its client waits forever. */
	log_error("Unknown message %u", type);
	server_send_status(s, id, SSH_FX_OP_UNSUPPORTED);
	return 0;
}

/* Process the complete packets in the input queue while output has room.
 * Returns -1 to end the session. */
static int process_input(struct server *s)
{
	s->now = time(NULL);
	while (out_pending(s) < OUT_HIGH_WATER) {
		uint32_t plen;
		int ret = wire_peek_packet(wire_buf_ptr(&s->in), wire_buf_len(&s->in),
					   SFTP_MAX_MSG_LENGTH, &plen);
		if (ret == WIRE_ETOOLONG) {
			log_error("bad message from %s local user %s", s->opts.client_addr, s->opts.user);
			return -2;
		}
		if (ret == 0)
			break;
		s->cur_end = s->skip_end = (size_t)plen + 4;
		ret = process_packet(s, wire_buf_ptr(&s->in) + 4, plen);
		wire_buf_consume(&s->in, s->skip_end);
		s->cur_end = s->skip_end = 0;
		if (ret < 0)
			return ret;
	}
	return 0;
}

int server_feed(struct server *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (len == 0)
		return process_input(s) < 0 ? -1 : 0;
	while (len > 0) {
		size_t room = IN_MAX - wire_buf_len(&s->in);
		size_t n = len < room ? len : room;
		if (n == 0)
			return -1;
		if (wire_put_bytes(&s->in, p, n) != WIRE_OK)
			return -1;
		p += n;
		len -= n;
		if (process_input(s) < 0)
			return -1;
	}
	return 0;
}

/* Write all queued output, waiting for the descriptor as needed. */
static int flush_all(struct server *s, int out)
{
	for (;;) {
		int ret = output_some(s, out);
		if (ret != 0)
			return ret < 0 ? -1 : 0;
		struct pollfd pfd = { .fd = out, .events = POLLOUT };
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return -1;
	}
}

/* Larger kernel buffers between us and sshd (or sftp -D) mean fewer
 * wake-ups per megabyte moved; where the descriptor allows it. */
static void enlarge_buffer(int fd, bool output)
{
	int size = 4 * 1024 * 1024;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return;
	if (S_ISSOCK(st.st_mode))
		setsockopt(fd, SOL_SOCKET, output ? SO_SNDBUF : SO_RCVBUF, &size, sizeof(size));
	else if (S_ISFIFO(st.st_mode))
		fcntl(fd, F_SETPIPE_SZ, 1024 * 1024);
}

int server_run(struct server *s, int in, int out)
{
	int fl;

	enlarge_buffer(in, false);
	enlarge_buffer(out, true);
	s->zero_copy = true;
	s->looping = true;

	if ((fl = fcntl(in, F_GETFL)) >= 0)
		fcntl(in, F_SETFL, fl | O_NONBLOCK);
	if (out != in && (fl = fcntl(out, F_GETFL)) >= 0)
		fcntl(out, F_SETFL, fl | O_NONBLOCK);

	for (;;) {
		struct pollfd pfd[2] = { { .fd = -1 }, { .fd = -1 } };
		bool want_read = out_pending(s) < OUT_HIGH_WATER &&
				 wire_buf_len(&s->in) + IN_READ_CHUNK <= IN_MAX;

		if (want_read) {
			pfd[0].fd = in;
			pfd[0].events = POLLIN;
		}
		if (out_pending(s) > 0) {
			pfd[1].fd = out;
			pfd[1].events = POLLOUT;
		}
		if (poll(pfd, 2, hashi_ext_timeout(s)) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			return 2;
		}
		hashi_ext_retry(s);
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			uint8_t *p = wire_buf_reserve(&s->in, IN_READ_CHUNK);
			ssize_t n = p ? read(in, p, IN_READ_CHUNK) : -1;
			if (n == 0) {
				log_debug("read eof");
				/* Answer what has arrived, then send it all, a queue-full
				 * at a time. */
				int ret;
				for (;;) {
					size_t before = wire_buf_len(&s->in);
					ret = process_input(s);
					if (flush_all(s, out) < 0) {
						log_debug("write eof");
						break;
					}
					if (ret < 0 || wire_buf_len(&s->in) == before)
						break;
				}
				return ret == -2 ? 11 : (ret < 0 ? 255 : 0);
			} else if (n < 0) {
				if (errno != EAGAIN && errno != EINTR) {
					log_error("read: %s", strerror(errno));
					return 1;
				}
			} else {
				wire_buf_commit(&s->in, (size_t)n);
			}
		}
		if (pfd[1].revents & (POLLOUT | POLLHUP | POLLERR)) {
			if (output_some(s, out) < 0) {
				if (errno == EPIPE || errno == 0) {
					log_debug("write eof");
					return 0;
				}
				log_error("write: %s", strerror(errno));
				return 1;
			}
		}
		int ret = process_input(s);
		if (ret < 0) {
			flush_all(s, out);
			return ret == -2 ? 11 : 255;
		}
	}
}
