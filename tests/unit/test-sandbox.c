/* Unit tests for sftp-server/sandbox.c against the real kernel: each case
 * forks, enters the sandbox in the child and checks what it may still do. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#else
#define SANITIZER_BUILD 0
#endif

#define SKIP 77

/* Child exit codes: 0 pass, SKIP, else the line that failed. */
#define CHECK(cond)                                                                          \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "%s:%d: %s (errno %s)\n", __FILE__, __LINE__, #cond,  \
				strerror(errno));                                            \
			_exit(__LINE__ % 200 + 1);                                           \
		}                                                                            \
	} while (0)

/* Runs fn in a child; returns its wait status. */
static int in_child(void (*fn)(void *), void *arg)
{
	fflush(NULL);
	pid_t pid = fork();
	g_assert_cmpint(pid, >=, 0);
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	int status;
	g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
	return status;
}

static void expect_pass(void (*fn)(void *), void *arg)
{
	int st = in_child(fn, arg);
	g_assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == SKIP) {
		g_test_skip("the kernel has no landlock");
		return;
	}
	g_assert_cmpint(WEXITSTATUS(st), ==, 0);
}

static void expect_killed(void (*fn)(void *), void *arg)
{
	int st = in_child(fn, arg);
	g_assert_true(WIFSIGNALED(st));
	g_assert_cmpint(WTERMSIG(st), ==, SIGSYS);
}

static char *tmpdir(void)
{
	GError *err = NULL;
	char *d = g_dir_make_tmp("hashi-sandbox-XXXXXX", &err);
	g_assert_no_error(err);
	return d;
}

static void put(const char *dir, const char *name, const char *data)
{
	char *p = g_build_filename(dir, name, NULL);
	g_assert_true(g_file_set_contents(p, data, -1, NULL));
	g_free(p);
}

/* Landlock asked for but not in effect: a failure, unless the kernel has none. */
static void landlock_or_skip(int in_effect)
{
	if (in_effect & SANDBOX_LANDLOCK)
		return;
	if (syscall(SYS_landlock_create_ruleset, NULL, 0, 1 /* VERSION */) < 0)
		_exit(SKIP);
	CHECK(!"landlock available but not entered");
}

static int open_in(const char *dir, const char *name, int flags)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return open(p, flags | O_CLOEXEC, 0644);
}

/* -R: nothing anywhere may be written, though Unix permissions allow it. */
static void readonly_child(void *arg)
{
	const char *dir = arg;
	struct sandbox_opts o = { .readonly = true };
	landlock_or_skip(sandbox_enter(&o));
	errno = 0;
	CHECK(open_in(dir, "f", O_WRONLY) < 0 && errno == EACCES);
	CHECK(open_in(dir, "new", O_WRONLY | O_CREAT) < 0 && errno == EACCES);
	char p[4096];
	snprintf(p, sizeof(p), "%s/f", dir);
	CHECK(unlink(p) < 0 && errno == EACCES);
	snprintf(p, sizeof(p), "%s/d", dir);
	CHECK(mkdir(p, 0755) < 0 && errno == EACCES);
	int fd = open_in(dir, "f", O_RDONLY);
	char buf[8];
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == 5);
	CHECK(open("/etc/passwd", O_RDONLY) >= 0);
}

static void test_landlock_readonly(void)
{
	char *dir = tmpdir();
	put(dir, "f", "hello");
	g_assert_cmpint(access(dir, W_OK), ==, 0); /* Unix permissions would allow */
	expect_pass(readonly_child, dir);
	char *f = g_build_filename(dir, "f", NULL);
	g_assert_true(g_file_test(f, G_FILE_TEST_EXISTS));
	g_unlink(f);
	g_rmdir(dir);
	g_free(f);
	g_free(dir);
}

struct two {
	const char *in, *out;
};

/* -r: files only beneath the root (and /etc, /usr to read). */
static void root_child(void *arg)
{
	struct two *t = arg;
	struct sandbox_opts o = { .root = t->in };
	landlock_or_skip(sandbox_enter(&o));
	int fd = open_in(t->in, "made", O_WRONLY | O_CREAT);
	CHECK(fd >= 0 && write(fd, "x", 1) == 1);
	errno = 0;
	CHECK(open_in(t->out, "secret", O_RDONLY) < 0 && errno == EACCES);
	CHECK(open_in(t->out, "planted", O_WRONLY | O_CREAT) < 0 && errno == EACCES);
	CHECK(open("/etc/passwd", O_RDONLY) >= 0);
	CHECK(open("/etc/passwd", O_WRONLY) < 0);
}

static void test_landlock_root(void)
{
	char *in = tmpdir(), *out = tmpdir();
	put(out, "secret", "s");
	struct two t = { in, out };
	expect_pass(root_child, &t);
	char *planted = g_build_filename(out, "planted", NULL);
	g_assert_false(g_file_test(planted, G_FILE_TEST_EXISTS));
	char *made = g_build_filename(in, "made", NULL);
	char *secret = g_build_filename(out, "secret", NULL);
	g_unlink(made);
	g_unlink(secret);
	g_rmdir(in);
	g_rmdir(out);
	g_free(planted);
	g_free(made);
	g_free(secret);
	g_free(in);
	g_free(out);
}

static void enter_plain(void)
{
	struct sandbox_opts o = { 0 };
	CHECK(sandbox_enter(&o) & SANDBOX_SECCOMP);
}

static void inet_socket_child(void *arg)
{
	(void)arg;
	enter_plain();
	socket(AF_INET, SOCK_STREAM, 0);
}

static void execve_child(void *arg)
{
	(void)arg;
	enter_plain();
	char *argv[] = { "true", NULL };
	execv("/bin/true", argv);
}

static void unshare_child(void *arg)
{
	(void)arg;
	enter_plain();
	unshare(CLONE_NEWUSER);
}

static void mount_child(void *arg)
{
	(void)arg;
	enter_plain();
	mount("none", "/tmp", "tmpfs", 0, NULL);
}

static void ptrace_child(void *arg)
{
	(void)arg;
	enter_plain();
	syscall(SYS_ptrace, 0, 0, 0, 0);
}

static void test_seccomp_kills(void)
{
	expect_killed(inet_socket_child, NULL);
	expect_killed(execve_child, NULL);
	expect_killed(unshare_child, NULL);
	expect_killed(mount_child, NULL);
	if (!SANITIZER_BUILD) /* LeakSanitizer needs ptrace there */
		expect_killed(ptrace_child, NULL);
}

/* What the server does still works; what it never does fails softly. */
static void softly_child(void *arg)
{
	const char *dir = arg;
	enter_plain();
	errno = 0;
	CHECK(socket(AF_UNIX, SOCK_DGRAM, 0) < 0 && errno == EACCES);
	if (!SANITIZER_BUILD) {
		errno = 0;
		CHECK(syscall(SYS_getcpu, NULL, NULL, NULL) < 0 && errno == ENOSYS);
		errno = 0;
		CHECK(fork() < 0);
	}
	int fd = open_in(dir, "g", O_RDWR | O_CREAT);
	CHECK(fd >= 0 && write(fd, "abc", 3) == 3 && fsync(fd) == 0 && ftruncate(fd, 1) == 0);
	struct stat st;
	CHECK(fstat(fd, &st) == 0 && st.st_size == 1);
	char p[4096], q[4096];
	snprintf(p, sizeof(p), "%s/g", dir);
	snprintf(q, sizeof(q), "%s/h", dir);
	CHECK(rename(p, q) == 0 && link(q, p) == 0 && unlink(q) == 0);
	CHECK(getpid() > 0);
}

static void test_seccomp_softly(void)
{
	char *dir = tmpdir();
	expect_pass(softly_child, dir);
	char *g = g_build_filename(dir, "g", NULL);
	g_unlink(g);
	g_rmdir(dir);
	g_free(g);
	g_free(dir);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/sandbox/landlock-readonly", test_landlock_readonly);
	g_test_add_func("/sandbox/landlock-root", test_landlock_root);
	g_test_add_func("/sandbox/seccomp-kills", test_seccomp_kills);
	g_test_add_func("/sandbox/seccomp-softly", test_seccomp_softly);
	return g_test_run();
}
