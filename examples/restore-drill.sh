#!/usr/bin/env bash
# A CI restore drill: restore the latest backup into a temporary folder, check it, and fail the
# job on any problem. Needs the config (with identity_file) and read access to the destination.
#   LITEVAULT_CONFIG=/etc/litevault/litevault.toml examples/restore-drill.sh [DESTINATION]
set -euo pipefail

litevault=${LITEVAULT:-litevault}
dest_args=()
if [ $# -gt 0 ]; then dest_args=(--dest "$1"); fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The newest complete backup, as JSON, for the job log.
"$litevault" --json list "${dest_args[@]}" > "$work/list.json"
if ! grep -q '"id"' "$work/list.json"; then
  echo "restore drill: no complete backup found" >&2
  exit 1
fi

# 2. Restore it: every hash and every database's quick_check pass before files appear.
"$litevault" restore latest --to "$work/restored" --deep "${dest_args[@]}"

# 3. Prove it with tools that are not litevault: each database opens and passes integrity_check.
shopt -s nullglob
for db in "$work"/restored/*.db; do
  result=$(sqlite3 "$db" 'PRAGMA integrity_check' 2>&1)
  if [ "$result" != "ok" ]; then
    echo "restore drill: $db fails integrity_check: $result" >&2
    exit 1
  fi
done

echo "restore drill passed: $(ls "$work/restored" | wc -l) sources restored and checked"
