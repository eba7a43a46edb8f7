"""Nexmark queries on Apache Flink (PyFlink's bundled mini-cluster, parallelism 1) over a
JSON-lines file of bids written by `NEXMARK_DUMP_BIDS=<file> cargo run --release -p
rivulet-stream --example nexmark -- <events>`. Results go to a blackhole sink.

    python nexmark.py <q0|q0-json|count> <bids.jsonl>

Run it under `/usr/bin/time -f "%e %U %S"` for two file sizes: the difference in CPU time
over the difference in bids is Flink's marginal cost per event, start-up excluded."""

import os
import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

QUERIES = {
    "q0": (
        "CREATE TABLE sink (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, date_time BIGINT)"
        " WITH ('connector' = 'blackhole')",
        "INSERT INTO sink SELECT auction, bidder, price, channel, date_time FROM bids",
    ),
    # q0 writing JSON to files, as Rivulet's q0 encodes JSON and appends it to a topic.
    "q0-json": (
        "CREATE TABLE sink (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, date_time BIGINT)"
        " WITH ('connector' = 'filesystem', 'path' = 'file:///tmp/flink-q0-json-{pid}', 'format' = 'json')",
        "INSERT INTO sink SELECT auction, bidder, price, channel, date_time FROM bids",
    ),
    "count": (
        "CREATE TABLE sink (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT)"
        " WITH ('connector' = 'blackhole')",
        "INSERT INTO sink SELECT auction, window_start, COUNT(*) FROM TABLE("
        "TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))"
        " GROUP BY auction, window_start, window_end",
    ),
}


def main() -> None:
    query, path = sys.argv[1], sys.argv[2]
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("parallelism.default", "1")
    # Watermarks per record, as Rivulet derives them, not on a timer.
    config.set("pipeline.auto-watermark-interval", "0")
    env.execute_sql(
        "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING,"
        " date_time BIGINT, ts AS TO_TIMESTAMP_LTZ(date_time, 3),"
        " WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)"
        f" WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')"
    )
    sink, insert = QUERIES[query]
    env.execute_sql(sink.replace("{pid}", str(os.getpid())))
    env.execute_sql(insert).wait()
    print(f"CHILD_CPU_S {children_cpu_s():.2f}")


def children_cpu_s() -> float:
    """User + system CPU of this process's children (the JVM running the mini-cluster)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


if __name__ == "__main__":
    main()
