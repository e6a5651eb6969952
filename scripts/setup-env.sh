#!/usr/bin/env bash
# Installs everything imapgate needs on a fresh Debian machine: the system
# packages of the real peers used by the demo and the tests (IMAP servers,
# PostgreSQL, Postfix, HAProxy, Chromium, sync clients), and a Python virtual
# environment in .venv with the project and its dev tools.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# dovecot-imapd/-lmtpd: the hoster's IMAP server and its LMTP delivery; isync: mbsync;
# postgresql: the several-nodes store; postfix: the hoster's submission server;
# haproxy: the load balancer (PROXY protocol); chromium: the dashboard as a person sees it;
# openssl: test certificates; systemd: systemd-analyze verifies the shipped unit.
APT_PACKAGES=(dovecot-imapd dovecot-lmtpd isync postgresql postfix haproxy chromium openssl systemd)
# Packaged services the tests never use (every test starts private instances of its own).
# Only those of packages installed by this run are stopped: a machine whose PostgreSQL was
# already running before (a developer's, or a machine image that provides it) keeps it.
declare -A SERVICES=([dovecot-imapd]=dovecot [postgresql]=postgresql [postfix]=postfix [haproxy]=haproxy)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]} (apt)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    # Postfix asks which kind of mail system to configure: none. Tests write their own main.cf.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        "${missing[@]}" >/dev/null
    for pkg in "${missing[@]}"; do
        service=${SERVICES[$pkg]:-}
        [ -n "$service" ] || continue
        $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
        # Without systemd (containers) the init script may have started it: stop it there too.
        $SUDO service "$service" stop >/dev/null 2>&1 || true
    done
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.imapgate-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing Python dependencies"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
fi
