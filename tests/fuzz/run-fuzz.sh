#!/bin/sh
# run-fuzz.sh FUZZER CORPUS ARTIFACTS [libFuzzer flags...]
# Fuzz starting from a throwaway copy of CORPUS (the committed corpus is left
# as it is); crash, leak and timeout inputs are written to ARTIFACTS/.
set -eu
fuzzer=$1
corpus=$2
artifacts=$3
shift 3
work=$(mktemp -d "${TMPDIR:-/tmp}/hashi-fuzz-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
if [ -d "$corpus" ]; then
	cp -R "$corpus"/. "$work"/
fi
mkdir -p "$artifacts"
status=0
"$fuzzer" -artifact_prefix="$artifacts/" "$@" "$work" || status=$?
if [ "$status" -ne 0 ]; then
	echo "run-fuzz.sh: $fuzzer failed (status $status); inputs in $artifacts/" >&2
	ls -l "$artifacts" >&2 || true
fi
exit "$status"
