#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"

/* Sanitizer builds: LeakSanitizer stops the world at exit with clone(2)
 * and ptrace(2), and the sanitizers write their reports where log_path
 * says; let them. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif
#ifndef SANITIZER_BUILD
#define SANITIZER_BUILD 0
#endif

/* ------------------------------------------------------------------ */
/* Landlock                                                           */

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define LL_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define LL_ABI1 ((1ULL << 13) - 1) /* EXECUTE .. MAKE_SYM */

static void ll_allow(int ruleset, const char *path, uint64_t rights, uint64_t handled)
{
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		log_debug("sandbox: landlock: %s: %s", path, strerror(errno));
		return;
	}
	struct landlock_path_beneath_attr pb = { .allowed_access = rights & handled, .parent_fd = fd };
	if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
		log_debug("sandbox: landlock: rule for %s: %s", path, strerror(errno));
	close(fd);
}

/* The directory of a sanitizer's log_path=, from its *_OPTIONS. */
static void ll_allow_sanitizer_logs(int ruleset, uint64_t handled)
{
	static const char *vars[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]), *lp = v ? strstr(v, "log_path=") : NULL;
		if (!lp)
			continue;
		char dir[4096];
		size_t n = strcspn(lp + 9, ":");
		if (n == 0 || n >= sizeof(dir))
			continue;
		memcpy(dir, lp + 9, n);
		dir[n] = '\0';
		char *slash = strrchr(dir, '/');
		if (!slash)
			continue;
		*slash = '\0';
		ll_allow(ruleset, dir[0] ? dir : "/", handled, handled);
	}
}

static bool landlock(const struct sandbox_opts *o)
{
	if (!o->readonly && !o->root)
		return false; /* nothing to restrict */
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0) {
		log_debug("sandbox: no landlock: %s", strerror(errno));
		return false;
	}
	uint64_t handled = LL_ABI1;
	if (abi >= 2)
		handled |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
	struct landlock_ruleset_attr attr = { .handled_access_fs = handled };
	int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (rs < 0) {
		log_debug("sandbox: landlock ruleset: %s", strerror(errno));
		return false;
	}
	uint64_t data = o->readonly ? LL_READ : handled & ~LANDLOCK_ACCESS_FS_EXECUTE;
	if (o->root) {
		ll_allow(rs, o->root, data, handled);
		/* The user and group databases (ls -l names), time zones. */
		ll_allow(rs, "/etc", LL_READ, handled);
		ll_allow(rs, "/usr", LL_READ, handled);
	} else {
		ll_allow(rs, "/", LL_READ, handled);
	}
	if (SANITIZER_BUILD) {
		ll_allow(rs, "/proc", LL_READ, handled);
		ll_allow_sanitizer_logs(rs, handled);
	}
	bool ok = syscall(SYS_landlock_restrict_self, rs, 0) == 0;
	if (!ok)
		log_debug("sandbox: landlock_restrict_self: %s", strerror(errno));
	close(rs);
	return ok;
}

/* ------------------------------------------------------------------ */
/* seccomp                                                            */

#if defined(__x86_64__)
#define SECCOMP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SECCOMP_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef SECCOMP_ARCH
/* What the server calls, glibc's calls on its behalf included (measured
 * with strace over the test suite). */
static const int allowed[] = {
	__NR_read, __NR_write, __NR_readv, __NR_writev, __NR_pread64, __NR_pwrite64,
	__NR_preadv, __NR_pwritev, __NR_preadv2, __NR_pwritev2, __NR_lseek, __NR_close,
	__NR_openat, __NR_openat2, __NR_newfstatat, __NR_fstat, __NR_statx, __NR_fcntl,
	__NR_getdents64, __NR_readlinkat, __NR_faccessat, __NR_faccessat2, __NR_mkdirat,
	__NR_unlinkat, __NR_renameat, __NR_renameat2, __NR_linkat, __NR_symlinkat,
	__NR_fchmod, __NR_fchmodat, __NR_fchown, __NR_fchownat, __NR_utimensat, __NR_truncate,
	__NR_ftruncate, __NR_fsync, __NR_fdatasync, __NR_statfs, __NR_fstatfs, __NR_getcwd,
	__NR_chdir, __NR_fchdir, __NR_sendfile, __NR_copy_file_range, __NR_splice,
	__NR_ppoll, __NR_pselect6, __NR_mmap, __NR_munmap, __NR_mremap, __NR_mprotect,
	__NR_madvise, __NR_brk, __NR_rt_sigprocmask, __NR_rt_sigaction, __NR_rt_sigreturn,
	__NR_sigaltstack, __NR_futex, __NR_getrandom, __NR_clock_gettime, __NR_clock_getres,
	__NR_gettimeofday, __NR_nanosleep, __NR_clock_nanosleep, __NR_getpid, __NR_gettid,
	__NR_getuid, __NR_geteuid, __NR_getgid, __NR_getegid, __NR_getgroups, __NR_umask,
	__NR_uname, __NR_prlimit64, __NR_getrlimit, __NR_sched_yield, __NR_restart_syscall,
	__NR_exit, __NR_exit_group, __NR_dup, __NR_dup3, __NR_sendto, __NR_sendmsg,
	__NR_setsockopt, __NR_getsockopt, __NR_fadvise64,
	/* the @hashi extensions (hashi-ext.c) */
	__NR_mknodat, __NR_flock, __NR_fallocate, __NR_getxattr, __NR_lgetxattr, __NR_fgetxattr,
	__NR_setxattr, __NR_lsetxattr, __NR_fsetxattr, __NR_listxattr, __NR_llistxattr,
	__NR_flistxattr, __NR_removexattr, __NR_lremovexattr, __NR_fremovexattr,
#ifdef __NR_fchmodat2
	__NR_fchmodat2, /* newer glibc's fchmodat(AT_SYMLINK_NOFOLLOW) */
#endif
#ifdef __NR_open
	__NR_open, __NR_stat, __NR_lstat, __NR_access, __NR_readlink, __NR_mkdir, __NR_rmdir,
	__NR_unlink, __NR_rename, __NR_link, __NR_symlink, __NR_chmod, __NR_chown, __NR_lchown,
	__NR_poll, __NR_select, __NR_dup2, __NR_time, __NR_mknod,
#endif
};

/* Never needed, and each a way out: the process dies. */
static const int fatal[] = {
	__NR_execve, __NR_execveat, __NR_connect, __NR_bind, __NR_listen, __NR_accept,
	__NR_accept4, __NR_socketpair, __NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot,
	__NR_unshare, __NR_setns, __NR_kexec_load, __NR_kexec_file_load, __NR_bpf,
	__NR_init_module, __NR_finit_module, __NR_delete_module, __NR_reboot, __NR_swapon,
	__NR_swapoff, __NR_perf_event_open, __NR_userfaultfd, __NR_keyctl, __NR_add_key,
	__NR_request_key, __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_fsopen,
	__NR_fsmount, __NR_fspick, __NR_move_mount, __NR_open_tree, __NR_mount_setattr,
	__NR_personality, __NR_setuid, __NR_setgid, __NR_setreuid, __NR_setregid,
	__NR_setresuid, __NR_setresgid,
#ifdef __NR_iopl
	__NR_iopl, __NR_ioperm,
#endif
};
/* ... unless LeakSanitizer needs them (see SANITIZER_BUILD). */
static const int fatal_unless_sanitizer[] = {
	__NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev,
};

#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
		  CLONE_NEWNET | CLONE_NEWCGROUP)
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define RET_ERRNO(e) RET(SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LOAD_ARG(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))

struct prog {
	struct sock_filter f[512];
	unsigned short n;
};

static void emit(struct prog *p, struct sock_filter x)
{
	if (p->n < sizeof(p->f) / sizeof(p->f[0]))
		p->f[p->n] = x;
	p->n++;
}

static void emit_list(struct prog *p, const int *nrs, size_t count, uint32_t action)
{
	for (size_t i = 0; i < count; i++) {
		emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nrs[i], 0, 1));
		emit(p, (struct sock_filter)RET(action));
	}
}

static bool seccomp(void)
{
	struct prog p = { .n = 0 };
	uint32_t deflt = SANITIZER_BUILD ? SECCOMP_RET_ALLOW : SECCOMP_RET_ERRNO | ENOSYS;

	emit(&p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, arch)));
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_ARCH, 1, 0));
	emit(&p, (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS));
	emit(&p, (struct sock_filter)LOAD_NR);
#ifdef __x86_64__
	/* x32 numbers are another table of the same calls: none allowed. */
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));
	emit(&p, (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS));
#endif
	/* socket(2): syslog may reconnect with an AF_UNIX socket, and the user
	 * database (nss) may ask systemd over one: refuse, they cope. Any other
	 * family is a way out. */
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 4));
	emit(&p, (struct sock_filter)LOAD_ARG(0));
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1));
	emit(&p, (struct sock_filter)RET_ERRNO(EACCES));
	emit(&p, (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS));
	/* clone(2) into new namespaces is a way out; plain clone is refused
	 * (the server has one thread) except for LeakSanitizer. clone3 hides
	 * its flags in memory: ENOSYS makes glibc use clone. */
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4));
	emit(&p, (struct sock_filter)LOAD_ARG(0));
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1));
	emit(&p, (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS));
	emit(&p, (struct sock_filter)RET(SANITIZER_BUILD ? SECCOMP_RET_ALLOW : SECCOMP_RET_ERRNO | EPERM));
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1));
	emit(&p, (struct sock_filter)RET_ERRNO(ENOSYS));
	/* ioctl(2): only stdio's "is this a terminal?" (never TIOCSTI). */
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4));
	emit(&p, (struct sock_filter)LOAD_ARG(1));
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TCGETS, 0, 1));
	emit(&p, (struct sock_filter)RET(SECCOMP_RET_ALLOW));
	emit(&p, (struct sock_filter)RET_ERRNO(ENOTTY));
	/* tgkill/kill: abort() signals itself; nobody else. */
	emit_list(&p, fatal, sizeof(fatal) / sizeof(fatal[0]), SECCOMP_RET_KILL_PROCESS);
	emit_list(&p, fatal_unless_sanitizer,
		  sizeof(fatal_unless_sanitizer) / sizeof(fatal_unless_sanitizer[0]),
		  SANITIZER_BUILD ? SECCOMP_RET_ALLOW : SECCOMP_RET_KILL_PROCESS);
	emit_list(&p, allowed, sizeof(allowed) / sizeof(allowed[0]), SECCOMP_RET_ALLOW);
	/* Signals only to ourselves (abort(3) raises SIGABRT). */
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_tgkill, 0, 4));
	emit(&p, (struct sock_filter)LOAD_ARG(0));
	emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)getpid(), 0, 1));
	emit(&p, (struct sock_filter)RET(SECCOMP_RET_ALLOW));
	emit(&p, (struct sock_filter)RET_ERRNO(EPERM));
	emit(&p, (struct sock_filter)RET(deflt));
	if (p.n > sizeof(p.f) / sizeof(p.f[0])) {
		log_error("sandbox: seccomp filter too long (%u)", p.n);
		return false;
	}
	struct sock_fprog fprog = { .len = p.n, .filter = p.f };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0) {
		log_debug("sandbox: no seccomp: %s", strerror(errno));
		return false;
	}
	return true;
}
#else
static bool seccomp(void)
{
	log_debug("sandbox: no seccomp filter for this architecture");
	return false;
}
#endif

int sandbox_enter(const struct sandbox_opts *o)
{
	int in_effect = 0;
	/* Both need it unprivileged; it also means no set-id program could be
	 * run, were exec possible. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		log_debug("sandbox: no_new_privs: %s", strerror(errno));
		return 0;
	}
	if (landlock(o))
		in_effect |= SANDBOX_LANDLOCK;
	if (seccomp())
		in_effect |= SANDBOX_SECCOMP;
	log_debug("sandbox: landlock %s, seccomp %s",
		  in_effect & SANDBOX_LANDLOCK ? "on" : "off",
		  in_effect & SANDBOX_SECCOMP ? "on" : "off");
	return in_effect;
}
