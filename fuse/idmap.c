/*
 * uid/gid mapping: sshfs's idmap=none|user|file and nomap=, and hashi's
 * idmap=names. See idmap.h for the rules.
 */
#include "idmap.h"

#include <errno.h>
#include <glib.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define IDMAP_OVERFLOW_DEFAULT 65534u
#define IDMAP_UNCHANGED UINT32_MAX /* (uid_t)-1: chown's "leave as is" */

/* One id kind (uids or gids). */
struct idtab {
	bool active;       /* file: a file was given; names: always */
	GHashTable *fwd;   /* remote -> local, mapped ids only */
	GHashTable *rev;   /* local -> remote */
	GHashTable *known; /* names: set of remote ids whose name was learned */
	uint32_t overflow; /* shown for an unmapped id under nomap=error */
	/* mode user */
	bool user_set;
	uint32_t user_remote, user_local;
};

struct idmap {
	enum idmap_mode mode;
	bool nomap_error;
	pthread_mutex_t lock;
	struct idtab uid, gid;
};

#define KEY(x) GUINT_TO_POINTER((guint)(x))

int idmap_mode_from_name(const char *s, enum idmap_mode *out)
{
	static const struct {
		const char *name;
		enum idmap_mode mode;
	} modes[] = {
		{ "none", IDMAP_NONE },
		{ "user", IDMAP_USER },
		{ "file", IDMAP_FILE },
		{ "names", IDMAP_NAMES },
	};
	if (!s)
		return -1;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(s, modes[i].name) == 0) {
			*out = modes[i].mode;
			return 0;
		}
	}
	return -1;
}

/* /proc/sys/fs/overflowuid or overflowgid, else 65534. */
static uint32_t read_overflow(const char *path)
{
	uint32_t id = IDMAP_OVERFLOW_DEFAULT;
	FILE *f = fopen(path, "re");
	if (f) {
		unsigned long v;
		if (fscanf(f, "%lu", &v) == 1 && v < IDMAP_UNCHANGED)
			id = (uint32_t)v;
		fclose(f);
	}
	return id;
}

/* Local user or group by name, without the non-reentrant getpwnam.
 * 1 = found (*id set), 0 = no such name, -1 = lookup failed (errno set). */
static int local_id_by_name(bool group, const char *name, uint32_t *id)
{
	long sz = sysconf(group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
	size_t len = sz > 0 ? (size_t)sz : 1024;
	for (;;) {
		char *buf = malloc(len);
		int rc;
		if (!buf) {
			errno = ENOMEM;
			return -1;
		}
		if (group) {
			struct group gr, *res = NULL;
			rc = getgrnam_r(name, &gr, buf, len, &res);
			if (rc == 0 && res)
				*id = (uint32_t)res->gr_gid;
			else if (rc == 0)
				rc = ENOENT;
		} else {
			struct passwd pw, *res = NULL;
			rc = getpwnam_r(name, &pw, buf, len, &res);
			if (rc == 0 && res)
				*id = (uint32_t)res->pw_uid;
			else if (rc == 0)
				rc = ENOENT;
		}
		free(buf);
		if (rc == 0)
			return 1;
		if (rc == ERANGE && len < (1u << 24)) {
			len *= 2;
			continue;
		}
		/* glibc reports "not found" as 0 with no result, but some NSS
		 * modules say ENOENT, ESRCH, EBADF or EPERM (see getpwnam(3)). */
		if (rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM)
			return 0;
		errno = rc;
		return -1;
	}
}

static void idtab_init(struct idtab *t, const char *overflow_path)
{
	memset(t, 0, sizeof(*t));
	t->fwd = g_hash_table_new(g_direct_hash, g_direct_equal);
	t->rev = g_hash_table_new(g_direct_hash, g_direct_equal);
	t->known = g_hash_table_new(g_direct_hash, g_direct_equal);
	t->overflow = read_overflow(overflow_path);
}

static void idtab_destroy(struct idtab *t)
{
	g_hash_table_destroy(t->fwd);
	g_hash_table_destroy(t->rev);
	g_hash_table_destroy(t->known);
}

static void trim(char **s)
{
	char *p = *s, *end;
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		end--;
	*end = '\0';
	*s = p;
}

/* Strict decimal id: 0 .. 2^32-2 (2^32-1 is "unchanged"). */
static bool parse_id(const char *s, uint32_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v >= IDMAP_UNCHANGED)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

/* Read a uidfile (group false) or gidfile (group true) into t. */
static int load_file(struct idtab *t, bool group, const char *file, char *err, size_t errlen)
{
	const char *kind = group ? "group" : "user";
	FILE *f = fopen(file, "re");
	struct stat st;
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int ret = -1;

	if (!f) {
		snprintf(err, errlen, "cannot open %s '%s': %s", group ? "gidfile" : "uidfile", file,
			 strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) != 0) {
		snprintf(err, errlen, "cannot stat '%s': %s", file, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "'%s' is not a regular file", file);
		goto out;
	}
	if (st.st_uid != getuid() && st.st_uid != 0) {
		snprintf(err, errlen, "'%s' is not owned by uid %lu", file, (unsigned long)getuid());
		goto out;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "'%s' is writable by other users", file);
		goto out;
	}

	errno = 0;
	while (getline(&line, &cap, f) >= 0) {
		char *p = line, *fields[3], *name, *idtxt;
		int n = 0;
		uint32_t remote, local;
		int found;

		lineno++;
		trim(&p);
		if (*p == '\0' || *p == '#')
			continue;
		while (n < 3) {
			fields[n++] = p;
			p = strchr(p, ':');
			if (!p)
				break;
			*p++ = '\0';
		}
		if (n < 2) {
			snprintf(err, errlen, "%s:%u: bad line (expected name:id)", file, lineno);
			goto out;
		}
		/* name:id, or a passwd/group line name:password:id:... */
		name = fields[0];
		idtxt = n == 2 ? fields[1] : fields[2];
		if (n == 3 && strchr(idtxt, ':'))
			*strchr(idtxt, ':') = '\0';
		trim(&name);
		trim(&idtxt);
		if (!*name) {
			snprintf(err, errlen, "%s:%u: bad line (empty name)", file, lineno);
			goto out;
		}
		if (!parse_id(idtxt, &remote)) {
			snprintf(err, errlen, "%s:%u: bad id '%s'", file, lineno, idtxt);
			goto out;
		}
		found = local_id_by_name(group, name, &local);
		if (found < 0) {
			snprintf(err, errlen, "%s:%u: cannot look up %s '%s': %s", file, lineno, kind, name,
				 strerror(errno));
			goto out;
		}
		if (found == 0) {
			/* As sshfs: a name unknown here is skipped. */
			log_verbose("%s:%u: no local %s '%s'; remote id %u not mapped", file, lineno, kind,
				    name, remote);
			continue;
		}
		g_hash_table_insert(t->fwd, KEY(remote), KEY(local));
		g_hash_table_insert(t->rev, KEY(local), KEY(remote));
	}
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read '%s': %s", file, strerror(errno));
		goto out;
	}
	t->active = true;
	ret = 0;
out:
	free(line);
	fclose(f);
	return ret;
}

struct idmap *idmap_new(enum idmap_mode mode, const char *uidfile, const char *gidfile, bool nomap_error,
			char *err, size_t errlen)
{
	struct idmap *m;

	if (errlen)
		err[0] = '\0';
	if (mode != IDMAP_NONE && mode != IDMAP_USER && mode != IDMAP_FILE && mode != IDMAP_NAMES) {
		snprintf(err, errlen, "bad idmap mode %d", (int)mode);
		return NULL;
	}
	if (mode == IDMAP_FILE && !uidfile && !gidfile) {
		snprintf(err, errlen, "need a uidfile or gidfile with idmap=file");
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->mode = mode;
	m->nomap_error = nomap_error;
	pthread_mutex_init(&m->lock, NULL);
	idtab_init(&m->uid, "/proc/sys/fs/overflowuid");
	idtab_init(&m->gid, "/proc/sys/fs/overflowgid");

	if (mode == IDMAP_FILE) {
		if ((uidfile && load_file(&m->uid, false, uidfile, err, errlen) != 0) ||
		    (gidfile && load_file(&m->gid, true, gidfile, err, errlen) != 0)) {
			idmap_free(m);
			return NULL;
		}
	} else if (mode == IDMAP_NAMES) {
		m->uid.active = m->gid.active = true;
	}
	return m;
}

void idmap_free(struct idmap *m)
{
	if (!m)
		return;
	idtab_destroy(&m->uid);
	idtab_destroy(&m->gid);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void idmap_set_user(struct idmap *m, uint32_t remote_uid, uint32_t remote_gid, uid_t local_uid, gid_t local_gid)
{
	if (!m || m->mode != IDMAP_USER)
		return;
	pthread_mutex_lock(&m->lock);
	m->uid.user_set = m->gid.user_set = true;
	m->uid.user_remote = remote_uid;
	m->uid.user_local = (uint32_t)local_uid;
	m->gid.user_remote = remote_gid;
	m->gid.user_local = (uint32_t)local_gid;
	pthread_mutex_unlock(&m->lock);
}

static uint32_t to_local(struct idmap *m, struct idtab *t, uint32_t remote)
{
	uint32_t out = remote;
	gpointer v;

	if (!m || m->mode == IDMAP_NONE || remote == IDMAP_UNCHANGED)
		return remote;
	pthread_mutex_lock(&m->lock);
	if (m->mode == IDMAP_USER) {
		if (t->user_set && remote == t->user_remote)
			out = t->user_local;
	} else if (t->active) {
		if (g_hash_table_lookup_extended(t->fwd, KEY(remote), NULL, &v))
			out = GPOINTER_TO_UINT(v);
		else if (m->nomap_error)
			out = t->overflow;
	}
	pthread_mutex_unlock(&m->lock);
	return out;
}

static int to_remote(struct idmap *m, struct idtab *t, uint32_t local, uint32_t *remote)
{
	int ret = 0;
	gpointer v;

	*remote = local;
	if (!m || m->mode == IDMAP_NONE || local == IDMAP_UNCHANGED)
		return 0;
	pthread_mutex_lock(&m->lock);
	if (m->mode == IDMAP_USER) {
		if (t->user_set && local == t->user_local)
			*remote = t->user_remote;
	} else if (t->active) {
		if (g_hash_table_lookup_extended(t->rev, KEY(local), NULL, &v))
			*remote = GPOINTER_TO_UINT(v);
		else if (m->nomap_error)
			ret = -1;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

uid_t idmap_uid_to_local(struct idmap *m, uint32_t remote)
{
	return (uid_t)to_local(m, m ? &m->uid : NULL, remote);
}

gid_t idmap_gid_to_local(struct idmap *m, uint32_t remote)
{
	return (gid_t)to_local(m, m ? &m->gid : NULL, remote);
}

int idmap_uid_to_remote(struct idmap *m, uid_t local, uint32_t *remote)
{
	return to_remote(m, m ? &m->uid : NULL, (uint32_t)local, remote);
}

int idmap_gid_to_remote(struct idmap *m, gid_t local, uint32_t *remote)
{
	return to_remote(m, m ? &m->gid : NULL, (uint32_t)local, remote);
}

static bool known(struct idmap *m, struct idtab *t, uint32_t remote)
{
	bool k;

	if (!m || m->mode != IDMAP_NAMES)
		return true;
	pthread_mutex_lock(&m->lock);
	k = g_hash_table_contains(t->known, KEY(remote));
	pthread_mutex_unlock(&m->lock);
	return k;
}

bool idmap_uid_known(struct idmap *m, uint32_t remote)
{
	return known(m, m ? &m->uid : NULL, remote);
}

bool idmap_gid_known(struct idmap *m, uint32_t remote)
{
	return known(m, m ? &m->gid : NULL, remote);
}

static void learn(struct idmap *m, struct idtab *t, bool group, uint32_t remote, const char *name)
{
	uint32_t local = 0;
	int found = 0;
	gpointer v;

	if (!m || m->mode != IDMAP_NAMES)
		return;
	/* The password database may be on the network: no lock held here. */
	if (name && *name) {
		found = local_id_by_name(group, name, &local);
		if (found < 0)
			log_error("idmap: cannot look up local %s '%s': %s", group ? "group" : "user", name,
				  strerror(errno));
		else if (found == 0)
			log_debug("idmap: remote %s '%s' (%u) has no local %s", group ? "group" : "user", name,
				  remote, group ? "group" : "user");
	}

	pthread_mutex_lock(&m->lock);
	/* Forget what this remote id mapped to before. */
	if (g_hash_table_lookup_extended(t->fwd, KEY(remote), NULL, &v)) {
		gpointer back;
		if (g_hash_table_lookup_extended(t->rev, v, NULL, &back) && GPOINTER_TO_UINT(back) == remote)
			g_hash_table_remove(t->rev, v);
		g_hash_table_remove(t->fwd, KEY(remote));
	}
	g_hash_table_add(t->known, KEY(remote));
	if (found > 0) {
		g_hash_table_insert(t->fwd, KEY(remote), KEY(local));
		g_hash_table_insert(t->rev, KEY(local), KEY(remote));
	}
	pthread_mutex_unlock(&m->lock);
}

void idmap_learn_uid(struct idmap *m, uint32_t remote, const char *remote_name)
{
	learn(m, m ? &m->uid : NULL, false, remote, remote_name);
}

void idmap_learn_gid(struct idmap *m, uint32_t remote, const char *remote_name)
{
	learn(m, m ? &m->gid : NULL, true, remote, remote_name);
}
