#!/usr/bin/env bash
# Rotate logs now and cap the systemd journal.
#   --dry-run            show what would be done (logrotate -d, journal usage only)
#   --journal-max=SIZE   journalctl --vacuum-size value (default 500M)
set -euo pipefail

dry_run=0
journal_max="500M"
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        --journal-max=*) journal_max="${arg#*=}" ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
if ! [[ "$journal_max" =~ ^[0-9]+[KMG]?$ ]]; then
    echo "--journal-max must look like 500M, got: $journal_max" >&2
    exit 2
fi

if command -v logrotate >/dev/null 2>&1 && [[ -r /etc/logrotate.conf ]]; then
    if (( dry_run )); then
        echo "[dry-run] logrotate would process:"
        logrotate -d /etc/logrotate.conf 2>&1 | grep -E '^(rotating pattern|considering log)' \
            | head -n 40 || true
    else
        logrotate -f /etc/logrotate.conf
        echo "logrotate done"
    fi
else
    echo "logrotate not installed; skipping"
fi

if command -v journalctl >/dev/null 2>&1; then
    journalctl --disk-usage 2>/dev/null || true
    if (( dry_run )); then
        echo "[dry-run] would run: journalctl --vacuum-size=$journal_max"
    else
        journalctl --vacuum-size="$journal_max"
    fi
fi
