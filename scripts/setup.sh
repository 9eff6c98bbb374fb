#!/usr/bin/env bash
# Set up the appliance on a fresh Debian/Ubuntu machine: system packages, a venv in .venv,
# and the package with its test extras.  Safe to run again (installs only what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# libportaudio2: live capture (sounddevice); espeak-ng + sox: the synthetic test corpus;
# pulseaudio, pulseaudio-utils, libasound2-plugins: the real-device capture test;
# chromium: the dashboard's browser test (headless, driven by tests/browser);
# systemd: systemd-analyze verify/security for the service unit; iproute2 + util-linux:
# the offline proof runs `appliance analyze` in a network namespace (unshare -n); strace:
# the privacy tests trace the real service process for connects and file writes.
packages=(libportaudio2 espeak-ng sox libsox-fmt-all pulseaudio pulseaudio-utils libasound2-plugins
          chromium systemd iproute2 util-linux strace)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "setup: please install these Debian packages: ${missing[*]}" >&2; exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))" >&2
  exit 1
}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# The dashboard's browser test drives the system Chromium with playwright-core; never let
# it download a browser of its own.
if command -v npm >/dev/null && [ -f tests/browser/package-lock.json ]; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent) \
    || echo "setup: npm ci in tests/browser failed; the browser test will be skipped" >&2
fi
echo "setup: ready (.venv)" >&2
