#!/usr/bin/env bash
# The demo: a small chat database with a writer posting messages, edits, deletes, read receipts
# and typing notifications, and `pgpush tail` printing every change as it commits.
#
#   ./pgpush.sh demo                 (starts a throwaway PostgreSQL and runs this)
#   PGPUSH_DB=postgresql://... examples/tail_demo.sh [build-dir]
#
# Runs until Ctrl-C, or for PGPUSH_DEMO_SECONDS seconds (default 15 when not on a terminal).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
: "${PGPUSH_DB:?set PGPUSH_DB to a PostgreSQL URL (./pgpush.sh demo does it for you)}"
if [ -z "${PGPUSH_DEMO_SECONDS:-}" ] && [ ! -t 1 ]; then PGPUSH_DEMO_SECONDS=15; fi
psql() { command psql "$PGPUSH_DB" -X -q -v ON_ERROR_STOP=1 "$@"; }

psql -f "$here/chat_schema.sql"

# Stream changes to the chat tables and the typing channel. Pipe through jq if you have it.
"$build/main/pgpush" tail --db "$PGPUSH_DB" --table messages --table read_receipts \
  --listen typing &
tail_pid=$!

writer_pid=""
cleanup() {
  [ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null || true
  kill -INT "$tail_pid" 2>/dev/null || true
  wait "$tail_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The writer (examples/chat_writer.sql), as an app would write.
psql -f "$here/chat_writer.sql" >/dev/null 2>&1 &
writer_pid=$!

if [ -n "${PGPUSH_DEMO_SECONDS:-}" ]; then
  sleep "$PGPUSH_DEMO_SECONDS"
else
  wait "$tail_pid"
fi
