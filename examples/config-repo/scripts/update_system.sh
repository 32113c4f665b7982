#!/usr/bin/env bash
# Upgrade packages with apt (Debian/Ubuntu).
#   --dry-run         refresh nothing, install nothing: list what would be upgraded
#   --security-only   only upgrades from the *-security pockets
#   --clean-cache     apt-get clean afterwards
set -euo pipefail

dry_run=0
security_only=0
clean_cache=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        --security-only) security_only=1 ;;
        --clean-cache) clean_cache=1 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: this script supports Debian and Ubuntu only" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

if (( dry_run )); then
    echo "[dry-run] packages that would be upgraded:"
    upgradable="$(apt list --upgradable 2>/dev/null | tail -n +2 || true)"
    if (( security_only )); then
        upgradable="$(grep -- '-security' <<< "$upgradable" || true)"
    fi
    if [[ -z "$upgradable" ]]; then
        echo "  (none)"
    else
        sed 's/^/  /' <<< "$upgradable"
    fi
    exit 0
fi

if (( EUID != 0 )); then
    echo "must run as root to upgrade packages (try --dry-run)" >&2
    exit 1
fi

apt-get update -q
if (( security_only )); then
    # Upgrade only packages whose candidate comes from a security pocket.
    mapfile -t pkgs < <(apt list --upgradable 2>/dev/null | grep -- '-security' | cut -d/ -f1)
    if (( ${#pkgs[@]} )); then
        apt-get install -y -q --only-upgrade "${pkgs[@]}"
    else
        echo "no security updates"
    fi
else
    apt-get -y -q upgrade
fi
if (( clean_cache )); then
    apt-get clean
fi
if [[ -f /var/run/reboot-required ]]; then
    echo "NOTE: a reboot is required"
fi
