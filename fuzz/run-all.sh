#!/usr/bin/env bash
# Run every fuzz target for SECS seconds (default 300), JOBS at a time (default 2), with the
# committed seeds in fuzz/corpus/<target> and new inputs kept in fuzz/work/<target>.
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-300}
JOBS=${JOBS:-2}
targets=(wire_frame handshake codes sync_msg headless_line store_value)
mkdir -p fuzz/logs
cargo +nightly fuzz build -O
run() {
  t=$1
  mkdir -p "fuzz/work/$t"
  cargo +nightly fuzz run -O "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 > "fuzz/logs/$t.log" 2>&1 \
    && echo "$t: $(grep -E '^Done [0-9]+ runs' "fuzz/logs/$t.log")" \
    || echo "$t: FAILED, see fuzz/logs/$t.log and fuzz/artifacts/$t"
}
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
  run "$t" &
done
wait
