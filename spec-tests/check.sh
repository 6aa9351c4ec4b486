#!/bin/sh
# Checks a qiao build against the conformance data of this folder:
#  1. a fresh run of the generator reproduces every checked-in file byte for
#     byte (the data is what make_spec_tests.c says it is);
#  2. each file of manifest.txt opens or is refused as the manifest says, and
#     `qiao validate` accepts or refuses it as it says, with the message
#     fragment given;
#  3. `qiao inspect` of each file that opens prints expected/FILE.inspect.
#
# usage: spec-tests/check.sh GENERATOR QIAO
#   GENERATOR  the built make_spec_tests (skip part 1 with "-")
#   QIAO       the qiao executable
set -u
here=$(cd "$(dirname "$0")" && pwd)
gen=$1
qiao=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() {
  echo "FAIL: $*" >&2
  fail=1
}
trim() { printf '%s' "$1" | sed 's/^ *//; s/ *$//'; }

if [ "$gen" != "-" ]; then
  mkdir "$tmp/gen" "$tmp/gen/files"
  "$gen" "$tmp/gen" || bad "the generator failed"
  for f in manifest.txt xxh3-64.txt conversions.txt; do
    cmp -s "$tmp/gen/$f" "$here/$f" || bad "$f differs from a fresh run of the generator"
  done
  for f in "$tmp"/gen/files/*; do
    b=$(basename "$f")
    cmp -s "$f" "$here/files/$b" || bad "files/$b differs from a fresh run of the generator"
  done
  for f in "$here"/files/*; do
    b=$(basename "$f")
    [ -f "$tmp/gen/files/$b" ] || bad "files/$b is not written by the generator"
  done
fi

# outcome WANT RC ERRFILE FRAGMENT WHAT
outcome() {
  case "$1" in
    ok) [ "$2" -eq 0 ] || bad "$5: expected success, got exit $2: $(cat "$3")" ;;
    malformed | unsupported)
      if [ "$2" -ne 1 ]; then
        bad "$5: expected it refused ($1), got exit $2"
      elif ! grep -qF -- "$4" "$3"; then
        bad "$5: refused, but the message lacks '$4': $(cat "$3")"
      fi
      ;;
    *) bad "$5: bad manifest value '$1'" ;;
  esac
}

n=0
grep -v '^#' "$here/manifest.txt" > "$tmp/manifest"
while IFS='|' read -r file open validate fragment why; do
  file=$(trim "$file")
  open=$(trim "$open")
  validate=$(trim "$validate")
  fragment=$(trim "$fragment")
  n=$((n + 1))
  (cd "$here/files" && "$qiao" inspect "$file" > "$tmp/out" 2> "$tmp/err")
  rc=$?
  outcome "$open" "$rc" "$tmp/err" "$fragment" "inspect $file"
  if [ "$open" = ok ] && [ "$rc" -eq 0 ]; then
    if [ -f "$here/expected/$file.inspect" ]; then
      diff -u "$here/expected/$file.inspect" "$tmp/out" > "$tmp/diff" ||
        bad "inspect $file: output differs from expected/$file.inspect: $(cat "$tmp/diff")"
    else
      bad "expected/$file.inspect is missing"
    fi
  fi
  (cd "$here/files" && "$qiao" validate "$file" > "$tmp/out" 2> "$tmp/err")
  outcome "$validate" "$?" "$tmp/err" "$fragment" "validate $file"
done < "$tmp/manifest"

[ "$n" -gt 20 ] || bad "only $n files in manifest.txt"
[ $fail -eq 0 ] && echo "spec-tests: $n files as the manifest says"
exit $fail
