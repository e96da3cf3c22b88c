#!/usr/bin/env python3
"""Network-fault tests: softiwarp connections between two network namespaces, faults in a third.

    run_faults.py --xfer BUILD/tests/faults/xfer --siw-run BUILD/bin/siw-run [--case NAME...]
                  [--group NAME] [--list] [--long] [--report FILE] [--preload LIB] [--no-rping]

Each case builds a fresh topology (netns.py: server and client namespaces, faults applied in
the middle one), runs the workload (xfer: WRITE/SEND/READ with end-to-end checksums, or
Debian's rping -V) under siw-run, injects its fault, and checks the outcome:

  complete  the transfer finishes with every byte verified on both sides;
  fail      the sides named fail within the case's bound after the fault: every posted work
            request completed (flushed), a DISCONNECTED event came, the process exited by
            itself, no checksum mismatch was reported as success;
  detect    (corruption without MPA CRC) the application's checksum catches the bad byte and
            the connection then ends cleanly.

In every case: no process hangs (each is bounded), no sanitizer report (ASan/LSan/UBSan/TSan
output in stderr fails the case). --long (or SIW_FAULTS_LONG=1) moves more data and repeats
the failure cases. --report FILE (or SIW_FAULTS_REPORT_DIR=DIR) writes every case's figures
as JSON. Exit status: 0 all passed, 1 a case failed, 77 skipped (not root, no network
namespaces, a tool missing).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import SERVER_IP, MIDDLE_C_IP, SkipTest  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = 7471
RELAY_PORT = 7472
LONG = os.environ.get("SIW_FAULTS_LONG", "0") not in ("", "0")

# Short TCP liveness settings (engine: SIW_TCP_*): a dead peer is found in ~2 + 3 x 1 s when
# idle, after 5 s of unacknowledged data otherwise.
FAST_LIVENESS = {
    "SIW_TCP_KEEPIDLE": "2",
    "SIW_TCP_KEEPINTVL": "1",
    "SIW_TCP_KEEPCNT": "3",
    "SIW_TCP_USER_TIMEOUT_MS": "5000",
}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


def now_ms():
    return int(time.time() * 1000)


class Case:
    def __init__(self, name, group, desc, expect, **kw):
        self.name = name
        self.group = group
        self.desc = desc
        self.expect = expect                  # complete | fail | detect
        self.app = kw.pop("app", "xfer")
        self.mib = kw.pop("mib", 16)
        self.chunk = kw.pop("chunk", 65536)
        self.depth = kw.pop("depth", 8)
        self.ops = kw.pop("ops", "wsr")
        self.env = kw.pop("env", {})
        self.client_args = kw.pop("client_args", [])
        self.server_args = kw.pop("server_args", [])
        self.static = kw.pop("static", None)  # ("loss", pct) | ("tbf", ...)
        self.fault = kw.pop("fault", None)    # flap | partition | idle_partition | kill_server | kill_client
        self.trigger = kw.pop("trigger", 4 << 20)  # client bytes verified before the fault
        self.fault_seconds = kw.pop("fault_seconds", 3.0)
        self.relay = kw.pop("relay", None)    # dict of relay.py options
        self.fail_sides = kw.pop("fail_sides", ("client", "server"))
        self.stack_detects = kw.pop("stack_detects", self.fail_sides)
        self.bound_s = kw.pop("bound_s", 15.0)
        self.min_duration_s = kw.pop("min_duration_s", 0.0)
        self.timeout_s = kw.pop("timeout_s", 90.0)
        self.rping = kw.pop("rping", None)    # (size, count)
        self.expect_term = kw.pop("expect_term", None)  # (layer, etype, ecode)
        self.repeat = kw.pop("repeat", 1)
        self.conns = kw.pop("conns", 1)
        self.fail_conns = kw.pop("fail_conns", None)  # with conns > 1: how many must fail
        if kw:
            raise TypeError("unknown case options %s" % list(kw))


def cases():
    big = 4 if LONG else 1
    rep = 3 if LONG else 1
    L = []
    # --- loss, rate, link ---
    L.append(Case("loss1", "loss", "1% random loss in both directions (nftables numgen)",
                  "complete", mib=64 * big, static=("loss", 1)))
    L.append(Case("loss5", "loss", "5% random loss in both directions", "complete",
                  mib=16 * big, static=("loss", 5), timeout_s=150))
    L.append(Case("tbf_bursty", "loss", "tbf 20 Mbit/s, burst 64 KiB, 200 ms queue; the rate "
                  "switches between 4 and 40 Mbit/s every 0.5 s", "complete", mib=6 * big,
                  static=("tbf",), timeout_s=150))
    L.append(Case("link_flap", "link", "the client-side link goes down for 3 s mid-transfer "
                  "and comes back (TCP retransmits)", "complete", mib=512 * big, fault="flap",
                  fault_seconds=3.0, min_duration_s=3.0))
    L.append(Case("link_flap_long", "link", "link down for 12 s (default TCP user timeout "
                  "60 s: the transfer must survive)", "complete", mib=512 * big, fault="flap",
                  fault_seconds=12.0, min_duration_s=12.0, timeout_s=120))
    # --- dead peers ---
    L.append(Case("partition_active", "link", "all packets dropped for good while data flows; "
                  "short keepalive/user timeout (5 s)", "fail", mib=256, fault="partition",
                  env=FAST_LIVENESS, bound_s=14.0, repeat=rep))
    L.append(Case("partition_idle", "link", "all packets dropped while the connection is idle "
                  "(only keepalive can tell: idle 2 s + 3 x 1 s)", "fail", mib=8,
                  fault="idle_partition", env=FAST_LIVENESS, bound_s=14.0,
                  client_args=["--pause-at", "16", "--pause-seconds", "60"], repeat=rep))
    L.append(Case("kill_server", "peer", "server SIGKILLed mid-transfer", "fail", mib=256,
                  fault="kill_server", fail_sides=("client",), bound_s=5.0, repeat=rep))
    L.append(Case("kill_server_multi", "peer", "64 connections in one process pair, server "
                  "SIGKILLed: every client connection must flush and disconnect", "fail",
                  mib=64, conns=64, fault="kill_server", fail_sides=("client",), trigger=32 << 20,
                  bound_s=8.0, client_args=["--threads", "2"], server_args=["--threads", "2"]))
    L.append(Case("client_abort", "peer", "the client destroys its QP and id with work in "
                  "flight, without rdma_disconnect (no crash, no leak); the server must fail "
                  "with flush and DISCONNECTED", "fail", mib=256, fault="abort",
                  client_args=["--abort-at", "64"], fail_sides=("server",), trigger=0,
                  bound_s=5.0, repeat=rep))
    L.append(Case("emfile_server", "peer", "server limited to 64 descriptors, 100 connections "
                  "at once: those it cannot take are rejected cleanly (EMFILE on accept), the "
                  "others complete; no leak, no hang", "partial", mib=0, conns=100, chunk=4096,
                  depth=2, server_args=["--nofile", "64"], client_args=["--seconds", "3"],
                  # Requests the server cannot take at once can wait until its first
                  # connections end: 3 s of data, but one run under ASan beside other tests
                  # took 23 s, past the 10 s MPA reply timeout, and 7 replies crossing the
                  # client's give-up failed those connections on both sides.
                  env={"SIW_MPA_TIMEOUT_MS": "30000"}))
    L.append(Case("kill_client", "peer", "client SIGKILLed mid-transfer", "fail", mib=256,
                  fault="kill_client", fail_sides=("server",), bound_s=5.0, repeat=rep))
    L.append(Case("peer_sigstop", "peer", "server SIGSTOPped for 5 s mid-transfer (its TCP "
                  "keeps acknowledging, windows close), then SIGCONT: the transfer completes",
                  "complete", mib=512 * big, fault="sigstop", fault_seconds=5.0,
                  min_duration_s=5.0))
    L.append(Case("partition_connect", "peer", "partition before the client connects: TCP "
                  "connect must fail within the CM's 10 s bound (UNREACHABLE)", "connect_fail",
                  mib=8, fault="partition_early", bound_s=13.0))
    L.append(Case("loss5_multi", "loss", "5% loss, 16 connections at once (one process pair)",
                  "complete", mib=2 * big, conns=16, static=("loss", 5), timeout_s=150))
    L.append(Case("churn_loss5", "loss", "300 short connections (8 at a time, 2 rounds "
                  "each) through 5% loss: MPA exchanges and closes under retransmissions",
                  "complete", mib=0, conns=300, static=("loss", 5), chunk=4096, depth=2,
                  env={"SIW_MPA_TIMEOUT_MS": "20000"},
                  client_args=["--parallel", "8", "--rounds", "2"], timeout_s=150))
    # --- relay faults ---
    L.append(Case("mpa_blackhole", "relay", "TCP connects but the relay never passes the MPA "
                  "request: the server's MPA request timeout (5 s) closes its side, the relay "
                  "passes that on as a reset, the client's connect fails (else its 10 s MPA "
                  "reply timeout would)",
                  "connect_fail", mib=8, relay={"mode": "blackhole", "after": 0},
                  bound_s=13.0))
    L.append(Case("relay_delay", "relay", "user-space relay adding 20 ms to every chunk",
                  "complete", mib=8 * big, relay={"mode": "delay", "delay_ms": 20}))
    L.append(Case("relay_stall_short", "relay", "relay stops reading both ways for 4 s "
                  "(zero windows), then goes on", "complete", mib=16 * big,
                  relay={"mode": "stall", "seconds": 4}, min_duration_s=4.0))
    L.append(Case("relay_reset", "relay", "relay resets both TCP connections mid-transfer",
                  "fail", mib=256, relay={"mode": "reset"}, bound_s=5.0, repeat=rep))
    L.append(Case("relay_halfopen", "relay", "relay resets the server side; the client side "
                  "stays open and silent (half-open). TCP cannot tell (the relay's kernel "
                  "answers every zero-window probe), so the client's 8 s watchdog gives up: "
                  "rdma_disconnect must flush and bring DISCONNECTED",
                  "fail", mib=256, relay={"mode": "halfopen"}, env=FAST_LIVENESS,
                  client_args=["--stall-timeout", "8"], stack_detects=("server",),
                  bound_s=16.0))
    L.append(Case("relay_blackhole", "relay", "relay stops reading both ways for good; both "
                  "applications give up after 8 s without progress (rdma_disconnect) and must "
                  "get their flush and DISCONNECTED", "fail", mib=256,
                  relay={"mode": "blackhole"}, env=FAST_LIVENESS,
                  client_args=["--stall-timeout", "8"], server_args=["--stall-timeout", "8"],
                  stack_detects=(), bound_s=18.0))
    # --- corruption ---
    crc = dict(FAST_LIVENESS, SIW_MPA_CRC="require")
    L.append(Case("corrupt_crc_c2s", "crc", "MPA CRC on; relay flips a payload byte of a "
                  "client->server FPDU: the server must send the CRC TERMINATE, both fail",
                  "fail", mib=256, env=crc, relay={"mode": "corrupt", "direction": "c2s"},
                  expect_term=(2, 0, 2), bound_s=5.0, repeat=rep))
    L.append(Case("corrupt_crc_s2c", "crc", "MPA CRC on; a payload byte of a server->client "
                  "FPDU (READ response) flipped: the client terminates", "fail", mib=256,
                  env=crc, relay={"mode": "corrupt", "direction": "s2c"}, ops="r",
                  expect_term=(2, 0, 2), bound_s=5.0, repeat=rep))
    L.append(Case("corrupt_crc_multi", "crc", "MPA CRC on, 8 connections through the relay, "
                  "one corrupted: it fails, the other 7 complete with verified data", "fail",
                  mib=64, conns=8, fail_conns=1, env=crc,
                  client_args=["--threads", "2"], server_args=["--threads", "2"],
                  relay={"mode": "corrupt", "direction": "c2s", "only_conn": 1},
                  expect_term=(2, 0, 2), bound_s=60.0))
    L.append(Case("corrupt_nocrc", "crc", "no MPA CRC; a payload byte flipped by a middlebox "
                  "passes TCP and DDP: the application's checksum must catch it", "detect",
                  mib=256, env=FAST_LIVENESS, relay={"mode": "corrupt", "direction": "c2s"},
                  bound_s=20.0))
    # --- rping (Debian's rdma-core) ---
    L.append(Case("rping_loss5", "rping", "rping -V 16 KiB x 300 through 5% loss", "complete",
                  app="rping", rping=(16384, 300 * big), static=("loss", 5), timeout_s=150))
    L.append(Case("rping_tbf", "rping", "rping -V 64000 B x 100 over the bursty tbf link",
                  "complete", app="rping", rping=(64000, 100 * big), static=("tbf",),
                  timeout_s=150))
    L.append(Case("rping_flap", "rping", "rping -V 4 KiB x 2000, link down 3 s meanwhile",
                  "complete", app="rping", rping=(4096, 2000), fault="flap", fault_seconds=3.0,
                  trigger=0, timeout_s=120))
    L.append(Case("rping_kill_server", "rping", "rping server SIGKILLed: the client must exit "
                  "by itself, promptly", "fail", app="rping", rping=(4096, 1000000),
                  fault="kill_server", fail_sides=("client",), trigger=0, bound_s=8.0))
    L.append(Case("rping_partition", "rping", "rping under a partition with short keepalive: "
                  "both sides must exit by themselves", "fail", app="rping",
                  rping=(4096, 1000000), fault="partition", env=FAST_LIVENESS, trigger=0,
                  bound_s=16.0))
    return L


# ---------------------------------------------------------------------------------------------

class Proc:
    """A process in a namespace whose stdout lines are collected (and watched) by a thread."""

    def __init__(self, topo, ns, name, cmd, env, workdir, on_line=None):
        self.name = name
        self.lines = []
        self.on_line = on_line
        self.err_path = os.path.join(workdir, name + ".err")
        self.out_path = os.path.join(workdir, name + ".out")
        self.err = open(self.err_path, "w")
        self.out = open(self.out_path, "w")
        self.t_start = now_ms()
        self.t_exit = None
        self.p = topo.popen(ns, cmd, env=env, stdout=subprocess.PIPE, stderr=self.err, text=True,
                            bufsize=1)
        self.pid = self.p.pid
        self.cv = threading.Condition()
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    def _read(self):
        for line in self.p.stdout:
            self.out.write(line)
            self.out.flush()
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()
            if self.on_line:
                try:
                    self.on_line(self, line)
                except Exception as e:  # a broken hook must not kill the reader
                    sys.stderr.write("hook: %r\n" % e)
        self.p.wait()
        self.t_exit = now_ms()
        with self.cv:
            self.cv.notify_all()

    def wait_line(self, pred, timeout):
        end = time.time() + timeout
        with self.cv:
            while True:
                for ln in self.lines:
                    if pred(ln):
                        return ln
                if self.p.poll() is not None and not self.th.is_alive():
                    return None
                left = end - time.time()
                if left <= 0:
                    return None
                self.cv.wait(min(left, 0.2))

    def json_events(self, kind=None):
        out = []
        for ln in list(self.lines):
            if not ln.startswith("{"):
                continue
            try:
                j = json.loads(ln)
            except ValueError:
                continue
            if kind is None or j.get("event") == kind:
                out.append(j)
        return out

    def result(self):
        r = self.json_events("result")
        return r[-1] if r else None

    def join(self, timeout):
        self.th.join(timeout)
        return not self.th.is_alive()

    def kill(self, sig=signal.SIGKILL):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def stderr_text(self):
        self.err.flush()
        with open(self.err_path, errors="replace") as f:
            return f.read()


class Runner:
    def __init__(self, a):
        self.a = a
        self.base_env = dict(os.environ)
        self.base_env.setdefault("SIW_LOG_LEVEL", "1")
        if a.preload:
            self.preload_env = {"LD_PRELOAD": a.preload,
                                "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}
        else:
            self.preload_env = {}

    def env(self, case, app):
        e = dict(self.base_env)
        e.update(case.env)
        if app == "rping":
            e.update(self.preload_env)
        return e

    def run_case(self, case, rnd):
        res = {"case": case.name, "group": case.group, "expect": case.expect, "round": rnd,
               "desc": case.desc, "problems": []}
        workdir = tempfile.mkdtemp(prefix="siwf-%s-" % case.name)
        res["logs"] = workdir
        topo = netns.Topology()
        procs = {}
        try:
            self._run(case, topo, procs, res, workdir)
        except SkipTest:
            raise
        except Exception as e:  # a harness error is a failure of the case
            res["problems"].append("harness: %r" % e)
        finally:
            for p in procs.values():
                if p.p.poll() is None:
                    p.kill()
            topo.destroy()
        res["status"] = "pass" if not res["problems"] else "FAIL"
        if res["status"] == "pass" and not self.a.keep_logs:
            for f in os.listdir(workdir):
                os.unlink(os.path.join(workdir, f))
            os.rmdir(workdir)
            res.pop("logs")
        return res

    # ---- one run ----
    def _run(self, case, topo, procs, res, workdir):
        prob = res["problems"]
        if case.static and case.static[0] == "loss":
            topo.loss(case.static[1])
        tbf_stop = threading.Event()
        if case.static and case.static[0] == "tbf":
            topo.tbf("20mbit", "64kb", "200ms")
            threading.Thread(target=self._tbf_flipper, args=(topo, tbf_stop), daemon=True).start()
        try:
            if case.app == "rping":
                self._run_rping(case, topo, procs, res, workdir)
            else:
                self._run_xfer(case, topo, procs, res, workdir)
        finally:
            tbf_stop.set()
        for name, p in procs.items():
            txt = p.stderr_text()
            for mark in SANITIZER_MARKS:
                if mark in txt:
                    prob.append("%s: sanitizer report (%s), see %s" % (name, mark, p.err_path))
                    break

    @staticmethod
    def _tbf_flipper(topo, stop):
        fast = False
        while not stop.wait(0.5):
            fast = not fast
            try:
                topo.tbf("40mbit" if fast else "4mbit", "64kb", "200ms", change=True)
            except Exception:
                return

    def _inject(self, case, topo, procs, res, ready):
        """Waits for the trigger, then applies the case's fault; records t_fault."""
        f = case.fault
        if f is None or f in ("partition_early", "abort"):
            return
        if not ready.wait(case.timeout_s):
            return
        res["t_fault_ms"] = now_ms()
        if f == "flap":
            topo.link(False)
            time.sleep(case.fault_seconds)
            topo.link(True)
            res["t_fault_end_ms"] = now_ms()
        elif f in ("partition", "idle_partition"):
            topo.partition(True)
        elif f == "sigstop":
            procs["server"].kill(signal.SIGSTOP)
            time.sleep(case.fault_seconds)
            procs["server"].kill(signal.SIGCONT)
            res["t_fault_end_ms"] = now_ms()
        elif f == "kill_server":
            procs["server"].kill()
        elif f == "kill_client":
            procs["client"].kill()

    def _xfer_cmd(self, role, case, extra):
        cmd = [self.a.siw_run, self.a.xfer, role, "--chunk", str(case.chunk), "--depth",
               str(case.depth), "--progress-ms", "50", "--timeout", str(case.timeout_s)]
        return cmd + extra

    def _run_xfer(self, case, topo, procs, res, workdir):
        prob = res["problems"]
        env = self.env(case, "xfer")
        srv = Proc(topo, topo.s, "server", self._xfer_cmd(
            "server", case, ["--bind", SERVER_IP, "--port", str(PORT), "--conns",
                             str(case.conns)] + case.server_args),
            env, workdir)
        procs["server"] = srv
        if not srv.wait_line(lambda ln: '"listening"' in ln, 15):
            prob.append("server did not listen: %s" % srv.stderr_text()[-500:])
            return
        target_ip, target_port = SERVER_IP, PORT
        relay = None
        if case.fault == "partition_early":
            topo.partition(True)
            res["t_fault_ms"] = now_ms()
        if case.relay:
            r = case.relay
            cmd = [sys.executable, os.path.join(HERE, "relay.py"), "--listen",
                   "%s:%d" % (MIDDLE_C_IP, RELAY_PORT), "--connect", "%s:%d" % (SERVER_IP, PORT),
                   "--mode", r["mode"], "--after", str(r.get("after", case.trigger))]
            for k in ("seconds", "delay_ms", "direction", "only_conn"):
                if k in r:
                    cmd += ["--" + k.replace("_", "-"), str(r[k])]
            relay = Proc(topo, topo.m, "relay", cmd, dict(os.environ), workdir)
            procs["relay"] = relay
            if not relay.wait_line(lambda ln: '"ready"' in ln, 15):
                prob.append("relay did not start: %s" % relay.stderr_text()[-500:])
                return
            target_ip, target_port = MIDDLE_C_IP, RELAY_PORT

        ready = threading.Event()

        def watch(p, line):
            if case.fault == "idle_partition":
                if '"paused"' in line:
                    ready.set()
                return
            if '"progress"' in line:
                try:
                    j = json.loads(line)
                    # with several connections, only once all of them are up
                    if j["bytes"] >= case.trigger and \
                            j["connected"] + j["finished"] >= case.conns:
                        ready.set()
                except (ValueError, KeyError):
                    pass

        cl = Proc(topo, topo.c, "client", self._xfer_cmd(
            "client", case, ["--addr", target_ip, "--port", str(target_port)]
            + (["--mib", str(case.mib)] if case.mib else [])
            + ["--ops", case.ops, "--conns", str(case.conns)] + case.client_args),
            env, workdir, on_line=watch)
        procs["client"] = cl
        inj = threading.Thread(target=self._inject, args=(case, topo, procs, res, ready),
                               daemon=True)
        inj.start()
        deadline = time.time() + case.timeout_s + 15
        for p in (cl, srv):
            if p is srv and case.expect in ("connect_fail", "partial"):
                srv.kill(signal.SIGTERM)   # it never got a connection to serve
            if not p.join(max(1, deadline - time.time())):
                prob.append("HANG: %s still running after %.0f s" % (p.name, case.timeout_s + 15))
                p.kill(signal.SIGABRT)
                p.join(5)
        ready.set()
        inj.join(case.fault_seconds + 5)
        if relay:
            relay.kill(signal.SIGTERM)
            relay.join(5)
            faults = relay.json_events("fault")
            if faults:
                res["t_fault_ms"] = faults[0]["t_ms"]
                res["relay_fault"] = faults[0]
            terms = relay.json_events("terminate")
            if terms:
                res["terminates"] = terms
        if case.fault == "abort":
            ev = [e for e in cl.json_events("conn") if e.get("outcome") == "aborted"]
            if ev:
                res["t_fault_ms"] = ev[0]["t_fail_ms"]
        self._check_xfer(case, res, srv, cl)

    def _check_xfer(self, case, res, srv, cl):
        prob = res["problems"]
        t_fault = res.get("t_fault_ms")
        killed = {"kill_server": "server", "kill_client": "client"}.get(case.fault)
        sides = {"server": srv, "client": cl}
        n = case.conns
        if (case.fault or case.relay and case.relay["mode"] not in ("delay", "pass")) and \
                t_fault is None:
            prob.append("the fault never happened (trigger not reached)")
        for name, p in sides.items():
            r = p.result()
            rc = p.p.returncode
            info = {"rc": rc}
            res[name] = info
            if name == killed:
                if rc != -signal.SIGKILL:
                    prob.append("%s was to be killed, exit %s" % (name, rc))
                continue
            if r is None:
                prob.append("%s: no result (exit %s)" % (name, rc))
                continue
            for k in ("ok", "failed", "stalled", "corrupt", "connect_failed", "not_flushed",
                      "no_disconnect", "disc_unprompted", "bytes_verified", "peer_bytes",
                      "elapsed_ms", "mib_per_s", "wc_status", "timed_out", "first_fail_ms",
                      "last_fail_ms", "last_disc_ms", "t_end_ms", "fds", "rss_kb"):
                info[k] = r.get(k)
            conns = p.json_events("conn")
            if conns:
                info["conn"] = conns[-1]
            if r.get("timed_out"):
                prob.append("%s: its own --timeout expired (stuck connection)" % name)
            if case.fault == "abort" and name == "client":
                if r["aborted"] != n:
                    prob.append("client: %d of %d connections aborted" % (r["aborted"], n))
                if rc != 1:
                    prob.append("client: exit status %s" % rc)
                continue
            if case.expect == "partial":
                # some connects refused, every connection that came up completes
                if r["ok"] < 1 or r["failed"] or r["stalled"] or r["corrupt"]:
                    prob.append("%s: %s" % (name, {k: r[k] for k in ("ok", "failed",
                                "stalled", "corrupt", "connect_failed")}))
                if name == "client" and r["ok"] + r["connect_failed"] != n:
                    prob.append("client: %d ok + %d refused != %d" % (r["ok"],
                                r["connect_failed"], n))
                if name == "server" and r["ok"] != r["opened"]:
                    prob.append("server: %d of %d accepted connections ok" % (r["ok"],
                                                                              r["opened"]))
                info["ok"], info["connect_failed"] = r["ok"], r["connect_failed"]
                continue
            if case.expect == "connect_fail":
                if name == "client":
                    if r["connect_failed"] != n:
                        prob.append("client: %d of %d connects failed (%s)" %
                                    (r["connect_failed"], n, r))
                    if t_fault is not None:
                        info["fault_to_exit_ms"] = r["t_end_ms"] - t_fault
                        if info["fault_to_exit_ms"] > case.bound_s * 1000:
                            prob.append("client: connect failed %d ms after the fault "
                                        "(bound %d)" % (info["fault_to_exit_ms"],
                                                        case.bound_s * 1000))
                continue
            if case.expect == "complete":
                if rc != 0 or r["ok"] != n:
                    prob.append("%s: transfer did not complete (exit %s, %s)" %
                                (name, rc, conns[-1] if conns else r))
                want = n * (case.mib << 20)
                if not case.mib:  # --rounds R of one chunk each
                    want = n * case.chunk * int(case.client_args[case.client_args.index(
                        "--rounds") + 1])
                if name == "client" and r["bytes_verified"] != want:
                    prob.append("client verified %d bytes, expected %d" %
                                (r["bytes_verified"], want))
                if name == "server" and r["peer_bytes"] != want:
                    prob.append("server: client reported %s bytes" % r["peer_bytes"])
                if case.min_duration_s and r["elapsed_ms"] < case.min_duration_s * 1000:
                    prob.append("%s: finished in %d ms, faster than the fault lasted" %
                                (name, r["elapsed_ms"]))
                continue
            # fail / detect
            if name not in case.fail_sides and case.expect == "fail":
                continue
            bad = r["failed"] + r["stalled"] + r["corrupt"]
            must_fail = case.fail_conns if case.fail_conns is not None else n
            if r["corrupt"] and case.expect != "detect":
                prob.append("%s: checksum mismatch reported" % name)
            if bad != must_fail:
                prob.append("%s: %d connections failed, expected %d" % (name, bad, must_fail))
            if r["ok"] != n - must_fail:
                prob.append("%s: %d connections completed, expected %d" %
                            (name, r["ok"], n - must_fail))
            if r["connect_failed"]:
                prob.append("%s: %d connects failed" % (name, r["connect_failed"]))
            if r["not_flushed"]:
                prob.append("%s: posted work requests never completed (not flushed)" % name)
            if r["no_disconnect"]:
                prob.append("%s: no DISCONNECTED event" % name)
            if rc not in (1, 2):
                prob.append("%s: exit status %s" % (name, rc))
            if name in case.stack_detects and case.expect == "fail" and r["stalled"]:
                prob.append("%s: only the application's watchdog noticed" % name)
            if t_fault is not None:
                # the bound applies to the failing connections: from the fault to their failure
                # and their DISCONNECTED event, and (single connection) to the process exit
                if r.get("last_fail_ms"):
                    info["fault_to_fail_ms"] = r["last_fail_ms"] - t_fault
                if r.get("last_disc_ms"):
                    info["fault_to_disconnect_ms"] = r["last_disc_ms"] - t_fault
                lat = max(info.get("fault_to_fail_ms", 0), info.get("fault_to_disconnect_ms", 0))
                if n == 1:
                    info["fault_to_exit_ms"] = r["t_end_ms"] - t_fault
                    lat = max(lat, info["fault_to_exit_ms"])
                if lat > case.bound_s * 1000:
                    prob.append("%s: ended %d ms after the fault (bound %d ms)" %
                                (name, lat, case.bound_s * 1000))
        if case.expect == "detect":
            s_ = res.get("server", {})
            c_ = res.get("client", {})
            if not (s_.get("corrupt") or c_.get("corrupt")):
                prob.append("the corrupted byte was not caught by the application checksum "
                            "(server %s, client %s)" % (s_.get("conn"), c_.get("conn")))
        if case.expect_term:
            terms = res.get("terminates", [])
            want = list(case.expect_term)
            if not any([t["layer"], t["etype"], t["ecode"]] == want for t in terms):
                prob.append("no TERMINATE %s seen on the wire (saw %s)" % (want, terms))

    # ---- rping ----
    def _run_rping(self, case, topo, procs, res, workdir):
        prob = res["problems"]
        size, count = case.rping
        env = self.env(case, "rping")
        common = ["-a", SERVER_IP, "-p", str(PORT), "-S", str(size), "-C", str(count), "-V"]
        srv = Proc(topo, topo.s, "server", [self.a.siw_run, "rping", "-s"] + common, env, workdir)
        procs["server"] = srv
        # rping prints nothing when it listens: poll the namespace's listening sockets
        end = time.time() + 15
        while time.time() < end:
            r = topo.sh(topo.s, ["cat", "/proc/net/tcp"], check=False)
            if ":%04X 00000000:0000 0A" % PORT in r.stdout:
                break
            if srv.p.poll() is not None:
                break
            time.sleep(0.05)
        else:
            prob.append("rping server did not listen")
            return
        ready = threading.Event()
        lines_seen = [0]

        def watch(p, line):
            if line.startswith("ping data"):
                lines_seen[0] += 1
                if lines_seen[0] >= 20:
                    ready.set()

        cl = Proc(topo, topo.c, "client", [self.a.siw_run, "rping", "-c", "-v"] + common, env,
                  workdir, on_line=watch)
        procs["client"] = cl
        inj = threading.Thread(target=self._inject, args=(case, topo, procs, res, ready),
                               daemon=True)
        inj.start()
        deadline = time.time() + case.timeout_s
        for p in (cl, srv):
            if not p.join(max(1, deadline - time.time())):
                prob.append("HANG: rping %s still running after %.0f s" % (p.name,
                                                                         case.timeout_s))
                p.kill(signal.SIGABRT)
                p.join(5)
        ready.set()
        inj.join(case.fault_seconds + 5)
        data = [ln for ln in cl.lines if ln.startswith("ping data: rdma-ping-")]
        res["client"] = {"rc": cl.p.returncode, "data_lines": len(data),
                         "t_exit_ms": cl.t_exit}
        res["server"] = {"rc": srv.p.returncode, "t_exit_ms": srv.t_exit}
        # every line in order with rping's pattern
        for i, ln in enumerate(data):
            f = ln.split()
            if len(f) < 4 or f[2] != "rdma-ping-%d:" % i or f[3][0] != chr(65 + i % 58):
                prob.append("client data line %d is wrong: %s" % (i, ln[:80]))
                break
        if case.expect == "complete":
            if cl.p.returncode != 0 or srv.p.returncode != 0:
                prob.append("rping exit: client %s, server %s" % (cl.p.returncode,
                                                                 srv.p.returncode))
            if len(data) != count:
                prob.append("client printed %d data lines, expected %d" % (len(data), count))
            return
        t_fault = res.get("t_fault_ms")
        if t_fault is None:
            prob.append("the fault never happened")
            return
        for name, p in (("client", cl), ("server", srv)):
            if case.fault == "kill_" + name:
                continue
            if name not in case.fail_sides:
                continue
            if p.t_exit is None:
                continue
            lat = p.t_exit - t_fault
            res[name]["fault_to_exit_ms"] = lat
            # rping reports the end ("DISCONNECT EVENT", "wait for ... state 10" = ERROR) but
            # may still exit 0; what matters is that it ends by itself and promptly.
            said = any("DISCONNECT" in ln or "state 10" in ln or "error" in ln.lower()
                       for ln in p.lines if not ln.startswith("ping data"))
            said = said or "DISCONNECT" in p.stderr_text() or "state 10" in p.stderr_text()
            if p.p.returncode == 0 and not said:
                prob.append("rping %s exited 0 without reporting the failure" % name)
            if lat > case.bound_s * 1000:
                prob.append("rping %s exited %d ms after the fault (bound %d ms)" %
                            (name, lat, case.bound_s * 1000))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--xfer")
    ap.add_argument("--siw-run")
    ap.add_argument("--case", action="append", default=[])
    ap.add_argument("--group", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--long", action="store_true")
    ap.add_argument("--report")
    ap.add_argument("--preload", help="LD_PRELOAD for the uninstrumented rping (ASan builds)")
    ap.add_argument("--no-rping", action="store_true", help="skip the rping cases (TSan)")
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--slow", type=float, default=1.0,
                    help="sanitizer builds: bounds and timeouts x FACTOR, data / FACTOR")
    a = ap.parse_args()
    global LONG
    if a.long:
        LONG = True
    all_cases = cases()
    if a.slow > 1:
        for c in all_cases:
            c.bound_s *= a.slow
            c.timeout_s *= a.slow
            if c.expect == "complete" and c.app == "xfer" and c.mib:
                c.mib = max(8, int(c.mib / a.slow))
            if c.rping and c.expect == "complete":
                c.rping = (c.rping[0], max(50, int(c.rping[1] / a.slow)))
    if a.list:
        for c in all_cases:
            print("%-20s %-6s %-8s %s" % (c.name, c.group, c.expect, c.desc))
        return 0
    sel = [c for c in all_cases
           if (not a.case and not a.group) or c.name in a.case or c.group in a.group]
    if a.no_rping:
        sel = [c for c in sel if c.app != "rping"]
    if not sel:
        print("SKIP: no case selected")
        return 77
    if not a.xfer or not a.siw_run:
        ap.error("--xfer and --siw-run are required")
    try:
        tools = ["ip", "nft", "tc"]
        netns.need_root_and_tools(tools)
        if any(c.app == "rping" for c in sel):
            if subprocess.run(["sh", "-c", "command -v rping"], stdout=subprocess.DEVNULL).returncode:
                print("note: rping is not installed; its cases are skipped")
                sel = [c for c in sel if c.app != "rping"]
        netns.reap_stale()
        # one probe topology, so a missing capability is a skip, not a failure
        netns.Topology().destroy()
    except SkipTest as e:
        print("SKIP: %s" % e)
        return 77
    results = []
    failed = 0
    t0 = time.time()
    for c in sel:
        for rnd in range(c.repeat):
            t = time.time()
            try:
                r = Runner(a).run_case(c, rnd)
            except SkipTest as e:
                print("SKIP: %s" % e)
                return 77
            r["seconds"] = round(time.time() - t, 1)
            results.append(r)
            summary = ""
            for side in ("client", "server"):
                s = r.get(side, {})
                bits = []
                if "mib_per_s" in s and s["mib_per_s"] is not None and c.expect == "complete":
                    bits.append("%.1f MiB/s" % s["mib_per_s"])
                for k in ("fault_to_fail_ms", "fault_to_disconnect_ms", "fault_to_exit_ms"):
                    if k in s:
                        bits.append("%s %d" % (k.replace("fault_to_", "->").replace("_ms", ""),
                                               s[k]))
                if "data_lines" in s:
                    bits.append("%d lines" % s["data_lines"])
                if bits:
                    summary += " %s[%s]" % (side, ", ".join(bits))
            print("%-4s %-20s %5.1fs%s" % (r["status"], c.name + ("#%d" % rnd if c.repeat > 1
                                                                   else ""),
                                           r["seconds"], summary), flush=True)
            for p in r["problems"]:
                print("       - %s" % p)
            if r["problems"]:
                failed += 1
                if "logs" in r:
                    print("       logs: %s" % r["logs"])
    print("%d case runs, %d failed, %.0f s" % (len(results), failed, time.time() - t0))
    report = a.report
    if not report and os.environ.get("SIW_FAULTS_REPORT_DIR"):
        report = os.path.join(os.environ["SIW_FAULTS_REPORT_DIR"],
                              "faults-%s.json" % "-".join(a.group + a.case or ["all"]))
    if report:
        with open(report, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
