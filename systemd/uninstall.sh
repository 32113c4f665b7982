#!/usr/bin/env bash
# Remove LinkOps (linkopsd): the service and the program (/opt/linkops).
#
# Keeps the configuration (/etc/linkops), the data (/var/lib/linkops: database, SSH keys,
# known hosts, repository clone), the logs and the linkops user, so that a later install.sh
# picks up where this one left off. --purge removes those too (there is no undo: take a
# backup first, see docs/deployment.md).
#
# --root DIR works on DIR instead of / (tests): no systemctl, no userdel on the host.
set -euo pipefail

readonly SERVICE_USER=linkops
readonly SERVICE=linkopsd.service
ROOT=""
PURGE=0

usage() {
    cat <<EOF
Usage: $0 [--purge] [--root DIR]

  --purge      also delete /etc/linkops, /var/lib/linkops, /var/log/linkops and the user
  --root DIR   uninstall from DIR instead of /
EOF
}

log() { printf '[linkops-uninstall] %s\n' "$*"; }
die() { printf '[linkops-uninstall] error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --purge) PURGE=1; shift ;;
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

if [[ -n "$ROOT" ]]; then
    [[ -d "$ROOT" ]] || die "--root $ROOT is not a directory"
    ROOT="$(cd "$ROOT" && pwd)"
    if [[ "$ROOT" == "/" ]]; then ROOT=""; fi
fi
if [[ -z "$ROOT" && $EUID -ne 0 ]]; then
    die "run as root"
fi
r() { printf '%s%s' "$ROOT" "$1"; }
systemd_running() { [[ -z "$ROOT" && -d /run/systemd/system ]]; }

# --- The service -----------------------------------------------------------------------------
if systemd_running; then
    if systemctl is-active --quiet "$SERVICE"; then
        log "stopping $SERVICE"
        systemctl stop "$SERVICE"
    fi
    systemctl disable --quiet "$SERVICE" 2>/dev/null || true
elif [[ -n "$ROOT" ]]; then
    log "root mode: no systemctl"
fi
rm -f -- "$(r /etc/systemd/system)/multi-user.target.wants/$SERVICE" \
         "$(r /etc/systemd/system)/$SERVICE"
# A drop-in made with `systemctl edit` belongs to the operator; remove it only on purge.
if ((PURGE)); then
    rm -rf -- "$(r /etc/systemd/system)/$SERVICE.d"
fi
if systemd_running; then
    systemctl daemon-reload
    systemctl reset-failed "$SERVICE" 2>/dev/null || true
fi
log "removed $SERVICE"

# --- The program -----------------------------------------------------------------------------
rm -rf -- "$(r /opt/linkops)"
log "removed /opt/linkops"

# --- Data ------------------------------------------------------------------------------------
if ((PURGE == 0)); then
    log "kept /etc/linkops (config), /var/lib/linkops (database, keys, clone), /var/log/linkops"
    log "and the $SERVICE_USER user; run with --purge to delete them"
    exit 0
fi

rm -rf -- "$(r /etc/linkops)" "$(r /var/lib/linkops)" "$(r /var/log/linkops)"
log "purged /etc/linkops /var/lib/linkops /var/log/linkops"
if [[ -n "$ROOT" ]]; then
    for db in passwd group; do
        f="$ROOT/etc/$db"
        [[ -f "$f" ]] || continue
        # Rewrite in place (keeps the file's mode and owner).
        kept="$(awk -F: -v u="$SERVICE_USER" '$1 != u' "$f")"
        printf '%s' "$kept" >"$f"
        if [[ -n "$kept" ]]; then printf '\n' >>"$f"; fi
    done
    log "root mode: removed $SERVICE_USER from $ROOT/etc/passwd and $ROOT/etc/group"
elif getent passwd "$SERVICE_USER" >/dev/null; then
    userdel "$SERVICE_USER"
    # useradd --user-group made a group of the same name; userdel removes it when it is
    # nobody else's primary group.
    if getent group "$SERVICE_USER" >/dev/null; then
        groupdel "$SERVICE_USER" 2>/dev/null || true
    fi
    log "removed user $SERVICE_USER"
fi
