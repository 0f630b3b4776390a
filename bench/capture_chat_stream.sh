#!/usr/bin/env bash
# Regenerates bench/data/chat_stream.bin: a real pgoutput stream of a chat workload (inserts,
# edits, deletes, read receipts; 1-10 rows a transaction) captured by `pgpush tail --capture`.
# The decode benchmark replays it and the fuzz targets take seeds from it.
#
#   build/tests/pg_sandbox -- bench/capture_chat_stream.sh [build-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
: "${PGPUSH_DB:?run me under pg_sandbox, or set PGPUSH_DB}"
psql() { command psql "$PGPUSH_DB" -X -q -v ON_ERROR_STOP=1 "$@"; }

psql <<'SQL'
CREATE TABLE messages (
  id bigserial PRIMARY KEY, room_id int NOT NULL, sender_id int NOT NULL, body text NOT NULL,
  sent_at timestamptz NOT NULL DEFAULT now(), edited boolean NOT NULL DEFAULT false,
  meta jsonb, mentions int[]);
CREATE TABLE read_receipts (
  room_id int, user_id int, last_read_id bigint, read_at timestamptz DEFAULT now(),
  PRIMARY KEY (room_id, user_id));
CREATE PUBLICATION chat FOR TABLE messages, read_receipts;
SELECT pg_create_logical_replication_slot('capture', 'pgoutput');
SQL

psql <<'SQL'
DO $$
DECLARE i int;
BEGIN
  FOR i IN 1..600 LOOP
    INSERT INTO messages (room_id, sender_id, body, meta, mentions)
    SELECT (random() * 50)::int, (random() * 1000)::int,
           'message ' || g || ' in a chat about ' || md5(random()::text),
           CASE WHEN g % 3 = 0 THEN jsonb_build_object('reply_to', g - 1, 'client', 'web') END,
           CASE WHEN g % 4 = 0 THEN ARRAY[(random() * 1000)::int] END
    FROM generate_series(1, 1 + i % 10) g;
    IF i % 5 = 0 THEN
      UPDATE messages SET body = body || ' (edited)', edited = true WHERE id = (i * 3);
    END IF;
    IF i % 7 = 0 THEN
      DELETE FROM messages WHERE id = (i * 2);
    END IF;
    INSERT INTO read_receipts (room_id, user_id, last_read_id)
    VALUES (i % 50, i % 200, i * 5)
    ON CONFLICT (room_id, user_id) DO UPDATE SET last_read_id = excluded.last_read_id,
                                                 read_at = now();
    COMMIT;
  END LOOP;
END $$;
SQL

end=$(psql -At -c "SELECT pg_current_wal_lsn()")
"$build/main/pgpush" --log-level warn tail --db "$PGPUSH_DB" --slot capture --publication chat \
  --endpos "$end" --no-messages --capture "$here/data/chat_stream.bin" > /dev/null
lines=$(psql -At -c "SELECT count(*) FROM messages")
echo "captured $(stat -c %s "$here/data/chat_stream.bin") bytes ($lines messages rows at the end)"
