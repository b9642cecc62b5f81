#!/usr/bin/env bash
# Install GPAW (open-source PAW DFT) into the project venv: alloyflow's "gpaw" calculator.
#
#   .ci/install-gpaw.sh [VENV]        (VENV defaults to .venv; idempotent)
#
# Why a script and not a pyproject dependency: GPAW builds a C extension
# against system libraries (libxc, OpenBLAS, FFTW) that pip cannot install,
# and its build needs a site config. Debian's python3-gpaw only works with the
# system Python, not with the venv.
#
# - apt: libxc-dev libopenblas-dev libfftw3-dev (root, or sudo).
# - GPAW_CONFIG site file: mpi = False (serial was faster than 2 MPI ranks on
#   2 cores), compiler = 'g++' (the C++ parts fail to build without it),
#   fftw = True, and libraries += ['blas', 'fftw3'] (a site file replaces the
#   defaults, so BLAS must be listed again).
# - PAW setups: the PyPI wheel gpaw-data; GPAW >= 25 finds them through the
#   installed gpaw_data package (no GPAW_SETUP_PATH needed); the check below
#   fails loudly if it does not.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="$VENV/bin/python"
GPAW_VERSION="${GPAW_VERSION:-26.7.0}"
GPAW_DATA_VERSION="${GPAW_DATA_VERSION:-1.2.1}"

check() {
    # A real (tiny) calculation: imports the C extension, finds a setup, runs SCF.
    OPENBLAS_NUM_THREADS=1 "$PY" - <<'EOF'
from ase.build import bulk
from gpaw import GPAW, PW
atoms = bulk("Li", "bcc", a=3.44)
atoms.calc = GPAW(mode=PW(200), kpts=(2, 2, 2), txt=None, occupations={"name": "fermi-dirac", "width": 0.1})
e = atoms.get_potential_energy()
import gpaw
print(f"gpaw {gpaw.__version__} OK (bcc Li test energy {e:.3f} eV)")
EOF
}

if "$PY" -c "import gpaw, gpaw_data" 2>/dev/null && check 2>/dev/null; then
    echo "install-gpaw: already installed"
    exit 0
fi

PKGS="libxc-dev libopenblas-dev libfftw3-dev"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

SITE="$(mktemp -d)/gpaw-siteconfig.py"
cat > "$SITE" <<'EOF'
# alloyflow: serial GPAW against system libxc, OpenBLAS and FFTW.
mpi = False
compiler = 'g++'
fftw = True
libraries += ['blas', 'fftw3']
EOF
GPAW_CONFIG="$SITE" "$PY" -m pip install -q "gpaw==$GPAW_VERSION" "gpaw-data==$GPAW_DATA_VERSION"
rm -f "$SITE"
check
