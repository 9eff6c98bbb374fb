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
# Real recorded voices for the real-speech test corpus (tests/corpus/voices.py), each
# package's own files, nothing committed: Asterisk's IVR prompts (Allison Smith, June
# Wallack, Carlo: CC-BY-SA-3.0; Armelle Desjardins: BSD-style), pocketsphinx's test speech
# (BSD-2) and alsa-utils' speaker-test voice (GPL-2).  Data only, without recommends (the
# prompts recommend Asterisk itself).
voices=(asterisk-core-sounds-en-g722 asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722
        asterisk-prompt-fr-armelle pocketsphinx-testdata alsa-utils)
# GStreamer, for the RTP interop test only (tests/test_gst_interop.py sends the demo call
# into the RTP listener as µ-law and A-law with gst-launch-1.0, and skips without it): the
# tools and the base and good plugins, also without recommends.  The demo and the box itself
# never use GStreamer.
gst=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
# The fleet tests (tests/mqttbroker.py, tests/pgserver.py): a real Mosquitto broker with TLS
# (openssl makes the test CA) and a real PostgreSQL server, both started by the tests on
# loopback.  The box and the console only need the site's own broker and database.
gst+=(mosquitto openssl postgresql)
missing_norecs=()
for p in "${voices[@]}" "${gst[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing_norecs+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_norecs[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "setup: please install these Debian packages: ${missing[*]} ${missing_norecs[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]} ${missing_norecs[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ${#missing_norecs[@]} -gt 0 ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing_norecs[@]}" >/dev/null
  fi
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
