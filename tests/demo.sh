#!/bin/bash
# Demonstrate hashi-sftp-server behind a real OpenSSH sshd.
#
#   tests/demo.sh [BUILD_DIR]        (default: ./build)
#
# Starts a throwaway sshd on 127.0.0.1 (free port, its own host key, client
# key and authorized_keys in a temp dir, `Subsystem sftp <our server>`), runs
# a short `sftp -b` session through it, checks the round trip, and cleans up
# (sshd stopped by its pid, temp dir removed) on every exit, failures included.
# Needs openssh-server and openssh-client; run as root, or as a user sshd can
# log in as (then /run/sshd must already exist).
set -eu

build=${1:-./build}
server=$(cd "$build" 2>/dev/null && pwd)/sftp-server/hashi-sftp-server || true
if [ ! -x "$server" ]; then
	echo "demo: $build/sftp-server/hashi-sftp-server not found;" \
		"run: meson setup build && ninja -C build" >&2
	exit 1
fi
for prog in /usr/sbin/sshd ssh-keygen sftp; do
	command -v "$prog" >/dev/null || { echo "demo: $prog is not installed" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hashi-demo.XXXXXX")
chmod 755 "$tmp"
sshd_pid=

cleanup() {
	status=$?
	if [ -d "$tmp/mnt" ] && grep -q " $tmp/mnt " /proc/mounts 2>/dev/null; then
		fusermount3 -uz "$tmp/mnt" 2>/dev/null || umount -l "$tmp/mnt" 2>/dev/null || true
	fi
	if [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null; then
		while kill -0 "$sshd_pid" 2>/dev/null &&
		      ! grep -q '^State:.*Z' "/proc/$sshd_pid/status" 2>/dev/null; do
			sleep 0.05
		done
		echo "demo: stopped sshd (pid $sshd_pid)"
	fi
	if [ "$status" -ne 0 ] && [ -s "$tmp/sshd.log" ]; then
		echo "demo: failed; last lines of the sshd log:" >&2
		tail -n 20 "$tmp/sshd.log" >&2
	fi
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

user=$(id -un)
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

ssh-keygen -q -t ed25519 -N '' -C hashi-demo-host -f "$tmp/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C hashi-demo-client -f "$tmp/client_ed25519"
cp "$tmp/client_ed25519.pub" "$tmp/authorized_keys"
chmod 600 "$tmp/authorized_keys"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$tmp/host_ed25519.pub")" >"$tmp/known_hosts"

cat >"$tmp/sshd_config" <<EOF
ListenAddress 127.0.0.1:$port
HostKey $tmp/host_ed25519
PidFile $tmp/sshd.pid
AuthorizedKeysFile $tmp/authorized_keys
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
StrictModes no
UseDNS no
LogLevel VERBOSE
Subsystem sftp $server
EOF

[ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd
/usr/sbin/sshd -f "$tmp/sshd_config" -E "$tmp/sshd.log"

# sshd writes its pid file once it listens; then wait until it accepts.
tries=0
until [ -s "$tmp/sshd.pid" ] &&
      /usr/bin/python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2).close()' "$port" 2>/dev/null; do
	tries=$((tries + 1))
	if [ "$tries" -gt 600 ] || grep -q fatal "$tmp/sshd.log" 2>/dev/null; then
		echo "demo: sshd did not start" >&2
		exit 1
	fi
	sleep 0.05
done
sshd_pid=$(cat "$tmp/sshd.pid")
echo "demo: sshd (pid $sshd_pid) on 127.0.0.1:$port, Subsystem sftp $server"

mkdir "$tmp/files"
head -c 1048576 /dev/urandom >"$tmp/files/demo.bin"
echo "hello from hashi" >"$tmp/files/hello.txt"

cat >"$tmp/batch" <<EOF
cd $tmp/files
put $tmp/files/demo.bin uploaded.bin
put -p $tmp/files/hello.txt hello-copy.txt
ls -l
get uploaded.bin $tmp/files/downloaded.bin
df -h
EOF

echo "demo: sftp session:"
sftp -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes \
	-o UserKnownHostsFile="$tmp/known_hosts" -o GlobalKnownHostsFile=/dev/null \
	-o StrictHostKeyChecking=yes -i "$tmp/client_ed25519" \
	-P "$port" -b "$tmp/batch" "$user@127.0.0.1"

cmp "$tmp/files/demo.bin" "$tmp/files/uploaded.bin"
cmp "$tmp/files/demo.bin" "$tmp/files/downloaded.bin"
cmp "$tmp/files/hello.txt" "$tmp/files/hello-copy.txt"
echo "demo: put and get round trip of 1 MiB: identical"
echo "demo: sshd log lines about the session:"
grep -E 'Accepted publickey|subsystem request|Starting session' "$tmp/sshd.log" | sed 's/^/  /' || true

# hashi: mount the same directory through the same sshd, as a user would.
hashi=$(cd "$build" && pwd)/fuse/hashi
if [ -x "$hashi" ] && [ -e /dev/fuse ]; then
	mkdir "$tmp/mnt"
	echo "demo: hashi $user@127.0.0.1:$tmp/files $tmp/mnt"
	"$hashi" "$user@127.0.0.1:$tmp/files" "$tmp/mnt" -p "$port" -F /dev/null \
		-o IdentityFile="$tmp/client_ed25519",IdentitiesOnly=yes \
		-o UserKnownHostsFile="$tmp/known_hosts",GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes,BatchMode=yes
	ls -l "$tmp/mnt" | sed 's/^/  /'
	cp "$tmp/files/demo.bin" "$tmp/mnt/through-the-mount.bin"
	cmp "$tmp/files/demo.bin" "$tmp/files/through-the-mount.bin"
	cmp "$tmp/files/demo.bin" "$tmp/mnt/uploaded.bin"
	echo "demo: $(cat "$tmp/mnt/hello.txt") (read through the mount)"
	fusermount3 -u "$tmp/mnt"
	echo "demo: hashi mount: write and read back of 1 MiB identical; unmounted"
fi
echo "demo: OK"
