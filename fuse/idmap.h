/*
 * uid/gid mapping between the server's id space and ours, as sshfs's
 * -o idmap=, uidfile=, gidfile= and nomap= options do, plus hashi's own
 * idmap=names.
 *
 * Modes:
 *   none   every id passes through unchanged (sshfs's default).
 *   user   the login user's remote uid and gid (the owner of the remote root
 *          directory at mount time, as sshfs detects it; given with
 *          idmap_set_user) <-> the mounting user's local uid and gid. Every
 *          other id passes through unchanged; nomap does not apply (as in
 *          sshfs). Until idmap_set_user is called everything passes through.
 *   file   uidfile=/gidfile= give the mapping. At least one of them is
 *          required; an id kind (uid or gid) without a file passes through
 *          unchanged and nomap does not apply to it (as in sshfs).
 *   names  hashi's own: a remote id is mapped through its remote name
 *          (users-groups-by-id@openssh.com, asked by the caller and taught
 *          with idmap_learn_uid/gid) to the local id of the same name.
 *
 * Map files (as in sshfs): one mapping a line, `name:id`, where name is a
 * LOCAL user (uidfile) or group (gidfile) and id the REMOTE numeric id; or a
 * passwd/group file line (`name:x:id:...`, so a copy of the server's
 * /etc/passwd or /etc/group works as is). Blank lines and lines starting with
 * '#' are skipped. A name with no local user/group is skipped, as sshfs does
 * (ids it would have mapped then follow nomap). When a remote id or a local
 * id appears twice, the later line wins. The file must be owned by the
 * mounting user (or root) and not writable by group or others (sshfs's
 * checks, plus root).
 *
 * nomap (file and names modes): what happens to an id with no mapping.
 *   ignore  shown and sent unchanged.
 *   error   (sshfs's default) chown/chgrp to an unmapped local id fails:
 *           idmap_*_to_remote returns -1 and the caller answers EPERM, as
 *           sshfs does. sshfs also fails the stat of a file whose remote
 *           owner is unmapped (EPERM); hashi instead shows such an owner as
 *           the overflow id (/proc/sys/fs/overflowuid and overflowgid,
 *           normally 65534 = nobody/nogroup) so that the file stays visible.
 *
 * (uid_t)-1 / (gid_t)-1 ("leave unchanged") always passes through unchanged.
 *
 * Every function is thread-safe (a mutex inside; no lock is held across a
 * password-database lookup). A NULL map behaves as mode none.
 */
#ifndef HASHI_IDMAP_H
#define HASHI_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum idmap_mode { IDMAP_NONE, IDMAP_USER, IDMAP_FILE, IDMAP_NAMES };

struct idmap;

/* A new map. uidfile and gidfile are read only in mode file (either may be
 * NULL, not both). nomap_error: nomap=error (true) or nomap=ignore (false).
 * Returns NULL with a one-line error in err (a file that cannot be read, has
 * a bad line -- "FILE:LINE: ..." -- or fails the ownership checks; mode file
 * without any file). */
struct idmap *idmap_new(enum idmap_mode mode, const char *uidfile, const char *gidfile, bool nomap_error,
			char *err, size_t errlen);

/* "none" "user" "file" "names" -> *out and 0; -1 (and *out untouched) if bad. */
int idmap_mode_from_name(const char *s, enum idmap_mode *out);

/* Mode user: the login user's remote ids and the local ids they become.
 * Ignored in the other modes. May be called again (after a reconnect). */
void idmap_set_user(struct idmap *m, uint32_t remote_uid, uint32_t remote_gid, uid_t local_uid, gid_t local_gid);

/* Remote -> local, for stat and readdir. Never fails: an unmapped id is
 * returned unchanged (nomap=ignore) or as the overflow id (nomap=error). */
uid_t idmap_uid_to_local(struct idmap *m, uint32_t remote);
gid_t idmap_gid_to_local(struct idmap *m, uint32_t remote);

/* Local -> remote, for chown/chgrp (SETSTAT). 0 with *remote set; -1 when the
 * id is unmapped and nomap=error (the caller answers EPERM). */
int idmap_uid_to_remote(struct idmap *m, uid_t local, uint32_t *remote);
int idmap_gid_to_remote(struct idmap *m, gid_t local, uint32_t *remote);

/* Mode names: whether this remote id's name has been learned yet (if not, the
 * caller asks the server with users-groups-by-id@openssh.com and calls
 * idmap_learn_*; an id still unknown when translated follows nomap). Always
 * true in the other modes. */
bool idmap_uid_known(struct idmap *m, uint32_t remote);
bool idmap_gid_known(struct idmap *m, uint32_t remote);

/* Mode names: teach the remote name of a remote id ("" or NULL = the server
 * has no such user/group; the id then follows nomap). The local id is looked
 * up by that name (getpwnam_r/getgrnam_r); a name with no local user/group
 * follows nomap. Learning an id again replaces what was known. Ignored in
 * the other modes. */
void idmap_learn_uid(struct idmap *m, uint32_t remote, const char *remote_name);
void idmap_learn_gid(struct idmap *m, uint32_t remote, const char *remote_name);

void idmap_free(struct idmap *m);

#endif
