# shellcheck shell=bash
# memory.sh: the memory-budget checks of the system test (sourced by tests/system/in-vm.sh, inside
# the VM, after qslmd.socket is enabled and qslmd has answered once). Functions only; in-vm.sh
# calls them in order. Each check prints one TAP line (lib.sh); figures go to the summary.
#
# Never name a variable n here: lib.sh's TAP counter is the global n.
#
# The limits are derived from what the booted kernel says, not hard-coded: `others` is the
# service's unreclaimable memory (memory.stat: anon, shmem, mapped, dirty, kernel) less the
# footprint of the variant it serves, as qslmd computes it (daemon/policy.h). The variants and
# which one each budget gets come from `qslmctl variants` (footprints and test perplexities), not
# from this file: qslmd serves the best quality that fits, so the steps are the variants it picks
# as the budget shrinks (the best one, then the best under its footprint, and so on down to the
# smallest); a variant that a smaller and better one beats is never served and is no step. For
# each step X the test sets MemoryHigh = others + cgroup_reserve (1 MiB) + a budget that X fits
# and the step above it does not (half-way between the two, and high enough for a step up's 5%
# headroom), and MemoryMax 2 MiB above that; then it checks that qslmd serves X, how long the
# switch took, that the service's anonymous memory never went above the new MemoryHigh during
# the switch (no second image next to the first), and that the kernel never had to act at
# MemoryMax (memory.events max and oom_kill stay 0).

MIB=1048576
RESERVE=$MIB # qslmd's default cgroup_reserve

# The service's cgroup directory (empty while it has none).
qslmd_cg() { cgroup_dir qslmd.service; }

# stat_value CGDIR KEY: one line of memory.stat (0 when absent).
stat_value() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$1/memory.stat"; }

# unreclaimable CGDIR: what qslmd counts as memory it cannot give back (daemon/policy.h).
unreclaimable() {
  awk '$1 ~ /^(anon|shmem|file_mapped|file_dirty|file_writeback|kernel_stack|pagetables|percpu|sock|vmalloc|slab_unreclaimable)$/ { s += $2 }
       END { print s + 0 }' "$1/memory.stat"
}

# events_value CGDIR KEY: one line of memory.events.
events_value() { awk -v k="$2" '$1 == k { print $2 }' "$1/memory.events"; }

# psi_avg10 FILE: the "some" line's avg10 (%) of a PSI file (/proc/pressure/memory, a cgroup's
# memory.pressure).
psi_avg10() { awk 'NR == 1 { for (i = 2; i <= NF; i++) if (sub(/^avg10=/, "", $i)) print $i }' "$1"; }

# Memory pressure is below qslmd's threshold (psi_threshold, 10%) for the service and for the
# machine: the policy's decisions then say which budget ruled, not the pressure.
pressure_calm() {
  awk -v a="$(psi_avg10 /proc/pressure/memory)" -v b="$(psi_avg10 "$(qslmd_cg)/memory.pressure")" \
    'BEGIN { exit !(a != "" && b != "" && a + 0 < 10 && b + 0 < 10) }'
}

# The active variant's name from `qslmctl --json status` ("none" when it serves none; "" when
# qslmd did not answer within 5 s).
active_variant() {
  local out
  out=$(qslmctl --timeout 5 --json status 2>/dev/null) || { echo ""; return; }
  if [[ $out =~ \"active\":\{\"variant\":\"([^\"]*)\" ]]; then echo "${BASH_REMATCH[1]}"; else echo none; fi
}
status_reason() {
  local out
  out=$(qslmctl --timeout 5 --json status 2>/dev/null)
  [[ $out =~ \"reason\":\"([^\"]*)\" ]] && echo "${BASH_REMATCH[1]}"
}

is_serving() { [ "$(active_variant)" = "$1" ]; }
# The same from systemd's copy of the status line (STATUS=): asks systemd, not qslmd, so polling
# it costs a throttled qslmd nothing (every connection it accepts is memory it must charge).
status_line_not_serving() { local st; st=$(prop qslmd.service StatusText); [ -n "$st" ] && [[ $st != "serving $1:"* ]]; }
serving_other_than() { local a; a=$(active_variant); [ -n "$a" ] && [ "$a" != "$1" ]; }

# The bundle's variants from `qslmctl --json variants`: ALLNAME, ALLFP (bytes) in manifest order;
# and the steps qslmd serves as the budget shrinks (steps_of), biggest first: VNAME, VFP.
load_variants() {
  local json rest name fp ppl
  json=$(qslmctl --json variants) || return 1
  ALLNAME=() ALLFP=()
  local table=""
  rest=$json
  while [[ $rest =~ \{\"name\":\"([^\"]*)\",\"footprint_bytes\":([0-9]+),[^{]*\"metrics\":(\{\"ppl_test\":([^,}]*)|null) ]]; do
    name=${BASH_REMATCH[1]} fp=${BASH_REMATCH[2]} ppl=${BASH_REMATCH[4]:-null}
    ALLNAME+=("$name")
    ALLFP+=("$fp")
    table+="$name $fp $ppl"$'\n'
    rest=${rest#*"\"footprint_bytes\":$fp"}
  done
  VNAME=() VFP=()
  while read -r fp name; do VFP+=("$fp"); VNAME+=("$name"); done < <(steps_of <<<"$table")
  [ ${#ALLNAME[@]} -ge 2 ] && [ ${#VNAME[@]} -ge 2 ]
}

# steps_of: lines "NAME FOOTPRINT PPL_TEST" (null: unknown) in manifest order in; out, "FOOTPRINT
# NAME" of what qslmd serves with no budget, then of what it serves under that one's footprint,
# and so on (daemon/policy.h: the best quality that fits; unknown ranks last; a tie goes to
# manifest order).
steps_of() {
  awk 'NF == 3 { k++; name[k] = $1; fp[k] = $2; q[k] = $3 }
       function better(a, b) { return q[a] != "null" && (q[b] == "null" || q[a] + 0 < q[b] + 0) }
       END {
         limit = -1
         for (;;) {
           best = 0
           for (i = 1; i <= k; i++)
             if ((limit < 0 || fp[i] + 0 < limit) && (!best || better(i, best))) best = i
           if (!best) break
           print fp[best], name[best]
           limit = fp[best] + 0
         }
       }'
}

# footprint_of NAME
footprint_of() { local i; for i in "${!ALLNAME[@]}"; do [ "${ALLNAME[$i]}" = "$1" ] && echo "${ALLFP[$i]}"; done; }

# best_under BYTES: what qslmd serves under a memory budget of BYTES ("none" when nothing fits):
# the first step that fits (every variant that fits is under the step above it, of which that
# step is the best).
best_under() {
  local i
  for i in "${!VNAME[@]}"; do
    if [ "${VFP[$i]}" -le "$1" ]; then echo "${VNAME[$i]}"; return; fi
  done
  echo none
}

# budget_for I: a budget (bytes) that step I fits with a step up's headroom and the step above it
# (I-1) does not: the middle of [fp(I) / 0.95, fp(I-1)), or fp(I) / 0.95 + 1 MiB for the first.
# For I = ${#VNAME[@]} (no variant): 90% of the smallest footprint.
budget_for() {
  local i=$1 nv=${#VNAME[@]}
  if [ "$i" -ge "$nv" ]; then echo $(( VFP[nv - 1] * 9 / 10 )); return; fi
  local low=$(( VFP[i] * 100 / 95 + 4096 ))
  if [ "$i" -eq 0 ]; then echo $(( low + MIB )); return; fi
  local high=${VFP[$((i - 1))]}
  if [ "$low" -ge "$high" ]; then echo $(( (VFP[i] + high) / 2 )); return; fi
  echo $(( (low + high) / 2 ))
}

# others_now: unreclaimable less the active variant's footprint (qslmd's `others`).
others_now() {
  local cg act fp u
  cg=$(qslmd_cg) act=$(active_variant)
  u=$(unreclaimable "$cg")
  fp=$(footprint_of "$act")
  echo $(( u - ${fp:-0} > 0 ? u - ${fp:-0} : 0 ))
}

# Samples the service's anon memory every 20 ms into FILE's single line (the maximum seen) until
# FILE.stop exists. Started in the background around a switch.
sample_anon_max() {
  local cg=$1 out=$2 max=0 v
  while [ ! -e "$out.stop" ]; do
    v=$(awk '$1 == "anon" { print $2; exit }' "$cg/memory.stat" 2>/dev/null)
    [ -n "$v" ] && [ "$v" -gt "$max" ] && max=$v && echo "$max" >"$out"
    sleep 0.02
  done
}

# set_limits HIGH MAX (bytes or "infinity"), at run time as a user would.
set_limits() { systemctl set-property --runtime qslmd.service "MemoryHigh=$1" "MemoryMax=$2"; }

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

# step_to I LABEL: sets the limits for step I (or none when I = n), waits for qslmd to serve it
# and checks the switch. Uses and updates OTHERS (bytes).
step_to() {
  local i=$1 label=$2 nv=${#VNAME[@]} cg want budget high max t0 took got before anon_max
  cg=$(qslmd_cg)
  want=none
  [ "$i" -lt "$nv" ] && want=${VNAME[$i]}
  budget=$(budget_for "$i")
  high=$(( OTHERS + RESERVE + budget ))
  high=$(( (high + 4095) / 4096 * 4096 ))
  max=$(( high + 2 * MIB ))
  before=$(awk '$1 == "anon" { print $2 }' "$cg/memory.stat")
  local samp=/tmp/anon-max.$$
  rm -f "$samp" "$samp.stop"
  echo "$before" >"$samp"
  sample_anon_max "$cg" "$samp" &
  local sampler=$!
  t0=$(now)
  set_limits "$high" "$max"
  # down at once; up after up_delay (10 s) with 5% headroom; none at once
  wait_for 45 is_serving "$want"
  took=$(since "$t0")
  got=$(active_variant)
  sleep 0.3
  touch "$samp.stop"
  wait "$sampler" 2>/dev/null
  anon_max=$(cat "$samp")
  rm -f "$samp" "$samp.stop"
  local peak_ok=1 limit_now=$high
  # the switch may not take anon above both the new MemoryHigh and where it was before
  [ "$anon_max" -le "$high" ] || [ "$anon_max" -le "$before" ] || peak_ok=0
  figure "step_${label}_memory_high_mib" "$(mib "$high")"
  figure "step_${label}_budget_mib" "$(mib "$budget")"
  figure "step_${label}_serving" "$got"
  figure "step_${label}_took_s" "$took"
  figure "step_${label}_anon_peak_mib" "$(mib "$anon_max") (before $(mib "$before"), MemoryHigh $(mib "$limit_now"))"
  if [ "$got" = "$want" ]; then
    ok "$label: MemoryHigh=$(mib "$high")M MemoryMax=$(mib "$max")M serves $want (in $took s)"
  else
    bad "$label: MemoryHigh=$(mib "$high")M MemoryMax=$(mib "$max")M serves $want" \
      "serving '$got' after $took s; others $(mib "$OTHERS") MiB; reason: $(status_reason)" \
      "memory.stat: $(tr '\n' ' ' <"$cg/memory.stat" | cut -c1-600)"
  fi
  if [ "$peak_ok" = 1 ]; then
    ok "$label: the switch kept anon memory under MemoryHigh or where it was (peak $(mib "$anon_max") MiB)"
  else
    bad "$label: the switch kept anon memory under MemoryHigh or where it was" \
      "anon peak $(mib "$anon_max") MiB, before $(mib "$before") MiB, MemoryHigh $(mib "$high") MiB"
  fi
  # STATUS= follows every switch
  local st
  st=$(prop qslmd.service StatusText)
  if [[ $st == "serving $got"* ]] || { [ "$got" = none ] && [[ $st == "serving no variant"* ]]; }; then
    ok "$label: systemd's status line follows the switch ('${st:0:60}...')"
  else
    bad "$label: systemd's status line follows the switch" "StatusText: '$st', serving '$got'"
  fi
  STEP_MAX=$max
}

# A status answer within 5 s, every second for SECONDS (the event loop never waits).
responsive_for() {
  local secs=$1 i worst=0 t0 t slow=0
  for ((i = 0; i < secs; i++)); do
    t0=$(now)
    qslmctl --timeout 5 status >/dev/null 2>&1 || slow=$((slow + 1))
    t=$(since "$t0")
    worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
    sleep 1
  done
  figure status_worst_s_under_tight_limit "$worst"
  [ "$slow" -eq 0 ]
}

# ------------------------------------------------------------------ the sequence in-vm.sh runs

# Steps MemoryHigh/MemoryMax down through every step to below the smallest variant, then back up,
# at run time; then the checks that the kernel never acted at MemoryMax.
memory_steps() {
  section "memory budget: MemoryHigh/MemoryMax set at run time"
  if ! load_variants; then bad "qslmctl variants lists the bundle's variants, two of them steps"; return; fi
  ok "the bundle has ${#ALLNAME[@]} variants: $(for i in "${!ALLNAME[@]}"; do printf '%s (%s MiB) ' "${ALLNAME[$i]}" "$(mib "${ALLFP[$i]}")"; done)"
  ok "qslmd steps down through ${#VNAME[@]} of them: ${VNAME[*]}"
  local nv=${#VNAME[@]} cg i
  set_limits infinity infinity
  if ! wait_for 60 is_serving "${VNAME[0]}"; then
    bad "with no limit qslmd serves the best variant, ${VNAME[0]}" "serving '$(active_variant)'"
    return
  fi
  cg=$(qslmd_cg)
  OTHERS=$(others_now)
  figure others_mib "$(mib "$OTHERS") (unreclaimable $(mib "$(unreclaimable "$cg")") MiB less ${VNAME[0]}'s footprint)"
  figure page_cache_mib "$(mib "$(stat_value "$cg" file)") (memory.stat file, serving ${VNAME[0]})"
  figure memory_current_mib "$(mib "$(cat "$cg/memory.current")")"
  local max_set=0
  for ((i = 1; i <= nv; i++)); do
    OTHERS=$(others_now)
    step_to "$i" "down$i"
    [ "$STEP_MAX" -gt "$max_set" ] && max_set=$STEP_MAX
    if [ "$i" -eq "$nv" ]; then
      # below every variant: serving none, and still answering at once (no throttling, no hang)
      if responsive_for 5; then ok "below the smallest variant qslmd serves none and answers status within 5 s"
      else bad "below the smallest variant qslmd answers status within 5 s"; fi
    fi
  done
  for ((i = nv - 1; i >= 0; i--)); do
    OTHERS=$(others_now)
    step_to "$i" "up$((nv - i))"
    [ "$STEP_MAX" -gt "$max_set" ] && max_set=$STEP_MAX
  done
  figure memory_peak_mib "$(mib "$(cat "$cg/memory.peak" 2>/dev/null || echo 0)") (highest MemoryMax set: $(mib "$max_set") MiB)"
  local ev_max ev_oom
  ev_max=$(events_value "$cg" max) ev_oom=$(events_value "$cg" oom_kill)
  figure memory_events "high $(events_value "$cg" high), max $ev_max, oom $(events_value "$cg" oom), oom_kill $ev_oom"
  if [ "$ev_max" = 0 ] && [ "$ev_oom" = 0 ]; then
    ok "the kernel never reclaimed at MemoryMax nor OOM-killed (memory.events max 0, oom_kill 0)"
  else
    bad "the kernel never reclaimed at MemoryMax nor OOM-killed" "memory.events: $(tr '\n' ' ' <"$cg/memory.events")"
  fi
}

# A restart of the service under each variant's limits serves that variant: page cache from
# reading the bundle must not count against it.
memory_restarts() {
  section "restarts under each limit"
  local nv=${#VNAME[@]} i want budget high max t0 got
  for ((i = 0; i <= nv; i++)); do
    want=none
    [ "$i" -lt "$nv" ] && want=${VNAME[$i]}
    budget=$(budget_for "$i")
    high=$(( (OTHERS + RESERVE + budget + 4095) / 4096 * 4096 ))
    max=$(( high + 2 * MIB ))
    set_limits "$high" "$max"
    t0=$(now)
    systemctl restart qslmd.service
    wait_for 60 is_serving "$want"
    got=$(active_variant)
    figure "restart$i" "MemoryHigh $(mib "$high") MiB: serving $got after $(since "$t0") s; page cache $(mib "$(stat_value "$(qslmd_cg)" file)") MiB"
    if [ "$got" = "$want" ]; then ok "restarted under MemoryHigh=$(mib "$high")M it serves $want"
    else bad "restarted under MemoryHigh=$(mib "$high")M it serves $want" "serving '$got'; reason: $(status_reason)"; fi
  done
  set_limits infinity infinity
  wait_for 60 is_serving "${VNAME[0]}"
}

# A memory hog in a sibling cgroup, throttled at its own MemoryHigh, stalls on memory: the
# machine's PSI rises and qslmd steps down (its own limits are off).
memory_psi() {
  section "memory pressure from a sibling cgroup"
  local t0 before got reason
  before=$(active_variant)
  t0=$(now)
  systemd-run --quiet --unit=qslm-hog --property=MemoryHigh=16M --property=MemoryMax=400M \
    stress-ng --vm 2 --vm-bytes 48M --vm-keep --timeout 120s >/dev/null 2>&1
  wait_for 60 serving_other_than "$before"
  got=$(active_variant)
  reason=$(status_reason)
  figure psi_step "from $before to $got after $(since "$t0") s: $reason"
  figure psi_machine "$(head -n 1 /proc/pressure/memory)"
  systemctl stop qslm-hog.service 2>/dev/null
  systemctl reset-failed qslm-hog.service 2>/dev/null
  if [ "$got" != "$before" ] && [[ $reason == *"memory pressure"* ]]; then
    ok "a hog in a sibling cgroup drives a PSI step down ($before -> $got)"
  else
    bad "a hog in a sibling cgroup drives a PSI step down" "serving '$got' (was $before); reason: $reason" \
      "machine PSI: $(head -n 1 /proc/pressure/memory)"
  fi
}

# systemctl reload with nothing changed keeps the loaded copy: no second image (VmHWM).
service_reload() {
  section "systemctl reload"
  local pid hwm0 hwm1 fp
  pid=$(prop qslmd.service MainPID)
  hwm0=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
  check "systemctl reload qslmd.service succeeds" systemctl reload qslmd.service
  hwm1=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
  fp=$(footprint_of "$(active_variant)")
  figure reload_vmhwm_kib "$hwm0 before, $hwm1 after (the variant's footprint: $(( ${fp:-0} / 1024 )) KiB)"
  if journalctl -u qslmd.service --no-pager -o cat | grep -q "kept the loaded copy"; then
    ok "the reload kept the loaded copy of the unchanged variant"
  else
    bad "the reload kept the loaded copy of the unchanged variant" "$(journalctl -u qslmd.service --no-pager -o cat | tail -n 5)"
  fi
  if [ $(( hwm1 - hwm0 )) -lt $(( ${fp:-0} / 1024 / 2 )) ]; then ok "the reload's peak RSS grew by less than half a variant"
  else bad "the reload's peak RSS grew by less than half a variant" "VmHWM $hwm0 -> $hwm1 KiB"; fi
  check "qslmd.service is still the same process" test "$(prop qslmd.service MainPID)" = "$pid"
}

# systemctl stop with a generation in flight: the client gets its final message, qslmd exits
# cleanly within its stop timeout; the socket then starts it again.
service_stop_mid_generation() {
  section "systemctl stop with a generation in flight"
  local out err t0 took client rc result
  out=$(results stop-generate.out) err=$(results stop-generate.err)
  qslmctl generate --max-tokens 1000 --seed 3 "The state of the Union" >"$out" 2>"$err" &
  client=$!
  wait_for 60 test -s "$out"
  t0=$(now)
  systemctl stop qslmd.service
  took=$(since "$t0")
  wait "$client"
  rc=$?
  result=$(prop qslmd.service Result)
  figure stop_s "$took (client exit $rc: $(tail -n 1 "$err"))"
  if grep -q "shutting_down\|stop: " "$err"; then ok "the generation in flight got its final message ($(tail -n 1 "$err" | cut -c1-80))"
  else bad "the generation in flight got its final message" "client exit $rc" "$(cat "$err")"; fi
  if [ "$result" = success ]; then ok "qslmd stopped cleanly (Result=success, in $took s)"
  else bad "qslmd stopped cleanly" "Result=$result"; fi
  check "the socket starts qslmd again at the next request" qslmctl --timeout 120 status
  # status answers before READY=1; the end's "still active" check needs the start finished
  wait_for 60 systemctl is-active --quiet qslmd.service
}

service_security() {
  section "systemd-analyze security"
  local line
  systemd-analyze security --no-pager qslmd.service >"$(results security.txt)" 2>&1
  line=$(grep -a "Overall exposure level" "$(results security.txt)")
  figure security "${line#*: }"
  if [[ $line =~ level\ for\ qslmd.service:\ ([0-9.]+)\ (SAFE|OK) ]]; then
    ok "systemd-analyze security rates qslmd.service ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
  else
    bad "systemd-analyze security rates qslmd.service SAFE or OK" "$line"
  fi
}

# The memory budget in force, in bytes, from `qslmctl --json status` ("" when none is known).
budget_now() {
  local out
  out=$(qslmctl --timeout 5 --json status 2>/dev/null)
  [[ $out =~ \"budget\":\{\"memory\":\{\"bytes\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}"
}

# The README's Deployment example, with its own numbers: MemoryHigh=8M MemoryMax=12M steps the
# default bundle down from its best variant to what the budget those limits leave gets (the
# variant is checked against the budget status reports, not named here); infinity brings the
# best one back (after up_delay).
readme_example() {
  section "the README's MemoryHigh/MemoryMax example"
  local t0 took got budget want top=${VNAME[0]}
  set_limits infinity infinity
  wait_for 60 is_serving "$top"
  t0=$(now)
  set_limits 8M 12M
  local set_took
  set_took=$(since "$t0")
  wait_for 30 status_line_not_serving "$top"
  took=$(since "$t0")
  # status answers from the last policy tick's reading (one a second), which may be from the
  # middle of the switch, when qslmd counts both images as its own: two ticks on it is settled
  sleep 2.5
  got=$(active_variant)
  budget=$(budget_now)
  want=$(best_under "${budget:-0}")
  figure readme_example "MemoryHigh=8M MemoryMax=12M: serving $got after $took s, of which systemctl set-property $set_took s (budget $(mib "${budget:-0}") MiB)"
  if [ "$got" = "$want" ] && [ "$got" != "$top" ] && [ "$got" != none ]; then
    ok "the README's example MemoryHigh=8M MemoryMax=12M steps down from $top to $got (budget $(mib "$budget") MiB)"
  else
    bad "the README's example MemoryHigh=8M MemoryMax=12M steps down from $top to what its budget gets" \
      "serving '$got', budget '${budget:-none}' bytes, which gets '$want'; $(status_reason)"
  fi
  # the throttling on the way down (16M's image was above the new MemoryHigh until it went) stays
  # in avg10 for tens of seconds; once psi_hold (10 s) is over that echo must not step further
  sleep 15
  local later
  later=$(active_variant)
  figure readme_example_later "15 s on: serving $later; machine PSI $(psi_avg10 /proc/pressure/memory)%, service $(psi_avg10 "$(qslmd_cg)/memory.pressure")%"
  if [ "$later" = "$got" ]; then ok "the README's example stays on $got past psi_hold (the stall of the way down is not read again)"
  else bad "the README's example stays on $got past psi_hold" "serving '$later' 15 s on; reason: $(status_reason)"; fi
  t0=$(now)
  set_limits infinity infinity
  wait_for 60 is_serving "$top"
  got=$(active_variant)
  figure readme_example_back "MemoryHigh=infinity MemoryMax=infinity: serving $got after $(since "$t0") s"
  if [ "$got" = "$top" ]; then ok "the README's example MemoryHigh=infinity MemoryMax=infinity brings $top back"
  else bad "the README's example MemoryHigh=infinity MemoryMax=infinity brings $top back" "serving '$got'"; fi
}

# systemd's status line follows switches made by set-budget and pin too (not only the policy's):
# a budget for the second step, then a pin of the smallest step. It starts once the pressure the
# previous section's limits caused has decayed (avg10 keeps a throttling for tens of seconds),
# or the status line would rightly name the pressure rather than the budget that was set.
status_line_control() {
  section "STATUS= after set-budget and pin"
  local st top=${VNAME[0]} second=${VNAME[1]} pinned=${VNAME[${#VNAME[@]} - 1]} budget t0
  t0=$(now)
  wait_for 120 pressure_calm
  figure pressure_calm "after $(since "$t0") s: machine $(psi_avg10 /proc/pressure/memory)%, service $(psi_avg10 "$(qslmd_cg)/memory.pressure")%"
  budget=$(budget_for 1)
  check "qslmctl set-budget $budget ($(mib "$budget") MiB)" qslmctl set-budget "$budget"
  wait_for 30 is_serving "$second"
  st=$(prop qslmd.service StatusText)
  if [[ $st == "serving $second: "*"(set-budget)"* ]]; then ok "after set-budget the status line says so ('${st:0:70}')"
  else bad "after set-budget the status line says so (serving $second)" "StatusText: '$st'"; fi
  check "qslmctl pin $pinned" qslmctl pin "$pinned"
  wait_for 30 is_serving "$pinned"
  st=$(prop qslmd.service StatusText)
  if [[ $st == "serving $pinned: pinned"* ]]; then ok "after pin the status line says so ('${st:0:70}')"
  else bad "after pin the status line says so (serving $pinned)" "StatusText: '$st'"; fi
  check "qslmctl unpin and set-budget auto" bash -c 'qslmctl unpin && qslmctl set-budget auto'
  wait_for 60 is_serving "$top"
  st=$(prop qslmd.service StatusText)
  if [[ $st == "serving $top: "* ]]; then ok "back on $top, the status line says so ('${st:0:70}')"
  else bad "back on $top, the status line says so" "StatusText: '$st'"; fi
}
