#!/usr/bin/env bash
# Filesystem usage. Read-only. Exit status 1 when a filesystem is above the threshold.
#   --threshold=N   percent used that counts as a problem (default 90)
#   --top-dirs      also list the five largest directories under /var
set -euo pipefail

threshold=90
top_dirs=0
for arg in "$@"; do
    case "$arg" in
        --threshold=*) threshold="${arg#*=}" ;;
        --top-dirs) top_dirs=1 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
if ! [[ "$threshold" =~ ^[0-9]+$ ]] || (( threshold > 100 )); then
    echo "--threshold must be a number 0-100, got: $threshold" >&2
    exit 2
fi

df -hP -x tmpfs -x devtmpfs -x overlay -x squashfs 2>/dev/null || df -hP

status=0
while read -r fs _size _used _avail pcent mount; do
    used="${pcent%\%}"
    [[ "$used" =~ ^[0-9]+$ ]] || continue
    if (( used >= threshold )); then
        echo "WARNING: $mount ($fs) is ${used}% full (threshold ${threshold}%)" >&2
        status=1
    fi
done < <(df -P -x tmpfs -x devtmpfs -x overlay -x squashfs 2>/dev/null | tail -n +2)

if (( top_dirs )); then
    echo
    echo "Largest directories under /var:"
    du -x -h --max-depth=1 /var 2>/dev/null | sort -rh | head -n 6 || true
fi
exit "$status"
