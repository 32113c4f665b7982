#!/usr/bin/env bash
# A harmless long-running task for trying live output and Stop.
#   --duration=SECONDS   total run time (default 120)
#   --interval=SECONDS   time between progress lines (default 2)
set -euo pipefail

duration=120
interval=2
for arg in "$@"; do
    case "$arg" in
        --duration=*) duration="${arg#*=}" ;;
        --interval=*) interval="${arg#*=}" ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
for value in "$duration" "$interval"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "durations must be positive integers" >&2; exit 2; }
done

trap 'echo "stopped by signal after ${SECONDS}s" >&2; exit 143' TERM INT HUP
echo "long task: pid $$, ${duration}s, a line every ${interval}s"
while (( SECONDS < duration )); do
    printf 'progress: %3d%% (%ds elapsed)\n' $((SECONDS * 100 / duration)) "$SECONDS"
    sleep "$interval" &
    wait $!
done
echo "long task: done after ${SECONDS}s"
