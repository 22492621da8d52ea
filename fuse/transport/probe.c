/*
 * hashi-transport-probe: a test driver for the transports (not installed).
 *
 *   hashi-transport-probe [options] [user@]host [port]
 *   hashi-transport-probe [options] --command ARGV...
 *   hashi-transport-probe [options] --tcp HOST PORT
 *
 * Connects, sends SFTP INIT, prints "version N" and one line per extension
 * of the VERSION packet ("name data"), and exits 0. With --bulk MIB it then
 * reads MIB MiB from /dev/zero and writes MIB MiB to /dev/null with many
 * requests in flight, to push the non-blocking paths (and, with a low sshd
 * RekeyLimit, rekeying) hard. Errors go to stderr as one line; exit 255.
 *
 * Options: -p PORT, -l USER, -i FILE, -v (debug log), --password-file FILE,
 * and -o Keyword=value for: Port User HostName IdentityFile IdentitiesOnly
 * IdentityAgent UserKnownHostsFile GlobalKnownHostsFile
 * StrictHostKeyChecking BatchMode PubkeyAuthentication
 * PasswordAuthentication KbdInteractiveAuthentication
 * NumberOfPasswordPrompts HostKeyAlias ProxyCommand ProxyJump
 * ConnectTimeout Compression Ciphers MACs KexAlgorithms HostKeyAlgorithms
 * AddressFamily CheckHostIP sftp_server.
 */
#include "transport.h"
#include "target.h"
#include "log.h"
#include "sftp-proto.h"
#include "wire.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#define MAX_PACKET (256 * 1024 + 1024)

static __attribute__((noreturn)) void die(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
	exit(255);
}

static bool yes(const char *v)
{
	return strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 ||
	       strcasecmp(v, "on") == 0;
}

static void split_files(char *v, char **list, int *n)
{
	char *save = NULL;
	for (char *p = strtok_r(v, " ", &save); p != NULL && *n < TARGET_MAX_LIST;
	     p = strtok_r(NULL, " ", &save))
		if (strcasecmp(p, "none") != 0)
			list[(*n)++] = p;
}

struct opts {
	char *user_files[TARGET_MAX_LIST], *global_files[TARGET_MAX_LIST];
	int n_user, n_global;
	bool user_set, global_set;
};

static void set_option(struct ssh_target *t, struct opts *o, char *kv)
{
	char *eq = strchr(kv, '=');
	if (eq == NULL)
		die("probe: -o wants Keyword=value");
	*eq = '\0';
	char *k = kv, *v = eq + 1;

	if (!strcasecmp(k, "Port"))
		t->port = v;
	else if (!strcasecmp(k, "User"))
		t->user = v;
	else if (!strcasecmp(k, "HostName"))
		t->hostname = v;
	else if (!strcasecmp(k, "IdentityFile") && t->n_identity_files < TARGET_MAX_LIST)
		t->identity_files[t->n_identity_files++] = v;
	else if (!strcasecmp(k, "IdentitiesOnly"))
		t->identities_only = yes(v);
	else if (!strcasecmp(k, "IdentityAgent"))
		t->identity_agent = v;
	else if (!strcasecmp(k, "UserKnownHostsFile")) {
		o->user_set = true;
		split_files(v, o->user_files, &o->n_user);
	} else if (!strcasecmp(k, "GlobalKnownHostsFile")) {
		o->global_set = true;
		split_files(v, o->global_files, &o->n_global);
	}
	else if (!strcasecmp(k, "StrictHostKeyChecking"))
		t->strict = !strcasecmp(v, "accept-new")			? SHKC_ACCEPT_NEW
			    : (!strcasecmp(v, "no") || !strcasecmp(v, "off")) ? SHKC_NO
			    : !strcasecmp(v, "ask")				? SHKC_ASK
										: SHKC_YES;
	else if (!strcasecmp(k, "BatchMode"))
		t->batch_mode = yes(v);
	else if (!strcasecmp(k, "PubkeyAuthentication"))
		t->pubkey_auth = yes(v);
	else if (!strcasecmp(k, "PasswordAuthentication"))
		t->password_auth = yes(v);
	else if (!strcasecmp(k, "KbdInteractiveAuthentication"))
		t->kbdint_auth = yes(v);
	else if (!strcasecmp(k, "NumberOfPasswordPrompts"))
		t->number_of_password_prompts = atoi(v);
	else if (!strcasecmp(k, "HostKeyAlias"))
		t->host_key_alias = v;
	else if (!strcasecmp(k, "ProxyCommand"))
		t->proxy_command = v;
	else if (!strcasecmp(k, "ProxyJump"))
		t->proxy_jump = v;
	else if (!strcasecmp(k, "ConnectTimeout"))
		t->connect_timeout = atoi(v);
	else if (!strcasecmp(k, "Compression"))
		t->compression = yes(v);
	else if (!strcasecmp(k, "Ciphers"))
		t->ciphers = v;
	else if (!strcasecmp(k, "MACs"))
		t->macs = v;
	else if (!strcasecmp(k, "KexAlgorithms"))
		t->kex_algorithms = v;
	else if (!strcasecmp(k, "HostKeyAlgorithms"))
		t->host_key_algorithms = v;
	else if (!strcasecmp(k, "AddressFamily"))
		t->address_family = !strcasecmp(v, "inet")    ? AF_INET
				    : !strcasecmp(v, "inet6") ? AF_INET6
							      : AF_UNSPEC;
	else if (!strcasecmp(k, "CheckHostIP"))
		t->check_host_ip = yes(v);
	else if (!strcasecmp(k, "sftp_server"))
		t->sftp_server = v;
	else {
		fprintf(stderr, "probe: unknown option %s\n", k);
		exit(255);
	}
}

static char *read_password(const char *path)
{
	FILE *f = fopen(path, "re");
	char buf[1024];
	if (f == NULL) {
		perror(path);
		exit(255);
	}
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return strdup(buf);
}

/* ------------------------------------------------------------------ */
/* a tiny SFTP client over the transport's non-blocking interface */

struct conn {
	struct transport *t;
	struct wire_buf out, in;
};

/* Move bytes both ways once; wait with poll if nothing moved. */
static void pump(struct conn *c)
{
	bool moved = false;

	while (wire_buf_len(&c->out) > 0) {
		ssize_t n = c->t->ops->write(c->t, wire_buf_ptr(&c->out), wire_buf_len(&c->out));
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			fprintf(stderr, "write: %s\n", transport_error(c->t));
			exit(255);
		}
		wire_buf_consume(&c->out, (size_t)n);
		moved = true;
	}
	for (;;) {
		uint8_t *p = wire_buf_reserve(&c->in, 65536);
		if (p == NULL)
			die("probe: out of memory");
		ssize_t n = c->t->ops->read(c->t, p, 65536);
		if (n == -EAGAIN)
			break;
		if (n == 0) {
			fprintf(stderr, "probe: the server closed the stream%s%s\n",
				transport_error(c->t)[0] ? ": " : "", transport_error(c->t));
			exit(255);
		}
		if (n < 0) {
			fprintf(stderr, "read: %s\n", transport_error(c->t));
			exit(255);
		}
		wire_buf_commit(&c->in, (size_t)n);
		moved = true;
	}
	if (moved)
		return;

	struct pollfd pfd[8];
	int n = c->t->ops->pollfds(c->t, wire_buf_len(&c->out) > 0, pfd, 8);
	int r = poll(pfd, (nfds_t)n, 60000);
	if (r < 0 && errno != EINTR)
		die("probe: poll failed");
	if (r == 0)
		die("probe: no progress for 60 s");
	if (c->t->ops->after_poll != NULL)
		c->t->ops->after_poll(c->t, pfd, n);
}

/* The next whole packet (type, reader over the rest), pumping as needed. */
static uint8_t next_packet(struct conn *c, struct wire_reader *r, uint32_t *plen)
{
	for (;;) {
		uint32_t len;
		int w = wire_peek_packet(wire_buf_ptr(&c->in), wire_buf_len(&c->in), MAX_PACKET,
					 &len);
		if (w < 0 || (w == 1 && len == 0))
			die("probe: bad packet from the server");
		if (w == 1) {
			uint8_t type = wire_buf_ptr(&c->in)[4];
			wire_reader_init(r, wire_buf_ptr(&c->in) + 5, len - 1);
			*plen = len;
			return type;
		}
		pump(c);
	}
}

static void put_packet_end(struct conn *c, size_t mark)
{
	if (wire_packet_end(&c->out, mark) != 0)
		die("probe: cannot build a packet");
}

static void send_open(struct conn *c, uint32_t id, const char *path, uint32_t flags)
{
	size_t m;
	if (wire_packet_begin(&c->out, SSH_FXP_OPEN, &m) || wire_put_u32(&c->out, id) ||
	    wire_put_cstring(&c->out, path) || wire_put_u32(&c->out, flags) ||
	    wire_put_u32(&c->out, 0))
		die("probe: out of memory");
	put_packet_end(c, m);
}

static void get_handle(struct conn *c, uint32_t want_id, uint8_t *h, uint32_t *hlen)
{
	struct wire_reader r;
	uint32_t plen, id, l = 0;
	const uint8_t *s = NULL;
	uint8_t type = next_packet(c, &r, &plen);
	if (type != SSH_FXP_HANDLE || wire_get_u32(&r, &id) || id != want_id ||
	    wire_get_string(&r, &s, &l) || l > 256)
		die("probe: OPEN failed");
	memcpy(h, s, l);
	*hlen = l;
	wire_buf_consume(&c->in, 4 + plen);
}

static void bulk(struct conn *c, long mib)
{
	uint8_t rh[256], wh[256];
	uint32_t rhl, whl;
	const uint32_t chunk = 32768, depth = 32;
	uint64_t total = (uint64_t)mib << 20, rq = 0, wq = 0, rdone = 0, wdone = 0;
	uint32_t rout = 0, wout = 0, next_id = 10;
	static uint8_t data[32768];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	send_open(c, 1, "/dev/zero", SSH_FXF_READ);
	send_open(c, 2, "/dev/null", SSH_FXF_WRITE);
	get_handle(c, 1, rh, &rhl);
	get_handle(c, 2, wh, &whl);

	while (rdone < total || wdone < total) {
		while (rq < total && rout < depth) {
			size_t m;
			if (wire_packet_begin(&c->out, SSH_FXP_READ, &m) ||
			    wire_put_u32(&c->out, next_id) || wire_put_string(&c->out, rh, rhl) ||
			    wire_put_u64(&c->out, rq) || wire_put_u32(&c->out, chunk))
				die("probe: out of memory");
			put_packet_end(c, m);
			next_id += 2; /* reads even, writes odd */
			rq += chunk;
			rout++;
		}
		while (wq < total && wout < depth) {
			size_t m;
			if (wire_packet_begin(&c->out, SSH_FXP_WRITE, &m) ||
			    wire_put_u32(&c->out, next_id + 1) || wire_put_string(&c->out, wh, whl) ||
			    wire_put_u64(&c->out, wq) || wire_put_string(&c->out, data, chunk))
				die("probe: out of memory");
			put_packet_end(c, m);
			next_id += 2;
			wq += chunk;
			wout++;
		}
		struct wire_reader r;
		uint32_t plen, id;
		uint8_t type = next_packet(c, &r, &plen);
		if (wire_get_u32(&r, &id))
			die("probe: short reply");
		if (type == SSH_FXP_DATA && id % 2 == 0) {
			const uint8_t *s;
			uint32_t l;
			if (wire_get_string(&r, &s, &l) || l == 0 || l > chunk)
				die("probe: bad DATA");
			for (uint32_t i = 0; i < l; i++)
				if (s[i] != 0)
					die("probe: /dev/zero gave a non-zero byte");
			rdone += chunk; /* a short read still ends the request */
			rout--;
		} else if (type == SSH_FXP_STATUS && id % 2 == 1) {
			uint32_t code;
			if (wire_get_u32(&r, &code) || code != SSH_FX_OK)
				die("probe: WRITE failed");
			wdone += chunk;
			wout--;
		} else {
			die("probe: unexpected reply");
		}
		wire_buf_consume(&c->in, 4 + plen);
	}
	printf("bulk %llu %llu\n", (unsigned long long)rdone, (unsigned long long)wdone);
}

int main(int argc, char **argv)
{
	struct ssh_target t = {
		.strict = SHKC_ASK,
		.pubkey_auth = true,
		.password_auth = true,
		.kbdint_auth = true,
		.number_of_password_prompts = 3,
		.address_family = AF_UNSPEC,
	};
	struct opts o = { 0 };
	char **command = NULL;
	const char *tcp_host = NULL, *tcp_port = NULL;
	long bulk_mib = 0;
	bool verbose = false;
	int i;

	signal(SIGPIPE, SIG_IGN);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--command")) {
			command = argv + i + 1;
			i = argc;
			break;
		} else if (!strcmp(a, "--tcp") && i + 2 < argc) {
			tcp_host = argv[++i];
			tcp_port = argv[++i];
		} else if (!strcmp(a, "--bulk") && i + 1 < argc) {
			bulk_mib = atol(argv[++i]);
		} else if (!strcmp(a, "--password-file") && i + 1 < argc) {
			t.password = read_password(argv[++i]);
		} else if (!strcmp(a, "-p") && i + 1 < argc) {
			t.port = argv[++i];
		} else if (!strcmp(a, "-l") && i + 1 < argc) {
			t.user = argv[++i];
		} else if (!strcmp(a, "-i") && i + 1 < argc) {
			if (t.n_identity_files < TARGET_MAX_LIST)
				t.identity_files[t.n_identity_files++] = argv[++i];
		} else if (!strcmp(a, "-o") && i + 1 < argc) {
			set_option(&t, &o, argv[++i]);
		} else if (!strcmp(a, "-v")) {
			verbose = true;
		} else if (a[0] == '-') {
			fprintf(stderr, "probe: unknown option %s\n", a);
			return 255;
		} else if (t.host_arg == NULL) {
			char *at = strrchr(argv[i], '@');
			if (at != NULL) {
				*at = '\0';
				if (t.user == NULL)
					t.user = argv[i];
				t.host_arg = at + 1;
			} else {
				t.host_arg = argv[i];
			}
		} else if (t.port == NULL) {
			t.port = argv[i];
		} else {
			fprintf(stderr, "probe: unexpected argument %s\n", a);
			return 255;
		}
	}
	log_init("hashi-transport-probe", verbose ? LOGL_DEBUG3 : LOGL_ERROR, LOG_USER, true);

	struct transport *tr;
	char err[1024] = "";
	bool rsa_only = false;
	if (command != NULL) {
		tr = transport_command_start(command, err, sizeof(err));
	} else if (tcp_host != NULL) {
		tr = transport_tcp_connect(tcp_host, tcp_port, err, sizeof(err));
	} else {
		if (t.host_arg == NULL)
			die("usage: hashi-transport-probe [options] [user@]host [port]");
		if (t.hostname == NULL)
			t.hostname = t.host_arg;
		if (o.n_user == 0 && !o.user_set) {
			o.user_files[o.n_user++] = "~/.ssh/known_hosts";
			o.user_files[o.n_user++] = "~/.ssh/known_hosts2";
		}
		if (o.n_global == 0 && !o.global_set) {
			o.global_files[o.n_global++] = "/etc/ssh/ssh_known_hosts";
			o.global_files[o.n_global++] = "/etc/ssh/ssh_known_hosts2";
		}
		for (int k = 0; k < o.n_user && t.n_known_hosts < TARGET_MAX_LIST; k++)
			t.known_hosts[t.n_known_hosts++] = o.user_files[k];
		t.n_user_known_hosts = t.n_known_hosts;
		for (int k = 0; k < o.n_global && t.n_known_hosts < TARGET_MAX_LIST; k++)
			t.known_hosts[t.n_known_hosts++] = o.global_files[k];
		tr = transport_ssh_connect(&t, &rsa_only, err, sizeof(err));
	}
	if (tr == NULL) {
		fprintf(stderr, "%s\n", err);
		if (rsa_only)
			fprintf(stderr, "probe: rsa_only\n");
		free(t.password);
		return 255;
	}

	struct conn c = { .t = tr };
	wire_buf_init(&c.out, 0);
	wire_buf_init(&c.in, 0);
	size_t m;
	if (wire_packet_begin(&c.out, SSH_FXP_INIT, &m) || wire_put_u32(&c.out, SFTP_VERSION))
		die("probe: out of memory");
	put_packet_end(&c, m);

	struct wire_reader r;
	uint32_t plen, version;
	uint8_t type = next_packet(&c, &r, &plen);
	if (type != SSH_FXP_VERSION || wire_get_u32(&r, &version))
		die("probe: the server did not answer INIT with VERSION");
	printf("transport %s\nversion %u\n", tr->ops->name, version);
	while (wire_remaining(&r) > 0) {
		const uint8_t *name, *data;
		uint32_t nl, dl;
		if (wire_get_string(&r, &name, &nl) || wire_get_string(&r, &data, &dl))
			die("probe: bad VERSION packet");
		printf("%.*s %.*s\n", (int)nl, (const char *)name, (int)dl, (const char *)data);
	}
	wire_buf_consume(&c.in, 4 + plen);
	fflush(stdout);

	if (bulk_mib > 0)
		bulk(&c, bulk_mib);

	transport_destroy(tr);
	wire_buf_free(&c.in);
	wire_buf_free(&c.out);
	free(t.password);
	return 0;
}
