#!/usr/bin/env bash
# run.sh: the README's run command. Installs what is missing (Debian packages), builds, starts
# qslmd on the bundled default model's variant bundle (models/bundle), and answers requests
# through qslmctl: a generation (streamed), a classification by each of the model's two heads
# (sentiment, spam), the status. Then stops the daemon with SIGTERM, unless --serve: then it
# keeps serving in the foreground until Ctrl-C, for a second shell's `qslmctl`.
#   bash scripts/run.sh            # start, answer, stop
#   bash scripts/run.sh --serve    # start, answer, keep serving
set -euo pipefail
cd "$(dirname "$0")/.."
serve=0
case "${1:-}" in
  --serve) serve=1 ;;
  "") ;;
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac
bash scripts/setup.sh
dir=$(bash scripts/build.sh normal)
sockdir=${XDG_RUNTIME_DIR:-/tmp}/qslmd-$(id -u)
mkdir -p "$sockdir"
export QSLM_SOCKET=$sockdir/qslmd.sock
qslmctl=$dir/daemon/qslmctl

"$dir/daemon/qslmd" --bundle models/bundle --socket "$QSLM_SOCKET" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
# ready when the socket answers
for _ in $(seq 100); do
  "$qslmctl" status >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { echo "run: qslmd exited; its log is above" >&2; exit 1; }
  sleep 0.1
done

echo "== qslmctl generate \"The state of the Union is\" (greedy, 48 tokens)" >&2
"$qslmctl" generate --temperature 0 --max-tokens 48 "The state of the Union is"
echo "== qslmctl classify --task sentiment (each text's label and its probability)" >&2
"$qslmctl" classify --task sentiment "A wonderful film, I loved every minute." "Dull and too long."
echo "== qslmctl classify --task spam" >&2
"$qslmctl" classify --task spam \
  "Subject: Re: meeting notes

Thanks, I moved the review to Thursday at 10. Can you send the draft before then?" \
  "Subject: You have been selected!!!

Claim your FREE prize now. Click here to receive \$1,000,000 cash, no purchase necessary."
echo "== qslmctl status" >&2
"$qslmctl" status
if [ $serve = 1 ]; then
  echo "== qslmd is serving on $QSLM_SOCKET; in a second shell:" >&2
  echo "   QSLM_SOCKET=$QSLM_SOCKET $qslmctl generate \"My fellow citizens\"" >&2
  echo "   (Ctrl-C here stops it)" >&2
  wait $daemon
fi
