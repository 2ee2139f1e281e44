#!/usr/bin/env bash
# test_qslmctl.sh: qslmctl's command line where no server is needed (TAP output).
#   bash test_qslmctl.sh QSLMCTL [STALE_SOCKET_HELPER]
# --help and --version, usage errors (exit 2, before any connection is tried), and every way a
# connection can fail (exit 3, the message naming the socket). Talking to a server is the
# integration tests' part, against the real qslmd: there is no fake daemon here.
set -u
ctl=$1
stale=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
failed=0

# Nothing listens at any path used here, so a usage error that slipped through to connect()
# would show as exit 3, not 2.
export QSLM_SOCKET="$tmp/absent.sock"

pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() {
  n=$((n + 1)); failed=$((failed + 1))
  echo "not ok $n - $1"
  echo "#   exit $rc; stdout:"; sed 's/^/#     /' "$tmp/out"
  echo "#   stderr:"; sed 's/^/#     /' "$tmp/err"
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

run() { "$ctl" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }

# expect DESC EXIT STDERR_TEXT ARGS...: runs qslmctl ARGS; passes when it exits EXIT, its
# stderr holds STDERR_TEXT (fixed string) and, for a failure, stdout is empty.
expect() {
  local desc=$1 want=$2 text=$3
  shift 3
  run "$@"
  if [ "$rc" -ne "$want" ]; then fail "$desc (wanted exit $want)"; return; fi
  if ! grep -qF -- "$text" "$tmp/err"; then fail "$desc (stderr lacks '$text')"; return; fi
  if [ "$want" -ne 0 ] && [ -s "$tmp/out" ]; then fail "$desc (stdout not empty)"; return; fi
  pass "$desc"
}

# usage DESC STDERR_TEXT ARGS...: a usage error: exit 2, the reason and the hint on stderr.
usage() {
  local desc=$1 text=$2
  shift 2
  expect "usage: $desc" 2 "$text" "$@"
  if [ "$rc" -eq 2 ] && ! grep -qF "qslmctl --help" "$tmp/err"; then
    fail "usage: $desc (no hint pointing to --help)"
  fi
}

# ------------------------------------------------------------------ --help, --version

run --help
if [ "$rc" -eq 0 ] && [ ! -s "$tmp/err" ] && grep -q '^usage: qslmctl' "$tmp/out"; then
  pass "--help exits 0 with the usage on stdout"
else
  fail "--help exits 0 with the usage on stdout"
fi
cp "$tmp/out" "$tmp/help"

for word in generate classify status variants metrics set-budget pin unpin reload --power auto \
            --socket --json --timeout --version --max-tokens --temperature --top-k --top-p \
            --repetition-penalty --seed --stop --no-stream --task QSLM_SOCKET /run/qslmd.sock \
            'Exit status' Ctrl-C; do
  if grep -qF -- "$word" "$tmp/help"; then pass "--help mentions $word"
  else fail "--help mentions $word"; fi
done

# Every option the help names is one qslmctl knows: the text does not promise what is not there.
for opt in $(grep -o -- '--[a-z][a-z-]*' "$tmp/help" | sort -u); do
  run "$opt=1" status
  if grep -qF "unknown option" "$tmp/err"; then fail "$opt, named in --help, is an option"
  else pass "$opt, named in --help, is an option"; fi
done

run -h
if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/help"; then pass "-h is --help"
else fail "-h is --help"; fi
run generate --max-tokens 3 --help
if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/help"; then pass "--help after an op still helps"
else fail "--help after an op still helps"; fi

run --version
if [ "$rc" -eq 0 ] && grep -qE '^qslmctl [0-9]+\.[0-9]+\.[0-9]+ \(protocol 2\)$' "$tmp/out"; then
  pass "--version prints the version and the protocol"
else
  fail "--version prints the version and the protocol"
fi

# ------------------------------------------------------------------ usage errors: exit 2

usage "no op" "no op given"
usage "unknown op" "unknown op 'bogus'" bogus
usage "op with a wrong case" "unknown op 'Status'" Status
usage "cancel is not a command" "Ctrl-C" cancel 1
usage "unknown long option" "unknown option '--bogus'" --bogus status
usage "unknown short option" "unknown option '-x'" -x status
usage "a flag given a value" "--json takes no value" --json=1 status
usage "an option without its value" "--socket needs a value" status --socket
usage "empty --socket" "must not be empty" --socket '' status
usage "socket path too long" "bad socket path" --socket "$tmp/$(printf 'x%.0s' {1..200})" status
usage "--timeout 0" "'0'" --timeout 0 status
usage "--timeout abc" "'abc'" --timeout abc status
usage "--timeout -1" "'-1'" --timeout -1 status

usage "generate without TEXT" "needs a TEXT" generate
usage "generate with an empty TEXT" "must not be empty" generate ''
usage "generate with two TEXTs" "one TEXT" generate hello world
usage "--max-tokens 0" "'0'" generate --max-tokens 0 hi
usage "--max-tokens x" "'x'" generate --max-tokens x hi
usage "--max-tokens -3" "'-3'" generate --max-tokens -3 hi
usage "--max-tokens 1.5" "'1.5'" generate --max-tokens 1.5 hi
usage "--max-tokens 2^32" "'4294967296'" generate --max-tokens 4294967296 hi
usage "--max-tokens with a space" "' 5'" generate --max-tokens ' 5' hi
usage "--temperature 6" "'6'" generate --temperature 6 hi
usage "--temperature -0.1" "'-0.1'" generate --temperature -0.1 hi
usage "--temperature nan" "'nan'" generate --temperature nan hi
usage "--temperature hex" "'0x1'" generate --temperature 0x1 hi
usage "--top-k -1" "'-1'" generate --top-k -1 hi
usage "--top-p 0" "'0'" generate --top-p 0 hi
usage "--top-p 1.5" "'1.5'" generate --top-p 1.5 hi
usage "--top-p 1e-40 (below a 32-bit float)" "'1e-40'" generate --top-p 1e-40 hi
usage "--temperature 1e-40 (below a 32-bit float)" "'1e-40'" generate --temperature 1e-40 hi
usage "--repetition-penalty 0.5" "'0.5'" generate --repetition-penalty 0.5 hi
usage "--seed -1" "'-1'" generate --seed -1 hi
usage "--seed 2^64" "'18446744073709551616'" generate --seed 18446744073709551616 hi
usage "--stop ''" "1..64 bytes" generate --stop '' hi
usage "--stop of 65 bytes" "1..64 bytes" generate --stop "$(printf 's%.0s' {1..65})" hi
nine=()
for i in 1 2 3 4 5 6 7 8 9; do nine+=(--stop "s$i"); done
usage "nine --stop" "at most 8" generate "${nine[@]}" hi
usage "a generate option on status" "--max-tokens is an option of generate" --max-tokens 5 status
usage "--power on classify" "--power is an option of set-budget" classify --power 3W hi

usage "--task on generate" "--task is an option of classify" generate --task sentiment hi
usage "--task with a capital" "--task: 'Sentiment' is not a task name" classify --task Sentiment hi
usage "--task too long" "is not a task name (1..32" classify --task "$(printf 't%.0s' {1..33})" hi
usage "--task without a value" "--task needs a value" classify --task
usage "classify without TEXT" "classify takes 1..64" classify
usage "classify with an empty TEXT" "TEXT 2 is empty" classify good ''
texts=()
for i in $(seq 65); do texts+=("text $i"); done
usage "classify with 65 TEXTs" "got 65" classify "${texts[@]}"

usage "status with an operand" "takes no arguments" status now
usage "variants with an operand" "takes no arguments" variants all
usage "unpin with an operand" "takes no arguments" unpin q4
usage "reload with an operand" "takes no arguments" reload now
usage "metrics with an operand" "takes no arguments" metrics all
usage "pin without NAME" "one variant NAME" pin
usage "pin with a bad NAME" "'bad/name'" pin bad/name
usage "pin with a 65-byte NAME" "is not a variant name" pin "$(printf 'v%.0s' {1..65})"

usage "set-budget without a value" "needs a SIZE" set-budget
usage "set-budget with two SIZEs" "one SIZE" set-budget 32M 64M
for bad in 32MB 32mb 32kB -1 0 0K '' ' 32M' '32M ' 32Mi 1e9 +5 0x10 32M5 \
           18446744073709551616 99999999999999999999G 1.5 1.5B .5M 5.M 5..5M 5,5M 0.0000001K; do
  usage "memory budget '$bad'" "bad memory budget '$bad'" set-budget "$bad"
done
for bad in 3.5w -1W 0 0W 0.0000001W 1.5kW .5W 5.W 3.5WW 1000001W 'auto ' AUTO ''; do
  usage "power budget '$bad'" "bad power budget '$bad'" set-budget --power "$bad"
done
usage "--power without a value" "--power needs a value" set-budget --power
# MB is refused with the spelling to use instead (the grammar is systemd's MemoryMax=)
usage "set-budget 32MB says to write M or MiB" "'MB' is refused: write M or MiB" set-budget 32MB
usage "set-budget 32kB says to write K or KiB" "'kB' is refused: write K or KiB" set-budget 32kB

# ------------------------------------------------------------------ cannot connect: exit 3

expect "no socket: exit 3 naming \$QSLM_SOCKET" 3 "$tmp/absent.sock: no such socket" status
expect "--socket overrides \$QSLM_SOCKET" 3 "$tmp/other.sock" --socket "$tmp/other.sock" variants
expect "options after the op" 3 "$tmp/after.sock" status --socket "$tmp/after.sock" --json
expect "generate cannot connect either" 3 "no such socket" generate --max-tokens 4 hi
touch "$tmp/file"
expect "a regular file at the path" 3 "$tmp/file: not a socket" --socket "$tmp/file" status
expect "a file as a directory of the path" 3 "$tmp/file/s.sock: no such socket" \
  --socket "$tmp/file/s.sock" status
if [ -n "$stale" ] && "$stale" "$tmp/stale.sock"; then
  expect "a socket nobody listens on" 3 "$tmp/stale.sock: connection refused" \
    --socket "$tmp/stale.sock" status
  if [ "$(id -u)" -ne 0 ]; then
    mkdir "$tmp/locked" && "$stale" "$tmp/locked/s.sock" && chmod 000 "$tmp/locked"
    expect "a socket in a directory we may not enter" 3 "$tmp/locked/s.sock: permission denied" \
      --socket "$tmp/locked/s.sock" status
    chmod 700 "$tmp/locked"
  else
    skip "a socket in a directory we may not enter" "root may enter any directory"
  fi
else
  skip "a socket nobody listens on" "no stale-socket helper"
  skip "a socket in a directory we may not enter" "no stale-socket helper"
fi
# permission denied says what stands in the way (it said "is this user in the service's
# group?" even when the socket's mode let no group in): as root, connect as nobody
pdir=$tmp/perm
if [ -n "$stale" ] && [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null &&
   setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
  mkdir "$pdir" && chmod 711 "$tmp" && chmod 755 "$pdir" && "$stale" "$pdir/s.sock"
  ctl_saved=$ctl
  as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$ctl_saved" "$@"; }
  chmod 0755 "$pdir/s.sock"
  ctl=as_nobody
  expect "permission denied: a mode that lets only the owner in says so" 3 \
    "$pdir/s.sock: permission denied: the socket is mode 0755, group 'root': only its owner (uid 0) may connect (see qslmd --socket-mode and --socket-group)" \
    --socket "$pdir/s.sock" status
  chmod 0770 "$pdir/s.sock"
  expect "permission denied: a group socket asks about the group" 3 \
    "$pdir/s.sock: permission denied: the socket is mode 0770, group 'root': is this user in group 'root'?" \
    --socket "$pdir/s.sock" status
  chmod 700 "$pdir"
  expect "permission denied: a directory on the way" 3 \
    "$pdir/s.sock: permission denied: a directory on the way is not searchable by this user" \
    --socket "$pdir/s.sock" status
  ctl=$ctl_saved
  chmod 700 "$tmp"
else
  skip "permission denied: a mode that lets only the owner in says so" "needs root, setpriv and the helper"
  skip "permission denied: a group socket asks about the group" "needs root, setpriv and the helper"
  skip "permission denied: a directory on the way" "needs root, setpriv and the helper"
fi
if [ -e /run/qslmd.sock ]; then
  skip "empty \$QSLM_SOCKET falls back to /run/qslmd.sock" "a daemon may be listening there"
else
  QSLM_SOCKET='' expect "empty \$QSLM_SOCKET falls back to /run/qslmd.sock" 3 \
    "/run/qslmd.sock" status
fi

# ------------------------------------------------------------------ valid values pass

# These get as far as connecting (exit 3): the local checks accept what the protocol allows.
for good in 32M 1536K 1GiB 512MiB 4096 4096B 00032m 1T 5632K 5.5M 4.65M 1.5G 0.5GiB auto; do
  expect "memory budget '$good' is accepted" 3 "no such socket" set-budget "$good"
done
for good in 3.5W 500mW 2 0.000001W 1000000W 0.001mW auto; do
  expect "power budget '$good' is accepted" 3 "no such socket" set-budget --power "$good"
done
expect "memory and power together" 3 "no such socket" set-budget 32M --power=3.5W
expect "every generate option" 3 "no such socket" generate --max-tokens 16 --temperature 0 \
  --top-k 0 --top-p 1 --repetition-penalty 1 --seed 18446744073709551615 --stop . --stop '!' \
  --no-stream --timeout 5 "My fellow"
expect "a prompt after -- may start with -" 3 "no such socket" generate -- --not-an-option
expect "a negative-looking prompt is a prompt" 3 "no such socket" generate -5
expect "classify with 64 TEXTs" 3 "no such socket" classify "${texts[@]:0:64}"
expect "pin a valid NAME" 3 "no such socket" pin q4-block_v1.2

echo "1..$n"
[ "$failed" -eq 0 ]
