#!/usr/bin/env bash
# Archive /etc into DESTINATION/etc-<host>-<timestamp>.tar.gz and keep the newest N archives.
#   --destination=DIR   where to write the archive (required)
#   --keep=N            archives to keep in DIR (default 5)
#   --dry-run           only say what would be written and removed
set -euo pipefail

destination=""
keep=5
dry_run=0
for arg in "$@"; do
    case "$arg" in
        --destination=*) destination="${arg#*=}" ;;
        --keep=*) keep="${arg#*=}" ;;
        --dry-run) dry_run=1 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
if [[ -z "$destination" || "$destination" != /* ]]; then
    echo "--destination must be an absolute directory path" >&2
    exit 2
fi
if ! [[ "$keep" =~ ^[1-9][0-9]*$ ]]; then
    echo "--keep must be a positive number, got: $keep" >&2
    exit 2
fi

archive="$destination/etc-$(hostname -s)-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
if (( dry_run )); then
    echo "[dry-run] would write $archive ($(du -sh /etc 2>/dev/null | cut -f1) of /etc)"
else
    mkdir -p -- "$destination"
    chmod 700 -- "$destination"
    # Unreadable files (as a non-root user) are skipped rather than failing the backup.
    tar --ignore-failed-read -czf "$archive" -C / etc 2>/dev/null || [[ -s "$archive" ]]
    chmod 600 -- "$archive"
    echo "wrote $archive ($(du -h "$archive" | cut -f1))"
fi

mapfile -t old < <(ls -1t -- "$destination"/etc-*.tar.gz 2>/dev/null | tail -n +$((keep + 1)))
for file in "${old[@]}"; do
    if (( dry_run )); then
        echo "[dry-run] would remove $file"
    else
        rm -f -- "$file"
        echo "removed $file"
    fi
done
