#!/usr/bin/env bash
# End-to-end load: pgpush serve with N WebSocket clients on loopback (ws_load), a writer at a fixed
# rate, commit -> client latency and server RSS per connection.
#
#   build/tests/pg_sandbox -- bench/load_bench.sh [build-dir]
#   LOAD_CLIENTS="1000 10000" LOAD_RATE=2000 LOAD_SECONDS=20 LOAD_ROOMS=1000
#   LOAD_SERVE_ARGS="--no-log" (extra flags for pgpush serve; the change log is on by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
: "${PGPUSH_DB:?run me under pg_sandbox, or set PGPUSH_DB}"
clients_list=${LOAD_CLIENTS:-"1000 10000"}
rate=${LOAD_RATE:-2000}
seconds=${LOAD_SECONDS:-20}
rooms=${LOAD_ROOMS:-1000}
secret="load-test-secret-load-test-secret!!"
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

command psql "$PGPUSH_DB" -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE IF NOT EXISTS messages (id bigserial PRIMARY KEY, room_id int NOT NULL, sender_id int NOT NULL,
                                     body text NOT NULL, sent_at timestamptz NOT NULL DEFAULT now());
SQL
cat > "$work/rules.yaml" <<'YAML'
tables:
  messages:
    rows: "row.room_id in auth.rooms"
    columns: [id, room_id, body, sent_at]
YAML

for clients in $clients_list; do
  command psql "$PGPUSH_DB" -X -q -c "TRUNCATE messages" >/dev/null
  "$build/main/pgpush" --log-level info serve --db "$PGPUSH_DB" --rules "$work/rules.yaml" \
    --listen 127.0.0.1:0 --jwt-secret "$secret" --max-connections-per-user 5 \
    --data-dir "$work/data" ${LOAD_SERVE_ARGS:-} 2> "$work/serve.log" &
  server=$!
  until grep -q "listening on" "$work/serve.log"; do
    kill -0 $server 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
  done
  port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/serve.log" | head -1)
  "$build/bench/ws_load" --port "$port" --db "$PGPUSH_DB" --server-pid "$server" --clients "$clients" \
    --rooms "$rooms" --rate "$rate" --seconds "$seconds" --secret "$secret" || true
  kill -TERM $server; wait $server || true
done
echo "command: build/tests/pg_sandbox -- bench/load_bench.sh  (LOAD_CLIENTS=\"$clients_list\" LOAD_RATE=$rate LOAD_SECONDS=$seconds LOAD_ROOMS=$rooms LOAD_SERVE_ARGS=\"${LOAD_SERVE_ARGS:-}\")"
