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

# The writer: one psql session posting a change every 300 ms, as an app would.
psql >/dev/null <<'SQL' &
DO $$
DECLARE i int := 0; room int; msg bigint;
BEGIN
  PERFORM pg_sleep(1); -- let tail start streaming first
  LOOP
    i := i + 1;
    room := 1 + i % 3;
    PERFORM pg_notify('typing', json_build_object('room', room, 'user', 10 + i % 4)::text);
    INSERT INTO messages (room_id, sender_id, body)
      VALUES (room, 10 + i % 4, 'message #' || i) RETURNING id INTO msg;
    COMMIT;
    IF i % 4 = 0 THEN
      UPDATE messages SET body = body || ' (edited)', edited_at = now() WHERE id = msg - 1;
      COMMIT;
    END IF;
    IF i % 5 = 0 THEN
      INSERT INTO read_receipts (room_id, user_id, last_read_id) VALUES (room, 20, msg)
        ON CONFLICT (room_id, user_id) DO UPDATE SET last_read_id = excluded.last_read_id,
                                                     read_at = now();
      COMMIT;
    END IF;
    IF i % 7 = 0 THEN
      DELETE FROM messages WHERE id = msg - 3;
      COMMIT;
    END IF;
    PERFORM pg_sleep(0.3);
  END LOOP;
END $$;
SQL
writer_pid=$!

if [ -n "${PGPUSH_DEMO_SECONDS:-}" ]; then
  sleep "$PGPUSH_DEMO_SECONDS"
else
  wait "$tail_pid"
fi
