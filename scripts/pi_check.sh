#!/usr/bin/env bash
# make pi-check: prove the device side on a Raspberry Pi's OS and CPU without a Pi.
#
# Builds (once, cached under .cache/pi-root) a Debian bookworm arm64 root -- what 64-bit Raspberry Pi OS
# is built on -- and runs it under QEMU user-mode emulation with the Pi 4 (cortex-a72) and Pi 5
# (cortex-a76) CPU models. Inside it, two venvs get only the device installs from aarch64 wheels:
# `edgedet[tflite]` and `edgedet[onnx]`, installed as the README's Raspberry Pi section says; no torch, onnx or
# TensorFlow may arrive. On x86 the README's data and export commands run verbatim (scripts/readme_commands.py
# reads them from README.md) and must write the files the Pi section copies. Then `edgedet run` and
# `edgedet eval --model` with those int8 TFLite and int8 ONNX exports must give the same detections (class equal,
# IoU >= 0.9, score within 0.05) and mAP (within 0.01) emulated as on this x86 host.
#
# Needs root (debootstrap, chroot, mounts), Debian's apt, PyPI, and the project's .venv for the x86 side.
# Environment overrides:
#   PI_CHECK_CPUS     QEMU CPU models (default: "cortex-a72 cortex-a76"; never QEMU's default "max")
#   PI_CHECK_IMAGES   synthetic validation images to run and evaluate (default 16)
#   PI_CHECK_CONF     score threshold of the `edgedet run` comparison (default 0.25, run's default)
#   PI_CHECK_MIRROR   Debian mirror (default: the one apt on this machine uses)
#   PI_CHECK_ONLY     "setup" stops after the root, venvs and import checks (no models needed)
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$REPO/.cache
ROOT=$CACHE/pi-root                  # the arm64 root (cached across runs)
WHEELS=$CACHE/pi-wheels              # aarch64 wheels of the dependencies (cached)
WORK=$CACHE/pi-check                 # this run's files; bind-mounted at /mnt/edgedet inside the root
INNER=/mnt/edgedet                   # $WORK as seen from inside the root
CPUS=${PI_CHECK_CPUS:-"cortex-a72 cortex-a76"}
N_IMAGES=${PI_CHECK_IMAGES:-16}
CONF=${PI_CHECK_CONF:-0.25}          # `edgedet run` score threshold on both machines
ONLY=${PI_CHECK_ONLY:-}
HOST_EDGEDET=$REPO/.venv/bin/edgedet
HOST_PY=$REPO/.venv/bin/python
PYVER=3.11                           # bookworm's python3
NICE=(nice -n 10)                    # emulation is heavy; leave the CPUs to others first
ROOT_MARK=$ROOT/.edgedet-pi-root     # written when the root is complete
MOUNTS=()                            # mounted paths, unmounted in reverse on exit

log() { printf 'pi-check: %s\n' "$*"; }
die() { printf 'pi-check: error: %s\n' "$*" >&2; exit 1; }

cpu_label() {
    case "$1" in
        cortex-a72) echo "Raspberry Pi 4" ;;
        cortex-a76) echo "Raspberry Pi 5" ;;
        *) echo "$1" ;;
    esac
}

# ---------------------------------------------------------------------------------------------- host
need_root_user() {
    [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mounts); run as root or with sudo"
}

install_host_packages() {
    local missing=()
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}"; then
        apt-get -o DPkg::Lock::Timeout=600 update -q
        apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}"
    fi
}

# The Debian mirror apt on this machine uses (deb822 .sources or one-line .list), else deb.debian.org.
debian_mirror() {
    if [ -n "${PI_CHECK_MIRROR:-}" ]; then echo "$PI_CHECK_MIRROR"; return; fi
    local files=() uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && files+=("$f")
    done
    uri=$( { [ ${#files[@]} -gt 0 ] && cat "${files[@]}"; } \
        | grep -oE '(https?://[^ ]*/debian)/?( |$)' | grep -v -- '-security' | head -n1 | tr -d ' ' || true)
    echo "${uri%/}" | grep . || echo "http://deb.debian.org/debian"
}

enable_binfmt() {
    local dir=/proc/sys/fs/binfmt_misc
    [ -e $dir/register ] || mount -t binfmt_misc binfmt_misc $dir || die "cannot mount binfmt_misc"
    if ! grep -qs '^enabled' $dir/qemu-aarch64; then
        update-binfmts --enable qemu-aarch64 || update-binfmts --import qemu-aarch64 || true
    fi
    grep -qs '^enabled' $dir/qemu-aarch64 || die "binfmt_misc has no enabled qemu-aarch64 entry (update-binfmts --display qemu-aarch64)"
}

# ---------------------------------------------------------------------------------------------- root
mounted_under() { findmnt -rn -o TARGET | grep -qF "$1"; }

# Unmount whatever an interrupted earlier run left under the root or its half-built copy (debootstrap's
# second stage mounts /proc and /sys there). Safe because the lock in main() excludes a concurrent run.
unmount_stale() {
    local target
    for target in $(findmnt -rn -o TARGET | grep -E "^$CACHE/pi-root(\.tmp)?/" | sort -r || true); do
        log "unmounting leftover $target"
        umount "$target" 2>/dev/null || umount -l "$target"
    done
}

build_root() {
    if [ -f "$ROOT_MARK" ]; then
        log "reusing the arm64 root $ROOT ($(cat "$ROOT_MARK"))"
        return 0
    fi
    local tmp=$ROOT.tmp mirror
    mirror=$(debian_mirror)
    unmount_stale
    mounted_under "$CACHE/pi-root" && die "something is still mounted under $CACHE/pi-root*; unmount it first"
    rm -rf "$tmp" "$ROOT"
    log "debootstrap bookworm arm64 from $mirror (first stage; the whole build takes ~5-10 min)"
    "${NICE[@]}" debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,python3-pip bookworm "$tmp" "$mirror" >"$CACHE/pi-debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/pi-debootstrap.log"; die "debootstrap first stage failed (log: $CACHE/pi-debootstrap.log)"; }
    cp /usr/bin/qemu-aarch64-static "$tmp/usr/bin/"
    log "debootstrap second stage under QEMU (cortex-a72)"
    "${NICE[@]}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin QEMU_CPU=cortex-a72 \
        chroot "$tmp" /debootstrap/debootstrap --second-stage >>"$CACHE/pi-debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/pi-debootstrap.log"; die "debootstrap second stage failed (log: $CACHE/pi-debootstrap.log)"; }
    mounted_under "$tmp" && die "debootstrap left mounts under $tmp"
    mv "$tmp" "$ROOT"
    echo "Debian bookworm arm64 minbase from $mirror, built $(date -u +%Y-%m-%dT%H:%MZ)" >"$ROOT_MARK"
}

# Fake CPU topology (host /sys must not be bind-mounted: onnxruntime and TFLite crash on import with it,
# and without any /sys the CPU detection fails and XNNPACK is not used).
fake_sys() {
    mkdir -p "$ROOT/sys/devices/system/cpu"
    for f in possible present online; do echo "0-1" >"$ROOT/sys/devices/system/cpu/$f"; done
}

cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
    done
    MOUNTS=()
    [ "${LOCKED:-0}" = 1 ] && unmount_stale 2>/dev/null || true
}

mount_into_root() {  # mount_into_root TARGET mount-args...
    local target=$1; shift
    mount "$@" "$target"
    MOUNTS+=("$target")
}

mount_root() {
    mkdir -p "$ROOT/proc" "$ROOT/dev/shm" "$ROOT$INNER" "$WORK"
    unmount_stale
    mounted_under "$ROOT/" && die "something is still mounted under $ROOT"
    mount_into_root "$ROOT/proc" -t proc proc
    mount_into_root "$ROOT/dev/shm" -t tmpfs -o size=256m tmpfs
    mount_into_root "$ROOT$INNER" --bind "$WORK"
}

# /proc/cpuinfo as the Pi shows it (2 cores, matching the fake /sys), so CPU detection in onnxruntime and
# XNNPACK (pytorch/cpuinfo reads the MIDR fields) identifies the core instead of seeing the x86 host's file.
# Features are the HWCAPs QEMU gives that core model (checked by `pi_check_device.py cpu`).
write_cpuinfo() {  # write_cpuinfo CPU FILE
    local features variant part revision model i
    case "$1" in
        cortex-a72) features="fp asimd aes pmull sha1 sha2 crc32 cpuid"
                    variant=0x0 part=0xd08 revision=3 model="Raspberry Pi 4 Model B Rev 1.5" ;;
        cortex-a76) features="fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
                    variant=0x4 part=0xd0b revision=1 model="Raspberry Pi 5 Model B Rev 1.0" ;;
        *) die "no /proc/cpuinfo template for CPU $1 (known: cortex-a72, cortex-a76)" ;;
    esac
    {
        for i in 0 1; do
            printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
            printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
        done
        printf 'Model\t\t: %s\n' "$model"
    } >"$2"
}

# in_root CPU COMMAND...: run an arm64 command inside the root with a clean environment and the given CPU
# model; in a private mount namespace, the core's /proc/cpuinfo is bound over the host's.
in_root() {
    local cpu=$1; shift
    write_cpuinfo "$cpu" "$WORK/cpuinfo-$cpu"
    "${NICE[@]}" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        QEMU_CPU="$cpu" unshare --mount --propagation private \
        sh -c 'root=$2; mount --bind "$1" "$root/proc/cpuinfo" && shift 2 && exec chroot "$root" "$@"' \
        sh "$WORK/cpuinfo-$cpu" "$ROOT" "$@"
}

# ---------------------------------------------------------------------------------------------- wheels
# edgedet's own wheel, built by `make wheel`'s command (pip wheel --no-deps) from a copy of the working tree
# (keeps build/ and dist/ of this root-run script out of the checkout).
build_edgedet_wheel() {
    local src=$WORK/src
    rm -rf "$src" "$WORK/dist"
    mkdir -p "$src" "$WORK/dist"
    tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./build --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=./runs --exclude=./out --exclude=./exports --exclude=./dist -cf - . | tar -C "$src" -xf -
    "$REPO/.venv/bin/pip" wheel -q --no-deps -w "$WORK/dist" "$src" >/dev/null
    rm -rf "$src"
    ls "$WORK"/dist/edgedet-*.whl >/dev/null || die "no edgedet wheel was built"
}

# aarch64 wheels for edgedet[tflite,onnx] from PyPI for bookworm (CPython 3.11, glibc 2.36), without the
# host pip config (its find-links and extra indexes hold x86 builds).
download_wheels() {
    local platforms=(--platform linux_aarch64 --platform manylinux2014_aarch64) m
    for m in $(seq 17 36); do platforms+=(--platform "manylinux_2_${m}_aarch64"); done
    mkdir -p "$WHEELS"
    log "aarch64 wheels for edgedet[tflite,onnx] from PyPI (cached in $WHEELS)"
    (cd /tmp && env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
        "$REPO/.venv/bin/pip" download -q --dest "$WHEELS" --index-url https://pypi.org/simple \
        --only-binary=:all: --implementation cp --python-version "$PYVER" --abi "cp${PYVER/./}" "${platforms[@]}" \
        "$(ls "$WORK"/dist/edgedet-*.whl)[tflite,onnx]")
    rm -f "$WHEELS"/edgedet-*.whl
}

# ---------------------------------------------------------------------------------------------- venvs
# One venv per device extra: /opt/edgedet-tflite and /opt/edgedet-onnx, rebuilt when the wheel set changes;
# edgedet itself is reinstalled from this run's wheel every time. The install is the README's Raspberry Pi
# section, `pip install "edgedet-<version>-py3-none-any.whl[tflite]"` from the wheel's folder, except that the
# dependencies come from the cached aarch64 wheels instead of PyPI.
make_venv() {
    local extra=$1 venv=/opt/edgedet-$1 stamp wheel
    wheel=$(basename "$(ls "$WORK"/dist/edgedet-*.whl)")
    stamp=$( (echo "$extra"; ls "$WHEELS") | sha256sum | cut -c1-16)
    if [ "$(cat "$ROOT$venv/.pi-check-stamp" 2>/dev/null)" != "$stamp" ]; then
        log "creating $venv inside the root: pip install \"$wheel[$extra]\" (pip under emulation, ~1 min)"
        rm -rf "${ROOT:?}$venv"
        in_root cortex-a72 /usr/bin/python3 -m venv "$venv"
        in_root cortex-a72 sh -c 'cd "$1" && "$2/bin/pip" install -q --no-index --find-links "$3" "$4[$5]"' \
            sh "$INNER/dist" "$venv" "$INNER/wheels" "$wheel" "$extra"
        echo "$stamp" >"$ROOT$venv/.pi-check-stamp"
    fi
    in_root cortex-a72 "$venv/bin/pip" install -q --no-index --no-deps --force-reinstall "$INNER/dist/$wheel"
    in_root cortex-a72 "$venv/bin/pip" check >/dev/null || die "pip check failed in $venv"
}

stage_wheels_and_scripts() {
    rm -rf "$WORK/wheels" "$WORK/scripts"
    mkdir -p "$WORK/wheels" "$WORK/scripts"
    cp "$WHEELS"/*.whl "$WORK/wheels/"
    cp "$REPO/scripts/pi_check_device.py" "$WORK/scripts/"
}

# ---------------------------------------------------------------------------------------------- checks
FAILED=0
RESULTS=()   # the PASS/FAIL lines, printed again at the end

record() {  # record PASS|FAIL text
    RESULTS+=("$1 $2")
    log "$1 $2"
    [ "$1" = PASS ] || FAILED=1
}

check_environment() {
    local cpu extra out
    for cpu in $CPUS; do
        if out=$(in_root "$cpu" /usr/bin/python3 "$INNER/scripts/pi_check_device.py" cpu --expect "$cpu" 2>&1); then
            record PASS "cpu $cpu ($(cpu_label "$cpu")): $out"
        else
            record FAIL "cpu $cpu ($(cpu_label "$cpu")): $(echo "$out" | tr '\n' ' ')"
        fi
        for extra in tflite onnx; do
            if out=$(in_root "$cpu" "/opt/edgedet-$extra/bin/python" "$INNER/scripts/pi_check_device.py" imports --extra "$extra" 2>&1); then
                record PASS "install edgedet[$extra] on $cpu: $(echo "$out" | tail -n1)"
            else
                echo "$out"
                record FAIL "install edgedet[$extra] on $cpu"
            fi
        done
    done
}

print_footprint() {
    local extra
    log "Raspberry Pi OS base: $(cat "$ROOT/etc/debian_version") ($(. "$ROOT/etc/os-release"; echo "$PRETTY_NAME")), python $(in_root cortex-a72 /usr/bin/python3 -c 'import platform; print(platform.python_version(), platform.machine())')"
    for extra in tflite onnx; do
        log "device footprint of pip install \"edgedet[$extra]\" (/opt/edgedet-$extra):"
        in_root cortex-a72 "/opt/edgedet-$extra/bin/python" "$INNER/scripts/pi_check_device.py" footprint
    done
}

# The README followed verbatim on x86, as a user with the activated .venv: the data section's `edgedet data synth`
# line and the export section's `edgedet export shipped` command, run in $WORK/readme; then every model file the
# Raspberry Pi section copies must exist. Its int8 exports are the models the emulated Pi runs.
readme_exports() {
    local dir=$WORK/readme cmd file
    rm -rf "$dir" && mkdir -p "$dir"
    readme() { "$HOST_PY" "$REPO/scripts/readme_commands.py" "$REPO/README.md" "$@"; }
    for cmd in "$(readme '### `edgedet data`' | head -n1)" \
               "$(readme '### `edgedet export`' | grep '^edgedet export shipped')"; do
        log "x86, README verbatim: $cmd"
        (cd "$dir" && PATH=$REPO/.venv/bin:$PATH "${NICE[@]}" bash -euo pipefail -c "$cmd") >>"$WORK/results/readme.log" 2>&1 \
            || { tail -n 30 "$WORK/results/readme.log"; die "the README's command failed: $cmd (log: $WORK/results/readme.log)"; }
    done
    tail -n 8 "$WORK/results/readme.log"
    for file in $(readme '## On a Raspberry Pi' --files | grep -v '\.whl$'); do
        [ -f "$dir/$file" ] || die "the README's Pi section copies $file, which its export section did not write"
        cp "$dir/$file" "$WORK/models/"
    done
    record PASS "README verbatim on x86: data synth + export wrote $(readme '## On a Raspberry Pi' --files | grep -vc '\.whl$') files the Pi section copies"
    MODEL_TFLITE=$WORK/models/$(basename "$(readme '## On a Raspberry Pi' --files | grep '\.tflite$' | head -n1)")
    MODEL_ONNX=$WORK/models/$(basename "$MODEL_TFLITE" .tflite).onnx
    cp "$dir/exports/$(basename "$MODEL_ONNX")" "$MODEL_ONNX"
}

# The x86 reference: run + eval of the README's int8 exports on a few synthetic images with the host venv.
host_reference() {
    rm -rf "$WORK/data" "$WORK/models" "$WORK/results"
    mkdir -p "$WORK/results" "$WORK/models"
    log "x86: edgedet data synth ($N_IMAGES val images)"
    "${NICE[@]}" "$HOST_EDGEDET" data synth --out "$WORK/data" --train 0 --val "$N_IMAGES" --imgsz 320 --seed 1 >/dev/null
    readme_exports
    local fmt model
    for fmt in tflite-int8 onnx-int8; do
        model=$(model_for "$fmt")
        log "x86: edgedet run / eval with $(basename "$model")"
        "${NICE[@]}" "$HOST_EDGEDET" run --model "$model" --source "$WORK/data/val/images" --conf "$CONF" \
            --json "$WORK/results/x86-$fmt.jsonl" >"$WORK/results/x86-$fmt-run.log" 2>&1 \
            || { tail -n 20 "$WORK/results/x86-$fmt-run.log"; die "x86 edgedet run failed for $fmt"; }
        "${NICE[@]}" "$HOST_EDGEDET" eval --model "$model" --data "$WORK/data" --no-progress \
            --json "$WORK/results/x86-$fmt-eval.json" >"$WORK/results/x86-$fmt-eval.log" 2>&1 \
            || { tail -n 20 "$WORK/results/x86-$fmt-eval.log"; die "x86 edgedet eval failed for $fmt"; }
    done
}

model_for() {
    case "$1" in
        tflite-int8) echo "$MODEL_TFLITE" ;;
        onnx-int8) echo "$MODEL_ONNX" ;;
    esac
}

device_runs() {
    local cpu fmt extra model inner_model tag ok detail
    for cpu in $CPUS; do
        for fmt in tflite-int8 onnx-int8; do
            extra=${fmt%-int8}
            model=$(model_for "$fmt")
            inner_model=$INNER/models/$(basename "$model")
            tag="$fmt on $cpu ($(cpu_label "$cpu"))"
            log "emulated: edgedet run + eval, $tag"
            ok=1
            if ! in_root "$cpu" "/opt/edgedet-$extra/bin/edgedet" run --model "$inner_model" \
                    --source "$INNER/data/val/images" --conf "$CONF" --json "$INNER/results/$cpu-$fmt.jsonl" \
                    >"$WORK/results/$cpu-$fmt-run.log" 2>&1; then
                tail -n 20 "$WORK/results/$cpu-$fmt-run.log"
                record FAIL "$tag: edgedet run failed"
                continue
            fi
            if ! in_root "$cpu" "/opt/edgedet-$extra/bin/edgedet" eval --model "$inner_model" --data "$INNER/data" \
                    --no-progress --json "$INNER/results/$cpu-$fmt-eval.json" \
                    >"$WORK/results/$cpu-$fmt-eval.log" 2>&1; then
                tail -n 20 "$WORK/results/$cpu-$fmt-eval.log"
                record FAIL "$tag: edgedet eval failed"
                continue
            fi
            # At least one matched detection per image on average, so an empty run cannot pass.
            detail=$("$HOST_PY" "$REPO/scripts/pi_compare.py" --min-images "$N_IMAGES" --min-matched "$N_IMAGES" \
                --conf "$CONF" --min-iou 0.9 --max-score-diff 0.05 \
                "$WORK/results/x86-$fmt.jsonl" "$WORK/results/$cpu-$fmt.jsonl") || ok=0
            echo "$detail" | sed '$d'
            detail=$(echo "$detail" | tail -n1)
            local map
            map=$("$HOST_PY" "$REPO/scripts/pi_compare.py" --eval --max-map-diff 0.01 \
                "$WORK/results/x86-$fmt-eval.json" "$WORK/results/$cpu-$fmt-eval.json") || ok=0
            map=$(echo "$map" | paste -sd ';' | sed 's/;/; /g')
            if [ $ok = 1 ]; then record PASS "$tag: $detail; $map"; else record FAIL "$tag: $detail; $map"; fi
        done
    done
}

main() {
    need_root_user
    mkdir -p "$CACHE"
    exec 9>"$CACHE/pi-check.lock"
    flock -n 9 || die "another pi-check is running (lock $CACHE/pi-check.lock)"
    LOCKED=1
    trap cleanup EXIT
    trap 'printf "pi-check: error: line %s failed: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
    trap 'cleanup; exit 130' INT TERM
    case "$CPUS" in *max*) die "QEMU_CPU=max gives wrong XNNPACK int8 results; use real Pi cores";; esac
    install_host_packages
    enable_binfmt
    build_root
    fake_sys
    mkdir -p "$WORK"
    build_edgedet_wheel
    download_wheels
    stage_wheels_and_scripts
    mount_root
    make_venv tflite
    make_venv onnx
    print_footprint
    check_environment
    if [ "$ONLY" != setup ]; then
        [ -x "$HOST_EDGEDET" ] || die "no $HOST_EDGEDET for the x86 reference; run make setup"
        host_reference
        device_runs
    fi
    echo
    log "summary (QEMU user-mode emulation of Debian bookworm arm64; emulated timings mean nothing and are not reported --"
    log "run \`edgedet bench\` on a real Pi for latency):"
    local line
    for line in "${RESULTS[@]}"; do log "  $line"; done
    if [ $FAILED = 0 ]; then log "PASS"; else log "FAIL"; fi
    return $FAILED
}

main "$@"
exit $?
