#!/usr/bin/env bash
# Report failed systemd units and the state of selected services. Read-only.
#   --services=a,b,c   services to report on (default ssh,cron)
# Exit status 1 when a unit has failed or a named service is not active.
set -euo pipefail

services="ssh,cron"
for arg in "$@"; do
    case "$arg" in
        --services=*) services="${arg#*=}" ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if ! command -v systemctl >/dev/null 2>&1 || [[ ! -d /run/systemd/system ]]; then
    echo "systemd is not running here; listing matching processes instead"
    IFS=',' read -r -a names <<< "$services"
    for name in "${names[@]}"; do
        if pgrep -x "${name}d" >/dev/null 2>&1 || pgrep -x "$name" >/dev/null 2>&1; then
            printf '%-20s running\n' "$name"
        else
            printf '%-20s not running\n' "$name"
        fi
    done
    exit 0
fi

status=0
failed="$(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}')"
if [[ -n "$failed" ]]; then
    echo "Failed units:"
    printf '  %s\n' $failed
    status=1
else
    echo "No failed units."
fi

IFS=',' read -r -a names <<< "$services"
for name in "${names[@]}"; do
    [[ "$name" =~ ^[A-Za-z0-9@._-]+$ ]] || { echo "bad service name: $name" >&2; exit 2; }
    state="$(systemctl is-active "$name" 2>/dev/null || true)"
    printf '%-20s %s\n' "$name" "${state:-unknown}"
    [[ "$state" == "active" ]] || status=1
done
exit "$status"
