#!/usr/bin/env bash
# For a GPU machine that has CUDA but no OpenBLAS/cJSON and no apt (the lent
# device machines): copy this machine's Debian headers and libraries (after
# `make deps`) into .devdeps/ (git-ignored) with a build script, so that the
# folder can travel there and `./.devdeps/devbuild.sh [targets]` builds with
# CUDA into build-dev/ (rpath to .devdeps/lib).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
D=.devdeps
mkdir -p $D/include $D/lib
ML=/usr/lib/x86_64-linux-gnu
cp /usr/include/cjson/cJSON.h $D/include/
cp /usr/include/x86_64-linux-gnu/openblas-openmp/{cblas.h,f77blas.h,openblas_config.h} $D/include/
cp -L $ML/openblas-openmp/libopenblas.so.0 $ML/libcjson.so.1 $ML/libgfortran.so.5 $ML/libquadmath.so.0 $D/lib/
ln -sf libopenblas.so.0 $D/lib/libopenblas.so
ln -sf libcjson.so.1 $D/lib/libcjson.so
cat >$D/devbuild.sh <<'EOS'
#!/usr/bin/env bash
# Build with CUDA against the carried OpenBLAS and cJSON (see scripts/devdeps.sh).
set -e
D=$PWD/.devdeps
CFLAGS="-I$D/include" LDLIBS="-L$D/lib -Wl,-rpath,$D/lib" make -j16 BUILD=build-dev "$@"
EOS
chmod +x $D/devbuild.sh
grep -qx '/.devdeps/' .git/info/exclude 2>/dev/null || echo '/.devdeps/' >>.git/info/exclude
echo "devdeps: $(du -sh $D | cut -f1) in $D; carry it and run ./.devdeps/devbuild.sh tokenformer"
