#!/bin/sh
# Two rounds of all four configurations, alternating, each round on a freshly loaded
# input topic. Results (one JSON line per run) are appended to results.jsonl.
set -e
PY=/work/quix-venv/bin/python
DIR=$(cd "$(dirname "$0")" && pwd)
BOOTSTRAP=${BOOTSTRAP:-127.0.0.1:39092}
SUFFIX=${SUFFIX:-$(date +%s)}
cd /tmp
for round in 1 2; do
  topic=bids-quix-$SUFFIX-$round
  nice -n 10 $PY "$DIR/load_bids.py" /tmp/bids1m.jsonl "$topic" "$BOOTSTRAP"
  nice -n 10 $PY "$DIR/reference.py" /tmp/bids1m.jsonl "$topic" "$BOOTSTRAP"
  if [ $round = 1 ]; then order="q0:at-least-once q0:exactly-once count:at-least-once count:exactly-once"
  else order="count:exactly-once count:at-least-once q0:exactly-once q0:at-least-once"; fi
  for cfg in $order; do
    uptime
    nice -n 10 $PY "$DIR/nexmark.py" "${cfg%%:*}" "${cfg#*:}" "$topic" 920000 "$BOOTSTRAP" 2>&1 \
      | grep RESULT | sed 's/^RESULT //' | tee -a "$DIR/results.jsonl"
  done
done
