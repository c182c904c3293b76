#!/usr/bin/env bash
# Install ollama-connector as systemd services.
#
#   install.sh hub  [options]               the hub, on one machine
#   install.sh node --hub URL [options]     the agent, on every Ollama machine
#
# Safe to run again: it changes only what differs. See `install.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh hub|node [options]

  --hub URL          node: the hub's URL (SERVER_URL), e.g. http://hub.lan:8000
  --token TOKEN      node: the hub's CLUSTER_TOKEN (printed by `install.sh hub`)
  --node-id ID       node: NODE_ID (default: the host name)
  --port PORT        the port to listen on (hub 8000, node 8001)
  --prefix DIR       where the virtualenv goes (default /opt/ollama-connector)
  --root DIR         install under DIR instead of / (like DESTDIR); nothing is started
  --source DIR       the ollama-connector source to install (default: the checkout holding this script)
  --python PYTHON    the Python to build the virtualenv with (default python3)
  --install-ollama   node: if Ollama is missing, run Ollama's official install script
  --no-start         install and enable, but do not start or restart the service
  --dry-run          print every action without doing it
  --uninstall        remove what this script added (env files are kept)
  --purge            with --uninstall: remove the env files too
  -h, --help         this text
EOF
}

die() { echo "install.sh: $*" >&2; exit 2; }
say() { echo "==> $*"; }

role="" hub_url="" token="" node_id="" port="" prefix="/opt/ollama-connector" root="/"
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" python="python3"
install_ollama=0 start=1 dry_run=0 uninstall=0 purge=0

while [ $# -gt 0 ]; do
  case "$1" in
    hub|node) role="$1" ;;
    --hub) hub_url="${2:?--hub needs a URL}"; shift ;;
    --token) token="${2:?--token needs a value}"; shift ;;
    --node-id) node_id="${2:?--node-id needs a value}"; shift ;;
    --port) port="${2:?--port needs a number}"; shift ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift ;;
    --root) root="${2:?--root needs a directory}"; shift ;;
    --source) source_dir="${2:?--source needs a directory}"; shift ;;
    --python) python="${2:?--python needs a command}"; shift ;;
    --install-ollama) install_ollama=1 ;;
    --no-start) start=0 ;;
    --dry-run) dry_run=1 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[ -n "$role" ] || { usage >&2; die "say which to install: hub or node"; }
[ "$purge" = 0 ] || [ "$uninstall" = 1 ] || die "--purge goes with --uninstall"
[ "$role" = node ] || [ -z "$hub_url$token$node_id" ] || die "--hub, --token and --node-id are for a node"
if [ "$role" = node ] && [ "$uninstall" = 0 ] && [ -z "$hub_url" ]; then
  die "a node needs --hub URL (the hub's address, e.g. http://hub.lan:8000)"
fi
case "$port" in ''|*[!0-9]*) [ -z "$port" ] || die "--port takes a number, not '$port'" ;; esac
[ -n "$port" ] || port=$([ "$role" = hub ] && echo 8000 || echo 8001)
root="${root%/}"
live=0; [ -z "$root" ] && live=1  # installing onto this very system

unit="ollama-${role}d.service"
unit_path="$root/etc/systemd/system/$unit"
env_dir="$root/etc/ollama-connector"
env_path="$env_dir/$role.env"
venv="$root$prefix"
changed=0

# Every action goes through `act`: printed, and done unless --dry-run.
act() {
  changed=1
  if [ "$dry_run" = 1 ]; then echo "would: $*"; else echo "+ $*"; "$@"; fi
}

# Write a file only when its content differs (so a second run changes nothing).
put() {
  local path="$1" mode="$2" content="$3"
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
    echo "unchanged: $path"
    return
  fi
  changed=1
  if [ "$dry_run" = 1 ]; then echo "would: write $path (mode $mode)"; return; fi
  mkdir -p "$(dirname "$path")"
  printf '%s\n' "$content" > "$path.tmp"
  chmod "$mode" "$path.tmp"
  mv "$path.tmp" "$path"
  echo "+ wrote $path"
}

systemctl_here() {
  command -v systemctl >/dev/null || { echo "note: no systemctl here; skipping: systemctl $*"; return 0; }
  if [ "$live" = 1 ]; then act systemctl "$@"; else act systemctl --root="$root" "$@"; fi
}

source_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$source_dir/pyproject.toml" | head -n 1; }
installed_version() {
  [ -x "$venv/bin/python" ] || return 0
  "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ollama-connector"))' 2>/dev/null || true
}

ufw_active() { [ "$live" = 1 ] && command -v ufw >/dev/null && ufw status 2>/dev/null | grep -q "^Status: active"; }

uninstall_role() {
  say "removing the $role service"
  if [ "$live" = 1 ] && command -v systemctl >/dev/null && systemctl is-enabled --quiet "$unit" 2>/dev/null; then
    act systemctl disable --now "$unit"
  elif [ "$live" = 0 ] && [ -L "$root/etc/systemd/system/multi-user.target.wants/$unit" ]; then
    systemctl_here disable "$unit"
  fi
  [ ! -f "$unit_path" ] || act rm -f "$unit_path"
  [ "$live" = 0 ] || ! command -v systemctl >/dev/null || act systemctl daemon-reload
  if ufw_active && ufw status | grep -q "^$port/tcp .*# ollama-connector"; then
    act ufw delete allow "$port/tcp"
  fi
  local other="ollama-$([ "$role" = hub ] && echo node || echo hub)d.service"
  if [ -d "$venv" ] && [ ! -f "$root/etc/systemd/system/$other" ]; then
    act rm -rf "$venv"
  elif [ -d "$venv" ]; then
    echo "kept: $venv ($other still uses it)"
  fi
  if [ "$purge" = 1 ]; then
    [ ! -f "$env_path" ] || act rm -f "$env_path"
    [ ! -d "$env_dir" ] || [ -n "$(ls -A "$env_dir")" ] || act rmdir "$env_dir"
  elif [ -f "$env_path" ]; then
    echo "kept: $env_path (remove it with --uninstall --purge)"
  fi
  [ "$changed" = 1 ] || echo "nothing to remove"
}

install_venv() {
  local want have
  want="$(source_version)"
  have="$(installed_version)"
  [ -f "$source_dir/pyproject.toml" ] || die "no ollama-connector source at $source_dir (use --source)"
  if [ -n "$have" ] && [ "$have" = "$want" ]; then
    echo "unchanged: $venv (ollama-connector $have)"
    return
  fi
  say "installing ollama-connector $want into $venv"
  if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -m venv --help >/dev/null 2>&1; then
      die "$python has no venv module; on Debian or Ubuntu: apt-get install python3-venv"
    fi
    act "$python" -m venv "$venv"
  fi
  act "$venv/bin/python" -m pip install --quiet --upgrade pip
  act "$venv/bin/python" -m pip install --quiet "$source_dir"
}

new_token() { "$python" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

# The env file from the commented template, with the few values this install knows. Never overwritten.
write_env() {
  if [ -f "$env_path" ]; then
    echo "unchanged: $env_path (kept as it is)"
    return
  fi
  local content
  content="$(cat "$source_dir/systemd/$role.env.example")"
  if [ "$role" = hub ]; then
    token="$(new_token)"
    content="$(printf '%s\n' "$content" | sed "s|^CLUSTER_TOKEN=.*|CLUSTER_TOKEN=$token|; s|^#HUB_PORT=8000|HUB_PORT=$port|")"
  else
    content="$(printf '%s\n' "$content" | sed "s|^SERVER_URL=.*|SERVER_URL=$hub_url|; s|^CLUSTER_TOKEN=.*|CLUSTER_TOKEN=$token|; s|^#NODE_PORT=8001|NODE_PORT=$port|")"
    [ -z "$node_id" ] || content="$(printf '%s\n' "$content" | sed "s|^#NODE_ID=.*|NODE_ID=$node_id|")"
  fi
  put "$env_path" 600 "$content"
}

check_ollama() {
  local url="http://127.0.0.1:11434"
  if command -v ollama >/dev/null && command -v curl >/dev/null && curl -fsS --max-time 3 "$url/api/version" >/dev/null 2>&1; then
    echo "ok: Ollama answers at $url"
    return
  fi
  if [ "$install_ollama" = 1 ] && [ "$live" = 1 ]; then
    say "installing Ollama with its official script (--install-ollama)"
    act sh -c 'curl -fsSL https://ollama.com/install.sh | sh'
    return
  fi
  cat <<EOF
warning: Ollama is not installed or not answering at $url.
  Install it with Ollama's official script, then check it answers:
    curl -fsSL https://ollama.com/install.sh | sh
    curl $url/api/version
  (or run this installer again with --install-ollama). Keep Ollama on 127.0.0.1: the agent is the way in.
EOF
}

open_firewall() {
  if ufw_active; then
    if ufw status | grep -q "^$port/tcp "; then
      echo "unchanged: ufw already allows $port/tcp"
    else
      act ufw allow "$port/tcp" comment ollama-connector
    fi
  fi
}

install_role() {
  install_venv
  local unit_text
  unit_text="$(sed "s|/opt/ollama-connector|$prefix|g" "$source_dir/systemd/$unit")"
  put "$unit_path" 644 "$unit_text"
  write_env
  if [ "$role" = node ]; then check_ollama; fi
  open_firewall  # the hub's or the agent's port only; never Ollama's 11434
  if [ "$live" = 1 ]; then
    systemctl_here daemon-reload
    systemctl_here enable "$unit"
    [ "$start" = 0 ] || systemctl_here restart "$unit"
  elif [ ! -L "$root/etc/systemd/system/multi-user.target.wants/$unit" ]; then
    systemctl_here enable "$unit"
  fi
}

print_next_steps() {
  local check_port="$port"
  echo
  say "$unit installed. Check it with:"
  echo "    systemctl status $unit"
  echo "    journalctl -u $unit -f"
  if [ "$role" = hub ]; then
    echo "    curl http://localhost:$check_port/healthz"
    local line
    line="$(grep '^CLUSTER_TOKEN=' "$env_path" 2>/dev/null || true)"
    if [ -n "$line" ]; then
      echo
      say "give every node this token (install.sh node --hub http://$(uname -n):$check_port --token ${line#CLUSTER_TOKEN=}):"
      echo "    $line"
    fi
  else
    echo "    curl http://localhost:$check_port/healthz"
    echo "    curl $hub_url/nodes"
  fi
}

if [ "$uninstall" = 1 ]; then
  uninstall_role
else
  install_role
  [ "$dry_run" = 1 ] || print_next_steps
  [ "$changed" = 1 ] || { echo; say "nothing changed"; }
fi
