#!/usr/bin/env bash
# Check a pytest-gpucluster report folder with standard tools only (bash, jq, sha256sum, base64, openssl >= 3):
#   bash docs/verify-with-openssl.sh REPORT_DIR vendor.pub
# 1. every file listed in the signed manifest has its sha256; 2. the DSSE signature of the manifest holds for the
# vendor's Ed25519 public key. The same checks as `gpucluster verify REPORT_DIR --key vendor.pub` (docs/report.md).
set -euo pipefail
dir=$1 pub=$2 tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
env="$dir/manifest.intoto.dsse.json"
jq -r '.payload' "$env" | base64 -d > "$tmp/payload"                 # the signed in-toto Statement
jq -r '.signatures[0].sig' "$env" | base64 -d > "$tmp/sig"
type=$(jq -r '.payloadType' "$env")
# DSSE v1 pre-authentication encoding: "DSSEv1 <len(type)> <type> <len(payload)> <payload>"
printf 'DSSEv1 %d %s %d ' "${#type}" "$type" "$(stat -c %s "$tmp/payload")" > "$tmp/pae"
cat "$tmp/payload" >> "$tmp/pae"
openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in "$tmp/pae" -sigfile "$tmp/sig"
# the files: sha256sum's own check list, from the signed Statement
jq -r '.subject[] | "\(.digest.sha256)  \(.name)"' "$tmp/payload" > "$tmp/sums"
(cd "$dir" && sha256sum -c "$tmp/sums")
# nothing added: the folder's files are the Statement's subjects (plus the seal itself)
(cd "$dir" && find . -type f ! -name 'manifest.intoto*.json' | sed 's|^\./||' | sort) > "$tmp/present"
jq -r '.subject[].name' "$tmp/payload" | sort > "$tmp/listed"
diff "$tmp/listed" "$tmp/present"
