#!/bin/bash
# guest-run.sh - boot one qemu (TCG) guest running the Linux kernel siw driver, run a
# command script inside it and return that script's exit code.
#
# usage: guest-run.sh [options] [-c FILE | -e 'CMD' | -- CMD WORDS...]
#   -o, --cache DIR      OUTDIR of guest-build.sh (default: $INTEROP_CACHE, else
#                        <repo>/build/interop-cache); must already be built
#   -d, --dir DIR        run dir, shared into the guest as /share (virtio-9p, cwd of the
#                        command); default: CACHE/runs/<date>-<pid>
#   -c, --cmd FILE       guest command script (copied to DIR/cmd.sh)
#   -e, --exec 'CMD'     guest command string (written to DIR/cmd.sh)
#                        (neither given: words after -- , else an existing DIR/cmd.sh)
#   -V, --variant V      siw.ko variant: pristine (unmodified, default) | params
#   -p, --params 'k=v ..'  siw module parameters (params variant; selected automatically),
#                        e.g. 'mpa_crc_required=1 peer_to_peer=1' (mpa_version,
#                        mpa_crc_required, mpa_crc_strict, peer_to_peer, try_gso,
#                        zcopy_tx, loopback_enabled, siw_tcp_nagle)
#   -f, --fwd P|H:G      forward host 127.0.0.1:H (TCP) to guest port G (repeatable)
#   -m, --mem MB         guest memory (default 512)
#   -t, --timeout S      overall timeout in seconds; qemu is killed after it (default 300)
#   -P, --pcap IFACE     capture IFACE (eth0, lo, eth1) to DIR/IFACE.pcap while the
#                        command runs (repeatable); --pcap-filter 'EXPR' for all captures
#   -S, --socknet listen:127.0.0.1:PORT | connect:127.0.0.1:PORT
#                        add eth1 on a qemu socket netdev (L2 link between two guests);
#                        --ip2 CIDR (eth1 address, e.g. 192.0.2.1/24), --mac2 MAC
#   -a, --append 'ARGS'  extra kernel command line;  -l, --loglevel N (console, default 4)
#   --no-listen-watch    do not maintain DIR/listen.txt
#   -q, --quiet          console only to DIR/console.log (default: also to stdout)
#
# Exit code: the command's exit code; 124 timeout (qemu killed); 125 guest ended without
# a result (crash, qemu error); 126 guest setup failed (module/link/network); 137 killed
# by lib.sh guest_kill (DIR/killed); 143 this script got SIGTERM/SIGINT; 2 usage.
# Files in DIR: cmd.sh guest.conf qemu-cmdline.txt console.log qemu.pid, from the guest:
# ready (written when siw is up, before cmd.sh runs), listen.txt (guest TCP listeners,
# refreshed every 0.2 s), rc, dmesg.txt, setup-failed, <IFACE>.pcap, anything cmd.sh
# writes; and last timing.txt and run.rc (this script's exit code; written on every exit).
# Environment: INTEROP_ACCEL (default tcg), INTEROP_SMP (default 1), INTEROP_QEMU_EXTRA.
#
# Guest network (qemu user-mode/slirp): guest eth0 10.0.2.15/24, gw 10.0.2.2; guest
# connections to 10.0.2.2:P reach host 127.0.0.1:P. RDMA links: siw0 (eth0), siw_lo (lo),
# siw1 (eth1 with --socknet). Use 10.0.2.15, not 127.0.0.1, for rdma_cm inside the guest.
# The command is sourced by busybox ash; see guest-init.sh for the helpers it can use
# (mark, wait_host, wait_listen, pcap_start/pcap_stop, siw_reload, say).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2; }
log() { echo "[guest-run $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 2; }
sq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }   # single-quote for ash

CACHE="${INTEROP_CACHE:-$HERE/../../build/interop-cache}"
DIR="" CMDFILE="" CMDSTR="" HAVE_CMD=0 VARIANT="" PARAMS="" MEM=512 TIMEOUT=300
FWDS=() PCAPS="" PCAP_FILTER="" SOCKNET="" IP2="" MAC2="52:54:00:00:02:01" APPEND="" LOGLEVEL=4
WATCH=1 QUIET=0
while [ $# -gt 0 ]; do
  case "$1" in
    -q|--quiet|-h|--help|--no-listen-watch|--) ;;
    -*) [ $# -ge 2 ] || die "option $1 needs a value";;
  esac
  case "$1" in
    -o|--cache) CACHE="$2"; shift 2;;
    -d|--dir) DIR="$2"; shift 2;;
    -c|--cmd) CMDFILE="$2"; HAVE_CMD=1; shift 2;;
    -e|--exec) CMDSTR="$2"; HAVE_CMD=1; shift 2;;
    -V|--variant) VARIANT="$2"; shift 2;;
    -p|--params) PARAMS="$2"; shift 2;;
    -f|--fwd) FWDS+=("$2"); shift 2;;
    -m|--mem) MEM="$2"; shift 2;;
    -t|--timeout) TIMEOUT="$2"; shift 2;;
    -P|--pcap) PCAPS="$PCAPS $2"; shift 2;;
    --pcap-filter) PCAP_FILTER="$2"; shift 2;;
    -S|--socknet) SOCKNET="$2"; shift 2;;
    --ip2) IP2="$2"; shift 2;;
    --mac2) MAC2="$2"; shift 2;;
    -a|--append) APPEND="$2"; shift 2;;
    -l|--loglevel) LOGLEVEL="$2"; shift 2;;
    --no-listen-watch) WATCH=0; shift;;
    -q|--quiet) QUIET=1; shift;;
    -h|--help) usage;;
    --) shift; if [ $# -gt 0 ]; then CMDSTR="$*"; HAVE_CMD=1; fi; break;;
    *) log "unknown option: $1"; usage;;
  esac
done
[[ "$MEM" =~ ^[0-9]+$ ]] || die "bad --mem $MEM"
if ! [[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]]; then die "bad --timeout $TIMEOUT"; fi
if [ -z "$VARIANT" ]; then if [ -n "$PARAMS" ]; then VARIANT=params; else VARIANT=pristine; fi; fi
case "$VARIANT" in pristine|params) ;; *) die "bad --variant $VARIANT";; esac
[ "$VARIANT" = params ] || [ -z "$PARAMS" ] || die "--params needs the params variant"
CACHE="$(cd "$CACHE" 2>/dev/null && pwd)" || die "cache dir missing; run guest-build.sh first"
K="$CACHE/guest/vmlinuz" I="$CACHE/guest/initramfs.cpio.gz"
{ [ -s "$K" ] && [ -s "$I" ]; } || die "no guest image in $CACHE/guest; run: $HERE/guest-build.sh $CACHE"
if [ -n "$PARAMS" ] && command -v modinfo >/dev/null; then   # fail fast on a typo
  known=" $(modinfo -F parm "$CACHE/guest/siw-params.ko" | cut -d: -f1 | tr '\n' ' ')"
  for kv in $PARAMS; do
    [[ "$kv" == *=* ]] || die "--params: '$kv' is not k=v"
    [[ "$known" == *" ${kv%%=*} "* ]] || die "--params: siw has no parameter '${kv%%=*}' (known:$known)"
  done
fi
if ! grep -q "init=$(sha256sum "$HERE/guest-init.sh" | cut -c1-16) " "$CACHE/guest/.stamp" 2>/dev/null; then
  log "WARNING: $CACHE/guest/initramfs.cpio.gz is older than guest-init.sh; re-run guest-build.sh"
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not installed (guest-build.sh installs it)"

[ -n "$DIR" ] || DIR="$CACHE/runs/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$DIR"; DIR="$(cd "$DIR" && pwd)"
rm -f "$DIR"/{rc,ready,listen.txt,setup-failed,dmesg.txt,console.log,qemu.pid,timing.txt,run.rc,killed} \
      "$DIR"/.*.tmp
if [ -n "$CMDFILE" ]; then
  [ -f "$CMDFILE" ] || die "no such command file: $CMDFILE"
  [ "$(cd "$(dirname "$CMDFILE")" && pwd)/$(basename "$CMDFILE")" = "$DIR/cmd.sh" ] || cp "$CMDFILE" "$DIR/cmd.sh"
elif [ "$HAVE_CMD" = 1 ]; then
  printf '%s\n' "$CMDSTR" >"$DIR/cmd.sh"
fi
[ -f "$DIR/cmd.sh" ] || die "no command (use -c FILE, -e CMD or -- CMD)"

{
  echo "VARIANT=$(sq "$VARIANT")"
  echo "PARAMS=$(sq "$PARAMS")"
  echo "IP2=$(sq "$IP2")"
  echo "PCAP_IFACES=$(sq "${PCAPS# }")"
  echo "PCAP_FILTER=$(sq "$PCAP_FILTER")"
  echo "LISTEN_WATCH=$WATCH"
} >"$DIR/guest.conf"

net="user,id=n0"
for f in "${FWDS[@]}"; do
  case "$f" in
    *:*) h="${f%%:*}" g="${f#*:}";;
    *) h="$f" g="$f";;
  esac
  if ! [[ "$h" =~ ^[0-9]+$ && "$g" =~ ^[0-9]+$ ]] || [ "$h" -lt 1 ] || [ "$h" -gt 65535 ] ||
     [ "$g" -lt 1 ] || [ "$g" -gt 65535 ]; then die "bad --fwd $f"; fi
  net="$net,hostfwd=tcp:127.0.0.1:$h-:$g"
done
# shellcheck disable=SC2054  # the commas are qemu option syntax
q=(qemu-system-x86_64 -accel "${INTEROP_ACCEL:-tcg}" -m "$MEM" -smp "${INTEROP_SMP:-1}"
   -nographic -no-reboot -pidfile "$DIR/qemu.pid"
   -kernel "$K" -initrd "$I"
   -append "console=ttyS0 panic=-1 loglevel=$LOGLEVEL $APPEND"
   -netdev "$net" -device virtio-net-pci,netdev=n0,romfile=
   -fsdev "local,id=fs0,path=$DIR,security_model=none" -device virtio-9p-pci,fsdev=fs0,mount_tag=share)
if [ -n "$SOCKNET" ]; then
  case "$SOCKNET" in
    listen:127.*:*|connect:127.*:*) ;;
    *) die "--socknet must be listen:127.x.y.z:PORT or connect:127.x.y.z:PORT";;
  esac
  q+=(-netdev "socket,id=n1,${SOCKNET%%:*}=${SOCKNET#*:}" -device "virtio-net-pci,netdev=n1,romfile=,mac=$MAC2")
fi
# shellcheck disable=SC2206
q+=(${INTEROP_QEMU_EXTRA:-})
printf '%q ' "${q[@]}" >"$DIR/qemu-cmdline.txt"; echo >>"$DIR/qemu-cmdline.txt"

QPID="" TPID="" RC=125
T0=$(date +%s.%N)
# shellcheck disable=SC2317  # kill_qemu/finish are called from traps
kill_qemu() {
  local p=""
  [ -f "$DIR/qemu.pid" ] && p="$(cat "$DIR/qemu.pid" 2>/dev/null || true)"
  if [ -n "$p" ] && [[ "$(cat "/proc/$p/comm" 2>/dev/null || true)" == qemu-system* ]]; then
    kill -TERM "$p" 2>/dev/null || true
    local _
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  fi
  if [ -n "$QPID" ]; then kill -TERM "$QPID" 2>/dev/null || true; fi
  return 0
}
# shellcheck disable=SC2317
finish() {
  set +e
  [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null && kill_qemu
  [ -n "$TPID" ] && { kill "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null; }
  local ready_up end_up
  ready_up="$(cat "$DIR/ready" 2>/dev/null)"
  end_up="$(grep -a -o 'CMD-END rc=[0-9]* (uptime [0-9.]*s)' "$DIR/console.log" 2>/dev/null | tail -1 | sed 's/.*uptime \([0-9.]*\)s)/\1/')"
  printf 'host_wall_s=%s guest_ready_uptime_s=%s guest_cmd_end_uptime_s=%s rc=%s\n' \
    "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')" "${ready_up:--}" "${end_up:--}" "$RC" \
    >"$DIR/timing.txt"
  echo "$RC" >"$DIR/run.rc"
}
trap finish EXIT
trap 'log "signal: killing qemu"; kill_qemu; RC=143; exit 143' TERM INT HUP

log "run dir $DIR (variant=$VARIANT params=[$PARAMS] fwd=[${FWDS[*]}] timeout=${TIMEOUT}s)"
timeout -k 5 "$TIMEOUT" "${q[@]}" </dev/null >"$DIR/console.log" 2>&1 &
QPID=$!
if [ "$QUIET" = 0 ]; then tail -n +1 -s 0.2 -f --pid="$QPID" "$DIR/console.log" & TPID=$!; fi
set +e
wait "$QPID"; qrc=$?
set -e
QPID=""
if [ -n "$TPID" ]; then wait "$TPID" 2>/dev/null || true; TPID=""; fi

if [ -f "$DIR/killed" ] && [ ! -s "$DIR/rc" ]; then
  log "guest killed (guest_kill)"
  RC=137
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  log "TIMEOUT after ${TIMEOUT}s (qemu killed); last console lines:"; tail -5 "$DIR/console.log" >&2
  RC=124
elif [ -s "$DIR/rc" ]; then
  RC="$(head -1 "$DIR/rc")"
  [[ "$RC" =~ ^[0-9]+$ ]] || RC=125
  [ -f "$DIR/setup-failed" ] && log "guest setup failed: $(cat "$DIR/setup-failed")"
elif [ -f "$DIR/killed" ]; then
  log "guest killed (guest_kill)"
  RC=137
else
  log "guest ended without a result (qemu rc=$qrc); last console lines:"; tail -15 "$DIR/console.log" >&2
  RC=125
fi
log "rc=$RC; $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s wall"
exit "$RC"
