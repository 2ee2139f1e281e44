#!/usr/bin/env bash
# cross-test.sh: the aarch64 build's tests under qemu user-mode emulation (scripts/cross.sh test
# builds, then calls this). meson runs each test executable through the cross file's exe_wrapper
# (qemu-aarch64-static); qslmd, which the daemon tests exec themselves, through QSLMD_WRAPPER.
#   bash scripts/cross-test.sh [TREE]          # the emulated set below, about 2 minutes on 2 cores
#   bash scripts/cross-test.sh [TREE] --full   # also the slow ones, about 20 more minutes
# The emulated set:
#   - the runtime's unit tests (suite runtime) on qemu's default CPU, which has dotprod (the
#     quantized types run their neon-dotprod kernels), chunk for four types only (a minute
#     or two), then kernels, gemm, forward and spike_linear again on a Cortex-A72 (the Raspberry
#     Pi 4: no dotprod, so the plain neon kernels);
#   - suites ipc and fuzz (the corpora replayed), the daemon's telemetry and policy unit tests;
#   - the daemon end to end (tests/cross/test_cross_daemon.c: a request, a budget switch,
#     SIGTERM; a Pi without memory cgroup or PSI, with a Jetson INA3221 rail: the budget from
#     MemAvailable), its systemd protocol (daemon_systemd) and access control (daemon_access).
# Not emulated: the tests that are shell scripts running the built tools (cli, qslm_quant_cli,
# qslmctl_*; they would need binfmt), config (execs qslmd without the wrapper), deploy and the
# fetch-data test (nothing architecture-specific), the reliability suite (load and faults: minutes
# natively); and, unless --full: quant_ppl (every type's perplexity on the default model: 18 s
# natively, 18 minutes emulated on a busy 2-core machine, about 13 of CPU), quant_search (about
# 1 minute) and daemon_integration (2 to 2.5 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.build-aarch64
full=0
for a in "$@"; do
  case "$a" in
    --full) full=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "cross-test: unknown option '$a'" >&2; exit 2 ;;
    *) dir=$a ;;
  esac
done
export QSLMD_WRAPPER=qemu-aarch64-static

t() { # label, then meson test arguments
  local label=$1 start=$SECONDS
  shift
  echo "cross-test: $label" >&2
  meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 2 "$@"
  echo "cross-test: $label: $((SECONDS - start)) s" >&2
}

runtime=(model_file heads tokenizer tokenizer_hf kernels gemm sampler forward default_tokenizer quant spike_linear bundle energy fast_math vexp)
t "runtime on qemu's max CPU (dotprod)" "${runtime[@]}"
QSLM_CHUNK_TYPES=q8_0,q4_1,q3_0,q2_s t "chunk against decode, four types, one of each kind (all 17 natively)" --timeout-multiplier 4 chunk
QEMU_CPU=cortex-a72 t "kernels, gemm, forward, spike_linear on a Cortex-A72 (no dotprod)" kernels gemm forward spike_linear
t "ipc and fuzz corpora" --suite ipc --suite fuzz
t "daemon under emulation" telemetry policy daemon_emulated daemon_systemd daemon_access
if [ "$full" = 1 ]; then
  t "slow tests (--full)" --timeout-multiplier 3 quant_ppl quant_search daemon_integration
fi
echo "cross-test: every emulated test passed" >&2
