#!/usr/bin/env bash
# Install ollama-connector as systemd services.
#
#   install.sh hub  [options]               the hub, on one machine
#   install.sh node --hub URL [options]     the agent, on every Ollama machine
#
# Safe to run again: it changes only what differs, and applies any option given again with another
# value to the existing env file (keeping everything else in it). See `install.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh hub|node [options]
       install.sh certs NAME [--ip IP]... [--dns NAME]... [--dir DIR]

  --hub URL          node: the hub's URL (SERVER_URL), e.g. http://hub.lan:8000; several hubs
                     comma-separated (http://hub1.lan:8000,http://hub2.lan:8000): it reports to each
  --token TOKEN      node: its own token (`ollama-hubd nodes add NAME` on the hub: NODE_TOKEN), or the
                     hub's shared CLUSTER_TOKEN (printed by `install.sh hub`)
  --node-id ID       node: NODE_ID (default: the host name)
  --journal-url URL  hub: JOURNAL_URL, a PostgreSQL database the hubs share (postgresql://user:pw@db:5432/name):
                     give two hubs the same one, and the same CLUSTER_TOKEN (docs/deploy.md, Running two hubs)
  --models LIST      node: REQUIRED_MODELS, the models to pull when Ollama lacks them (default: none)
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

  certs NAME         make a certificate for the hub or an agent called NAME, signed by the fleet's own CA
                     (made at the first call) in DIR (default /etc/ollama-connector/tls): NAME.pem, NAME.key, ca.pem
  --ip IP, --dns N   certs: the addresses and names it answers to (repeat them; NAME is always one)
EOF
}

die() { echo "install.sh: $*" >&2; exit 2; }
say() { echo "==> $*"; }

role="" hub_url="" token="" node_id="" models="" port="" journal_url="" prefix="/opt/ollama-connector" root="/"
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" python="python3"
install_ollama=0 start=1 dry_run=0 uninstall=0 purge=0
cert_name="" cert_dir="" cert_ips=() cert_dns=()

while [ $# -gt 0 ]; do
  case "$1" in
    hub|node|certs)
      if [ "$role" = certs ] && [ -z "$cert_name" ]; then cert_name="$1"; else role="$1"; fi ;;
    --ip) cert_ips+=("${2:?--ip needs an address}"); shift ;;
    --dns) cert_dns+=("${2:?--dns needs a name}"); shift ;;
    --dir) cert_dir="${2:?--dir needs a directory}"; shift ;;
    --hub) hub_url="${2:?--hub needs a URL}"; shift ;;
    --token) token="${2:?--token needs a value}"; shift ;;
    --node-id) node_id="${2:?--node-id needs a value}"; shift ;;
    --journal-url) journal_url="${2:?--journal-url needs a postgresql:// URL}"; shift ;;
    --models) models="${2:?--models needs a comma-separated list}"; shift ;;
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
    *)
      if [ "$role" = certs ] && [ -z "$cert_name" ] && [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]]; then
        cert_name="$1"
      else
        usage >&2; die "unknown argument: $1"
      fi ;;
  esac
  shift
done

[ -n "$role" ] || { usage >&2; die "say which to install: hub or node"; }

# certs: a small private CA for the fleet, and a certificate for one hub or agent. Nothing else is touched.
if [ "$role" = certs ]; then
  [ -n "$cert_name" ] || die "certs needs a NAME (the hub's or the node's host name)"
  command -v openssl >/dev/null || die "certs needs openssl (apt-get install openssl)"
  dir="${cert_dir:-${root%/}/etc/ollama-connector/tls}"
  mkdir -p "$dir" && chmod 700 "$dir"
  if [ ! -f "$dir/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=ollama-connector fleet CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 600 "$dir/ca.key"
    echo "+ made the fleet's CA: $dir/ca.pem (keep $dir/ca.key on this machine only)"
  fi
  san="DNS:$cert_name"
  for ip in "${cert_ips[@]}"; do san="$san,IP:$ip"; done
  for dns in "${cert_dns[@]}"; do san="$san,DNS:$dns"; done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cert_name" \
    -keyout "$dir/$cert_name.key" -out "$dir/$cert_name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$cert_name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -out "$dir/$cert_name.pem" 2>/dev/null \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san")
  rm -f "$dir/$cert_name.csr"
  chmod 600 "$dir/$cert_name.key"
  echo "+ made $dir/$cert_name.pem and $dir/$cert_name.key for $san"
  cat <<EOF

Copy $cert_name.pem, $cert_name.key and ca.pem to that machine (for example into /etc/ollama-connector/tls/),
readable by root only, and set in its env file:
  on the hub:    HUB_TLS_CERT=.../$cert_name.pem  HUB_TLS_KEY=.../$cert_name.key  NODE_CA_FILE=.../ca.pem
  on an agent:   NODE_TLS_CERT=.../$cert_name.pem NODE_TLS_KEY=.../$cert_name.key HUB_CA_FILE=.../ca.pem
                 and SERVER_URL=https://...
EOF
  exit 0
fi
[ "$purge" = 0 ] || [ "$uninstall" = 1 ] || die "--purge goes with --uninstall"
if [ "$uninstall" = 0 ] && ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  die "ollama-connector needs Python 3.11 or newer; $python is $("$python" -V 2>&1 || echo missing): install python3.11 and pass --python python3.11"
fi
[ "$role" = node ] || [ -z "$hub_url$token$node_id$models" ] || die "--hub, --token, --node-id and --models are for a node"
[ "$role" = hub ] || [ -z "$journal_url" ] || die "--journal-url is for a hub"
case "$journal_url" in
  ''|postgresql://?*|postgres://?*) ;;
  *) die "--journal-url must be a PostgreSQL URL (postgresql://user:password@host:5432/database)" ;;
esac
[[ "$journal_url" != *[[:space:]\|\\]* ]] || die "a --journal-url holds a space, | or \\"
env_path_early="${root%/}/etc/ollama-connector/$role.env"
if [ "$role" = node ] && [ "$uninstall" = 0 ] && [ ! -f "$env_path_early" ]; then
  [ -n "$hub_url" ] || die "a node needs --hub URL (the hub's address, e.g. http://hub.lan:8000)"
  # The agent refuses to listen beyond loopback without the token: ask for it now, not at its first start.
  [ -n "$token" ] || die "a node needs --token TOKEN: its own (ollama-hubd nodes add NAME, on the hub) or the CLUSTER_TOKEN that install.sh hub printed"
fi
if [ -n "$hub_url" ] && ! "$python" -c '
import sys, urllib.parse
def bad(given):
    url = urllib.parse.urlsplit(given)
    return url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment or "|" in given
sys.exit(any(bad(part.strip()) for part in sys.argv[1].split(",")))
' "$hub_url" 2>/dev/null; then
  die "--hub must be a URL with its scheme (or several, comma-separated), like http://hub.lan:8000, not '$hub_url'"
fi
for value in "$token" "$node_id" "$models"; do
  [[ "$value" != *[[:space:]\|\\]* ]] || die "a --token, --node-id or --models value holds a space, | or \\"
done
case "$port" in ''|*[!0-9]*) [ -z "$port" ] || die "--port takes a number, not '$port'" ;; esac
port_given="$port"
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
  if [ "$dry_run" = 1 ]; then
    echo "would: write $path (mode $mode):"
    # Secrets stay out of the terminal: a dry run shows where they go, not what they are.
    printf '%s\n' "$content" | sed -E 's/^((CLUSTER_TOKEN|NODE_TOKEN|API_KEYS|ADMIN_KEYS|BACKEND_API_KEY|JOURNAL_URL)=).+/\1<secret>/; s/^/    /'
    return
  fi
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
  if [ "$live" = 0 ] && [ "$dry_run" = 0 ]; then
    # Built under --root, the scripts name the staging path; they will run from $prefix.
    grep -rlI -- "$venv" "$venv/bin" | while read -r script; do sed -i "s|$venv|$prefix|g" "$script"; done
    echo "+ scripts in $venv/bin point at $prefix"
  fi
}

new_token() { "$python" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

# VAR=VALUE in an env file's text: replaces the variable's line, or its commented default, or appends it.
with_var() {
  local content="$1" var="$2" value="$3"
  if printf '%s\n' "$content" | grep -q "^$var="; then
    printf '%s\n' "$content" | sed "s|^$var=.*|$var=$value|"
  elif printf '%s\n' "$content" | grep -q "^#$var="; then
    printf '%s\n' "$content" | sed "s|^#$var=.*|$var=$value|"
  else
    printf '%s\n%s=%s\n' "$content" "$var" "$value"
  fi
}

# The value of VAR in an env file's text (empty when unset or commented out).
var_in() { printf '%s\n' "$1" | sed -n "s|^$2=||p" | tail -n 1; }

# The env file: from the commented template the first time; later runs keep it and apply only the options
# given again with another value, saying which (a secret's value is never printed).
write_env() {
  local content fresh=0 pair var value old
  if [ -f "$env_path" ]; then
    content="$(cat "$env_path")"
  else
    content="$(cat "$source_dir/systemd/$role.env.example")"
    fresh=1
  fi
  local -a wanted=()
  if [ "$role" = hub ]; then
    [ "$fresh" = 0 ] || wanted+=("CLUSTER_TOKEN=$(new_token)" "ADMIN_KEYS=$(new_token)")
    [ "$fresh" = 0 ] && [ -z "$port_given" ] || wanted+=("HUB_PORT=$port")
    [ -z "$journal_url" ] || wanted+=("JOURNAL_URL=$journal_url")
  else
    [ -z "$hub_url" ] || wanted+=("SERVER_URL=$hub_url")
    # A node's own token (ocnn_...) is NODE_TOKEN; anything else is the shared CLUSTER_TOKEN.
    if [ -n "$token" ] && [ "${token#ocnn_}" != "$token" ]; then
      wanted+=("NODE_TOKEN=$token")
    elif [ -n "$token" ] || [ "$fresh" = 1 ]; then
      wanted+=("CLUSTER_TOKEN=$token")
    fi
    [ -z "$node_id" ] || wanted+=("NODE_ID=$node_id")
    [ -z "$models" ] || wanted+=("REQUIRED_MODELS=$models")
    [ "$fresh" = 0 ] && [ -z "$port_given" ] || wanted+=("NODE_PORT=$port")
    # Ollama does not report these; the agent tells the hub what its ollama.service is set to.
    while IFS= read -r pair; do
      [ -n "$pair" ] && wanted+=("$pair")
    done < <(ollama_service_settings)
  fi
  for pair in "${wanted[@]}"; do
    var="${pair%%=*}" value="${pair#*=}"
    old="$(var_in "$content" "$var")"
    if [ "$fresh" = 0 ] && [ "$old" != "$value" ]; then
      case "$var" in
        CLUSTER_TOKEN|NODE_TOKEN|ADMIN_KEYS|JOURNAL_URL) echo "changing $var in $env_path" ;;
        *) echo "changing $var in $env_path: '$old' -> '$value'" ;;
      esac
    fi
    content="$(with_var "$content" "$var" "$value")"
  done
  put "$env_path" 600 "$content"
}

# OLLAMA_NUM_PARALLEL, _MAX_LOADED_MODELS, _MAX_QUEUE, _CONTEXT_LENGTH and _MODELS as an existing ollama.service sets
# them (its unit, then its drop-ins, as systemd reads them), one VAR=VALUE a line.
ollama_service_settings() {
  "$python" - "$root" <<'PY'
import glob, shlex, sys
root = sys.argv[1]
wanted = ("OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_MAX_QUEUE", "OLLAMA_CONTEXT_LENGTH", "OLLAMA_MODELS")
files = []
for base in ("/usr/lib/systemd/system", "/lib/systemd/system", "/etc/systemd/system"):
    files += glob.glob(f"{root}{base}/ollama.service")
for base in ("/usr/lib/systemd/system", "/lib/systemd/system", "/etc/systemd/system"):
    files += sorted(glob.glob(f"{root}{base}/ollama.service.d/*.conf"))
found = {}
for path in files:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key.strip() != "Environment":
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        for word in words:
            name, _, setting = word.partition("=")
            if name in wanted and setting.isdigit():
                found[name] = setting
for name in wanted:
    if name in found:
        print(f"{name}={found[name]}")
PY
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
      say "or, better, give each node its own: ollama-hubd nodes add NODE_ID, then install.sh node --token <what it printed>"
    fi
    line="$(grep '^ADMIN_KEYS=' "$env_path" 2>/dev/null || true)"
    if [ -n "$line" ]; then
      echo
      say "the admin key (Authorization: Bearer <key>); give people their own: ollama-hubd keys add NAME"
      echo "    $line"
    fi
  else
    local env_text
    env_text="$(cat "$env_path" 2>/dev/null || true)"
    echo "    curl http://localhost:$check_port/healthz"
    local hubs
    hubs="$(var_in "$env_text" SERVER_URL)"
    for hub in ${hubs//,/ }; do echo "    curl $hub/nodes"; done
    echo
    if [ -n "$(var_in "$env_text" REQUIRED_MODELS)" ]; then
      say "models: the agent pulls $(var_in "$env_text" REQUIRED_MODELS) when its Ollama lacks them"
    else
      say "models: none will be pulled; the node serves what its Ollama has (ollama pull on this machine)"
      echo "    to have the agent pull models: install.sh node --models qwen2.5:7b,llama3"
    fi
  fi
}

if [ "$uninstall" = 1 ]; then
  uninstall_role
else
  install_role
  [ "$dry_run" = 1 ] || print_next_steps
  [ "$changed" = 1 ] || { echo; say "nothing changed"; }
fi
