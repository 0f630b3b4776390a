#!/usr/bin/env bash
# End-to-end drain: time for `pgpush tail > /dev/null` to drain a backlog of DRAIN_ROWS inserted
# rows from a slot, beside pg_recvlogical draining the same backlog (same publication, same
# proto_version, its own slot made at the same point) to /dev/null, alternating, DRAIN_RUNS times.
#
#   build/tests/pg_sandbox -- bench/drain_bench.sh [build-dir]
#   DRAIN_ROWS=1000000 DRAIN_TXN_ROWS=1000 DRAIN_RUNS=5
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
rows=${DRAIN_ROWS:-1000000}
per_txn=${DRAIN_TXN_ROWS:-1000}
runs=${DRAIN_RUNS:-5}
bindir=${PGPUSH_PG_BINDIR:-/usr/lib/postgresql/15/bin}
: "${PGPUSH_DB:?run me under pg_sandbox, or set PGPUSH_DB}"
psql() { command psql "$PGPUSH_DB" -X -q -v ON_ERROR_STOP=1 "$@"; }

psql >/dev/null <<SQL
CREATE TABLE drain_rows (id bigint PRIMARY KEY, room_id int NOT NULL, sender_id int NOT NULL,
                         body text NOT NULL, sent_at timestamptz NOT NULL DEFAULT now());
CREATE PUBLICATION drain_pub FOR TABLE drain_rows;
SELECT pg_create_logical_replication_slot('pgpush_' || i, 'pgoutput'),
       pg_create_logical_replication_slot('recvlogical_' || i, 'pgoutput'),
       pg_create_logical_replication_slot('check_' || i, 'pgoutput')
FROM generate_series(1, $runs) i;
SQL
psql >/dev/null <<SQL
DO \$\$
DECLARE b bigint;
BEGIN
  FOR b IN 0..($rows - 1) / $per_txn LOOP
    INSERT INTO drain_rows (id, room_id, sender_id, body)
    SELECT g, g % 97, g % 1013, 'message number ' || g || ' about the weather and the build'
    FROM generate_series(b * $per_txn + 1, least((b + 1) * $per_txn, $rows)) g;
    COMMIT;
  END LOOP;
END \$\$;
SQL
end=$(psql -At -c "SELECT pg_current_wal_lsn()")
wal=$(psql -At -c "SELECT pg_size_pretty(pg_current_wal_lsn() - confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = 'pgpush_1'")

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

run_pgpush() {
  "$build/main/pgpush" --log-level warn tail --db "$PGPUSH_DB" --slot "pgpush_$1" \
    --publication drain_pub --endpos "$end" --no-messages > /dev/null
}
run_recvlogical() {
  "$bindir/pg_recvlogical" -d "$PGPUSH_DB" --slot "recvlogical_$1" --start --endpos "$end" \
    --no-loop -o proto_version=1 -o publication_names=drain_pub -f /dev/null
}

pgpush_times=""
recv_times=""
for i in $(seq 1 "$runs"); do
  # Alternate which goes first so neither always gets the warmer cache.
  for tool in $( [ $((i % 2)) -eq 1 ] && echo "pgpush recvlogical" || echo "recvlogical pgpush"); do
    t0=$(now); "run_$tool" "$i"; t1=$(now)
    t=$(elapsed "$t0" "$t1")
    if [ "$tool" = pgpush ]; then pgpush_times="$pgpush_times $t"; else recv_times="$recv_times $t"; fi
  done
done

# Correctness check on separate slots: pgpush prints exactly one line per row.
lines=$("$build/main/pgpush" --log-level warn tail --db "$PGPUSH_DB" --slot check_1 \
  --publication drain_pub --endpos "$end" --no-messages | wc -l)

p=$(echo "$pgpush_times" | median)
r=$(echo "$recv_times" | median)
cat <<REPORT

drain of $rows rows ($per_txn rows a transaction, $wal of WAL), $runs runs each, alternating
| tool | runs (s) | median (s) | rows/s (median) |
| --- | --- | --- | --- |
| pgpush tail > /dev/null | $pgpush_times | $p | $(awk -v n="$rows" -v t="$p" 'BEGIN { printf "%.0f", n / t }') |
| pg_recvlogical -f /dev/null | $recv_times | $r | $(awk -v n="$rows" -v t="$r" 'BEGIN { printf "%.0f", n / t }') |
ratio pgpush / pg_recvlogical (medians): $(awk -v a="$p" -v b="$r" 'BEGIN { printf "%.3f", a / b }') (goal <= 1.1)
check: pgpush printed $lines lines for $rows rows
command: build/tests/pg_sandbox -- bench/drain_bench.sh  (DRAIN_ROWS=$rows DRAIN_TXN_ROWS=$per_txn DRAIN_RUNS=$runs)
REPORT
[ "$lines" -eq "$rows" ] || { echo "drain_bench: expected $rows lines, got $lines" >&2; exit 1; }
