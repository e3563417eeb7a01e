# shellcheck shell=bash
# Helpers the scripts share: installing Debian packages when something is
# missing, and virtualenvs built from lock files and kept in the cache.

_log() { printf '[%s] %s\n' "${LOG_TAG:-services}" "$*" >&2; }

_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_apt_install() {
  _log "installing $* with apt-get"
  _as_root apt-get update -qq >/dev/null
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Prints the path of a virtualenv holding exactly the packages of LOCK,
# building it the first time. It is kept under PIPELINE_CACHE_DIR (default
# ~/.cache/api-pipeline), keyed by the lock's hash, so a changed lock
# builds a new one.
venv_from_lock() { # NAME LOCK
  local name="$1" lock="$2" cache hash venv
  cache="${PIPELINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/api-pipeline}"
  hash="$(sha256sum "$lock" | cut -c1-12)"
  venv="$cache/$name-$hash"
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    _log "installing $name into $venv (once)"
    rm -rf "$venv"
    mkdir -p "$cache"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      _apt_install python3-venv
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$lock"
    touch "$venv/.complete"
  fi
  echo "$venv"
}
