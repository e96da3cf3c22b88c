#!/bin/bash
# guest-build.sh OUTDIR - build (once, cached) everything needed to boot the Linux kernel
# siw (soft-iWARP) driver in a qemu TCG guest as an interop peer for softiwarp.
#
# Debian 12 does not ship siw.ko (CONFIG_RDMA_SIW is not set), so this script:
#   1. installs the host packages it needs (apt-get install --no-install-recommends):
#      qemu-system-x86, linux-headers-$KVER (+gcc-12 via linux-compiler-gcc-12-x86),
#      make, gcc, binutils, kmod, cpio, xz-utils, python3
#   2. downloads (apt-get download, never installs) linux-image-$KVER, the matching
#      linux-source-X.Y and the guest user space (busybox-static, kmod, iproute2,
#      rdma-core: libibverbs1 librdmacm1 ibverbs-providers ibverbs-utils rdmacm-utils,
#      perftest, tcpdump) with its Depends closure, and extracts them (dpkg-deb -x)
#   3. extracts only drivers/infiniband/sw/siw from the linux-source tarball and builds
#      siw.ko out of tree in two variants: "pristine" (unchanged) and "params" (the
#      compile-time tunables mpa_version, mpa_crc_required, peer_to_peer, try_gso, ...
#      become read-only module parameters, defaults unchanged)
#   4. packs a busybox initramfs (/init = guest-init.sh)
# KVER (the Debian kernel ABI, e.g. 6.1.0-56-amd64) is resolved from
# `apt-cache depends linux-image-amd64` unless KVER is set in the environment.
#
# Output (all under OUTDIR): guest/{vmlinuz,initramfs.cpio.gz,KVER,manifest.txt,
# siw-pristine.ko,siw-params.ko}; caches: debs/ sysroot/ src/ siw/ logs/.
# Every stage is stamped; a second run with a complete cache takes well under a
# second (plus one apt-cache call). Safe to run concurrently (flock on OUTDIR/.lock).
#
# Environment: KVER=<abi>  force a kernel ABI;  INTEROP_NO_APT=1  never call apt-get
# install/update (host packages must be present; apt-get download is still used for a
# cold cache);  INTEROP_APT_MAX_AGE=<s>  run apt-get update before a cold build when the
# lists are older than this (default 21600).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -eq 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2; }
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
DEBS="$OUT/debs" SYSROOT="$OUT/sysroot" SRC="$OUT/src" SIWB="$OUT/siw" LOGS="$OUT/logs" GUEST="$OUT/guest"

# bump when the siw patch / initramfs layout logic changes (invalidates those stages)
SIW_BUILD_REV=1
GUEST_PKGS="busybox-static kmod iproute2 libibverbs1 librdmacm1 ibverbs-providers ibverbs-utils rdmacm-utils perftest tcpdump"
GUEST_BINS="/bin/busybox /bin/kmod /bin/ip /bin/ss /usr/bin/rdma /usr/bin/tcpdump
 /usr/bin/rping /usr/bin/ucmatose /usr/bin/udaddy /usr/bin/rdma_server /usr/bin/rdma_client
 /usr/bin/rdma_xserver /usr/bin/rdma_xclient /usr/bin/rstream /usr/bin/riostream /usr/bin/cmtime
 /usr/bin/ibv_devices /usr/bin/ibv_devinfo /usr/bin/ibv_rc_pingpong
 /usr/bin/ib_write_bw /usr/bin/ib_write_lat /usr/bin/ib_read_bw /usr/bin/ib_read_lat
 /usr/bin/ib_send_bw /usr/bin/ib_send_lat"
# glibc dlopen()s libgcc_s.so.1 for pthread_exit/cancel (rping aborts without it) and
# libibverbs dlopen()s its provider: neither shows up in ld.so --list.
GUEST_DLOPEN="/usr/lib/x86_64-linux-gnu/libibverbs/libsiw-rdmav34.so /lib/x86_64-linux-gnu/libgcc_s.so.1"
GUEST_MODS="virtio_pci virtio_net 9pnet_virtio 9p crc32c_generic libcrc32c ib_core ib_uverbs iw_cm ib_cm rdma_cm rdma_ucm"

T_START=$(date +%s.%N)
log() { printf '[guest-build %s +%5.1fs] %s\n' "$(date +%T)" "$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
stamp_set() { printf '%s\n' "$2" >"$1"; }
is_root() { [ "$(id -u)" = 0 ]; }

resolve_kver() {
  # linux-image-amd64 / linux-headers-amd64 are the metapackages; their Depends name the ABI
  local deps img hdr
  deps="$(apt-cache depends linux-image-amd64 linux-headers-amd64 2>/dev/null || true)"
  img="$(sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*\)$/\1/p' <<<"$deps" | head -1)"
  hdr="$(sed -n 's/^ *Depends: linux-headers-\([0-9][^ ]*\)$/\1/p' <<<"$deps" | head -1)"
  if [ -n "$img" ] && [ -n "$hdr" ] && [ "$img" != "$hdr" ]; then
    log "WARNING: linux-image-amd64 -> $img but linux-headers-amd64 -> $hdr; using $img"
  fi
  echo "${img:-$hdr}"
}

lists_age() { # seconds since the newest apt list was fetched (huge if none)
  local newest
  newest="$(find /var/lib/apt/lists -maxdepth 1 -name '*InRelease' -printf '%T@\n' 2>/dev/null | sort -n | tail -1)"
  [ -n "$newest" ] || { echo 999999999; return; }
  awk -v n="$newest" -v now="$(date +%s)" 'BEGIN{printf "%d", now-n}'
}

apt_update() {
  log "apt-get update"
  apt-get update >"$LOGS/apt-update.log" 2>&1 || { tail -20 "$LOGS/apt-update.log" >&2; die "apt-get update failed"; }
}

host_pkgs() { echo "qemu-system-x86 cpio kmod make gcc binutils xz-utils python3 linux-headers-$1"; }
missing_host_pkgs() {
  local p need=""
  for p in $(host_pkgs "$1"); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need="$need $p"
  done
  echo "${need# }"
}

cache_complete() { # all final artefacts present and stamped for this KVER + inputs
  local k="$1"
  stamp_ok "$GUEST/.stamp" "$(guest_key "$k")" && [ -s "$GUEST/vmlinuz" ] && [ -s "$GUEST/initramfs.cpio.gz" ] &&
    [ -z "$(missing_host_pkgs "$k")" ] && [ -d "/usr/src/linux-headers-$k" ]
}
guest_key() { # everything the initramfs depends on
  printf 'kver=%s rev=%s init=%s build=%s' "$1" "$SIW_BUILD_REV" \
    "$(sha256sum "$HERE/guest-init.sh" | cut -c1-16)" "$(sha256sum "$HERE/guest-build.sh" | cut -c1-16)"
}

# ---------------------------------------------------------------------------------------
mkdir -p "$LOGS" "$GUEST"
exec 9>"$OUT/.lock"
flock -w 1800 9 || die "could not lock $OUT/.lock within 30 min"

KVER="${KVER:-}"
KVER_FROM_ENV="$KVER"
if [ -z "$KVER" ]; then
  KVER="$(resolve_kver)"
  if [ -z "$KVER" ] && [ "${INTEROP_NO_APT:-0}" != 1 ] && is_root; then
    apt_update; KVER="$(resolve_kver)"
  fi
  if [ -z "$KVER" ] && [ -s "$GUEST/KVER" ]; then
    KVER="$(cat "$GUEST/KVER")"; log "WARNING: apt-cache cannot resolve the kernel ABI; reusing cached $KVER"
  fi
  [ -n "$KVER" ] || die "cannot resolve the kernel ABI (apt-cache depends linux-image-amd64 is empty; apt-get update?)"
fi
if cache_complete "$KVER"; then
  log "cache complete for $KVER in $OUT (nothing to do)"
  exit 0
fi

log "cold or partial cache for $KVER in $OUT"
if [ "${INTEROP_NO_APT:-0}" != 1 ] && is_root && [ -z "${KVER_FROM_ENV:-}" ]; then
  age="$(lists_age)"
  if [ "$age" -gt "${INTEROP_APT_MAX_AGE:-21600}" ]; then
    log "apt lists are ${age}s old"; apt_update
    k2="$(resolve_kver)"
    if [ -n "$k2" ] && [ "$k2" != "$KVER" ]; then log "kernel ABI after update: $k2"; KVER="$k2"; fi
  fi
fi
KSER="$(echo "$KVER" | cut -d. -f1,2)"   # 6.1.0-56-amd64 -> 6.1 ; 6.12.57+deb12-amd64 -> 6.12
SRCPKG="linux-source-$KSER"
log "kernel ABI $KVER, source package $SRCPKG"

# 1. host packages ------------------------------------------------------------------------
need="$(missing_host_pkgs "$KVER")"
if [ -n "$need" ]; then
  if ! is_root && [ "${INTEROP_NO_APT:-0}" != 1 ]; then
    # Not an error for a user without root: the interop tests skip (77).
    log "SKIP: missing host packages and not root (as root: apt-get install --no-install-recommends $need)"
    exit 77
  fi
  if [ "${INTEROP_NO_APT:-0}" = 1 ]; then
    die "missing host packages (install them: apt-get install --no-install-recommends $need)"
  fi
  log "apt-get install --no-install-recommends $need"
  t=$(date +%s)
  # shellcheck disable=SC2086
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need >"$LOGS/apt-install.log" 2>&1; then
    apt_update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need >"$LOGS/apt-install.log" 2>&1 ||
      { tail -20 "$LOGS/apt-install.log" >&2; die "apt-get install failed (log: $LOGS/apt-install.log)"; }
  fi
  log "host packages installed in $(( $(date +%s) - t ))s"
fi
[ -d "/usr/src/linux-headers-$KVER" ] || die "/usr/src/linux-headers-$KVER missing"

# 2. download guest debs -------------------------------------------------------------------
DDIR="$DEBS/$KVER"
DKEY="pkgs=$GUEST_PKGS"
if ! stamp_ok "$DDIR/.stamp" "$DKEY"; then
  rm -rf "$DDIR" "$DDIR.tmp"; mkdir -p "$DDIR.tmp"
  imgver="$(apt-cache show "linux-image-$KVER" 2>/dev/null | sed -n 's/^Version: //p' | head -1)"
  [ -n "$imgver" ] || die "apt-cache knows no linux-image-$KVER"
  srcspec="$SRCPKG=$imgver"
  if ! apt-cache show "$srcspec" >/dev/null 2>&1; then
    log "WARNING: no $SRCPKG $imgver in apt; using the candidate version"; srcspec="$SRCPKG"
  fi
  # shellcheck disable=SC2086
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances $GUEST_PKGS | grep '^[a-z0-9]' | sort -u >"$DDIR.tmp/closure.txt"
  log "apt-get download linux-image-$KVER ($imgver) $srcspec + $(wc -l <"$DDIR.tmp/closure.txt") user-space packages"
  t=$(date +%s)
  dl() { ( cd "$DDIR.tmp" && xargs apt-get download <"$DDIR.tmp/want.txt" >"$LOGS/apt-download.log" 2>&1 ); }
  { echo "linux-image-$KVER"; echo "$srcspec"; cat "$DDIR.tmp/closure.txt"; } >"$DDIR.tmp/want.txt"
  if ! dl; then
    if [ "${INTEROP_NO_APT:-0}" != 1 ] && is_root; then apt_update; fi
    dl || { tail -20 "$LOGS/apt-download.log" >&2; die "apt-get download failed (log: $LOGS/apt-download.log)"; }
  fi
  mv "$DDIR.tmp" "$DDIR"
  stamp_set "$DDIR/.stamp" "$DKEY"
  log "downloaded $(find "$DDIR" -name '*.deb' | wc -l) debs, $(du -sh "$DDIR" | cut -f1), in $(( $(date +%s) - t ))s"
fi
IMGDEB="$(ls "$DDIR"/linux-image-"$KVER"_*.deb)"
SRCDEB="$(ls "$DDIR"/"$SRCPKG"_*.deb)"
IMGVER="$(dpkg-deb -f "$IMGDEB" Version)"
SRCVER="$(dpkg-deb -f "$SRCDEB" Version)"
[ "$IMGVER" = "$SRCVER" ] || log "WARNING: linux-image $IMGVER != $SRCPKG $SRCVER (siw built from other sources)"

# 3a. siw sources + builds (background job: runs in parallel with the sysroot extraction) --
build_siw() {
  local sdir="$SRC/$SRCPKG-$SRCVER" skey="src=$SRCVER"
  local siwsrc="$sdir/$SRCPKG/drivers/infiniband/sw/siw"
  if ! stamp_ok "$sdir/.stamp" "$skey" || [ ! -f "$siwsrc/siw_main.c" ]; then
    log "extracting drivers/infiniband/sw/siw from $SRCPKG $SRCVER"
    rm -rf "$sdir"; mkdir -p "$sdir"
    # the tarball is multi-block xz: -T0 decompresses on all cores (~2x on 2 cores)
    dpkg-deb --fsys-tarfile "$SRCDEB" | tar -xO "./usr/src/$SRCPKG.tar.xz" | xz -T0 -dc |
      tar -x -C "$sdir" "$SRCPKG/drivers/infiniband/sw/siw"
    [ -f "$siwsrc/siw_main.c" ] || die "siw sources not found in $SRCPKG"
    stamp_set "$sdir/.stamp" "$skey"
    log "siw sources extracted"
  fi
  local v pids=""
  for v in pristine params; do
    local bd="$SIWB/$KVER/$v" bkey="kver=$KVER src=$SRCVER rev=$SIW_BUILD_REV"
    stamp_ok "$bd/.stamp" "$bkey" && [ -f "$bd/siw.ko" ] && continue
    rm -rf "$bd"; mkdir -p "$bd"; cp "$siwsrc"/*.[ch] "$siwsrc/Makefile" "$bd/"
    if [ "$v" = params ]; then
      # the tunables are globals in siw_main.c ("const bool x = ...;", "u_char mpa_version = ...;")
      sed -i -e 's/^const bool \([a-z_]*\)\(.*\);$/bool \1\2;\nmodule_param(\1, bool, 0444);/' \
             -e 's/^u_char mpa_version = \(.*\);$/u_char mpa_version = \1;\nmodule_param(mpa_version, byte, 0444);/' \
             "$bd/siw_main.c"
      sed -i -e 's/^extern const bool /extern bool /' "$bd/siw.h"
      local p
      for p in mpa_version mpa_crc_required mpa_crc_strict peer_to_peer try_gso zcopy_tx loopback_enabled; do
        grep -q "^module_param($p," "$bd/siw_main.c" || die "params patch: $p is not a module parameter"
      done
    fi
    log "building siw.ko ($v) against /usr/src/linux-headers-$KVER"
    ( make -C "/usr/src/linux-headers-$KVER" M="$bd" CONFIG_RDMA_SIW=m modules >"$bd/build.log" 2>&1 &&
        strip --strip-debug "$bd/siw.ko" && stamp_set "$bd/.stamp" "$bkey" ) &
    pids="$pids $!"
  done
  local pid rc=0
  for pid in $pids; do wait "$pid" || rc=1; done
  for v in pristine params; do
    [ -f "$SIWB/$KVER/$v/.stamp" ] || { tail -30 "$SIWB/$KVER/$v/build.log" >&2; log "siw build failed ($v)"; }
  done
  [ "$rc" = 0 ] || exit 1
  log "siw.ko built: $(for v in pristine params; do printf '%s ' "$v=$(modinfo -F parm "$SIWB/$KVER/$v/siw.ko" | wc -l)params"; done)"
}
build_siw &
SIW_PID=$!

# 3b. extract the guest debs (dpkg-deb -x: no maintainer scripts, no hooks) ---------------
SKEY="kver=$KVER $DKEY"
if ! stamp_ok "$SYSROOT/.stamp" "$SKEY"; then
  log "extracting debs into $SYSROOT"
  t=$(date +%s)
  rm -rf "$SYSROOT"; mkdir -p "$SYSROOT"
  for d in "$DDIR"/*.deb; do
    [ "$d" = "$SRCDEB" ] && continue
    dpkg-deb -x "$d" "$SYSROOT"
  done
  depmod -b "$SYSROOT" "$KVER"
  stamp_set "$SYSROOT/.stamp" "$SKEY"
  log "sysroot ready ($(du -sh "$SYSROOT" | cut -f1)) in $(( $(date +%s) - t ))s"
fi


# 4. initramfs -----------------------------------------------------------------------------
copy_with_deps() { # $1 = root, $2.. = absolute paths inside SYSROOT
  local R="$1"; shift
  local ld="$SYSROOT/lib64/ld-linux-x86-64.so.2" lp="$SYSROOT/lib/x86_64-linux-gnu:$SYSROOT/usr/lib/x86_64-linux-gnu"
  local f dep list
  for f in "$@"; do
    [ -e "$SYSROOT$f" ] || die "missing in sysroot: $f"
    mkdir -p "$R$(dirname "$f")"; cp -L "$SYSROOT$f" "$R$f"
    [ "$f" = /bin/busybox ] && continue   # static
    list="$("$ld" --library-path "$lp" --list "$SYSROOT$f")"
    if grep -q 'not found' <<<"$list"; then die "unresolved library for $f: $list"; fi
    while read -r dep; do
      local rel="${dep#"$SYSROOT"}"
      [ -e "$R$rel" ] && continue
      mkdir -p "$R$(dirname "$rel")"; cp -L "$dep" "$R$rel"
    done < <(grep -o "$SYSROOT/[^ ]*" <<<"$list" | sort -u)
  done
}

GKEY="$(guest_key "$KVER")"
log "building initramfs"
R="$OUT/initramfs-root"
rm -rf "$R"; mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,share,root,var/tmp,lib/siw}
# shellcheck disable=SC2086
copy_with_deps "$R" $GUEST_BINS $GUEST_DLOPEN
[ -e "$R/lib64/ld-linux-x86-64.so.2" ] || die "dynamic loader not copied"
for a in $("$R/bin/busybox" --list); do   # busybox applets, without shadowing kmod/iproute2
  case "$a" in modprobe|insmod|rmmod|lsmod|modinfo|depmod|ip|ss|busybox) continue;; esac
  [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
for a in modprobe insmod rmmod lsmod modinfo depmod; do ln -sf ../bin/kmod "$R/sbin/$a"; done
mkdir -p "$R/etc/libibverbs.d"; cp "$SYSROOT/etc/libibverbs.d/siw.driver" "$R/etc/libibverbs.d/"
printf 'root:x:0:0:root:/root:/bin/sh\ntcpdump:x:0:0:tcpdump:/:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\ntcpdump:x:0:\n' >"$R/etc/group"
printf '127.0.0.1 localhost\n10.0.2.2 host\n10.0.2.15 guest\n' >"$R/etc/hosts"
mkdir -p "$R/lib/modules/$KVER"
for m in $GUEST_MODS; do
  modprobe -d "$SYSROOT" -S "$KVER" --show-depends "$m" >"$OUT/modprobe.out" || die "module $m not found in $KVER"
  while read -r kind f _; do
    [ "$kind" = insmod ] || continue
    rel="${f#"$SYSROOT"}"; mkdir -p "$R$(dirname "$rel")"; cp "$f" "$R$rel"
  done <"$OUT/modprobe.out"
done
rm -f "$OUT/modprobe.out"
cp "$SYSROOT/lib/modules/$KVER"/modules.{builtin,builtin.modinfo,order} "$R/lib/modules/$KVER/"
depmod -b "$R" "$KVER"
cp "$HERE/guest-init.sh" "$R/init"; chmod 755 "$R/init"
wait "$SIW_PID" || die "siw build failed"
for v in pristine params; do mkdir -p "$R/lib/siw/$v"; cp "$SIWB/$KVER/$v/siw.ko" "$R/lib/siw/$v/"; done
( cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet ) | gzip -1 >"$GUEST/initramfs.cpio.gz.tmp"
mv "$GUEST/initramfs.cpio.gz.tmp" "$GUEST/initramfs.cpio.gz"
cp "$SYSROOT/boot/vmlinuz-$KVER" "$GUEST/vmlinuz"
for v in pristine params; do cp "$SIWB/$KVER/$v/siw.ko" "$GUEST/siw-$v.ko"; done
echo "$KVER" >"$GUEST/KVER"
{
  echo "kver=$KVER image=$IMGVER source=$SRCPKG/$SRCVER"
  echo "built=$(date -u +%FT%TZ) key=$GKEY"
  for v in pristine params; do
    echo "siw-$v.ko: $(modinfo -F vermagic "$GUEST/siw-$v.ko")"
    modinfo -F parm "$GUEST/siw-$v.ko" | sed 's/^/  parm: /'
  done
  echo "guest packages:"
  for d in "$DDIR"/*.deb; do   # name_version_arch.deb (epoch ':' is %3a)
    d="${d##*/}"; d="${d%.deb}"; d="${d%_*}"; v="${d#*_}"; echo "  ${d%%_*} ${v//%3a/:}"
  done
} >"$GUEST/manifest.txt"
stamp_set "$GUEST/.stamp" "$GKEY"
log "initramfs $(du -h "$GUEST/initramfs.cpio.gz" | cut -f1) ($(du -sh "$R" | cut -f1) unpacked)"
log "done: $GUEST/vmlinuz $GUEST/initramfs.cpio.gz"
