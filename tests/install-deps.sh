#!/bin/sh
# Installs what hashi needs to build and to run its whole test suite (Debian 12).
set -eu
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
	build-essential meson ninja-build pkg-config clang libclang-rt-14-dev \
	libglib2.0-dev libssh2-1-dev libfuse3-dev fuse3 \
	openssh-server openssh-client openssh-sftp-server sshfs \
	python3 python3-pytest python3-paramiko groff-base man-db procps fio util-linux \
	git tar diffutils rclone
