#!/usr/bin/env bash
# A check of the test suite itself: plants each plausible one-line bug of
# tests/mutants/mutants.txt, one at a time, in a copy of the working tree
# (never in the tree itself), rebuilds, runs the CTest tests named for it and
# reports whether the suite killed it (a test failed) or it survived.
# On demand, not part of scripts/test.sh. Exit status 1 when a mutant
# survives, does not apply, or the unmutated suite already fails.
#
# Usage: scripts/mutants.sh [-j JOBS] [--keep] [NAME...]   (default: every mutant)
# Environment: QIAO_SHARED (default ../shared), MUTANTS_LIST, MUTANTS_BUILD_TYPE
# (Release, the default, or Debug: -DQIAO_SANITIZE=ON as well), MUTANTS_C_FLAGS
# (CMAKE_C_FLAGS of the copy, e.g. -Wno-error=maybe-uninitialized while a
# warning elsewhere in the tree is being fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
keep=0
names=()
while [ $# -gt 0 ]; do
  case $1 in
  -j) jobs=$2; shift 2 ;;
  --keep) keep=1; shift ;;
  -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
  -*) echo "mutants.sh: unknown flag $1" >&2; exit 2 ;;
  *) names+=("$1"); shift ;;
  esac
done
list=${MUTANTS_LIST:-$root/tests/mutants/mutants.txt}
build_type=${MUTANTS_BUILD_TYPE:-Release}
export QIAO_SHARED="${QIAO_SHARED:-$(cd .. && pwd)/shared}"

# The mutants: one record per block, fields joined by \x1f.
records=$(awk -v OFS='\x1f' '
  function flush() { if (name != "") print name, file, from, to, at, tests; name = file = from = to = tests = ""; at = 0 }
  /^#/ { next }
  /^[[:space:]]*$/ { flush(); next }
  { key = $1; sub(/:$/, "", key); value = $0; sub(/^[a-z]+:[[:space:]]*/, "", value)
    if (key == "name") name = value; else if (key == "file") file = value
    else if (key == "from") from = value; else if (key == "to") to = value
    else if (key == "at") at = value + 0; else if (key == "tests") tests = value }
  END { flush() }' "$list")
[ -n "$records" ] || { echo "mutants.sh: no mutants in $list" >&2; exit 1; }

work=$(mktemp -d /tmp/qiao-mutants.XXXXXX)
cleanup() { if [ $keep -eq 0 ]; then rm -rf "$work"; else echo "kept $work" >&2; fi; }
trap cleanup EXIT
echo "== copying the working tree to $work/tree" >&2
mkdir "$work/tree"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -C "$work/tree" -xf -

flags=(-DCMAKE_BUILD_TYPE="$build_type" -DQIAO_CUDA=OFF -DQIAO_SHARED_DIR="$QIAO_SHARED")
[ "$build_type" = Debug ] && flags+=(-DQIAO_SANITIZE=ON)
flags+=("-DCMAKE_C_FLAGS=${MUTANTS_C_FLAGS:-}")
echo "== building the unmutated copy ($build_type, -j$jobs)" >&2
cmake -S "$work/tree" -B "$work/build" "${flags[@]}" >"$work/cmake.log" 2>&1 ||
  { tail -n 30 "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" -j"$jobs" >"$work/build.log" 2>&1 ||
  { grep -E "error|Error" "$work/build.log" | head -n 30 >&2; echo "mutants.sh: the unmutated copy does not build" >&2; exit 1; }

wanted() { # is mutant $1 selected?
  [ ${#names[@]} -eq 0 ] && return 0
  local n
  for n in "${names[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

# The unmutated suite must pass the tests each selected mutant names.
union=""
while IFS=$'\x1f' read -r name file from to at tests; do
  if wanted "$name"; then
    case "|$union|" in *"|$tests|"*) ;; *) union="${union:+$union|}$tests" ;; esac
  fi
done <<<"$records"
[ -n "$union" ] || { echo "mutants.sh: no mutant named ${names[*]}" >&2; exit 2; }
echo "== the unmutated suite: ctest -R '$union'" >&2
ctest --test-dir "$work/build" -R "$union" -j"$jobs" --timeout 900 >"$work/baseline.log" 2>&1 || {
  grep -E "Failed|Not Run|\*\*\*" "$work/baseline.log" >&2
  echo "mutants.sh: the unmutated suite fails these tests; fix that first" >&2
  exit 1
}

status=0
results=()
while IFS=$'\x1f' read -r name file from to at tests; do
  wanted "$name" || continue
  target="$work/tree/$file"
  cp "$target" "$work/original"
  # Replace the `at`-th occurrence of `from` (or the only one) on one line.
  # (the texts go through the environment: awk -v would eat backslashes)
  if ! MUTANT_FROM="$from" MUTANT_TO="$to" awk -v at="$at" '
      BEGIN { from = ENVIRON["MUTANT_FROM"]; to = ENVIRON["MUTANT_TO"] }
      { line = $0; out = ""
        while ((i = index(line, from)) > 0) {
          seen++
          if ((at == 0 || seen == at) && !done) { out = out substr(line, 1, i - 1) to; done = 1 }
          else out = out substr(line, 1, i - 1 + length(from))
          line = substr(line, i + length(from))
        }
        print out line }
      END { if (!done || (at == 0 && seen != 1)) exit 1 }' "$work/original" >"$target"; then
    cp "$work/original" "$target"
    results+=("DOES NOT APPLY  $name ($file: the text is not there exactly once)")
    status=1
    continue
  fi
  echo "== $name: $file" >&2
  if ! cmake --build "$work/build" -j"$jobs" >"$work/$name.build.log" 2>&1; then
    results+=("DOES NOT BUILD  $name (see the list: a mutant must compile)")
    status=1
  elif ctest --test-dir "$work/build" -R "$tests" -j"$jobs" --timeout 900 \
         >"$work/$name.ctest.log" 2>&1; then
    if grep -q "\*\*\*Skipped" "$work/$name.ctest.log"; then
      results+=("NOT TESTED      $name (ctest -R '$tests' skipped here, e.g. no AVX-512)")
    else
      results+=("SURVIVED        $name (ctest -R '$tests' passed)")
    fi
    status=1
  else
    killed=$(grep -E "^\s+[0-9]+ - " "$work/$name.ctest.log" | sed 's/^ *[0-9]* - //' |
               tr '\n' ' ')
    results+=("killed          $name by $killed")
  fi
  cp "$work/original" "$target" # a new mtime: the next build restores it
done <<<"$records"

echo
printf '%s\n' "${results[@]}"
exit $status
