#!/usr/bin/env bash
# The demo: a small chat database, `pgpush serve` with the annotated rules.yaml, a writer posting
# messages, edits, deletes, read receipts and typing notifications as an app would, and three
# WebSocket clients with different JWT claims, each printing what the engine pushes to it:
#
#   alice   member of rooms 1 and 2 (room_members): her rooms' messages (snapshot first, then
#           live) and typing in them
#   bob     room 3 only, subscribed to a query over room 3 and to read receipts
#   mallory in no room at first: her subscription sees nothing; the writer adds her to room 1
#           now and then (she gets `reset` and room 1's history) and removes her again (reset:
#           it is gone); a table outside the rules answers `unknown_table`
#
#   ./pgpush.sh demo                 (starts a throwaway PostgreSQL and runs this)
#   PGPUSH_DB=postgresql://... examples/chat_demo.sh [build-dir]
#
# Runs until Ctrl-C, or for PGPUSH_DEMO_SECONDS seconds (default 15 when not on a terminal).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
: "${PGPUSH_DB:?set PGPUSH_DB to a PostgreSQL URL (./pgpush.sh demo does it for you)}"
if [ -z "${PGPUSH_DEMO_SECONDS:-}" ] && [ ! -t 1 ]; then PGPUSH_DEMO_SECONDS=15; fi
psql() { command psql "$PGPUSH_DB" -X -q -v ON_ERROR_STOP=1 "$@"; }
secret="demo-secret-demo-secret-demo-secret!"
work=$(mktemp -d)

psql -f "$here/chat_schema.sql"
psql -c "INSERT INTO messages (room_id, sender_id, body) VALUES (1, 10, 'welcome to general'),
                                                                 (3, 11, 'welcome to support')"

pids=()
writer_pid=""
cleanup() {
  [ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${server:-}" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The engine, on a free port. Its log goes to stderr.
"$build/main/pgpush" serve --db "$PGPUSH_DB" --rules "$here/../rules.yaml" \
  --listen 127.0.0.1:0 --jwt-secret "$secret" --data-dir "$work/data" \
  2> >(tee "$work/serve.log" >&2) &
server=$!
until grep -q "listening on" "$work/serve.log" 2>/dev/null; do
  kill -0 "$server" 2>/dev/null || { echo "pgpush serve did not start" >&2; exit 1; }
  sleep 0.1
done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/serve.log" | head -1)
echo "pgpush serve is listening on ws://127.0.0.1:$port/ws (metrics: http://127.0.0.1:$port/metrics)"

watch() { "$build/examples/pgpush-watch" --port "$port" --secret "$secret" "$@" & pids+=($!); }
watch --name alice --claims '{"sub":"10","tenant":1}' \
  --subscribe "SELECT id, room_id, sender_id, body FROM messages" --listen typing
watch --name bob --claims '{"sub":"11","tenant":1}' \
  --subscribe "SELECT id, body FROM messages WHERE room_id = 3" \
  --subscribe "SELECT room_id, user_id, last_read_id FROM read_receipts"
watch --name mallory --claims '{"sub":"66"}' \
  --subscribe "SELECT id, body FROM messages WHERE room_id = 1" \
  --subscribe "SELECT * FROM pg_authid"

# The writer (examples/chat_writer.sql), as an app would write.
psql -f "$here/chat_writer.sql" >/dev/null 2>&1 &
writer_pid=$!

if [ -n "${PGPUSH_DEMO_SECONDS:-}" ]; then
  sleep "$PGPUSH_DEMO_SECONDS"
else
  wait "$server"
fi
