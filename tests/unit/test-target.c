/*
 * Unit tests for fuse/target.c: user@host:dir splitting, ssh_config keyword
 * spelling, and resolution through `ssh -G` and through the built-in reader,
 * which must agree with each other for the same files.
 */
#include <glib.h>
#include <glib/gstdio.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "target.h"

static char *tmpdir;     /* this run's files */
static char *home;       /* the user's home as ssh sees it (password database) */
static bool have_ssh;    /* OpenSSH's client is on PATH */

/* ------------------------------------------------------------------ */
/* target_split                                                        */

struct split_case {
	const char *spec, *user, *host, *dir; /* host NULL: must fail */
	const char *err;                      /* part of the message when failing */
};

static void test_split(void)
{
	static const struct split_case cases[] = {
		{ "host:", NULL, "host", "", NULL },
		{ "host:dir", NULL, "host", "dir", NULL },
		{ "host:/abs/dir", NULL, "host", "/abs/dir", NULL },
		{ "bob@host:~/x", "bob", "host", "~/x", NULL },
		{ "bob@example.com@host:d", "bob@example.com", "host", "d", NULL },
		{ "[::1]:/srv", NULL, "::1", "/srv", NULL },
		{ "u@[fe80::1%eth0]:", "u", "fe80::1%eth0", "", NULL },
		{ "host:dir:with:colons", NULL, "host", "dir:with:colons", NULL },
		{ "host:/a@b", NULL, "host", "/a@b", NULL },
		{ "h.example.org:a b", NULL, "h.example.org", "a b", NULL },
		{ "host", NULL, NULL, NULL, "missing ':'" },
		{ "", NULL, NULL, NULL, "missing ':'" },
		{ ":dir", NULL, NULL, NULL, "empty host" },
		{ "bob@:dir", NULL, NULL, NULL, "empty host" },
		{ "@host:dir", NULL, NULL, NULL, "empty user" },
		{ "[::1", NULL, NULL, NULL, "unterminated" },
		{ "[]:x", NULL, NULL, NULL, "host" },
		{ "a[b]c:x", NULL, NULL, NULL, "brackets" },
		{ "-oProxyCommand=x:", NULL, NULL, NULL, "may not begin with '-'" },
		{ "ho st:x", NULL, NULL, NULL, "blank" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		const struct split_case *c = &cases[i];
		char *user = (char *)"x", *host = (char *)"x", *dir = (char *)"x", err[256] = "";
		int rc = target_split(c->spec, &user, &host, &dir, err, sizeof(err));

		g_test_message("spec '%s'", c->spec);
		if (c->host == NULL) {
			g_assert_cmpint(rc, ==, -1);
			g_assert_null(user);
			g_assert_null(host);
			g_assert_null(dir);
			g_assert_nonnull(strstr(err, c->err));
			g_assert_nonnull(strstr(err, c->spec)); /* names the argument */
			continue;
		}
		g_assert_cmpint(rc, ==, 0);
		g_assert_cmpstr(user, ==, c->user);
		g_assert_cmpstr(host, ==, c->host);
		g_assert_cmpstr(dir, ==, c->dir);
		free(user);
		free(host);
		free(dir);
	}
}

/* ------------------------------------------------------------------ */
/* Keywords                                                            */

static void test_keywords(void)
{
	g_assert_cmpstr(target_canonical_keyword("port"), ==, "Port");
	g_assert_cmpstr(target_canonical_keyword("PORT"), ==, "Port");
	g_assert_cmpstr(target_canonical_keyword("stricthostkeychecking"), ==,
			"StrictHostKeyChecking");
	g_assert_cmpstr(target_canonical_keyword("hostname"), ==, "HostName");
	g_assert_cmpstr(target_canonical_keyword("macs"), ==, "MACs");
	g_assert_cmpstr(target_canonical_keyword("ipqos"), ==, "IPQoS");
	g_assert_cmpstr(target_canonical_keyword("canonicalizePermittedcnames"), ==,
			"CanonicalizePermittedCNAMEs");
	g_assert_cmpstr(target_canonical_keyword("serveraliveinterval"), ==, "ServerAliveInterval");
	g_assert_cmpstr(target_canonical_keyword("proxyjump"), ==, "ProxyJump");
	g_assert_null(target_canonical_keyword("bogus"));
	g_assert_null(target_canonical_keyword("sftp_server"));
	g_assert_null(target_canonical_keyword(""));
	g_assert_null(target_canonical_keyword(NULL));

	/* the table's own names map to themselves */
	int n = 0;
	for (const char *k; (k = target_keyword_at(n)) != NULL; n++)
		g_assert_cmpstr(target_canonical_keyword(k), ==, k);
	g_assert_cmpint(n, >, 100);
}

/* Every keyword `ssh -G` prints is in the table. */
static void test_keywords_vs_ssh_g(void)
{
	char *out = NULL;
	int status;
	char *argv[] = { "ssh", "-G", "-T", "-F", "/dev/null", "localhost", NULL };

	if (!have_ssh) {
		g_test_skip("no ssh on PATH");
		return;
	}
	g_assert_true(g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL,
				   NULL, NULL, &out, NULL, &status, NULL));
	g_assert_true(g_spawn_check_wait_status(status, NULL));
	char **lines = g_strsplit(out, "\n", -1);
	int seen = 0;
	for (char **l = lines; *l; l++) {
		if (**l == '\0')
			continue;
		char *kw = g_strndup(*l, strcspn(*l, " "));
		const char *c = target_canonical_keyword(kw);
		g_test_message("ssh -G keyword %s", kw);
		g_assert_nonnull(c);
		g_assert_cmpint(g_ascii_strcasecmp(c, kw), ==, 0);
		g_free(kw);
		seen++;
	}
	g_assert_cmpint(seen, >, 50);
	g_strfreev(lines);
	g_free(out);
}

/* Every keyword of the table is one ssh accepts (but an older ssh does not
 * know the newer ones, nor another distribution's ssh Debian's). */
static void test_keywords_known_to_ssh(void)
{
	static const char *maybe_unknown[] = {
		"ChannelTimeout", "ObscureKeystrokeTiming", "RefuseConnection", "Tag",
		"VersionAddendum", "WarnWeakCrypto", "ProtocolKeepAlives", "SetupTimeOut",
		"UseBlacklistedKeys", "GSSAPIClientIdentity", "GSSAPIServerIdentity",
		"GSSAPIKeyExchange", "GSSAPIRenewalForcesRekey", "GSSAPITrustDns",
		"GSSAPIKexAlgorithms", NULL,
	};

	if (!have_ssh) {
		g_test_skip("no ssh on PATH");
		return;
	}
	for (int i = 0; target_keyword_at(i); i++) {
		if (g_strv_contains(maybe_unknown, target_keyword_at(i)))
			continue;
		char *opt = g_strdup_printf("%s=x", target_keyword_at(i));
		char *argv[] = { "ssh", "-G", "-T", "-F", "/dev/null", "-o", opt, "h", NULL };
		char *err = NULL;
		int status;

		g_assert_true(g_spawn_sync(NULL, argv, NULL,
					   G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
					   NULL, NULL, &err, &status, NULL));
		g_test_message("%s: %s", opt, err);
		g_assert_null(strstr(err, "Bad configuration option"));
		g_free(err);
		g_free(opt);
	}
}

/* ------------------------------------------------------------------ */
/* Resolution                                                          */

static char *write_file(const char *name, const char *text)
{
	char *path = g_build_filename(tmpdir, name, NULL);
	char *dir = g_path_get_dirname(path);

	g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	g_assert_cmpint(chmod(path, 0644), ==, 0);
	g_free(dir);
	return path;
}

/* Resolve with ssh -G (via_ssh) or the built-in reader. */
static int resolve(bool via_ssh, struct ssh_target *t, const char *spec, const char *config,
		   const char *const *opts, char *err, size_t errlen)
{
	struct target_options o;
	char *user, *host, *dir;
	int rc;

	memset(&o, 0, sizeof(o));
	o.config_file = (char *)config;
	for (; opts && *opts; opts++)
		o.opts[o.n++] = (char *)*opts;
	g_assert_cmpint(target_split(spec, &user, &host, &dir, err, errlen), ==, 0);
	if (via_ssh)
		g_unsetenv("HASHI_NO_SSH_G");
	else
		g_setenv("HASHI_NO_SSH_G", "1", TRUE);
	rc = target_resolve(t, user, host, dir, &o, err, errlen);
	g_unsetenv("HASHI_NO_SSH_G");
	free(user);
	free(host);
	free(dir);
	return rc;
}

static void assert_same_target(const struct ssh_target *a, const struct ssh_target *b)
{
	g_assert_cmpstr(a->host_arg, ==, b->host_arg);
	g_assert_cmpstr(a->hostname, ==, b->hostname);
	g_assert_cmpstr(a->user, ==, b->user);
	g_assert_cmpstr(a->port, ==, b->port);
	g_assert_cmpstr(a->dir, ==, b->dir);
	g_assert_cmpint(a->n_identity_files, ==, b->n_identity_files);
	for (int i = 0; i < a->n_identity_files; i++)
		g_assert_cmpstr(a->identity_files[i], ==, b->identity_files[i]);
	g_assert_cmpint(a->identities_only, ==, b->identities_only);
	g_assert_cmpstr(a->identity_agent, ==, b->identity_agent);
	g_assert_cmpint(a->n_known_hosts, ==, b->n_known_hosts);
	g_assert_cmpint(a->n_user_known_hosts, ==, b->n_user_known_hosts);
	for (int i = 0; i < a->n_known_hosts; i++)
		g_assert_cmpstr(a->known_hosts[i], ==, b->known_hosts[i]);
	g_assert_cmpint(a->strict, ==, b->strict);
	g_assert_cmpint(a->check_host_ip, ==, b->check_host_ip);
	g_assert_cmpstr(a->host_key_alias, ==, b->host_key_alias);
	g_assert_cmpint(a->batch_mode, ==, b->batch_mode);
	g_assert_cmpint(a->pubkey_auth, ==, b->pubkey_auth);
	g_assert_cmpint(a->password_auth, ==, b->password_auth);
	g_assert_cmpint(a->kbdint_auth, ==, b->kbdint_auth);
	g_assert_cmpint(a->number_of_password_prompts, ==, b->number_of_password_prompts);
	g_assert_cmpstr(a->proxy_command, ==, b->proxy_command);
	g_assert_cmpstr(a->proxy_jump, ==, b->proxy_jump);
	g_assert_cmpint(a->address_family, ==, b->address_family);
	g_assert_cmpint(a->connect_timeout, ==, b->connect_timeout);
	g_assert_cmpint(a->server_alive_interval, ==, b->server_alive_interval);
	g_assert_cmpint(a->server_alive_count_max, ==, b->server_alive_count_max);
	g_assert_cmpint(a->compression, ==, b->compression);
	g_assert_cmpstr(a->ciphers, ==, b->ciphers);
	g_assert_cmpstr(a->macs, ==, b->macs);
	g_assert_cmpstr(a->kex_algorithms, ==, b->kex_algorithms);
	g_assert_cmpstr(a->host_key_algorithms, ==, b->host_key_algorithms);
	g_assert_cmpstr(a->control_path, ==, b->control_path);
	g_assert_cmpint(a->control_persist, ==, b->control_persist);
	g_assert_cmpstr(a->sftp_server, ==, b->sftp_server);
	g_assert_cmpint(a->password_stdin, ==, b->password_stdin);
}

/* Both ways, the same answer; returns the built-in's for more checks. */
static void compare_paths(struct ssh_target *builtin, const char *spec, const char *config,
			  const char *const *opts)
{
	char err[512] = "";

	g_test_message("resolving %s (config %s)", spec, config ? config : "default");
	if (resolve(false, builtin, spec, config, opts, err, sizeof(err)) != 0)
		g_error("built-in reader failed for %s: %s", spec, err);
	if (!have_ssh)
		return;
	struct ssh_target viassh;
	if (resolve(true, &viassh, spec, config, opts, err, sizeof(err)) != 0)
		g_error("ssh -G failed for %s: %s", spec, err);
	assert_same_target(&viassh, builtin);
	target_free(&viassh);
}

static char *config_path;

static void make_config(void)
{
	char *inc = g_build_filename(tmpdir, "conf.d", "*.conf", NULL);
	char *text = g_strdup_printf(
		"# hashi target test\n"
		"IgnoreUnknown Frobnicate*\n"
		"FrobnicateLevel 3\n"
		"Host alias\n"
		"  HostName Real.Example.COM\n"
		"  Port 2222\n"
		"  User alice\n"
		"  IdentityFile ~/.ssh/alias_key\n"
		"  IdentityFile \"/keys/with space/%%r@%%h:%%p\"\n"
		"  IdentitiesOnly yes\n"
		"  ServerAliveInterval 15\n"
		"  ServerAliveCountMax 5\n"
		"  HostKeyAlias AliasKey\n"
		"  ControlPath /tmp/cm-%%C-%%r@%%h:%%p-%%n-%%k-%%L-%%l-%%u-%%i-%%d\n"
		"  ControlPersist 10m\n"
		"Host *.corp !bad.corp\n"
		"  User corpuser\n"
		"  ProxyJump jumper@bastion.corp:2200\n"
		"  StrictHostKeyChecking accept-new\n"
		"Host bad.corp\n"
		"  ProxyCommand nc -X connect -x proxy:8080 %%h %%p # %%r %%n %%%%\n"
		"Host w?ld\n"
		"  Port 7\n"
		"Host alias wild wold\n"
		"  Port 9999\n"
		"  User second\n"
		"  Compression yes\n"
		"Match originalhost m1\n"
		"  HostName m1.example\n"
		"Match host m1.example\n"
		"  Port 1111\n"
		"Match exec \"test %%n = mexec\"\n"
		"  Port 4242\n"
		"Match final host fin.example\n"
		"  User finaluser\n"
		"Match originalhost fin\n"
		"  HostName fin.example\n"
		"Host inc*\n"
		"  Include %s\n"
		"Host v6\n"
		"  HostName 0:0::1\n"
		"Host kh\n"
		"  UserKnownHostsFile ~/kh_%%h_%%u /abs/kh\n"
		"  GlobalKnownHostsFile /etc/gkh\n"
		"  IdentityAgent none\n"
		"  NumberOfPasswordPrompts 1\n"
		"  PasswordAuthentication no\n"
		"  KbdInteractiveAuthentication no\n"
		"  PubkeyAuthentication host-bound\n"
		"  BatchMode yes\n"
		"  CheckHostIP yes\n"
		"  AddressFamily inet\n"
		"  ConnectTimeout none\n"
		"  ConnectTimeout 1m30s\n"
		"  Ciphers aes128-ctr,aes256-gcm@openssh.com\n"
		"  MACs -*sha1*\n"
		"  KexAlgorithms ^diffie-hellman-group14-sha1\n"
		"  HostKeyAlgorithms ssh-ed25519,rsa-sha2*\n"
		"Host agent\n"
		"  IdentityAgent ~/agent-%%h.sock\n"
		"Host nokh\n"
		"  UserKnownHostsFile none\n"
		"  StrictHostKeyChecking no\n"
		"  ControlPersist yes\n"
		"Host tilde\n"
		"  IdentityFile ~%s/tk\n"
		"  IdentityFile ~\n"
		"  ControlPath ~%s//cp-%%h\n"
		"Host batch\n"
		"  BatchMode yes\n"
		"Host * !batch\n"
		"  ServerAliveInterval 60\n",
		inc, getpwuid(getuid())->pw_name, getpwuid(getuid())->pw_name);

	config_path = write_file("config", text);
	g_free(text);
	g_free(inc);
	g_free(write_file("conf.d/a.conf",
			  "Port 4444\n"
			  "Host inc*\n"
			  "  User incuser\n"
			  "  IdentityFile ~/inc_key\n"));
	g_free(write_file("conf.d/b.conf",
			  "Host incb\n"
			  "  HostName b.inc.example\n"));
	g_free(write_file("conf.d/ignored.txt", "Port 1\n"));
}

static void test_builtin_vs_ssh(void)
{
	static const char *const hosts[] = {
		"alias:d", "ALIAS:", "wild:", "wold:", "wald:", "x.corp:", "bad.corp:", "m1:",
		"mexec:", "fin:", "inca:", "incb:", "v6:/x", "kh:", "agent:", "nokh:",
		"[::1]:", "127.000.0.1:", "u@s@alias:d", "plain:", "batch:", "tilde:",
	};
	static const char *const overrides[] = { "Port=1", "User=ouser", "IdentityFile=/o/key",
						 "ServerAliveInterval=5", NULL };
	struct ssh_target t;

	if (!have_ssh)
		g_test_message("no ssh on PATH: checking the built-in reader alone");
	for (size_t i = 0; i < G_N_ELEMENTS(hosts); i++) {
		compare_paths(&t, hosts[i], config_path, NULL);
		target_free(&t);
		compare_paths(&t, hosts[i], config_path, overrides);
		target_free(&t);
	}
}

/* What the built-in reader says, checked against what ssh_config(5) says. */
static void test_builtin_values(void)
{
	struct ssh_target t;
	char *s;

	compare_paths(&t, "alias:dir", config_path, NULL);
	g_assert_cmpstr(t.host_arg, ==, "alias");
	g_assert_cmpstr(t.hostname, ==, "real.example.com"); /* lowercased, as ssh */
	g_assert_cmpstr(t.port, ==, "2222");                 /* first value wins */
	g_assert_cmpstr(t.user, ==, "alice");
	g_assert_cmpstr(t.dir, ==, "dir");
	g_assert_cmpint(t.n_identity_files, ==, 2);
	s = g_build_filename(home, ".ssh/alias_key", NULL);
	g_assert_cmpstr(t.identity_files[0], ==, s);
	g_free(s);
	g_assert_cmpstr(t.identity_files[1], ==, "/keys/with space/alice@real.example.com:2222");
	g_assert_true(t.identities_only);
	g_assert_cmpint(t.server_alive_interval, ==, 15);
	g_assert_cmpint(t.server_alive_count_max, ==, 5);
	g_assert_cmpstr(t.host_key_alias, ==, "aliaskey");
	g_assert_true(g_str_has_prefix(t.control_path, "/tmp/cm-"));
	g_assert_nonnull(strstr(t.control_path, "-alice@real.example.com:2222-alias-aliaskey-"));
	g_assert_cmpint(t.control_persist, ==, 600);
	g_assert_true(t.compression); /* from "Host alias wild wold": not set before */
	g_assert_cmpint(t.strict, ==, SHKC_ASK);
	g_assert_cmpint(t.n_user_known_hosts, ==, 2);
	g_assert_cmpint(t.n_known_hosts, ==, 4);
	g_assert_cmpstr(t.known_hosts[2], ==, "/etc/ssh/ssh_known_hosts");
	target_free(&t);

	compare_paths(&t, "wild:", config_path, NULL);
	g_assert_cmpstr(t.port, ==, "7"); /* w?ld comes first */
	g_assert_cmpstr(t.user, ==, "second");
	g_assert_true(t.compression);
	g_assert_cmpint(t.server_alive_interval, ==, 60);
	target_free(&t);

	compare_paths(&t, "x.corp:", config_path, NULL);
	g_assert_cmpstr(t.user, ==, "corpuser");
	g_assert_cmpstr(t.proxy_jump, ==, "jumper@bastion.corp:2200");
	g_assert_null(t.proxy_command);
	g_assert_cmpint(t.strict, ==, SHKC_ACCEPT_NEW);
	target_free(&t);

	/* negated: *.corp does not apply to bad.corp */
	compare_paths(&t, "bad.corp:", config_path, NULL);
	g_assert_cmpstr(t.user, !=, "corpuser");
	g_assert_null(t.proxy_jump);
	s = g_strdup_printf("nc -X connect -x proxy:8080 bad.corp 22 # %s bad.corp %%", t.user);
	g_assert_cmpstr(t.proxy_command, ==, s);
	g_free(s);
	target_free(&t);

	compare_paths(&t, "m1:", config_path, NULL);
	g_assert_cmpstr(t.hostname, ==, "m1.example");
	g_assert_cmpstr(t.port, ==, "1111");
	target_free(&t);

	compare_paths(&t, "mexec:", config_path, NULL);
	g_assert_cmpstr(t.port, ==, "4242");
	target_free(&t);

	compare_paths(&t, "fin:", config_path, NULL);
	g_assert_cmpstr(t.hostname, ==, "fin.example");
	g_assert_cmpstr(t.user, ==, "finaluser");
	target_free(&t);

	compare_paths(&t, "inca:", config_path, NULL);
	g_assert_cmpstr(t.port, ==, "4444");
	g_assert_cmpstr(t.user, ==, "incuser");
	target_free(&t);
	compare_paths(&t, "incb:", config_path, NULL);
	g_assert_cmpstr(t.hostname, ==, "b.inc.example");
	target_free(&t);

	compare_paths(&t, "v6:", config_path, NULL);
	g_assert_cmpstr(t.hostname, ==, "::1");
	target_free(&t);

	compare_paths(&t, "kh:", config_path, NULL);
	g_assert_cmpint(t.n_user_known_hosts, ==, 2);
	g_assert_cmpint(t.n_known_hosts, ==, 3);
	s = g_strdup_printf("%s/kh_kh_%s", home, getpwuid(getuid())->pw_name);
	g_assert_cmpstr(t.known_hosts[0], ==, s);
	g_free(s);
	g_assert_cmpstr(t.known_hosts[1], ==, "/abs/kh");
	g_assert_cmpstr(t.known_hosts[2], ==, "/etc/gkh");
	g_assert_cmpstr(t.identity_agent, ==, "none");
	g_assert_cmpint(t.number_of_password_prompts, ==, 1);
	g_assert_false(t.password_auth);
	g_assert_false(t.kbdint_auth);
	g_assert_true(t.pubkey_auth);
	g_assert_true(t.batch_mode);
	g_assert_true(t.check_host_ip);
	g_assert_cmpint(t.address_family, ==, AF_INET);
	g_assert_cmpint(t.connect_timeout, ==, 90);
	g_assert_cmpstr(t.ciphers, ==, "aes128-ctr,aes256-gcm@openssh.com");
	g_assert_null(strstr(t.macs, "sha1"));
	g_assert_true(g_str_has_prefix(t.kex_algorithms, "diffie-hellman-group14-sha1,"));
	g_assert_cmpstr(t.host_key_algorithms, ==, "ssh-ed25519,rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com,"
			"rsa-sha2-512,rsa-sha2-512-cert-v01@openssh.com");
	target_free(&t);

	/* Debian's ssh: BatchMode makes the default ServerAliveInterval 300 */
	compare_paths(&t, "batch:", config_path, NULL);
	g_assert_true(t.batch_mode);
	g_assert_cmpint(t.server_alive_interval, ==, 300);
	target_free(&t);

	compare_paths(&t, "agent:", config_path, NULL);
	s = g_strdup_printf("%s/agent-agent.sock", home);
	g_assert_cmpstr(t.identity_agent, ==, s);
	g_free(s);
	target_free(&t);

	/* IdentityAgent $VAR: that variable's value; unset: no agent */
	static const char *const agent_var[] = { "IdentityAgent=$HASHI_TEST_AGENT", NULL };
	g_setenv("HASHI_TEST_AGENT", "/run/test-agent.sock", TRUE);
	compare_paths(&t, "plain:", config_path, agent_var);
	g_assert_cmpstr(t.identity_agent, ==, "/run/test-agent.sock");
	target_free(&t);
	g_unsetenv("HASHI_TEST_AGENT");
	compare_paths(&t, "plain:", config_path, agent_var);
	g_assert_cmpstr(t.identity_agent, ==, "none");
	target_free(&t);

	compare_paths(&t, "nokh:", config_path, NULL);
	g_assert_cmpint(t.n_user_known_hosts, ==, 0);
	g_assert_cmpint(t.n_known_hosts, ==, 2);
	g_assert_cmpint(t.strict, ==, SHKC_NO);
	g_assert_cmpint(t.control_persist, ==, 0);
	target_free(&t);

	/* the user in user@host wins over User */
	compare_paths(&t, "u@s@alias:d", config_path, NULL);
	g_assert_cmpstr(t.user, ==, "u@s");
	target_free(&t);
}

static void test_overrides(void)
{
	static const char *const o1[] = { "Port=1", "User=ouser", "IdentityFile=/o/key",
					   "port=2", "StrictHostKeyChecking=yes", "HostName=other",
					   NULL };
	struct ssh_target t;

	compare_paths(&t, "alias:", config_path, o1);
	g_assert_cmpstr(t.port, ==, "1"); /* -o comes first, and the first wins */
	g_assert_cmpstr(t.user, ==, "ouser");
	g_assert_cmpstr(t.hostname, ==, "other");
	g_assert_cmpint(t.strict, ==, SHKC_YES);
	g_assert_cmpint(t.n_identity_files, ==, 3); /* IdentityFile adds up */
	g_assert_cmpstr(t.identity_files[0], ==, "/o/key");
	target_free(&t);

	/* user@ beats -o User */
	compare_paths(&t, "me@alias:", config_path, o1);
	g_assert_cmpstr(t.user, ==, "me");
	target_free(&t);

	/* hashi's own options are taken out, not given to ssh */
	static const char *const o2[] = { "sftp_server=/usr/lib/openssh/sftp-server",
					  "password_stdin", "Port 2200", NULL };
	compare_paths(&t, "plain:", config_path, o2);
	g_assert_cmpstr(t.sftp_server, ==, "/usr/lib/openssh/sftp-server");
	g_assert_true(t.password_stdin);
	g_assert_cmpstr(t.port, ==, "2200");
	target_free(&t);
}

static void test_defaults(void)
{
	struct ssh_target t;
	struct passwd *pw = getpwuid(getuid());
	static const char *const ids[] = { "id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519",
					   "id_ed25519_sk", "id_xmss", "id_dsa" };

	compare_paths(&t, "[::1]:", "none", NULL);
	g_assert_cmpstr(t.hostname, ==, "::1");
	g_assert_cmpstr(t.user, ==, pw->pw_name);
	g_assert_cmpstr(t.port, ==, "22");
	g_assert_cmpstr(t.dir, ==, "");
	g_assert_cmpint(t.n_identity_files, ==, G_N_ELEMENTS(ids));
	for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
		char *s = g_strdup_printf("%s/.ssh/%s", home, ids[i]);
		g_assert_cmpstr(t.identity_files[i], ==, s);
		g_free(s);
	}
	g_assert_cmpint(t.n_known_hosts, ==, 4);
	g_assert_cmpint(t.n_user_known_hosts, ==, 2);
	g_assert_cmpint(t.strict, ==, SHKC_ASK);
	g_assert_false(t.identities_only);
	g_assert_true(t.pubkey_auth && t.password_auth && t.kbdint_auth);
	g_assert_false(t.batch_mode);
	g_assert_cmpint(t.number_of_password_prompts, ==, 3);
	g_assert_cmpint(t.server_alive_interval, ==, 0);
	g_assert_cmpint(t.server_alive_count_max, ==, 3);
	g_assert_cmpint(t.connect_timeout, ==, 0);
	g_assert_cmpint(t.control_persist, ==, -1);
	g_assert_null(t.control_path);
	g_assert_null(t.proxy_command);
	g_assert_null(t.proxy_jump);
	g_assert_cmpint(t.address_family, ==, AF_UNSPEC);
	g_assert_nonnull(t.ciphers);
	g_assert_cmpstr(t.identity_agent, ==, g_getenv("SSH_AUTH_SOCK"));
	target_free(&t);
}

/* The user's real ~/.ssh/config and /etc/ssh/ssh_config, read both ways. */
static void test_system_config(void)
{
	char *user_conf = g_build_filename(home, ".ssh", "config", NULL);
	const char *files[] = { user_conf, "/etc/ssh/ssh_config" };
	struct ssh_target t;

	for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
		char *text = NULL;
		if (g_file_get_contents(files[i], &text, NULL, NULL) &&
		    strcasestr(text, "canonicaliz") != NULL) {
			g_free(text);
			g_free(user_conf);
			g_test_skip("the system's ssh config canonicalises host names (DNS)");
			return;
		}
		g_free(text);
	}
	g_free(user_conf);
	compare_paths(&t, "somehost.example:", NULL, NULL);
	target_free(&t);
	compare_paths(&t, "bob@127.0.0.1:/srv", NULL, NULL);
	g_assert_cmpstr(t.user, ==, "bob");
	target_free(&t);
}

struct error_case {
	const char *config_text; /* NULL: use -o */
	const char *opt;
	const char *want;        /* all of it, from both paths */
};

static void test_errors(void)
{
	static const struct error_case cases[] = {
		{ NULL, "Port=x", "command-line line 0: Bad port 'x'." },
		{ NULL, "Port=0", "command-line line 0: Bad port '0'." },
		{ NULL, "Port=65536", "command-line line 0: Bad port '65536'." },
		{ NULL, "Bogus=1", "command-line: line 0: Bad configuration option: bogus" },
		{ NULL, "Host x", "Host directive not supported as a command-line option" },
		{ NULL, "StrictHostKeyChecking=maybe", "command-line line 0: unsupported option \"maybe\"." },
		{ NULL, "ConnectTimeout=abc", "command-line line 0: invalid time value." },
		{ NULL, "ServerAliveCountMax=-1", "command-line line 0: integer value too small." },
		{ NULL, "Ciphers=aes128-ctr,rot13", "command-line line 0: Bad SSH2 cipher spec 'aes128-ctr,rot13'." },
		{ NULL, "MACs=foo", "command-line line 0: Bad SSH2 MAC spec 'foo'." },
		{ NULL, "KexAlgorithms=foo", "Unsupported KEX algorithm \"foo\"" },
		{ NULL, "User a b", "command-line line 0: keyword user extra arguments at end of line" },
		{ NULL, "User \"a", "command-line line 0: invalid quotes" },
		{ NULL, "Port", "command-line line 0: no argument after keyword \"port\"" },
		{ NULL, "ProxyJump=a:b", "command-line line 0: Invalid ProxyJump \"a:b\"" },
		{ NULL, "ControlPersist=sometimes", "command-line line 0: Bad ControlPersist argument." },
		{ NULL, "IdentityFile=~/%x", "IdentityFile: unknown key %x" },
		{ NULL, "ProxyCommand=nc %x", "ProxyCommand: unknown key %x" },
		{ "Host a\n  Port 22x\n", NULL, "FILE line 2: Bad port '22x'." },
		{ "Host *\n  RSAAuthentication yes\n  Port x\n", NULL, "FILE line 3: Bad port 'x'." },
		{ "Match foo bar\n", NULL, "Unsupported Match attribute foo" },
		{ "Port 5 6\n", NULL, "FILE line 1: keyword port extra arguments at end of line" },
		{ "UserKnownHostsFile a none\n", NULL,
		  "FILE line 1: keyword userknownhostsfile \"none\" argument must appear alone." },
		{ "Match all host x\n", NULL, "FILE line 1: 'all' cannot be combined with other Match attributes" },
		{ "Include FILE\n", NULL, "Too many recursive configuration includes" },
		/* values are checked in blocks that do not apply too */
		{ "Host nomatch\n  Compression maybe\n", NULL, "FILE line 2: unsupported option \"maybe\"." },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		const struct error_case *c = &cases[i];
		char *file = NULL, *want;
		const char *opts[2] = { c->opt, NULL };

		if (c->config_text) {
			char *name = g_strdup_printf("bad%zu", i);
			char *path = g_build_filename(tmpdir, name, NULL);
			char **parts = g_strsplit(c->config_text, "FILE", -1);
			char *text = g_strjoinv(path, parts);
			file = write_file(name, text);
			g_free(text);
			g_strfreev(parts);
			g_free(path);
			g_free(name);
		}
		char **wparts = g_strsplit(c->want, "FILE", -1);
		want = g_strjoinv(file ? file : "", wparts);
		g_strfreev(wparts);
		for (int via_ssh = 0; via_ssh <= (int)have_ssh; via_ssh++) {
			struct ssh_target t;
			char err[512] = "";
			int rc = resolve(via_ssh, &t, "h:", file ? file : "/dev/null",
					 c->opt ? opts : NULL, err, sizeof(err));
			g_test_message("%s %s: %s", via_ssh ? "ssh -G" : "built-in",
				       c->opt ? c->opt : c->config_text, err);
			g_assert_cmpint(rc, ==, -1);
			g_assert_cmpstr(err, ==, want);
			g_assert_null(t.hostname); /* left zeroed */
			target_free(&t);
		}
		g_free(want);
		g_free(file);
	}

	/* a missing -F file */
	for (int via_ssh = 0; via_ssh <= (int)have_ssh; via_ssh++) {
		struct ssh_target t;
		char err[512] = "";
		g_assert_cmpint(resolve(via_ssh, &t, "h:", "/nonexistent/config", NULL, err,
					sizeof(err)), ==, -1);
		g_assert_cmpstr(err, ==,
				"Can't open user config file /nonexistent/config: No such file or directory");
	}
}

static bool ssh_on_path(void)
{
	char *p = g_find_program_in_path("ssh");
	bool ok = p != NULL;

	g_free(p);
	return ok;
}

static void remove_tree(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;

	if (d == NULL)
		return;
	while ((name = g_dir_read_name(d)) != NULL) {
		char *p = g_build_filename(dir, name, NULL);
		if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
			remove_tree(p);
		else
			g_unlink(p);
		g_free(p);
	}
	g_dir_close(d);
	g_rmdir(dir);
}

int main(int argc, char **argv)
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	tmpdir = g_dir_make_tmp("hashi-target-XXXXXX", NULL);
	g_assert_nonnull(tmpdir);
	g_assert_cmpint(chmod(tmpdir, 0755), ==, 0);
	home = g_strdup(getpwuid(getuid())->pw_dir);
	have_ssh = ssh_on_path();
	make_config();

	g_test_add_func("/target/split", test_split);
	g_test_add_func("/target/keywords", test_keywords);
	g_test_add_func("/target/keywords-vs-ssh-G", test_keywords_vs_ssh_g);
	g_test_add_func("/target/keywords-known-to-ssh", test_keywords_known_to_ssh);
	g_test_add_func("/target/builtin-vs-ssh", test_builtin_vs_ssh);
	g_test_add_func("/target/builtin-values", test_builtin_values);
	g_test_add_func("/target/overrides", test_overrides);
	g_test_add_func("/target/defaults", test_defaults);
	g_test_add_func("/target/system-config", test_system_config);
	g_test_add_func("/target/errors", test_errors);
	rc = g_test_run();

	remove_tree(tmpdir);
	g_free(tmpdir);
	g_free(home);
	g_free(config_path);
	return rc;
}
