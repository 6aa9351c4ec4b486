#!/usr/bin/env bash
# Installs the Debian packages qiao builds and tests with (see README.md,
# "Dependencies"), when any is missing. Needs root or sudo.
set -euo pipefail
packages=(build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
          libjson-c-dev libpcre2-dev libutf8proc-dev libxxhash-dev libcurl4-openssl-dev
          libmicrohttpd-dev
          ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd
          python3 python3-numpy  # the Python bindings' tests (tests/python)
          dpkg-dev file          # cpack -G DEB: dpkg-shlibdeps (tests/install/deb.sh)
          nginx-light haproxy    # the balancers of examples/scale-out (tests/scaleout)
          openmpi-bin libopenmpi-dev  # qiao --mpi: pipeline stages over MPI (tests/mpi)
          curl                   # shell tests of qiao serve (tests/mpi, tests/engine)
          )
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm run the serve tests (tests/serve/, with the `openai` npm
# client). Debian's nodejs and npm, unless a node with its npm is already on
# the PATH (a NodeSource nodejs bundles npm and conflicts with Debian's).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  for p in nodejs npm; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
