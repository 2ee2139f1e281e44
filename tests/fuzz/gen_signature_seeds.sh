#!/usr/bin/env bash
# gen_signature_seeds.sh: writes the seeds of the bundle_signature fuzz target (one byte n, an
# n-byte manifest.json.sig, then manifest.json) into a directory. Run by hand when the format
# changes:   bash tests/fuzz/gen_signature_seeds.sh tests/fuzz/corpus/bundle_signature
# Key A is trusted by the target, key C is not. They are test keys, public here on purpose.
# openssl's ECDSA is randomised: a re-run writes other signatures of the same kinds.
set -euo pipefail
out=${1:?usage: gen_signature_seeds.sh DIR}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/a.key" <<'KEY'
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFGRIpMUq2ud9EptQs4PXP1gWzNCAGR1rDwzVqnG/sl+oAoGCCqGSM49
AwEHoUQDQgAEllWC2CE4n1BFDC9v2lIuV50IA3BMrlIdtTo/HURgz9YB/jFdcSsw
VE6lGrnnug4pXvIZqBe8wgxCKzRVkX+/mw==
-----END EC PRIVATE KEY-----
KEY
cat >"$tmp/c.key" <<'KEY'
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIEQPrvbW6YDRJe/r0cz2XrBMf6OHsh8/SnusHqkkss6YoAoGCCqGSM49
AwEHoUQDQgAEGAMdCL+gxBrhFXPclBdKi/5f1Wwol3K1uTyYTn+nT9/IwKzTVLiX
Ly6lmrUtPNF+ES/whT4k71gv9N0GrOWxWQ==
-----END EC PRIVATE KEY-----
KEY
# A small valid manifest (runtime/BUNDLE.md).
cat >"$tmp/m.json" <<'JSON'
{"format": "qslm-bundle", "version": 1,
 "model": {"name": "m", "source_file": "m.qslm",
   "source_sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
 "created_by": "test", "created": "2026-12-05T09:30:00Z",
 "variants": [
  {"name": "q8", "file": "q8.qslm",
   "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
   "file_bytes": 1000, "footprint_bytes": 2000, "budget_bytes": 4096, "bits_per_weight": 8.5,
   "setting": {"head.weight": "q8_0"},
   "metrics": {"ppl_test": 90.5, "ppl_valid": null, "accuracy": 0.7, "tokens_per_s": 1500,
     "energy_pj_per_token": null}}],
 "infeasible": []}
JSON
sed 's/"test"/"edited"/' "$tmp/m.json" >"$tmp/edited.json"
id() { openssl ec -in "$1" -pubout -outform DER 2>/dev/null | sha256sum | cut -c1-16; }
der() { openssl dgst -sha256 -sign "$1" "$2"; }
# seed NAME SIGFILE MANIFEST
seed() {
  local n; n=$(stat -c %s "$2")
  { printf "\\$(printf %03o "$n")"; cat "$2" "$3"; } >"$out/$1"
}
der "$tmp/a.key" "$tmp/m.json" >"$tmp/a.der"
der "$tmp/c.key" "$tmp/m.json" >"$tmp/c.der"
{ cat "$tmp/a.der"; printf 'key-id %s\n' "$(id "$tmp/a.key")"; } >"$tmp/a.sig"
{ cat "$tmp/c.der"; printf 'key-id %s\n' "$(id "$tmp/c.key")"; } >"$tmp/c.sig"
{ cat "$tmp/a.der"; printf 'key-id %s\n' a5edc55ccbc5fd64; } >"$tmp/a-names-b.sig"
{ cat "$tmp/a.der"; printf 'key-id %s\n' 365A1B3E026042C5; } >"$tmp/upper.sig"
{ cat "$tmp/a.der"; printf 'key-id %s' "$(id "$tmp/a.key")"; } >"$tmp/no-newline.sig"
head -c 20 "$tmp/a.der" >"$tmp/short.sig"
: >"$tmp/empty.sig"
seed good "$tmp/a.sig" "$tmp/m.json"
seed good-der-only "$tmp/a.der" "$tmp/m.json"
seed good-line-names-b "$tmp/a-names-b.sig" "$tmp/m.json"
seed bad-edited "$tmp/a.sig" "$tmp/edited.json"
seed unknown-key "$tmp/c.sig" "$tmp/m.json"
seed unknown-key-der-only "$tmp/c.der" "$tmp/m.json"
seed bad-upper-hex "$tmp/upper.sig" "$tmp/m.json"
seed bad-no-newline "$tmp/no-newline.sig" "$tmp/m.json"
seed bad-short "$tmp/short.sig" "$tmp/m.json"
seed bad-empty "$tmp/empty.sig" "$tmp/m.json"
echo "wrote $(ls "$out" | wc -l) seeds to $out"
