#!/usr/bin/env bash
# The cost of durability: time for `pgpush serve` to ingest a backlog of LOG_ROWS rows (decode,
# log, fdatasync, confirm the slot; no clients) with the change log on, beside the same with
# --no-log, alternating, LOG_RUNS times. "Ingested" means the slot's
# confirmed_flush_lsn reached the end of the backlog: with the log, that is only once it is on
# disk.
#
#   build/tests/pg_sandbox -- bench/log_bench.sh [build-dir]
#   LOG_ROWS=300000 LOG_TXN_ROWS=10 LOG_RUNS=3
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
rows=${LOG_ROWS:-300000}
per_txn=${LOG_TXN_ROWS:-10}
runs=${LOG_RUNS:-3}
: "${PGPUSH_DB:?run me under pg_sandbox, or set PGPUSH_DB}"
psql() { command psql "$PGPUSH_DB" -X -q -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"' EXIT

psql >/dev/null <<SQL
CREATE TABLE IF NOT EXISTS log_rows (id bigint PRIMARY KEY, room_id int NOT NULL,
                                     body text NOT NULL, sent_at timestamptz NOT NULL DEFAULT now());
SQL
cat > "$work/rules.yaml" <<'YAML'
tables:
  log_rows:
    rows: "true"
    columns: [id, room_id, body, sent_at]
YAML

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start_server() { # slot, extra args...
  local slot=$1; shift
  "$build/main/pgpush" --log-level warn serve --db "$PGPUSH_DB" --rules "$work/rules.yaml" \
    --listen 127.0.0.1:0 --jwt-secret "bench-secret-bench-secret-bench-secret" \
    --slot "$slot" --publication log_pub --data-dir "$work/data" --status-interval 20 "$@" \
    2> "$work/$slot.err" &
  server=$!
}
stop_server() { kill -TERM "$server"; wait "$server" || true; server=""; }

# One slot per run and mode, all made before the backlog so each sees all of it.
modes="log nolog"
for i in $(seq 1 "$runs"); do
  for mode in $modes; do
    start_server "${mode}_$i" $([ "$mode" = nolog ] && echo --no-log)
    until psql -At -c "SELECT 1 FROM pg_replication_slots WHERE slot_name = '${mode}_$i'" |
      grep -q 1; do
      kill -0 "$server" 2>/dev/null || { cat "$work/${mode}_$i.err"; exit 1; }
      sleep 0.1
    done
    stop_server
  done
done

# The target: a WAL position just before the last commit record, so the slot's confirmed position
# passes it exactly when the last transaction has been confirmed (whatever WAL follows it).
end=$(psql -At <<SQL
TRUNCATE log_rows;
DO \$\$
DECLARE b bigint;
BEGIN
  FOR b IN 0..($rows - 1) / $per_txn LOOP
    INSERT INTO log_rows (id, room_id, body)
    SELECT g, g % 100, 'message number ' || g || ' about the weather and the build'
    FROM generate_series(b * $per_txn + 1, least((b + 1) * $per_txn, $rows)) g;
    PERFORM set_config('bench.end', pg_current_wal_insert_lsn()::text, false);
    COMMIT;
  END LOOP;
END \$\$;
SELECT current_setting('bench.end');
SQL
)

log_times=""
nolog_times=""
for i in $(seq 1 "$runs"); do
  for mode in $( [ $((i % 2)) -eq 1 ] && echo "log nolog" || echo "nolog log"); do
    rm -rf "$work/data"
    t0=$(now)
    start_server "${mode}_$i" $([ "$mode" = nolog ] && echo --no-log)
    until [ "$(psql -At -c "SELECT confirmed_flush_lsn > '$end' FROM pg_replication_slots
                             WHERE slot_name = '${mode}_$i'")" = t ]; do
      kill -0 "$server" 2>/dev/null || { cat "$work/${mode}_$i.err"; exit 1; }
      sleep 0.02
    done
    t1=$(now)
    stop_server
    t=$(elapsed "$t0" "$t1")
    if [ "$mode" = log ]; then log_times="$log_times $t"; else nolog_times="$nolog_times $t"; fi
  done
done

log_med=$(echo "$log_times" | median)
nolog_med=$(echo "$nolog_times" | median)
printf '\n%-22s %12s %14s   %s\n' "mode" "median s" "changes/s" "runs (s)"
printf '%-22s %12s %14.0f  %s\n' "durable log (fsync)" "$log_med" "$(awk -v r="$rows" -v t="$log_med" 'BEGIN { print r / t }')" "$log_times"
printf '%-22s %12s %14.0f  %s\n' "--no-log" "$nolog_med" "$(awk -v r="$rows" -v t="$nolog_med" 'BEGIN { print r / t }')" "$nolog_times"
printf 'log throughput = %.1f%% of no-log (goal >= 80%%); %d rows in transactions of %d; times include engine start (~0.1 s)\n' \
  "$(awk -v a="$log_med" -v b="$nolog_med" 'BEGIN { print 100 * b / a }')" "$rows" "$per_txn"
echo "command: build/tests/pg_sandbox -- bench/log_bench.sh  (LOG_ROWS=$rows LOG_TXN_ROWS=$per_txn LOG_RUNS=$runs)"
