#!/usr/bin/env bash
# System packages for Azote's native Linux games (azote.envs.native): a virtual X server, Mesa's software
# OpenGL, the games themselves (Neverball, SuperTux, Extreme Tux Racer) and a C compiler for the clock shim
# that `pip install` builds; Wine (64-bit only, for Windows games) and mingw-w64 (Azote's XInput DLL and the
# Windows test programs): about 345 MB to download with --no-install-recommends on Debian 12. Run as root on
# Debian/Ubuntu; scripts/setup.sh calls it. Safe to run again.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "native-deps.sh must run as root (sudo bash scripts/native-deps.sh)" >&2
  exit 1
fi
PACKAGES=(
  xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl-mesa0 libgl1
  neverball supertux extremetuxracer minetest
  openarena supertuxkart
  gcc libc6-dev
  wine wine64 mingw-w64
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
