#!/bin/sh
# Round on a freshly loaded input topic; round 1 runs q0 then count, round 2 the reverse.
# One JSON line per run is appended to results.jsonl.
set -e
PY=/work/bytewax-venv/bin/python
QPY=/work/quix-venv/bin/python
DIR=$(cd "$(dirname "$0")" && pwd)
BOOTSTRAP=${BOOTSTRAP:-127.0.0.1:39092}
SUFFIX=${SUFFIX:-$(date +%s)}
cd "$DIR"
for round in ${ROUNDS:-1 2}; do
  topic=bids-bw-$SUFFIX-$round
  nice -n 10 $QPY "$DIR/../quix/load_bids.py" /tmp/bids1m.jsonl "$topic" "$BOOTSTRAP"
  if [ $round = 1 ]; then order="q0 count"; else order="count q0"; fi
  for q in $order; do
    uptime
    BW_QUERY=$q BW_TOPIC=$topic BW_BOOTSTRAP=$BOOTSTRAP nice -n 10 $PY -m bytewax.run nexmark_bw:flow -w 1 2>&1 \
      | grep RESULT | sed 's/^RESULT //' | tee -a "$DIR/results.jsonl"
  done
done
