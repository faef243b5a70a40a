#!/bin/sh
# Build a copy of the reftable package whose Cython core is compiled with clang for
# libFuzzer coverage (-fsanitize=fuzzer-no-link) and AddressSanitizer, so that atheris
# is guided by the C reader's branches and out-of-bounds reads abort loudly.
#
#   tests/fuzz/build_instrumented.sh [OUT_DIR]     (default /tmp/reftable-fuzz-build)
#
# Needs clang (Debian: apt-get install clang-14) and Cython. The work tree is not
# touched: sources are copied to OUT_DIR/src and the package lands in OUT_DIR/pkg.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp/reftable-fuzz-build}
CC=${CC:-$(command -v clang || command -v clang-14)}
PY=${PYTHON:-python}
rm -rf "$OUT/src" "$OUT/pkg"
mkdir -p "$OUT/src/reftable" "$OUT/pkg/reftable"
cp "$ROOT"/reftable/*.py "$ROOT"/reftable/*.pyx "$ROOT"/reftable/*.pxi "$OUT/src/reftable/"
cp "$ROOT"/reftable/*.py "$OUT/pkg/reftable/"
"$PY" -m cython -3 -X boundscheck=False -X wraparound=False -X cdivision=True \
    -X initializedcheck=False "$OUT/src/reftable/_core.pyx" -o "$OUT/src/_core.c"
INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
SUFFIX=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
"$CC" -shared -fPIC -O1 -g -fno-omit-frame-pointer \
    -fsanitize=address,fuzzer-no-link -I"$INC" \
    "$OUT/src/_core.c" -o "$OUT/pkg/reftable/_core$SUFFIX"
echo "built $OUT/pkg/reftable/_core$SUFFIX"
echo "run:  PYTHONPATH=$OUT/pkg PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 \\"
echo "      LD_PRELOAD=\$($PY -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so \\"
echo "      $PY tests/fuzz/fuzz_table.py -atheris_runs=1000000"
