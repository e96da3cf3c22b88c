#!/usr/bin/env python3
"""Load and soak tests: many QPs in one process pair, and many short connections.

    run_soak.py --xfer BUILD/tests/faults/xfer --siw-run BUILD/bin/siw-run --mode qps|churn
                [--qps N] [--seconds S] [--conns N] [--parallel P] [--threads T]
                [--long] [--report FILE] [--addr IP]

qps    N connected QPs (default 1000) in one server and one client process, all connected at
       the same time, each running mixed WRITE/SEND/READ rounds with end-to-end checksums for
       --seconds. A 1-QP calibration run first gives the fixed cost, so the figure reported is
       the marginal memory per QP: (RSS with N QPs - RSS with 1 QP) / (N - 1), per process,
       plus the kernel's TCP buffer memory (/proc/net/sockstat) and descriptors per QP.
churn  --conns short connections (connect, a few rounds, disconnect), --parallel at a time:
       connections per second, and descriptors and RSS sampled along the way must come back
       to their level after the first connections (no growth per connection).

Both run over loopback (no root needed); xfer raises RLIMIT_NOFILE itself. --long (or
SIW_SOAK_LONG=1) runs the long variant (qps: 4000 QPs for 10 minutes; churn: 50000
connections). Exit status 0 = pass, 1 = fail. Prints one JSON report line at the end (also
written to --report FILE, or to SIW_SOAK_REPORT_DIR/soak-MODE.json).
"""
import argparse
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

LONG = os.environ.get("SIW_SOAK_LONG", "0") not in ("", "0")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """preexec_fn: SIGKILL the child when the harness dies (a CTest timeout, say)."""
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Proc:
    def __init__(self, cmd, name, env):
        self.name = name
        self.lines = []
        self.errf = open("/tmp/siw-soak-%d-%s.err" % (os.getpid(), name), "w+")
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errf, text=True,
                                  env=env, bufsize=1, preexec_fn=die_with_parent)
        self.cv = threading.Condition()
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    def _read(self):
        for ln in self.p.stdout:
            with self.cv:
                self.lines.append(ln.rstrip("\n"))
                self.cv.notify_all()
        self.p.wait()
        with self.cv:
            self.cv.notify_all()

    def events(self, kind):
        out = []
        for ln in list(self.lines):
            if ln.startswith("{"):
                try:
                    j = json.loads(ln)
                except ValueError:
                    continue
                if j.get("event") == kind:
                    out.append(j)
        return out

    def wait_event(self, kind, timeout):
        end = time.time() + timeout
        with self.cv:
            while time.time() < end:
                e = self.events(kind)
                if e:
                    return e[0]
                if self.p.poll() is not None and not self.th.is_alive():
                    return None
                self.cv.wait(0.2)
        return None

    def finish(self, timeout):
        self.th.join(timeout)
        if self.th.is_alive():
            self.p.kill()
            self.th.join(5)
            return False
        return True

    def stderr(self):
        self.errf.flush()
        self.errf.seek(0)
        return self.errf.read()

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.errf.close()
        try:
            os.unlink(self.errf.name)
        except OSError:
            pass


def run_pair(a, server_args, client_args, timeout):
    """Runs one xfer server + client pair; returns (server result, client result, procs, problems)."""
    env = dict(os.environ)
    env.setdefault("SIW_LOG_LEVEL", "1")
    base = [a.siw_run, a.xfer]
    srv = Proc(base + ["server", "--bind", a.addr, "--port", "0", "--timeout", str(timeout)]
               + server_args, "server", env)
    problems = []
    lst = srv.wait_event("listening", 60)
    if not lst:
        problems.append("server did not listen: %s" % srv.stderr()[-400:])
        srv.close()
        return None, None, (srv, None), problems
    cl = Proc(base + ["client", "--addr", a.addr, "--port", str(lst["port"]), "--timeout",
                      str(timeout)] + client_args, "client", env)
    for p in (cl, srv):
        if not p.finish(timeout + 30):
            problems.append("HANG: %s did not finish" % p.name)
    rs, rc = (srv.events("result") or [None])[-1], (cl.events("result") or [None])[-1]
    for p, r in ((srv, rs), (cl, rc)):
        txt = p.stderr()
        for m in SANITIZER_MARKS:
            if m in txt:
                problems.append("%s: sanitizer report (%s): %s" % (p.name, m,
                                                                  txt[txt.find(m):][:2000]))
                break
        if r is None:
            problems.append("%s: no result (exit %s): %s" % (p.name, p.p.returncode, txt[-600:]))
        elif p.p.returncode != 0:
            problems.append("%s: exit %s, result %s" % (p.name, p.p.returncode,
                                                        json.dumps(r)[:600]))
            for c in p.events("conn")[:3]:
                problems.append("%s: %s" % (p.name, json.dumps(c)[:400]))
        elif r.get("corrupt") or r.get("not_flushed") or r.get("no_disconnect"):
            problems.append("%s: %s" % (p.name, json.dumps(r)[:600]))
    return rs, rc, (srv, cl), problems


def mode_qps(a, rep):
    n = a.qps
    common = ["--chunk", str(a.chunk), "--depth", str(a.depth), "--threads", str(a.threads),
              "--progress-ms", "2000"]
    # calibration: the same with one QP
    s1, c1, procs, prob = run_pair(a, common + ["--conns", "1"],
                                   common + ["--conns", "1", "--seconds", "2"], 120)
    for p in procs:
        if p:
            p.close()
    if prob:
        rep["problems"] += ["calibration: " + x for x in prob]
        return
    sN, cN, procs, prob = run_pair(a, common + ["--conns", str(n)],
                                   common + ["--conns", str(n), "--seconds", str(a.seconds),
                                             "--connect-window", "128"],
                                   a.seconds + 300)
    rep["problems"] += prob
    if not (sN and cN):
        for p in procs:
            if p:
                p.close()
        return
    srv, cl = procs
    # samples while everything is connected (progress lines)
    peak = {"server": 0, "client": 0}
    for name, p in (("server", srv), ("client", cl)):
        for e in p.events("progress"):
            if e["connected"] == n:
                peak[name] = max(peak[name], e["rss_kb"])
    for p in procs:
        p.close()
    res = {}
    for name, r1, rN in (("server", s1, sN), ("client", c1, cN)):
        d = {
            "connected_max": rN["connected_max"],
            "ok": rN["ok"],
            "rounds": rN["rounds"],
            "bytes_verified": rN["bytes_verified"],
            "rss_kb_1qp": r1["rss_kb"]["connected"],
            "rss_kb_nqp": rN["rss_kb"]["connected"],
            "rss_kb_nqp_peak": peak[name],
            "rss_kb_end": rN["rss_kb"]["end"],
            "rss_kb_closed": rN["rss_kb"]["closed"],
            "fds_1qp": r1["fds"]["connected"],
            "fds_nqp": rN["fds"]["connected"],
            "fds_end": rN["fds"]["end"],
            "tcp_mem_pages_nqp": rN["tcp_mem_pages_connected"],
            "all_connected_ms": rN["all_connected_ms"],
            "wc_status": rN["wc_status"],
        }
        base_rss = d["rss_kb_1qp"]
        # the application's own buffers (touched before the baseline) are not the stack's
        d["app_kb_per_qp"] = round(rN["app_bytes_per_conn"] / 1024.0, 2)
        d["rss_kb_per_qp"] = round((max(d["rss_kb_nqp"], peak[name]) - base_rss) / (n - 1) -
                                   d["app_kb_per_qp"], 2)
        d["fds_per_qp"] = round((d["fds_nqp"] - d["fds_1qp"]) / (n - 1), 3)
        res[name] = d
        if rN["connected_max"] != n:
            rep["problems"].append("%s: only %d of %d QPs were connected at once" %
                                   (name, rN["connected_max"], n))
        if rN["ok"] != n:
            rep["problems"].append("%s: %d of %d connections ok" % (name, rN["ok"], n))
        if d["fds_end"] > d["fds_1qp"] + 4:
            rep["problems"].append("%s: %d descriptors left after all connections closed "
                                   "(%d with one QP)" % (name, d["fds_end"], d["fds_1qp"]))
    rep["qps"] = n
    rep["seconds"] = a.seconds
    # every byte is checked once end to end: WRITE/SEND by the server (its ACK tells the
    # client), READ by the client; the client's count is the total
    rep["bytes_verified"] = cN["bytes_verified"]
    rep["client_mib_per_s"] = cN["mib_per_s"]
    rep["tcp_kb_per_qp"] = round(cN["tcp_mem_pages_connected"] * 4 / (2 * n), 2)
    rep["sides"] = res


def mode_churn(a, rep):
    common = ["--chunk", str(a.chunk), "--depth", str(a.depth), "--threads", str(a.threads),
              "--conns", str(a.conns), "--progress-ms", "500"]
    s, c, procs, prob = run_pair(
        a, common + ["--parallel", str(4 * a.parallel + 16)],
        common + ["--parallel", str(a.parallel), "--rounds", str(a.rounds),
                  "--connect-window", str(a.parallel)], a.timeout)
    rep["problems"] += prob
    if not (s and c):
        for p in procs:
            if p:
                p.close()
        return
    res = {}
    for name, p, r in (("server", procs[0], s), ("client", procs[1], c)):
        prog = [e for e in p.events("progress") if e["finished"] > 0]
        d = {
            "conns": r["reaped"],
            "ok": r["ok"],
            "conn_per_s": r["conn_per_s"],
            "rss_kb_warm": r["rss_kb"]["warm"],
            "rss_kb_end": r["rss_kb"]["end"],
            "fds_base": r["fds"]["base"],
            "fds_warm": r["fds"]["warm"],
            "fds_end": r["fds"]["end"],
            "fds_closed": r["fds"]["closed"],
        }
        # RSS growth between 20 % of the connections and the end, per 1000 connections
        n = r["reaped"]
        early = [e for e in prog if e["finished"] >= n * 0.2]
        if early and n:
            e0 = early[0]
            span = n - e0["finished"]
            d["rss_kb_growth_per_1000"] = round((r["rss_kb"]["end"] - e0["rss_kb"]) * 1000.0 /
                                                max(1, span), 1)
            d["fds_max_after_20pct"] = max(e["fds"] for e in early)
        res[name] = d
        if r["ok"] != a.conns:
            rep["problems"].append("%s: %d of %d connections ok" % (name, r["ok"], a.conns))
        if d["fds_end"] > d["fds_warm"]:
            rep["problems"].append("%s: descriptors grew from %d (after the first connection) "
                                   "to %d" % (name, d["fds_warm"], d["fds_end"]))
        if d.get("rss_kb_growth_per_1000", 0) > a.max_growth_kb:
            rep["problems"].append("%s: RSS grows %.0f KiB per 1000 connections (limit %d)" %
                                   (name, d["rss_kb_growth_per_1000"], a.max_growth_kb))
    for p in procs:
        p.close()
    rep["conns"] = a.conns
    rep["parallel"] = a.parallel
    rep["conn_per_s"] = c["conn_per_s"]
    rep["sides"] = res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--xfer", required=True)
    ap.add_argument("--siw-run", required=True)
    ap.add_argument("--mode", choices=["qps", "churn"], required=True)
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--qps", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--conns", type=int)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--max-growth-kb", type=int, default=256,
                    help="churn: allowed RSS growth per 1000 connections")
    ap.add_argument("--long", action="store_true")
    ap.add_argument("--report")
    a = ap.parse_args()
    long_ = a.long or LONG
    if a.qps is None:
        a.qps = 4000 if long_ else 1000
    if a.seconds is None:
        a.seconds = 600 if long_ else 60
    if a.conns is None:
        a.conns = 50000 if long_ else 3000
    # the client holds qps sockets + the server as many: both processes raise their limit,
    # this only checks the hard limit allows it (root can raise it anyway)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * (a.qps if a.mode == "qps" else a.parallel) + 256
    if hard != resource.RLIM_INFINITY and hard < need and os.geteuid() != 0:
        print("SKIP: RLIMIT_NOFILE hard limit %d < %d and not root" % (hard, need))
        return 77
    rep = {"mode": a.mode, "problems": [], "long": long_}
    t0 = time.time()
    if a.mode == "qps":
        mode_qps(a, rep)
    else:
        mode_churn(a, rep)
    rep["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(rep))
    if not a.report and os.environ.get("SIW_SOAK_REPORT_DIR"):
        a.report = os.path.join(os.environ["SIW_SOAK_REPORT_DIR"], "soak-%s.json" % a.mode)
    if a.report:
        with open(a.report, "w") as f:
            json.dump(rep, f, indent=1)
    for p in rep["problems"]:
        print("FAIL: %s" % p)
    if not rep["problems"]:
        print("ok: %s" % a.mode)
    return 1 if rep["problems"] else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
    sys.exit(main())
