#!/usr/bin/env bash
# Packs what a GPU machine without network lacks to run the harness, into .device/ (git-ignored):
# Ray and Optuna with their needs, at the versions installed here, for that machine's Python. The
# GPU image already has torch, pandas, pyarrow, rich, pyyaml, grpcio, protobuf, msgpack, aiohttp and
# the like. Ray's wheel (79 MB) is over a device call's 64 MiB carry limit, so it is unpacked without
# its Java jar and the dashboard's source maps and recompressed with xz (about 27 MB; xz takes about
# 90 s on 2 cores). benchmarks/gpu_check.sh installs the bundle when it finds it.
#
# Usage: bash benchmarks/gpu_bundle.sh [PYTHON_VERSION]   (default 3.12, the GPU image's)
set -euo pipefail
py=${1:-3.12}
out=.device
version() { python3 -c "from importlib.metadata import version; print(version('$1'))"; }
download() {  # $1: folder; the rest: name==version
    local folder=$1; shift
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$folder" "$@"
}

rm -rf "$out" && mkdir -p "$out/wheels" "$out/ray"
download "$out/wheels" $(for name in optuna alembic sqlalchemy colorlog mako jsonschema jsonschema-specifications \
                                     referencing rpds-py tensorboardx pydantic pydantic-core annotated-types \
                                     typing-inspection typing-extensions; do echo "$name==$(version $name)"; done)
download "$out" "ray==$(version ray)"
(cd "$out/ray" && unzip -q ../ray-*.whl && rm -rf ray/jars ray/dashboard/client/build/static/js/*.map)
tar -C "$out/ray" -cf - . | xz -9 -T0 > "$out/ray.tar.xz"
rm -rf "$out/ray" "$out"/ray-*.whl
du -sh "$out"
