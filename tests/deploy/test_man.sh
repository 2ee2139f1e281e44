#!/usr/bin/env bash
# test_man.sh: the man pages format without a single groff warning, and cannot drift from the
# programs: every option and every command or op that a program's --help names appears in its page.
# TAP, one line per check.
#   bash tests/deploy/test_man.sh PROGRAM PAGE [PROGRAM PAGE ...]
# An option is a --word or -x token anywhere in --help's text (so the options --help mentions in
# passing, like qslm-quant's --tier, count too); a command is the first word of a help line
# indented by two spaces, and must start a bold line of the page (.B, .BI or .BR). The page is
# searched in its source with the roff escapes of dashes and fonts undone, its comments dropped.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! command -v groff >/dev/null; then
  echo "Bail out! groff is missing: install groff-base (bash scripts/setup.sh does)"
  exit 1
fi

while [ $# -ge 2 ]; do
  prog=$1 page=$2
  shift 2
  name=$(basename "$page")
  section=${name##*.}
  title=$(basename "$prog" | tr '[:lower:]' '[:upper:]')

  warnings=$(groff -man -z -ww "$page" 2>&1)
  if [ $? -eq 0 ] && [ -z "$warnings" ]; then
    ok "$name: groff -man -z -ww is silent"
  else
    mapfile -t lines <<<"$warnings"
    bad "$name: groff -man -z -ww is silent" "${lines[@]}"
  fi
  th=$(sed -n 's/^\.TH \([^ ]*\) \([^ ]*\) .*/\1 \2/p' "$page" | sed 's/\\-/-/g')
  check "$name: .TH names $title, section $section" test "$th" = "$title $section"
  for s in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" "SEE ALSO"; do
    check "$name: has a $s section" grep -qx "\.SH \"\?$s\"\?" "$page"
  done

  help=$("$prog" --help)
  text=$(grep -v '^\.\\"' "$page" | sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(lq\|\\(rq//g')
  opts=$(grep -o -- '\(^\|[[:space:](,`]\)--\?[a-zA-Z][a-zA-Z0-9-]*' <<<"$help" | sed 's/^[[:space:](,`]//' \
    | grep -- '^-' | grep -v -- '^-[a-zA-Z][a-zA-Z0-9]' | sort -u)
  cmds=$(sed -n 's/^  \([a-z][a-z-]*\)\( .*\)\?$/\1/p' <<<"$help" | sort -u)
  missing=()
  for o in $opts; do
    grep -q -- "\(^\|[^a-zA-Z0-9-]\)$o\([^a-zA-Z0-9-]\|$\)" <<<"$text" || missing+=("$o")
  done
  n_opts=$(wc -w <<<"$opts")
  check "$name: all $n_opts options of $(basename "$prog") --help are in the page${missing:+ (missing: ${missing[*]})}" \
    test ${#missing[@]} -eq 0
  if [ -n "$cmds" ]; then
    missing=()
    for c in $cmds; do
      grep -q -- "^\.B[IR]\? \"\?$c\b" <<<"$text" || missing+=("$c")
    done
    check "$name: all $(wc -w <<<"$cmds") commands of --help are in the page${missing:+ (missing: ${missing[*]})}" \
      test ${#missing[@]} -eq 0
  fi
done
finish
