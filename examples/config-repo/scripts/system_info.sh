#!/usr/bin/env bash
# Print a short summary of this machine. Read-only.
#   --json   one JSON object instead of aligned text
set -euo pipefail

json=0
for arg in "$@"; do
    case "$arg" in
        --json) json=1 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

os="unknown"
if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    os="$(. /etc/os-release && echo "${PRETTY_NAME:-$NAME}")"
fi
host="$(hostname)"
kernel="$(uname -sr)"
arch="$(uname -m)"
uptime_s="$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
load="$(cut -d' ' -f1-3 /proc/loadavg)"
cpus="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
mem_total_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
mem_avail_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"

# Escape backslashes and double quotes so the values are valid JSON strings.
json_str() {
    local s="${1//\\/\\\\}"
    printf '"%s"' "${s//\"/\\\"}"
}

if (( json )); then
    printf '{"hostname":%s,"os":%s,"kernel":%s,"arch":%s,"uptime_seconds":%s,' \
        "$(json_str "$host")" "$(json_str "$os")" "$(json_str "$kernel")" \
        "$(json_str "$arch")" "$uptime_s"
    printf '"load":%s,"cpus":%s,"mem_total_kb":%s,"mem_available_kb":%s}\n' \
        "$(json_str "$load")" "$cpus" "$mem_total_kb" "$mem_avail_kb"
else
    printf '%-14s %s\n' "Hostname:" "$host" "OS:" "$os" "Kernel:" "$kernel" "Arch:" "$arch"
    printf '%-14s %dd %dh %dm\n' "Uptime:" $((uptime_s / 86400)) $((uptime_s % 86400 / 3600)) \
        $((uptime_s % 3600 / 60))
    printf '%-14s %s\n' "Load:" "$load" "CPUs:" "$cpus"
    printf '%-14s %d MiB of %d MiB available\n' "Memory:" $((mem_avail_kb / 1024)) \
        $((mem_total_kb / 1024))
fi
