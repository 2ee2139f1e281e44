#!/usr/bin/env bash
# test_qslmctl_daemon.sh: qslmctl against a real qslmd serving $QSLM_SOURCE_DIR/models/bundle on
# a temporary socket with an empty fake telemetry root: human and --json output, budgets,
# pin/unpin, and exit codes; and the daemon's text against qslm-generate's on the same variant
# file (both read a prompt in the same chunks). The bundle's variants and which one a budget gets
# come from its manifest, through bundle-facts (tests/daemon/bundle_facts_tool.c).
#   usage: test_qslmctl_daemon.sh QSLMD QSLMCTL QSLM_GENERATE BUNDLE_FACTS
# No python: checks are grep on the output.
set -uo pipefail

usage="usage: test_qslmctl_daemon.sh QSLMD QSLMCTL QSLM_GENERATE BUNDLE_FACTS"
qslmd=${1:?$usage}
qslmctl=${2:?$usage}
qslm_generate=${3:?$usage}
bundle_facts=${4:?$usage}
: "${QSLM_SOURCE_DIR:?QSLM_SOURCE_DIR must name the source tree}"

# facts WHAT [ARG]: bundle-facts's answer (it says why when it fails: the caller then exits).
facts() { "$bundle_facts" "$@"; }
# re NAME: NAME as an extended regular expression that matches only itself (a variant name is
# [A-Za-z0-9._-]: only the dot is special).
re() { echo "${1//./\\.}"; }
top=$(facts top) || exit 1                     # served with no budget
down=$(facts step-down "$top") || exit 1       # served one byte under top's footprint
fp=$(facts footprint "$top") || exit 1
down_budget=$((fp - 1))
smallest=$(facts smallest) || exit 1
fp=$(facts footprint "$smallest") || exit 1
below_all=$((fp - 1))                          # a budget no variant fits
top_file=$(facts file "$top") || exit 1
mapfile -t names < <(facts names)
[ "$down" != none ] || { echo "the bundle has no variant under $top's footprint: nothing to switch to" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/qslmctl-test-XXXXXX")
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then
    kill -KILL "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

mkdir "$dir/root"
sock=$dir/s.sock
# --socket-mode and --socket-group, under a umask that alone would make the socket 0700: root may
# give it any group (nogroup), another user only one of its own
sock_group=$(id -gn)
if [ "$(id -u)" -eq 0 ] && getent group nogroup >/dev/null; then sock_group=nogroup; fi
# a bad mode is a usage error; a group that does not exist stops the start, leaving no socket
"$qslmd" --socket "$dir/bad.sock" --socket-mode 0800 >/dev/null 2>"$dir/bad.log"
rc=$?
[ "$rc" -eq 2 ] && grep -q "socket-mode: '0800' is not an octal mode" "$dir/bad.log" ||
  fail "--socket-mode 0800: exit $rc, $(cat "$dir/bad.log")"
"$qslmd" --socket "$dir/bad.sock" --socket-group no-such-group-qslm --bundle "$QSLM_SOURCE_DIR/models/bundle" \
  --threads 1 --telemetry-root "$dir/root" >/dev/null 2>"$dir/bad.log"
rc=$?
[ "$rc" -eq 1 ] && grep -q "socket group 'no-such-group-qslm': no such group" "$dir/bad.log" ||
  fail "--socket-group no-such-group-qslm: exit $rc, $(cat "$dir/bad.log")"
[ ! -e "$dir/bad.sock" ] || fail "--socket-group no-such-group-qslm left its socket behind"
(umask 077 && exec "$qslmd" --socket "$sock" --socket-mode 0660 --socket-group "$sock_group" \
  --bundle "$QSLM_SOURCE_DIR/models/bundle" --threads 1 \
  --telemetry-root "$dir/root" --policy-interval 0.05 --up-delay 0.2 2>"$dir/qslmd.log") &
daemon_pid=$!

ctl() { "$qslmctl" --socket "$sock" "$@"; }

# Runs qslmctl; the exit status in $rc, stdout in $out, stderr in $err.
run() {
  ctl "$@" >"$dir/out" 2>"$dir/err"
  rc=$?
  out=$(cat "$dir/out")
  err=$(cat "$dir/err")
}

expect_rc() { # expect_rc WANT WHAT
  [ "$rc" -eq "$1" ] || fail "$2: exit $rc, expected $1 (stdout: $out; stderr: $err)"
}

expect_out() { # expect_out REGEX WHAT
  grep -Eq -- "$1" <<<"$out" || fail "$2: stdout does not match /$1/: $out"
}

# Polls `status` until the active variant is $1 (up to 15 s).
wait_active() {
  local i want
  want=$(re "$1")
  for i in $(seq 300); do
    if ctl status 2>/dev/null | grep -Eq "^active: +$want( |$)"; then
      return 0
    fi
    sleep 0.05
  done
  fail "the active variant did not become $1: $(ctl status 2>&1)"
  return 1
}

# Wait until the daemon accepts (status answers), up to 20 s; stop at once if it died.
ready=
for i in $(seq 400); do
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "qslmd exited before accepting:" >&2
    cat "$dir/qslmd.log" >&2
    exit 1
  fi
  if ctl status >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.05
done
if [ -z "$ready" ]; then
  echo "qslmd did not accept within 20 s:" >&2
  cat "$dir/qslmd.log" >&2
  exit 1
fi

# the socket got the mode and group asked for, not what the umask (077) would leave
[ "$(stat -c '%a %G' "$sock")" = "660 $sock_group" ] ||
  fail "--socket-mode 0660 --socket-group $sock_group: the socket is $(stat -c '%a %G' "$sock")"

# generate: the text on stdout, the summary on stderr, exit 0
run generate --max-tokens 8 --seed 1 "The nation"
expect_rc 0 "generate"
[ -n "$out" ] || fail "generate printed no text"
grep -Eq "8 tokens" <<<"$err" || fail "generate: no '8 tokens' summary on stderr: $err"
grep -Eq "(^| )$(re "$top") \[0,8\)" <<<"$err" || fail "generate: the summary does not name $top for tokens [0,8): $err"
run generate --max-tokens 1 --seed 1 "The nation"
grep -Eq "^qslmctl: 1 token;" <<<"$err" || fail "generate --max-tokens 1: not '1 token;' on stderr: $err"
run generate --max-tokens 8 --seed 1 --no-stream "The nation"
expect_rc 0 "generate --no-stream"
first=$out
run generate --max-tokens 8 --seed 1 "The nation"
[ "$out" = "$first" ] || fail "the same seed gave another text: '$out' vs '$first'"

# the same text as qslm-generate on the served variant's file, greedy and sampled (the defaults of
# both: temperature 0.8, top-k 40, top-p 0.95, repetition penalty 1.1 over 64 tokens), for a prompt
# of dozens of tokens: the prompt is read in chunks by both
wait_active "$top"
long_prompt="The people of our nation will build a stronger future, and Congress must act for every family in the land, for the workers and the farmers"
for sampling in "--temperature 0" "--seed 7"; do
  # shellcheck disable=SC2086 # one option and its value
  want=$("$qslm_generate" "$top_file" -n 24 -j 1 $sampling \
    "$long_prompt" 2>&1) || fail "qslm-generate $sampling: $want"
  # shellcheck disable=SC2086
  run generate --max-tokens 24 $sampling "$long_prompt"
  expect_rc 0 "generate $sampling, a long prompt"
  [ "$out" = "$want" ] || fail "generate $sampling: qslmd says '$out', qslm-generate '$want'"
done

# status: the active variant (the best with no budget)
wait_active "$top"
run status
expect_rc 0 "status"
expect_out "^active: +$(re "$top")$" "status"
expect_out "^counters:" "status"
# every counter, singular for 1 (one connection so far per qslmctl run: never "1 connections")
expect_out "^counters: +[0-9]+ connections?, [0-9]+ requests?, [0-9]+ tokens?, [0-9]+ errors?, [0-9]+ cancelled, [0-9]+ disconnected, [0-9]+ switch(es)?$" "status counters"
grep -Eq "(^|[^0-9])1 (connections|requests|tokens|errors|switches)\b" <<<"$out" && fail "status: a plural after 1: $out"

# set-budget one byte under the best variant: status shows the step down and the budget (no whole
# number of KiB: in MiB); auto: back to the best (after the up delay)
run set-budget "$down_budget"
expect_rc 0 "set-budget $down_budget"
expect_out "\($down_budget bytes\)" "set-budget $down_budget"
wait_active "$down"
run status
expect_out "^memory: +[0-9]+\.[0-9] MiB \($down_budget bytes\), source set-budget" "status after set-budget $down_budget"
# a size in the budget grammar is shown as written
run set-budget 5M
expect_rc 0 "set-budget 5M"
expect_out "5242880" "set-budget 5M"
run status
expect_out "^memory: +5M \(5242880 bytes\), source set-budget" "status after set-budget 5M"
run set-budget auto
expect_rc 0 "set-budget auto"
expect_out "memory auto" "set-budget auto"
# the size grammar of qslm-quant's variant names: 5.5M is 5767168 bytes, and 32MB is refused
run set-budget 5.5M
expect_rc 0 "set-budget 5.5M"
expect_out "\(5767168 bytes\)" "set-budget 5.5M"
run set-budget 32MB
expect_rc 2 "set-budget 32MB"
grep -q "'MB' is refused: write M or MiB" <<<"$err" || fail "set-budget 32MB: no hint on stderr: $err"
run set-budget auto
expect_rc 0 "set-budget auto"
wait_active "$top"

# variants: every one of the manifest's, the best one active
run variants
expect_rc 0 "variants"
for name in "${names[@]}"; do expect_out "^$(re "$name") " "variants"; done
expect_out "^$(re "$top") .*active" "variants"
# energy per token is in millijoules: mJ, not MJ (megajoules)
expect_out "^NAME .* mJ/TOKEN " "variants header"
grep -q "MJ/" <<<"$out" && fail "variants: the header says MJ (megajoules): $out"

# pin / unpin
run pin "$smallest"
expect_rc 0 "pin $smallest"
expect_out "$(re "$smallest")" "pin $smallest"
wait_active "$smallest"
run status
expect_out "^active: +$(re "$smallest") \(pinned\)$" "status after pin"
run --json status
expect_out '"pinned":true' "status --json after pin"
run unpin
expect_rc 0 "unpin"
wait_active "$top"

# classify: one "LABEL P" line per text, the label by its name (the model's sentiment head)
run classify "A wonderful, moving film." "I walked out."
expect_rc 0 "classify"
[ "$out" = "$(printf 'positive %s\nnegative %s' "$(sed -n 1p <<<"$out" | cut -d' ' -f2)" "$(sed -n 2p <<<"$out" | cut -d' ' -f2)")" ] ||
  fail "classify: expected 'positive P' then 'negative P': $out"
[ "$(grep -Ec '^(positive|negative) (0\.[5-9][0-9]|1\.00)$' <<<"$out")" -eq 2 ] || fail "classify: the label's probability: $out"
run classify --task sentiment "A wonderful, moving film."
expect_rc 0 "classify --task sentiment"
expect_out '^positive (0\.[5-9][0-9]|1\.00)$' "classify --task sentiment"
run classify --task topic "A wonderful, moving film."
expect_rc 1 "classify --task topic"
grep -Fq "qslmctl: invalid_argument: task: unknown task 'topic'; the model's tasks: sentiment, spam" <<<"$err" ||
  fail "classify --task topic: stderr: $err"
# the second head answers with its own labels
run classify --task spam "Subject: lunch

Shall we meet at noon on Friday?"
expect_rc 0 "classify --task spam"
expect_out '^(ham|spam) (0\.[5-9][0-9]|1\.00)$' "classify --task spam"
run variants
expect_out "^$(re "$top") +tasks: sentiment \(negative, positive\); spam \(ham, spam\)$" "variants: the tasks"

# --json: the server's lines as they come
run --json status
expect_rc 0 "status --json"
expect_out "^\{\"id\":[^,]+,\"protocol\":2,.*\"active\":\{\"variant\":\"$(re "$top")\"" "status --json"
[ "$(wc -l <<<"$out")" -eq 1 ] || fail "status --json: expected one line: $out"
run --json variants
for name in "${names[@]}"; do expect_out "\"name\":\"$(re "$name")\"" "variants --json"; done
run --json classify "good"
expect_rc 0 "classify --json"
expect_out '^\{"id":[^,]+,"task":"sentiment","labels":\["negative","positive"\],"results":\[\{"label":"(negative|positive)","label_index":[01],"probs":\[' "classify --json"
run --json generate --max-tokens 5 --seed 3 "The nation"
expect_rc 0 "generate --json"
[ "$(grep -c '"event":"token"' <<<"$out")" -eq 5 ] || fail "generate --json: expected 5 token events: $out"
expect_out '"event":"done".*"tokens":5' "generate --json"
[ "$(tail -n 1 <<<"$out" | grep -c '"event":"done"')" -eq 1 ] || fail "generate --json: the done message is not last"
run --json set-budget 5M
expect_out '"ok":true,"memory_bytes":5242880' "set-budget --json"
run --json set-budget auto
expect_out '"memory_bytes":null' "set-budget auto --json"

# a server error reply: exit 1, the code on stderr
run pin nosuch
expect_rc 1 "pin nosuch"
grep -q "not_found" <<<"$err" || fail "pin nosuch: no not_found on stderr: $err"
run --json pin nosuch
expect_rc 1 "pin nosuch --json"
expect_out '"error":\{"code":"not_found"' "pin nosuch --json"
run set-budget 1
expect_rc 0 "set-budget 1"
expect_out "^budget: memory .*\(1 byte\)" "set-budget 1: '1 byte', not '1 bytes'"
run set-budget "$below_all"
expect_rc 0 "set-budget $below_all"
run generate --max-tokens 4 "The nation"
expect_rc 1 "generate with no variant fitting"
grep -q "no_variant_fits" <<<"$err" || fail "generate under $below_all bytes: no no_variant_fits on stderr: $err"
run set-budget auto
expect_rc 0 "set-budget auto"
run generate --max-tokens 4 --seed 1 "The nation"
expect_rc 0 "generate after set-budget auto"

# usage errors: 2, nothing sent; no daemon: 3
run frobnicate
expect_rc 2 "unknown op"
"$qslmctl" --socket "$dir/nosuch.sock" status >/dev/null 2>&1
rc=$?
[ "$rc" -eq 3 ] || fail "no socket: exit $rc, expected 3"

# the daemon is still fine, and stops cleanly
kill -0 "$daemon_pid" 2>/dev/null || fail "qslmd died during the test"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
rc=$?
daemon_pid=
[ "$rc" -eq 0 ] || fail "qslmd exited $rc after SIGTERM"
[ ! -e "$sock" ] || fail "the socket is still there after SIGTERM"

if [ "$failures" -ne 0 ]; then
  echo "--- qslmd's log:" >&2
  cat "$dir/qslmd.log" >&2
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "qslmctl against qslmd: all checks passed"
