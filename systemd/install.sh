#!/usr/bin/env bash
# Install or upgrade LinkOps (linkopsd) on Ubuntu 24.04, typically inside an LXC container.
#
# Idempotent: run it again with a newer wheel to upgrade. An upgrade replaces the program
# (virtualenv) and the unit file; it never touches the configuration, the database (its
# migrations run when the service starts), the SSH keys or the users.
#
# --root DIR installs into DIR instead of / (tests, image builds): no apt, no useradd on
# the host (the user is recorded in DIR/etc/passwd and DIR/etc/group), no systemctl, and
# files are chowned to the ids recorded there only when running as root.
#
# Never follows a symlink in a directory the service user can write (/var/lib/linkops,
# /var/log/linkops): every mode, owner and new file there goes through linkops.install_guard
# (openat/O_NOFOLLOW from a root-owned anchor, fchmod/fchown, temporary name + rename); a
# symlinked or foreign-owned path is refused with a message naming it.
# See docs/deployment.md and docs/security.md.
set -euo pipefail
# The program and the unit must be readable by the service user and systemd; everything
# private (config, keys, data) gets an explicit mode below.
umask 0022

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly SERVICE_USER=linkops
readonly SERVICE=linkopsd.service

ROOT=""
NO_APT=0
NO_START=0
WHEEL=""
SOURCE=""
VENV_FROM=""
PYTHON=""
ADMIN_NAME="admin"

usage() {
    cat <<EOF
Usage: $0 [options]

  --wheel FILE       install this wheel (default: build from --source)
  --source DIR       LinkOps source tree to install from (default: $SCRIPT_DIR/..)
  --venv-from VENV   take the dependencies from an existing virtualenv instead of PyPI
                     (offline installs and tests; same Python version required)
  --python PY        interpreter that creates the virtualenv (default: python3, or the
                     one of --venv-from)
  --admin NAME       name of the first administrator (default: admin)
  --no-apt           do not install system packages
  --no-start         install and enable the service but do not (re)start it
  --root DIR         install under DIR instead of / (implies --no-apt, no systemctl)
  -h, --help         this text
EOF
}

log() { printf '[linkops-install] %s\n' "$*"; }
die() { printf '[linkops-install] error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --wheel) WHEEL="${2:?--wheel needs a file}"; shift 2 ;;
        --source) SOURCE="${2:?--source needs a directory}"; shift 2 ;;
        --venv-from) VENV_FROM="${2:?--venv-from needs a virtualenv}"; shift 2 ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
        --admin) ADMIN_NAME="${2:?--admin needs a name}"; shift 2 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --no-apt) NO_APT=1; shift ;;
        --no-start) NO_START=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

if [[ -n "$ROOT" ]]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    if [[ "$ROOT" == "/" ]]; then ROOT=""; fi
fi
# Paths as the running service sees them, and where this script writes them.
readonly ETC=/etc/linkops LIB=/var/lib/linkops LOGDIR=/var/log/linkops VENV=/opt/linkops
readonly CONFIG="$ETC/config.ini"
r() { printf '%s%s' "$ROOT" "$1"; }

if [[ -n "$WHEEL" ]]; then
    [[ -f "$WHEEL" ]] || die "wheel $WHEEL not found"
    WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
    PACKAGE="$WHEEL"
else
    SOURCE="${SOURCE:-$SCRIPT_DIR/..}"
    [[ -f "$SOURCE/pyproject.toml" ]] || die "no pyproject.toml in $SOURCE (use --wheel FILE)"
    PACKAGE="$(cd "$SOURCE" && pwd)"
fi
if [[ -n "$VENV_FROM" ]]; then
    [[ -x "$VENV_FROM/bin/python" ]] || die "--venv-from $VENV_FROM is not a virtualenv"
    VENV_FROM="$(cd "$VENV_FROM" && pwd)"
    PYTHON="${PYTHON:-$VENV_FROM/bin/python}"
fi
PYTHON="${PYTHON:-python3}"

# A source tree carries only our own frontend files; the terminal emulator (xterm.js) is
# vendored from the npm lock by frontend/build.py (setup.py's build step runs it too; checked
# here first for a clear message). Every wheel built by pip or `nox -s package` has it.
if [[ -z "$WHEEL" && -f "$PACKAGE/frontend/build.py" ]] \
        && ! python3 "$PACKAGE/frontend/build.py" --check >/dev/null 2>&1; then
    if command -v npm >/dev/null 2>&1; then
        log "vendoring the frontend's third-party files (npm ci)"
        python3 "$PACKAGE/frontend/build.py"
    else
        die "frontend/vendor is missing and npm is not installed: build the wheel with \
\`python -m pip wheel --no-deps . -w dist\` (or \`nox -s package\`) on a machine with npm \
and run this script with --wheel dist/linkops-*.whl"
    fi
fi

if [[ -z "$ROOT" && $EUID -ne 0 ]]; then
    die "run as root (or use --root DIR for a staging install)"
fi
systemd_running() { [[ -z "$ROOT" && -d /run/systemd/system ]]; }

TMPFILES=()
WAS_ACTIVE=0
RESTARTED=0
START_FAILED=0
admin_password=""
print_admin() {
    [[ -n "$admin_password" ]] || return 0
    echo
    echo "  First administrator: $ADMIN_NAME"
    echo "  Password:            $admin_password"
    echo "  (shown only this once; change it with:" \
        "sudo -u $SERVICE_USER $VENV/bin/linkops user passwd $ADMIN_NAME)"
    admin_password=""
}
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local status=$?
    if ((${#TMPFILES[@]})); then rm -rf -- "${TMPFILES[@]}"; fi
    # The admin exists from step 7 on: whatever fails later, its password must be shown.
    print_admin
    # A failed upgrade must not leave the team without the service it stopped.
    if ((status != 0 && WAS_ACTIVE == 1 && RESTARTED == 0)); then
        log "installation failed; starting $SERVICE again"
        systemctl start "$SERVICE" || true
    fi
    return 0
}
trap cleanup EXIT

# --- 1. System packages ----------------------------------------------------------------------
if [[ -n "$ROOT" ]]; then
    log "root mode: skipping apt (system packages are the image's business)"
elif ((NO_APT)); then
    log "--no-apt: skipping system packages"
else
    log "installing system packages (python3-venv git openssh-client sqlite3)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        python3 python3-venv git openssh-client sqlite3 ca-certificates >/dev/null
fi

# --- 2. The service user ---------------------------------------------------------------------
# Prints "uid gid" of the service user, or nothing when it does not exist (yet).
user_ids() {
    if [[ -n "$ROOT" ]]; then
        [[ -f "$ROOT/etc/passwd" ]] || return 0
        awk -F: -v u="$SERVICE_USER" '$1 == u { print $3, $4 }' "$ROOT/etc/passwd"
    elif getent passwd "$SERVICE_USER" >/dev/null; then
        printf '%s %s\n' "$(id -u "$SERVICE_USER")" "$(id -g "$SERVICE_USER")"
    fi
}

if [[ -n "$ROOT" ]]; then
    mkdir -p "$ROOT/etc"
    touch "$ROOT/etc/passwd" "$ROOT/etc/group"
    if [[ -z "$(user_ids)" ]]; then
        # Like useradd --system: the highest free id below 1000, same number for the group.
        id_=$(awk -F: '{ used[$3] = 1 }
                       END { for (i = 999; i >= 100; i--) if (!(i in used)) { print i; exit } }' \
              "$ROOT/etc/passwd" "$ROOT/etc/group")
        [[ -n "$id_" ]] || die "no free system id in $ROOT/etc/passwd"
        # A group left behind by an earlier install is reused.
        gid_=$(awk -F: -v g="$SERVICE_USER" '$1 == g { print $3 }' "$ROOT/etc/group")
        if [[ -z "$gid_" ]]; then
            gid_="$id_"
            printf '%s:x:%s:\n' "$SERVICE_USER" "$gid_" >>"$ROOT/etc/group"
        fi
        printf '%s:x:%s:%s:LinkOps service:%s:/usr/sbin/nologin\n' \
            "$SERVICE_USER" "$id_" "$gid_" "$LIB" >>"$ROOT/etc/passwd"
        log "root mode: recorded user $SERVICE_USER ($id_) in $ROOT/etc/passwd; host untouched"
    fi
elif [[ -z "$(user_ids)" ]]; then
    # Home is the state directory: git and ssh look for ~/.ssh and ~/.gitconfig there,
    # and the unit's ProtectHome= hides /home anyway.
    # A group left behind (userdel keeps a group that is someone's supplementary group).
    group_opt=(--user-group)
    if getent group "$SERVICE_USER" >/dev/null; then group_opt=(--gid "$SERVICE_USER"); fi
    useradd --system "${group_opt[@]}" --home-dir "$LIB" --no-create-home \
        --shell /usr/sbin/nologin --comment "LinkOps service" "$SERVICE_USER"
    log "created system user $SERVICE_USER"
else
    log "system user $SERVICE_USER exists"
fi
read -r SVC_UID SVC_GID <<<"$(user_ids)" || true

if [[ $EUID -ne 0 ]]; then
    log "not root: leaving file owners alone"
fi

# --- 4. The program (virtualenv) -------------------------------------------------------------
# An upgrade must not swap modules under a running interpreter (lazy imports would mix old
# and new code): stop first, start again at the end.
if systemd_running && systemctl is-active --quiet "$SERVICE"; then
    log "stopping $SERVICE for the upgrade"
    systemctl stop "$SERVICE"
    WAS_ACTIVE=1
fi

# Every interpreter runs isolated (-I): started from a source checkout, `python -c` would
# otherwise import the checkout's linkops instead of the installed one.
venv_dir="$(r "$VENV")"
venv_python="$venv_dir/bin/python"
# A venv whose interpreter vanished (release upgrade of python3) is rebuilt from scratch.
if [[ -e "$venv_dir" ]] && ! "$venv_python" -I -c 'import sys' >/dev/null 2>&1; then
    log "virtualenv $venv_dir is broken; recreating it"
    rm -rf -- "$venv_dir"
fi
if [[ -n "$VENV_FROM" ]]; then
    if [[ ! -x "$venv_python" ]]; then
        "$PYTHON" -I -m venv --without-pip "$venv_dir"
    fi
    # Dependencies come from the given environment through a .pth file: no network, and
    # the install takes a second (what the tests use).
    deps="$("$VENV_FROM/bin/python" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    site="$("$venv_python" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    printf '%s\n' "$deps" >"$site/linkops-deps.pth"
    log "installing $PACKAGE into $venv_dir (dependencies from $VENV_FROM)"
    # A wheel needs no index at all; a source tree needs one for its build backend.
    offline=()
    if [[ -n "$WHEEL" ]]; then offline=(--no-index); fi
    "$VENV_FROM/bin/python" -I -m pip --python "$venv_python" install --quiet "${offline[@]}" \
        --no-deps --force-reinstall "$PACKAGE"
else
    if [[ ! -x "$venv_dir/bin/pip" ]]; then
        "$PYTHON" -I -m venv "$venv_dir"
    fi
    log "installing $PACKAGE and its dependencies into $venv_dir"
    "$venv_dir/bin/pip" install --quiet --upgrade "$PACKAGE"
    # Same version number, new code (a rebuilt wheel): replace the package itself too.
    "$venv_dir/bin/pip" install --quiet --no-deps --force-reinstall "$PACKAGE"
fi
version="$("$venv_python" -I -c 'import linkops; print(linkops.__version__)')"
log "LinkOps $version installed in $venv_dir"

# --- 3. Directories (after the program: its install_guard does the work) ---------------------
# guard ANCHOR REL ACTION [--mode M] [--owner UID:GID] [--from FILE]: ANCHOR is a root-owned
# directory (/etc, /var/lib, /var/log under --root), REL the path below it; see
# linkops/install_guard.py. Owners change only when running as root.
guard() { "$venv_python" -I -m linkops.install_guard "$@" --allow "$SVC_UID"; }
SVC="$SVC_UID:$SVC_GID"
ROOT_SVC="0:$SVC_GID"
etc_anchor="$(r /etc)" lib_anchor="$(r /var/lib)" log_anchor="$(r /var/log)"
mkdir -p -- "$etc_anchor" "$lib_anchor" "$log_anchor"
guard "$etc_anchor" linkops dir --mode 750 --owner "$ROOT_SVC"
guard "$lib_anchor" linkops dir --mode 750 --owner "$SVC"
guard "$lib_anchor" linkops/git-repo dir --mode 750 --owner "$SVC"
# Private keys and host keys: nobody but the service reads them.
guard "$lib_anchor" linkops/keys dir --mode 700 --owner "$SVC"
guard "$lib_anchor" linkops/ssh dir --mode 700 --owner "$SVC"
guard "$log_anchor" linkops dir --mode 750 --owner "$SVC"
guard "$lib_anchor" linkops/ssh/known_hosts create --mode 600 --owner "$SVC"

# --- 5. Configuration (written once, never overwritten) --------------------------------------
config_file="$(r "$CONFIG")"
if [[ -e "$config_file" ]]; then
    log "keeping existing $CONFIG"
else
    secret="$("$venv_python" -I -c 'import secrets; print(secrets.token_urlsafe(48))')"
    tmp_config="$(mktemp "$(r "$ETC")/.config.ini.XXXXXX")"
    TMPFILES+=("$tmp_config")
    "$venv_python" -I -c 'import importlib.resources as r, sys
sys.stdout.write(r.files("linkops").joinpath("templates/config.ini.template").read_text())' \
        >"$tmp_config"
    # token_urlsafe uses only [A-Za-z0-9_-]: safe inside a sed replacement.
    sed -i "s|^jwt_secret[[:space:]]*=.*\$|jwt_secret = $secret|" "$tmp_config"
    grep -q "^jwt_secret = $secret\$" "$tmp_config" || die "template has no jwt_secret line"
    mv -T -- "$tmp_config" "$config_file"
    log "wrote $CONFIG with a generated jwt_secret"
fi
guard "$etc_anchor" linkops/config.ini file --mode 640 --owner "$ROOT_SVC"

# In root mode the config names the target's paths (/var/lib/linkops); the CLI run from
# here needs the staged ones.
cli_config="$config_file"
if [[ -n "$ROOT" ]]; then
    cli_config="$(mktemp "$(r "$ETC")/.cli-config.ini.XXXXXX")"
    TMPFILES+=("$cli_config")
    sed -e "s|$LIB|$ROOT$LIB|g" -e "s|$LOGDIR|$ROOT$LOGDIR|g" "$config_file" >"$cli_config"
fi
# Run the CLI as the service user when that user exists on this machine (files it creates,
# the database above all, must belong to it).
as_service() {
    if [[ -z "$ROOT" && $EUID -eq 0 ]]; then
        runuser -u "$SERVICE_USER" -- env HOME="$LIB" "$@"
    else
        "$@"
    fi
}

# --- 6. SSH key pair for reaching the targets ------------------------------------------------
key_rel=linkops/keys/id_ed25519
key_state="$(guard "$lib_anchor" "$key_rel" state)"
if [[ "$key_state" == absent ]]; then
    # Generated in a directory only root can reach, then moved into place by the guard.
    key_tmp="$(mktemp -d)"
    TMPFILES+=("$key_tmp")
    ssh-keygen -q -t ed25519 -N '' -C "linkops@$(hostname 2>/dev/null || echo linkops)" \
        -f "$key_tmp/id_ed25519"
    guard "$lib_anchor" "$key_rel.pub" install --from "$key_tmp/id_ed25519.pub" --mode 644 \
        --owner "$SVC"
    guard "$lib_anchor" "$key_rel" install --from "$key_tmp/id_ed25519" --mode 600 --owner "$SVC"
    log "generated SSH key $LIB/keys/id_ed25519"
fi
guard "$lib_anchor" "$key_rel" file --mode 600 --owner "$SVC"
guard "$lib_anchor" "$key_rel.pub" file --mode 644 --owner "$SVC"

# --- 7. First administrator (first install only) ---------------------------------------------
db_files=(linkops.db linkops.db-wal linkops.db-shm linkops.db-journal)
# Before the CLI opens the database (as root under --root): no planted links in its place.
for db_file in "${db_files[@]}"; do guard "$lib_anchor" "linkops/$db_file" state >/dev/null; done
admin_state="$(guard "$lib_anchor" linkops/.admin-created state)"
if [[ "$admin_state" != absent ]]; then
    log "first administrator was created by an earlier run; users are left alone"
else
    admin_password="$("$venv_python" -I -c 'import secrets; print(secrets.token_urlsafe(18))')"
    if printf '%s\n' "$admin_password" | as_service "$venv_dir/bin/linkops" user add \
            "$ADMIN_NAME" --role admin --password-stdin --config "$cli_config"; then
        for db_file in "${db_files[@]}"; do
            guard "$lib_anchor" "linkops/$db_file" file --mode 600 --owner "$SVC"
        done
        guard "$lib_anchor" linkops/.admin-created create --mode 600 --owner "$SVC"
    else
        admin_password=""
        log "WARNING: could not create the first administrator; create one with:"
        log "  sudo -u $SERVICE_USER $VENV/bin/linkops user add $ADMIN_NAME --role admin"
    fi
fi

# --- 8. The unit -----------------------------------------------------------------------------
unit_dir="$(r /etc/systemd/system)"
mkdir -p "$unit_dir/multi-user.target.wants"
install -m 644 "$SCRIPT_DIR/$SERVICE" "$unit_dir/$SERVICE.tmp"
mv -T -- "$unit_dir/$SERVICE.tmp" "$unit_dir/$SERVICE"
# What `systemctl enable` does for WantedBy=multi-user.target; done by hand so that it
# also works offline (root mode, image builds, no systemd running).
ln -sfn "/etc/systemd/system/$SERVICE" "$unit_dir/multi-user.target.wants/$SERVICE"
log "installed and enabled $SERVICE"

if ! problems="$(as_service timeout 60 "$venv_dir/bin/linkops" check-config \
        --config "$cli_config" 2>&1)"; then
    # Expected on a first install (no repository_url yet); the service starts anyway.
    log "linkops check-config reports:"
    while IFS= read -r line; do log "  $line"; done <<<"$problems"
fi

if [[ -n "$ROOT" ]]; then
    log "root mode: not starting the service"
elif ! systemd_running; then
    log "systemd is not PID 1 here: not starting the service"
else
    systemctl daemon-reload
    systemctl enable --quiet "$SERVICE"
    if ((NO_START)) && ((WAS_ACTIVE == 0)); then
        log "--no-start: not starting $SERVICE"
    else
        # Type=notify: this returns once the service reported READY=1 (port bound).
        RESTARTED=1
        if systemctl restart "$SERVICE"; then
            log "$SERVICE is $(systemctl is-active "$SERVICE")"
        else
            START_FAILED=1
            log "ERROR: $SERVICE did not start; see: journalctl -u linkopsd -n 50"
        fi
    fi
fi

# --- 9. What the operator needs to know ------------------------------------------------------
echo
echo "LinkOps $version is installed."
print_admin
# Read through the guard: a link swapped in since must not print another file.
if public_key="$(guard "$lib_anchor" "$key_rel.pub" read 2>/dev/null)" && [[ -n "$public_key" ]]
then
    echo
    echo "  Public key to add to ~/.ssh/authorized_keys of the SSH user on every target:"
    echo "  $public_key"
fi
echo
echo "  Configuration: $CONFIG (set [git] repository_url, then: systemctl restart linkopsd)"
echo "  Logs:          journalctl -u linkopsd   and   $LOGDIR/linkops.log"
exit "$START_FAILED"
