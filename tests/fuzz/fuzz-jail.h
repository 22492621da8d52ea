/*
 * Confinement for fuzz targets that let the fuzzer name arbitrary paths
 * (fuzz-server: remove, rename, setstat, symlink, write ... on any path).
 *
 * jail_enter() runs from LLVMFuzzerInitialize, before libFuzzer parses its
 * flags. It never returns unconfined: on any failure it aborts. It
 *   - makes every path libFuzzer will use absolute (corpus directories, input
 *     files, -artifact_prefix, -exact_artifact_path, -dict, -seed_inputs),
 *     adds -artifact_prefix=<cwd>/ when none is given, and refuses the modes
 *     that re-run the binary through a shell (-fork, -jobs, -workers, -merge,
 *     -set_cover_merge, -minimize_crash, -cleanse_crash);
 *   - creates a throwaway directory /tmp/hashi-fuzz-XXXXXX, enters a new mount
 *     namespace (and a user namespace first when not root), makes the mount
 *     tree private, mounts a size-limited tmpfs on that directory, bind-mounts
 *     the paths above at their own absolute paths inside it (writable only
 *     where libFuzzer writes; the directories leading to them are read-only
 *     mounts the fuzzer cannot rename or remove), and chroot()s into it;
 *   - checks the result (the root is the tmpfs, "/.." is "/") and aborts
 *     loudly otherwise;
 *   - leaves a small watcher process that removes the empty directory from
 *     /tmp when the fuzzer exits (the tmpfs and its contents vanish with the
 *     mount namespace).
 *
 * /proc is not mounted inside (its fd/, exe and cwd links lead outside a
 * chroot), so LeakSanitizer cannot run; jail_leaks_begin()/_end() track the
 * allocations made while serving one input instead and report, with their
 * allocation stacks, those still live at the end.
 */
#ifndef HASHI_FUZZ_JAIL_H
#define HASHI_FUZZ_JAIL_H

#include <stdbool.h>
#include <stddef.h>

void jail_enter(int *argc, char ***argv);

/* Rebuild the playground in the jail's root (everything on the jail's own
 * tmpfs is removed first): a few files, a directory tree, symlinks (good and
 * dangling), a hard link, a FIFO, an unreadable file, a read-only /etc with
 * passwd and group naming "root" (uid 0) and "fuzz" (uid 1000, home
 * /home/fuzz), and /home/fuzz. */
void jail_reset(void);
/* The same, only when something in the playground changed since the last
 * reset (inotify tells); returns whether it did. */
bool jail_reset_if_changed(void);

/* Allocation tracking around one input (single-threaded use). _end aborts,
 * after describing where each was allocated, when allocations made since
 * _begin are still live. */
void jail_leaks_begin(void);
void jail_leaks_end(const char *what);

/* File descriptors: _end aborts when a descriptor opened since _begin is
 * still open. */
void jail_fds_begin(void);
void jail_fds_end(const char *what);

#endif
