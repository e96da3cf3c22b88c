#!/bin/sh
# /init of the softiwarp interop guest (busybox ash). Packed into the initramfs by
# guest-build.sh; not meant to run on the host.
#
# Boot: mount proc/sys/dev, mount the virtio-9p run dir at /share, source
# /share/guest.conf (written by guest-run.sh), configure eth0 (10.0.2.15/24, gw
# 10.0.2.2 = host 127.0.0.1 via slirp), load the RDMA modules and the chosen siw.ko
# variant, create the RDMA links siw0 (eth0), siw_lo (lo) [, siw1 (eth1)], write
# /share/ready, then SOURCE /share/cmd.sh in a subshell with cwd=/share, write its
# exit code to /share/rc, dmesg to /share/dmesg.txt and power off.
#
# Helpers available to cmd.sh (it is sourced, so it inherits these functions):
#   ip/modprobe/insmod/rmmod/lsmod/modinfo  -> real iproute2/kmod tools (busybox
#                               PREFER_APPLETS would otherwise run its own applets)
#   say TEXT                    console line "SIW-GUEST: TEXT (uptime Ns)"
#   up                          guest uptime in seconds
#   mark NAME [TEXT]            atomically create /share/NAME (the host polls it:
#                               lib.sh guest_wait_file)
#   wait_host NAME [SECS=60]    wait for /share/NAME created by the host (guest_signal)
#   wait_listen PORT [SECS=30]  wait until a TCP listener on PORT exists in the guest
#   pcap_start NAME IFACE [FILTER...]  tcpdump -> /share/NAME.pcap, returns once capturing
#   pcap_stop NAME              stop that capture (flushes the file)
#   siw_reload [k=v ...]        reload siw (params variant) with new module params and
#                               recreate the RDMA links
# /share/listen.txt is kept up to date with the guest's listening TCP sockets
# (local addresses, one per line) while cmd.sh runs (lib.sh guest_wait_listen).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
echo /sbin/modprobe >/proc/sys/kernel/modprobe

ip() { /bin/ip "$@"; }
modprobe() { /sbin/modprobe "$@"; }
insmod() { /sbin/insmod "$@"; }
rmmod() { /sbin/rmmod "$@"; }
lsmod() { /sbin/lsmod "$@"; }
modinfo() { /sbin/modinfo "$@"; }
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "SIW-GUEST: $* (uptime $(up)s)"; }
SETUP_ERR=""
fail() { say "SETUP-FAILED: $*"; SETUP_ERR="$SETUP_ERR$*; "; }

mark() {
  printf '%s\n' "${2:-$(up)}" >"/share/.$1.tmp" && mv -f "/share/.$1.tmp" "/share/$1"
}
wait_host() {
  _n=0; _max=$(( ${2:-60} * 10 ))
  while [ ! -e "/share/$1" ]; do
    _n=$((_n + 1)); [ "$_n" -gt "$_max" ] && { say "wait_host $1: timeout"; return 1; }
    sleep 0.1
  done
}
listening() { netstat -ltn 2>/dev/null | awk 'NR > 2 { print $4 }' | sort; }
wait_listen() {
  _n=0; _max=$(( ${2:-30} * 10 ))
  while ! listening | grep -q ":$1\$"; do
    _n=$((_n + 1)); [ "$_n" -gt "$_max" ] && { say "wait_listen $1: timeout"; return 1; }
    sleep 0.1
  done
}
pcap_start() {
  _name=$1; _if=$2; shift 2
  tcpdump -Z root -U --immediate-mode -i "$_if" -s 0 -w "/share/$_name.pcap" "$@" 2>"/tmp/pcap-$_name.err" &
  echo $! >"/tmp/pcap-$_name.pid"
  _n=0
  while ! grep -q 'listening on' "/tmp/pcap-$_name.err" 2>/dev/null; do
    _n=$((_n + 1))
    if [ "$_n" -gt 200 ] || ! kill -0 "$(cat "/tmp/pcap-$_name.pid")" 2>/dev/null; then
      say "pcap_start $_name: tcpdump did not start"; cat "/tmp/pcap-$_name.err"; return 1
    fi
    sleep 0.1
  done
}
pcap_stop() {
  [ -f "/tmp/pcap-$1.pid" ] || return 0
  _p=$(cat "/tmp/pcap-$1.pid"); rm -f "/tmp/pcap-$1.pid"
  kill -INT "$_p" 2>/dev/null
  _n=0
  while kill -0 "$_p" 2>/dev/null; do
    _n=$((_n + 1)); [ "$_n" -gt 100 ] && { kill -9 "$_p" 2>/dev/null; break; }
    sleep 0.1
  done
  wait "$_p" 2>/dev/null
  tail -2 "/tmp/pcap-$1.err"
}
siw_links() {
  rdma link add siw0 type siw netdev eth0 || fail "rdma link add siw0"
  rdma link add siw_lo type siw netdev lo || fail "rdma link add siw_lo"
  if [ -n "${IP2:-}" ] && [ -e /sys/class/net/eth1 ]; then
    rdma link add siw1 type siw netdev eth1 || fail "rdma link add siw1"
  fi
}
siw_params() {
  for _p in /sys/module/siw/parameters/*; do
    [ -e "$_p" ] && printf '%s=%s ' "${_p##*/}" "$(cat "$_p")"
  done
  echo
}
siw_reload() {
  for _l in siw0 siw_lo siw1; do rdma link delete "$_l" 2>/dev/null; done
  rmmod siw || { say "siw_reload: rmmod siw failed"; return 1; }
  insmod /lib/siw/params/siw.ko "$@" || { say "siw_reload: insmod failed: $*"; return 1; }
  SETUP_ERR=""; siw_links
  [ -z "$SETUP_ERR" ] || return 1
  say "siw reloaded (params variant): $(siw_params)"
}

# defaults, overridden by /share/guest.conf
VARIANT=pristine; PARAMS=""; IP2=""; PCAP_IFACES=""; PCAP_FILTER=""; LISTEN_WATCH=1
say "init start, kernel $(uname -r)"

for m in virtio_pci virtio_net 9pnet_virtio 9p; do modprobe "$m" || fail "modprobe $m"; done
mkdir -p /share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /share || fail "mount 9p share"
# shellcheck disable=SC1091
[ -f /share/guest.conf ] && . /share/guest.conf

ip link set lo up
{ ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; } ||
  fail "eth0 config"
if [ -n "$IP2" ]; then
  if [ -e /sys/class/net/eth1 ]; then
    { ip link set eth1 up && ip addr add "$IP2" dev eth1; } || fail "eth1 config"
  else
    fail "IP2 set but no eth1"
  fi
fi

for m in crc32c_generic libcrc32c ib_core ib_uverbs iw_cm ib_cm rdma_cm rdma_ucm; do
  modprobe "$m" || fail "modprobe $m"
done
# shellcheck disable=SC2086
insmod "/lib/siw/$VARIANT/siw.ko" $PARAMS || fail "insmod siw ($VARIANT) $PARAMS"
# the kernel only warns about unknown parameters: check every requested k=v took effect
for kv in $PARAMS; do
  k=${kv%%=*}; v=${kv#*=}; f=/sys/module/siw/parameters/$k
  if [ ! -e "$f" ]; then fail "siw has no parameter $k"; continue; fi
  case "$v" in 1|y|Y|true) v=Y;; 0|n|N|false) v=N;; esac
  [ "$(cat "$f")" = "$v" ] || fail "siw parameter $k is $(cat "$f"), wanted $v"
done
siw_links
# shellcheck disable=SC3045  # busybox ash has ulimit -l
ulimit -l unlimited
echo "siw variant=$VARIANT params: $(siw_params)"
ip -br addr
rdma link show
ibv_devices

if [ -n "$SETUP_ERR" ]; then
  mark setup-failed "$SETUP_ERR"
  rc=126
else
  for i in $PCAP_IFACES; do
    # shellcheck disable=SC2086
    pcap_start "$i" "$i" $PCAP_FILTER || fail "pcap on $i"
  done
  if [ "$LISTEN_WATCH" = 1 ]; then
    ( old=x
      while :; do
        new=$(listening)
        if [ "$new" != "$old" ]; then
          printf '%s\n' "$new" >/share/.listen.tmp && mv -f /share/.listen.tmp /share/listen.txt
          old=$new
        fi
        sleep 0.2
      done ) &
    WATCH_PID=$!
  fi
  mark ready
  say "READY variant=$VARIANT params='$PARAMS'"
  cd /share || exit 1
  say "CMD-BEGIN"
  if [ -f /share/cmd.sh ]; then
    # shellcheck disable=SC1091
    ( . /share/cmd.sh )
    rc=$?
  else
    echo "no /share/cmd.sh"; rc=127
  fi
  cd / || exit 1
  say "CMD-END rc=$rc"
  [ -n "${WATCH_PID:-}" ] && { kill "$WATCH_PID" 2>/dev/null; wait "$WATCH_PID" 2>/dev/null; rm -f /share/.listen.tmp; }
  for i in $PCAP_IFACES; do pcap_stop "$i"; done
fi
dmesg >/share/dmesg.txt 2>/dev/null
mark rc "$rc"
say "CMD-RC=$rc"
sync
umount /share 2>/dev/null
say "POWEROFF"
poweroff -f
