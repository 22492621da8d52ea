/*
 * contain_symlinks: what a symbolic link on the mount may point at.
 *
 * The kernel follows a link on the mount in the client's own namespace, so
 * a target the server chose could lead a program that writes through the
 * mount to the client's own files (/home/you/.bashrc). Contained, a link
 * shows its target only when following it stays beneath the mount:
 *   - a relative target whose leading ".." never climb above the mount's
 *     root, with no ".." after a name (a name may itself be a link);
 *   - an absolute target beneath the remote directory mounted, shown
 *     relative (as sshfs's transform_symlinks does), so that it works.
 * Anything else is refused (EPERM).
 */
#ifndef HASHI_SYMLINK_H
#define HASHI_SYMLINK_H

/* root: the remote directory mounted (absolute); link: the link's remote
 * path (beneath root); target: what the server says it points at.
 * Returns 0 with *out (g_malloc'd) the target to show, or -1 with *why
 * saying what is wrong (a static string). */
int symlink_contain(const char *root, const char *link, const char *target, char **out,
		    const char **why);

#endif
