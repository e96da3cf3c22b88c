"""Network namespaces for the fault and soak tests (python3 standard library only).

A topology is three namespaces joined by two veth pairs:

    <p>s (server)  vs 10.231.1.1 --- ms 10.231.1.2  <p>m (middle, routes)  mc 10.231.2.2 --- vc 10.231.2.1  <p>c (client)

The middle namespace forwards between the two links; the faults are applied there (nftables
in its forward hook, tbf on its egress, links going down), so the endpoints' stacks are
untouched. All addresses live inside the namespaces; the host's interfaces are never touched.
Names carry the creating process id; namespaces left over by a process that no longer exists
(a run killed with SIGKILL) are removed by the next run.
"""
import atexit
import ctypes
import os
import re
import signal
import subprocess
import sys

PREFIX = "siwf"
SERVER_IP = "10.231.1.1"
MIDDLE_S_IP = "10.231.1.2"
MIDDLE_C_IP = "10.231.2.2"
CLIENT_IP = "10.231.2.1"


class SkipTest(Exception):
    pass


_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when this process dies (even by SIGKILL, e.g. a
    CTest timeout), so no test program outlives its harness. Survives exec (ip netns exec,
    siw-run both exec)."""
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run(cmd, check=True, quiet=False, input=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r


def need_root_and_tools(tools=("ip",)):
    if os.geteuid() != 0:
        raise SkipTest("needs root (network namespaces); run as root or skip")
    for t in tools:
        if not any(os.access(os.path.join(d, t), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":")
                   + ["/usr/sbin", "/sbin"]):
            raise SkipTest("%s is not installed" % t)


def reap_stale():
    """Removes namespaces of earlier runs whose process is gone."""
    r = run(["ip", "netns", "list"], check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^%s(\d+)x(\d+)[smc]$" % PREFIX, name)
        if not m:
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        run(["ip", "netns", "del", name], check=False)


_live = []


def _cleanup_all():
    for t in list(_live):
        t.destroy()


def _on_signal(sig, frame):
    _cleanup_all()
    sys.exit(128 + sig)


atexit.register(_cleanup_all)
for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_s, _on_signal)
    except (ValueError, OSError):
        pass

_seq = [0]


class Topology:
    def __init__(self):
        _seq[0] += 1
        base = "%s%dx%d" % (PREFIX, os.getpid(), _seq[0])
        self.s, self.m, self.c = base + "s", base + "m", base + "c"
        self.procs = []
        self.created = []
        _live.append(self)
        try:
            self._create()
        except Exception:
            self.destroy()
            raise

    def _create(self):
        for ns in (self.s, self.m, self.c):
            r = run(["ip", "netns", "add", ns], check=False)
            if r.returncode != 0:
                raise SkipTest("cannot create a network namespace (%s)" % r.stderr.strip())
            self.created.append(ns)
        run(["ip", "link", "add", "vs", "netns", self.s, "type", "veth", "peer", "name", "ms",
             "netns", self.m])
        run(["ip", "link", "add", "vc", "netns", self.c, "type", "veth", "peer", "name", "mc",
             "netns", self.m])
        self.ip(self.s, "addr", "add", SERVER_IP + "/24", "dev", "vs")
        self.ip(self.m, "addr", "add", MIDDLE_S_IP + "/24", "dev", "ms")
        self.ip(self.m, "addr", "add", MIDDLE_C_IP + "/24", "dev", "mc")
        self.ip(self.c, "addr", "add", CLIENT_IP + "/24", "dev", "vc")
        for ns, devs in ((self.s, ("lo", "vs")), (self.m, ("lo", "ms", "mc")),
                         (self.c, ("lo", "vc"))):
            for d in devs:
                self.ip(ns, "link", "set", d, "up")
        self.ip(self.s, "route", "add", "default", "via", MIDDLE_S_IP)
        self.ip(self.c, "route", "add", "default", "via", MIDDLE_C_IP)
        self.sh(self.m, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    def ip(self, ns, *args, check=True):
        return run(["ip", "-n", ns] + list(args), check=check)

    def sh(self, ns, cmd, check=True, input=None):
        return run(["ip", "netns", "exec", ns] + list(cmd), check=check, input=input)

    def tc(self, ns, *args, check=True):
        return run(["tc", "-n", ns] + list(args), check=check)

    def nft(self, ns, script):
        return self.sh(ns, ["nft", "-f", "-"], input=script)

    def popen(self, ns, cmd, env=None, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(cmd), env=env,
                             preexec_fn=die_with_parent, **kw)
        self.procs.append(p)
        return p

    # ---- faults (all in the middle namespace) ----
    def loss(self, percent):
        self.nft(self.m, """
table inet siwfault {
    chain filt { type filter hook forward priority 0; policy accept;
        numgen random mod 100 < %d drop
    }
}
""" % percent)

    def partition(self, on=True):
        if on:
            self.nft(self.m, """
table inet siwpart {
    chain filt { type filter hook forward priority -10; policy drop; }
}
""")
        else:
            self.sh(self.m, ["nft", "delete", "table", "inet", "siwpart"], check=False)

    def tbf(self, rate, burst="64kb", latency="200ms", change=False):
        for dev in ("ms", "mc"):
            self.tc(self.m, "qdisc", "change" if change else "add", "dev", dev, "root", "tbf",
                    "rate", rate, "burst", burst, "latency", latency)

    def link(self, up):
        self.ip(self.m, "link", "set", "mc", "up" if up else "down")

    def destroy(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except Exception:
                pass
        self.procs = []
        for ns in self.created:
            run(["ip", "netns", "del", ns], check=False)
        self.created = []
        if self in _live:
            _live.remove(self)
