#!/usr/bin/env bash
# Transactional produce against the idempotent producer, and read_committed against
# read_uncommitted, same generator, a fresh server per row.
set -u
cd "$(dirname "$0")/../.."
R=./target/release/rivulet
OUT=${OUT:-target/bench-transactions}; mkdir -p $OUT
row() {
  name=$1; shift
  rm -rf /tmp/rvtx; mkdir -p /tmp/rvtx
  $R serve --listen 127.0.0.1:19392 --http-listen 127.0.0.1:19393 --data-dir /tmp/rvtx/data > $OUT/$name.serve.log 2>&1 &
  pid=$!
  for i in $(seq 1 100); do grep -q "Rivulet is serving" $OUT/$name.serve.log && break; sleep 0.1; done
  $R bench kafka -b 127.0.0.1:19392 --broker-pid $pid --partitions 16 --durability d1 \
     --warmup 5 --duration 20 --baseline false --format json "$@" > $OUT/$name.json 2> $OUT/$name.err
  echo "$name rc=$?"
  curl -s 127.0.0.1:19393/metrics | grep -E 'request_duration_seconds_(sum|count)\{protocol="kafka",api="(Produce|EndTxn|AddPartitionsToTxn|Fetch)"|fsync_duration_seconds_(sum|count)|transaction_duration_seconds_(sum|count)' > $OUT/$name.metrics
  kill $pid; wait $pid 2>/dev/null
}
for r in 1 2; do
  row idem-r$r --idempotent
  row tx100-r$r --transaction-records 100
  row tx1000-r$r --transaction-records 1000
  row tx10000-r$r --transaction-records 10000
done
for r in 1 2; do
  row rc-idem-r$r --idempotent --isolation read_committed --rate 50000
  row ru-idem-r$r --idempotent --isolation read_uncommitted --rate 50000
  row rc-tx-r$r --transaction-records 1000 --isolation read_committed --rate 50000
  row ru-tx-r$r --transaction-records 1000 --isolation read_uncommitted --rate 50000
done
echo done
