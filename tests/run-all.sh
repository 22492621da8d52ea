#!/bin/bash
# Runs hashi's whole test suite: unit tests, then the fuzz targets for a
# bounded time, then the integration tests against a normal build and
# against an AddressSanitizer + UBSan build. Ends with pytest's summary.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
status=0
fail() { echo "run-all: $*" >&2; status=1; }

setup() { # builddir, meson args...
	local dir=$1; shift
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "$@" >/dev/null || return 1
	else
		meson setup "$dir" "$@" >/dev/null || return 1
	fi
	ninja -C "$dir" >/dev/null || { ninja -C "$dir"; return 1; }
}

echo "== build (release checks: -Wall -Wextra -Werror)"
setup build || { echo "build failed"; exit 1; }
echo "== unit tests"
meson test -C build --print-errorlogs || fail "unit tests failed"

echo "== sanitizer build (ASan + UBSan)"
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false || { echo "asan build failed"; exit 1; }
meson test -C build-asan --print-errorlogs || fail "unit tests under ASan/UBSan failed"

if command -v clang >/dev/null; then
	echo "== fuzz targets (bounded run each)"
	if CC=clang setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fsanitize=fuzzer-no-link; then
		meson test -C build-fuzz --print-errorlogs --suite fuzz || fail "fuzz targets found a problem"
	else
		fail "fuzz build failed"
	fi
fi

SAN_LOGS=$(mktemp -d /tmp/hashi-sanitizer.XXXXXX)
chmod 1777 "$SAN_LOGS"
echo "== integration tests against the ASan/UBSan build (sanitizer logs in $SAN_LOGS)"
LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0" \
ASAN_OPTIONS="log_path=$SAN_LOGS/asan:detect_leaks=1:abort_on_error=0" \
UBSAN_OPTIONS="log_path=$SAN_LOGS/ubsan:print_stacktrace=1:halt_on_error=1" \
HASHI_BUILD_DIR=$ROOT/build-asan $PY -m pytest -q -p no:cacheprovider tests/integration \
	|| fail "integration tests under ASan/UBSan failed"
if compgen -G "$SAN_LOGS/*" >/dev/null; then
	cat "$SAN_LOGS"/* >&2
	fail "sanitizer reports (above)"
fi
rm -rf "$SAN_LOGS"

# A smaller set under valgrind (memcheck): hashi daemons on real mounts
# (through sshd, and against the hostile server), and hashi-sftp-server run
# by OpenSSH's sftp -D. Any error or definite leak fails the stage.
if command -v valgrind >/dev/null; then
	VG_LOGS=$(mktemp -d /tmp/hashi-valgrind.XXXXXX)
	chmod 1777 "$VG_LOGS"
	VG="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
		--suppressions=$ROOT/tests/valgrind.supp --log-file=$VG_LOGS/%p.log"
	echo "== integration tests under valgrind (logs in $VG_LOGS)"
	HASHI_WRAPPER="$(echo $VG)" HASHI_SERVER_WRAPPER="$(echo $VG)" HASHI_MOUNT_WATCHDOG=300 \
	HASHI_BUILD_DIR=$ROOT/build $PY -m pytest -q -p no:cacheprovider \
		tests/integration/test_mount_ops.py tests/integration/test_hostile.py \
		tests/integration/test_sftp_client.py \
		-k "symlink_readlink or readdir or test_rename or test_truncate or malformed \
		    or framing_drops or bad_names or contain or weird_symlink \
		    or put_get_roundtrip or put_get_recursive or odd_names or copy_data \
		    or test_symlink or test_hardlink or test_df or another_rule" \
		|| fail "integration tests under valgrind failed"
	# (an ssh -G that hashi runs leaves a log with no summary: it execs)
	if grep -lE "ERROR SUMMARY: [1-9]|definitely lost: [1-9]" "$VG_LOGS"/*.log 2>/dev/null; then
		grep -hE -A40 "ERROR SUMMARY: [1-9]|Invalid|uninitialised|definitely lost in" \
			"$VG_LOGS"/*.log >&2
		fail "valgrind reports (above)"
	else
		echo "valgrind: $(grep -l "ERROR SUMMARY: 0 errors" "$VG_LOGS"/*.log | wc -l) runs, no reports"
		rm -rf "$VG_LOGS"
	fi
fi

echo "== integration tests against the normal build"
HASHI_BUILD_DIR=$ROOT/build $PY -m pytest -p no:cacheprovider tests/integration || status=1
exit $status
