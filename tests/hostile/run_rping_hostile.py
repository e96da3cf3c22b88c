#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""run_rping_hostile.py - aims the hostile iWARP peer (siw_hostile.py) at Debian's rping server
running unmodified under siw-run, and checks that softiwarp answers as it does for
hostile_server while rping keeps serving real clients.

    siw-run rping -s -P -V -a 127.0.0.1 -p PORT -S 1024

rping's server never advertises an STag of its own, so the scenarios are those that need none
(or learn one the way any rping client does) and the receive queue facts are rping's: exactly
one receive of 16 bytes (struct rping_rdma_info), posted before rdma_accept and re-posted by
its CQ thread after each receive completion. For each scenario: what the peer gets back (the
TERMINATE triple and flags, or the MPA reject / close) against the expectation (siw_hostile's
EXPECT where it applies), the rping process still alive, and every few scenarios and at the
end a real `siw-run rping -c -V -v -C 20 -S 1024` client against the same server passes (exit 0,
20 data lines). Scenarios after which rping itself exits by design (its CM thread calls exit()
on RDMA_CM_EVENT_CONNECT_ERROR: peer-to-peer connections that fail before they are
established) run last, each against a server of its own.

Usage: run_rping_hostile.py --siw-run build/bin/siw-run [--rping rping] [--port-base 26000]
                            [--only NAME ...] [--report out.json] [--strict] [-v]
Exit status: 0 pass, 1 failure, 77 rping (or siw-run) not available.
"""

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import siw_hostile as H  # noqa: E402

HOST = "127.0.0.1"
RPING_SIZE = 1024          # the server's -S: the length of its rdma_buf region
RECV_LEN = 16              # sizeof(struct rping_rdma_info): rping's one posted receive
RECVS = 1
MPA_TIMEOUT_S = 5.0        # softiwarp's responder default (SIW_MPA_TIMEOUT_MS unset)
CLIENT_COUNT = 20
CHECK_EVERY = 6            # a real rping client after this many scenarios
# An STag index no softiwarp process hands out (STag = index << 8 | key): the scenarios that
# change the key byte (^ 0x5A) still name index 0xFFFFF0.
BAD_STAG = 0xFFFFF05A
OPTS = {"timeout": 3.0, "term_timeout": 3.0, "linger": 2.0, "crc": True,
        "stall_wait": MPA_TIMEOUT_S + 3.0, "idle_wait": 1.0}

# Softiwarp bugs this test has found and that are not fixed yet: XFAIL unless --strict.
# (Empty: the three it found -- a TERMINATE lost to a concurrent rdma_disconnect, a reject
# Reply to an unparseable MPA request, no RTR timeout at a peer-to-peer responder -- are
# fixed; see README.md.)
KNOWN_BUGS = {}

# ---- rping's wire protocol, from the initiator's side ----------------------------------------
# rping.c: the client SENDs rping_rdma_info {be64 buf, be32 rkey, be32 size} of its source
# buffer; the server RDMA READs it into its rdma_buf (the READ Request carries the server's
# sink STag and address), SENDs "go ahead" (16 bytes), the client SENDs the sink buffer's
# info, the server RDMA WRITEs strlen(rdma_buf) + 1 bytes there and SENDs "go ahead" again.

SRC_STAG, SRC_TO = 0x0000A1A1, 0x10000
SINK_STAG, SINK_TO = 0x0000B2B2, 0x20000


def rping_info(to, stag, size):
    return struct.pack(">QII", to, stag, size)


def ping_data(size=RPING_SIZE):
    """What rping's client puts in its source buffer: text, NUL-terminated."""
    head = b"rdma-ping-0: "
    body = bytes(65 + (i % 58) for i in range(size - len(head) - 1))
    return head + body + b"\0"


def wait_op(c, opcode, timeout=3.0):
    """Next FPDU with this opcode (others are kept in c.rx_fpdus). Raises Terminated."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise H.PeerTimeout()
        f = c.read_fpdu(left)
        if f.get("opcode") == H.OP_TERMINATE:
            raise H.Terminated(f.get("terminate", {}))
        if f.get("opcode") == opcode:
            return f


def read_request_of(c, size=RPING_SIZE):
    """Advertises our source buffer; returns rping's READ Request (its sink STag and TO)."""
    c.send_msg(rping_info(SRC_TO, SRC_STAG, size), "rping_source_adv")
    rr = wait_op(c, H.OP_READ_REQ)
    if rr.get("src_stag") != SRC_STAG or rr.get("src_to") != SRC_TO:
        raise RuntimeError("READ Request for stag 0x%x to 0x%x" % (rr.get("src_stag", 0),
                                                                   rr.get("src_to", 0)))
    return rr


def answer_read(c, rr, data, pads=None):
    """READ RESPONSE segments for rping's READ Request. pads: [(segment_len, pad_bytes)...]
    to split the response and put chosen (non-zero) bytes into the MPA pad."""
    segs = pads or [(len(data), None)]
    off = 0
    for i, (n, pad) in enumerate(segs):
        last = i == len(segs) - 1
        u = H.ddp_tagged(H.OP_READ_RESP, rr["sink_stag"], rr["sink_to"] + off, last=last) + \
            data[off:off + n]
        c.send(c.fpdu(u, pad=pad), "read_response", len_payload=n, pad=pad and pad.hex())
        off += n


def rping_round(c, data, pads=None, rr=None):
    """One rping iteration as its client; returns what the server wrote back."""
    rr = rr or read_request_of(c, len(data))
    if rr.get("size") != len(data):
        raise RuntimeError("READ Request of %s bytes, advertised %d" % (rr.get("size"),
                                                                       len(data)))
    answer_read(c, rr, data, pads)
    go = wait_op(c, H.OP_SEND)
    if len(go.get("payload", b"")) != RECV_LEN:
        raise RuntimeError("go-ahead SEND of %d bytes" % len(go.get("payload", b"")))
    c.send_msg(rping_info(SINK_TO, SINK_STAG, len(data)), "rping_sink_adv")
    got = bytearray()
    while True:
        w = wait_op(c, H.OP_WRITE)
        if w["stag"] != SINK_STAG or w["to"] != SINK_TO + len(got):
            raise RuntimeError("WRITE to stag 0x%x to 0x%x" % (w["stag"], w["to"]))
        if w.get("crc_ok") is False:
            raise RuntimeError("WRITE with a bad CRC")
        got += w["payload"]
        if w["last"]:
            break
    wait_op(c, H.OP_SEND)
    return bytes(got)


def _round_trip(ctx, c, data, pads=None, rr=None):
    try:
        got = rping_round(c, data, pads, rr)
    except H.Terminated as e:
        obs = c.observe(1.0, 0.5)
        obs["terminate"] = e.info
        return obs
    obs = c.observe(0.3, 0.1)
    if obs["close"] == "timeout":
        obs["close"] = "open"
    want = data[:data.index(b"\0") + 1]        # rping writes strlen(rdma_buf) + 1 bytes
    obs["read_back"] = H.hexs(got, 32)
    obs["read_back_ok"] = got == want
    return obs


# ---- rping-specific scenarios (registered into siw_hostile's tables, in this process only) --

def rping_scenario(expect):
    def deco(fn):
        name = fn.__name__[3:]
        H.SCENARIOS[name] = fn
        H.EXPECT[name] = expect
        return fn
    return deco


@rping_scenario({"kind": "accept"})
def sc_rping_iteration(ctx):
    """Control: one correct rping iteration played by the hostile peer."""
    c = ctx.negotiated()
    return _round_trip(ctx, c, ping_data())


@rping_scenario({"kind": "accept"})
def sc_rping_pad_nonzero(ctx):
    """The READ RESPONSE in two segments whose MPA pads are de ad be / ef (CRC over them):
    RFC 5044 does not check the pad; the data must come back intact."""
    c = ctx.negotiated()
    return _round_trip(ctx, c, ping_data(), pads=[(RPING_SIZE - 3, b"\xde\xad\xbe"),
                                                  (3, b"\xef")])


@rping_scenario({"kind": "accept"})
def sc_rping_send_before_accept(ctx):
    """The source advertisement in the same segment as the MPA request, before rping has
    even seen the connection request (RFC 5044 forbids it; softiwarp tolerates it): it must
    land in the receive rping posts before rdma_accept, and the iteration must work."""
    c = ctx.conn()
    c.crc = True
    early = c.fpdu(H.ddp_untagged(H.OP_SEND, H.QN_SEND, c.next_msn(H.QN_SEND), 0) +
                   rping_info(SRC_TO, SRC_STAG, RPING_SIZE))
    c.send(H.mpa_request(crc=True) + early, "mpa_request_plus_source_adv")
    rep = c.mpa_read_reply()
    if rep["R"] or not rep["is_reply"]:
        return {"terminate": None, "close": "reject", "reply": rep}
    rr = wait_op(c, H.OP_READ_REQ)
    return _round_trip(ctx, c, ping_data(), rr=rr)


@rping_scenario(H._t((1, 1, 1), "MD", "tagged"))
def sc_rping_write_past_end(ctx):
    """rping's READ Request names its rdma_buf (REMOTE_WRITE): 16 bytes whose last one is
    the first byte after its RPING_SIZE bytes."""
    c = ctx.negotiated()
    rr = read_request_of(c)
    ctx.attack = c.write(rr["sink_stag"], rr["sink_to"] + RPING_SIZE - 15, H.DATA16,
                         "write_past_rping_rdma_buf")
    return H._observe(ctx, c)


@rping_scenario(H._t((0, 1, 1), "MDR", "rreq"))
def sc_rping_read_past_end(ctx):
    c = ctx.negotiated()
    rr = read_request_of(c)
    ctx.attack = c.read_request(rr["sink_stag"], rr["sink_to"] + RPING_SIZE - 15, 16,
                                what="read_past_rping_rdma_buf")
    return H._observe(ctx, c)


@rping_scenario(H._t((1, 1, 3), "MD", "tagged"))
def sc_rping_write_to_wrap(ctx):
    c = ctx.negotiated()
    rr = read_request_of(c)
    ctx.attack = c.write(rr["sink_stag"], H.U64 - 8, bytes(64), "write_rping_stag_to_wrap")
    return H._observe(ctx, c)


@rping_scenario({"kind": "rping_local_len"})
def sc_rping_read_len_overflow(ctx):
    """The source advertisement says 65535 bytes; rping READs remote_len bytes into its
    RPING_SIZE-byte rdma_buf (rping.c does not check). softiwarp must not let the READ
    RESPONSE reach past that region: either no READ Request goes out (the local SGE is
    refused) or the response is refused with a TERMINATE; never a WRITE of more than
    RPING_SIZE bytes back."""
    c = ctx.negotiated()
    c.send_msg(rping_info(SRC_TO, SRC_STAG, 0xFFFF), "rping_source_adv_65535")
    out = {"terminate": None, "close": "open", "read_request": None}
    try:
        rr = wait_op(c, H.OP_READ_REQ, 2.0)
        out["read_request"] = {k: rr.get(k) for k in ("size", "sink_stag", "sink_to")}
        data = bytes(0x41 + (i % 26) for i in range(rr["size"]))
        ctx.attack = None
        answer_read(c, rr, data, [(16000, None), (16000, None), (16000, None),
                                  (rr["size"] - 48000, None)] if rr["size"] > 48000 else None)
    except H.Terminated as e:
        out["terminate"] = e.info
    except H.PeerTimeout:
        pass
    except H.PeerClosed as e:
        out["close"] = e.kind
        return out
    obs = c.observe(3.0, 1.0)
    if out["terminate"] and not obs.get("terminate"):
        obs["terminate"] = out["terminate"]
    obs["read_request"] = out["read_request"]
    return obs


@rping_scenario(H._t((2, 0, 2), "", None))
def sc_rping_bad_crc_send(ctx):
    """A 16-byte SEND (a valid-looking advertisement) with its CRC inverted."""
    c = ctx.negotiated(crc=True)
    ctx.attack = c.send_msg(rping_info(SRC_TO, SRC_STAG, RPING_SIZE), "send_bad_crc",
                            crc_xor=0xFFFFFFFF)
    return H._observe(ctx, c)


@rping_scenario({"kind": "closed"})
def sc_rping_trunc_send_close(ctx):
    """SEND header + 8 of its 16 payload bytes, then FIN."""
    c = ctx.negotiated()
    f = c.fpdu(H.ddp_untagged(H.OP_SEND, H.QN_SEND, c.next_msn(H.QN_SEND), 0) +
               rping_info(SRC_TO, SRC_STAG, RPING_SIZE))
    c.send(f[:2 + H.UNTAGGED_HDR + 8], "send_header_and_8_of_16_bytes")
    c.shutdown_write()
    return H._observe(ctx, c)


# ---- which scenarios, with what expectation ----------------------------------------------------

# siw_hostile scenarios that make sense against a server without a known STag, one posted
# 16-byte receive, RFC 7306 not negotiated (the hostile peer does not offer it). Where the
# expectation differs from hostile_server's, an override (with the reason).
GENERIC = [
    "write_invalid_stag", "read_invalid_stag", "read_resp_unsolicited",
    "wrong_msn", "wrong_qn", "wrong_mo", "wrong_mo_second_segment",
    "send_no_recv", "send_too_long", "ulpdu_max_send",
    "ulpdu_short_tagged", "ulpdu_short_untagged", "ulpdu_short_read_req",
    "trunc_header_close", "ddp_version_tagged", "ddp_version_untagged", "rdmap_version",
    "opcode_reserved", "opcode_rfc7306_unnegotiated", "send_with_t_bit", "atomic_unnegotiated",
    "peer_terminate", "terminate_oversized",
    "mpa_bad_key", "mpa_reply_key", "mpa_rev3", "mpa_pdlen_513", "mpa_pdlen_ffff",
    "mpa_enhanced_rev1", "mpa_markers", "mpa_p2p_send_rtr_only",
    "idle_after_reply",
]
RPING = ["rping_iteration", "rping_pad_nonzero", "rping_send_before_accept",
         "rping_write_past_end", "rping_read_past_end", "rping_write_to_wrap",
         "rping_read_len_overflow", "rping_bad_crc_send", "rping_trunc_send_close"]
# Never reach rping (the CM drops them before a connection request): in background threads.
BACKGROUND = ["stall_connect", "stall_half_request", "flood_silent"]
# rping exits (exit(ret) in its cm_thread on RDMA_CM_EVENT_CONNECT_ERROR) after these:
# peer-to-peer connections that fail before they are established. One server each.
FATAL_TO_RPING = ["rtr_wrong_type", "rtr_with_payload", "stall_after_reply_p2p"]
FLOOD_N = 50
SERVER_LIFE_S = 300        # an rping server outlives no run (the CTest timeout is 240 s)
SERVERS = []
CHILD_ENV = {}             # --child-env: for the rping processes only (sanitizer runtime)


def extra_check(name, res):
    """Scenario-specific checks beyond siw_hostile.evaluate(). Returns a problem or None."""
    obs = res["observed"]
    if name == "rping_read_len_overflow":
        rr = obs.get("read_request")
        term = obs.get("terminate")
        if rr and rr.get("size", 0) > RPING_SIZE and not term:
            return "rping's READ of %d bytes into %d went out and was answered without a " \
                   "TERMINATE" % (rr["size"], RPING_SIZE)
        if obs.get("close") not in ("fin", "rst"):
            return "connection not closed (%s)" % obs.get("close")
    return None


def evaluate_local(name, obs):
    exp = H.EXPECT[name]
    if exp["kind"] == "rping_local_len":
        term = obs.get("terminate")
        if term:
            return True, "TERMINATE %s (%s)" % (term.get("name"), obs.get("close"))
        if obs.get("read_request") is None and obs.get("close") in ("fin", "rst"):
            return True, "no READ Request went out; closed (%s)" % obs["close"]
        return False, "no TERMINATE, READ Request %s, close %s" % (obs.get("read_request"),
                                                                  obs.get("close"))
    return None


# ---- the rping server --------------------------------------------------------------------------


class RpingServer:
    def __init__(self, siw_run, rping, port, env_extra=None):
        env = dict(os.environ)
        env.setdefault("SIW_LOG_LEVEL", "info")
        env.update(CHILD_ENV)
        env.update(env_extra or {})
        self.port = port
        self.cmd = [siw_run, rping, "-s", "-P", "-V", "-a", HOST, "-p", str(port),
                    "-S", str(RPING_SIZE)]
        # Bounded even if this script is killed: coreutils' timeout ends it (SERVER_LIFE_S).
        self.p = subprocess.Popen(["timeout", str(SERVER_LIFE_S)] + self.cmd,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
        SERVERS.append(self)
        self.lines = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 20.0
        while not listening(port):
            if self.p.poll() is not None:
                raise RuntimeError("rping server exited (%s) before listening: %s" %
                                   (self.p.returncode, "".join(self.lines[-10:])))
            if time.monotonic() > deadline:
                raise RuntimeError("rping server not listening on %d after 20 s" % port)
            time.sleep(0.05)

    def _read(self):
        for line in self.p.stdout:
            with self.lock:
                self.lines.append(line)

    def mark(self):
        with self.lock:
            return len(self.lines)

    def since(self, mark):
        with self.lock:
            return [ln.rstrip("\n") for ln in self.lines[mark:]]

    def alive(self):
        return self.p.poll() is None

    def exit_after(self, timeout):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.reader.join(2.0)           # its last lines (why it exited)
        return rc

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()          # timeout passes SIGTERM on to rping (siw-run exec's it)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.reader.join(2.0)
        return self.p.returncode


def crashed(rc):
    """An exit status (of `timeout rping ...`) that means a crash, not exit() or our SIGTERM."""
    if rc is None:
        return False
    sigs = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)
    return (rc < 0 and -rc in sigs) or rc - 128 in sigs or rc == 124


def listening(port):
    """Something listens on TCP port (from /proc/net/tcp*, without connecting to it)."""
    hexport = ":%04X" % port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(hexport) and parts[3] == "0A":
                        return True
        except OSError:
            continue
    return False


def port_used(port):
    hexport = ":%04X" % port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as f:
                next(f)
                if any(line.split()[1].endswith(hexport) for line in f):
                    return True
        except OSError:
            continue
    return False


def pick_port(base, span=1000, skip=()):
    """A free port in [base, base + span): starts at an offset from our pid so parallel runs
    spread out, skips ports any socket uses."""
    for i in range(span):
        p = base + (os.getpid() * 7 + i) % span
        if p in skip or port_used(p):
            continue
        s = socket.socket()
        try:
            s.bind((HOST, p))
        except OSError:
            continue
        finally:
            s.close()
        return p
    raise RuntimeError("no free port in %d..%d" % (base, base + span - 1))


def rping_client(siw_run, rping, port, count=CLIENT_COUNT, timeout=60.0):
    """A real rping client under siw-run. Returns (ok, why)."""
    cmd = [siw_run, rping, "-c", "-V", "-v", "-C", str(count), "-S", str(RPING_SIZE),
           "-a", HOST, "-p", str(port)]
    env = dict(os.environ)
    env.setdefault("SIW_LOG_LEVEL", "error")
    env.update(CHILD_ENV)
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return False, "rping client did not finish within %.0f s" % timeout
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("ping data: rdma-ping-")]
    ms = (time.monotonic() - t0) * 1000.0
    if r.returncode != 0 or len(lines) != count:
        return False, "rping client exit %d, %d of %d data lines: %s" % (
            r.returncode, len(lines), count, (r.stderr or r.stdout)[-400:].strip())
    for i, ln in enumerate(lines):
        if not ln.startswith("ping data: rdma-ping-%d: %c" % (i, 65 + i % 58)):
            return False, "data line %d wrong: %s" % (i, ln[:60])
    return True, "rping client: %d verified iterations in %.0f ms" % (count, ms)


# ---- the silent flood --------------------------------------------------------------------------


def flood_silent(port, n=FLOOD_N, wait=MPA_TIMEOUT_S + 20.0, during=None):
    """n TCP connections that send nothing: none may get a byte, all must be closed by the
    server (its MPA timeout runs from the moment the CM accepts them; rping listens with a
    backlog of 3, so the kernel holds most of them in its queues for a while and the last
    ones are accepted seconds later). during(): a check run while they are all pending (a
    real rping client). Returns a result dict like run_scenario's."""
    t0 = time.monotonic()
    socks, errors = [], []
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, port), timeout=3.0)
            socks.append(s)
        except OSError as e:
            errors.append("connect: %s" % e)
    ports = [s.getsockname()[1] for s in socks]
    during_res = during() if during else (True, "")
    closes = {"fin": 0, "rst": 0, "bytes": 0, "timeout": 0}
    t_close = []
    deadline = t0 + wait
    for s in socks:
        try:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            b = s.recv(64)
            closes["bytes" if b else "fin"] += 1
        except socket.timeout:
            closes["timeout"] += 1
        except ConnectionResetError:
            closes["rst"] += 1
        except OSError as e:
            errors.append(str(e))
        t_close.append(time.monotonic() - t0)
        s.close()
    ok = not errors and closes["fin"] + closes["rst"] == n and during_res[0]
    why = ("%d silent connections: %d FIN, %d RST, %d got bytes, %d open after %.0f s; closed "
           "between %.1f and %.1f s" % (n, closes["fin"], closes["rst"], closes["bytes"],
                                        closes["timeout"], wait, min(t_close or [0]),
                                        max(t_close or [0])))
    if during:
        why += "; meanwhile " + during_res[1]
    if errors:
        why += "; errors: %s" % errors[:3]
    return {"scenario": "flood_silent", "ok": ok, "why": why, "local_ports": ports,
            "observed": {"closes": closes, "errors": errors, "during": during_res},
            "expect": {"kind": "flood_silent", "connections": n},
            "elapsed_ms": round((time.monotonic() - t0) * 1000.0, 1)}


# ---- driver ------------------------------------------------------------------------------------


def target():
    return H.Target(BAD_STAG, 0x1000, RPING_SIZE, RECVS, RECV_LEN, "none")


def run_one(name, port, during=None):
    if name == "flood_silent":
        return flood_silent(port, during=during)
    res = H.run_scenario(name, HOST, port, target(), OPTS)
    local = evaluate_local(name, res["observed"])
    if local is not None and not res["why"].startswith("scenario failed before"):
        res["ok"], res["why"] = local
    obs = res["observed"]
    rep = obs.get("reply")
    if H.EXPECT[name].get("kind") == "mpa_close" and rep and rep.get("R"):
        closed = obs.get("close") in ("fin", "rst")
        res["why"] = "reject reply instead of a plain close (R, rev %s), then %s" % (
            rep.get("rev"), obs.get("close") if closed else "NOT closed: %s" % obs.get("close"))
        if not closed:
            res["why"] = "MPA " + res["why"]      # not the known bug any more: a failure
    if res["ok"]:
        p = extra_check(name, res)
        if p:
            res["ok"], res["why"] = False, p
    return res


def softiwarp_lines(lines):
    keep = ("softiwarp", "cq completion", "Received bogus", "cma event", "DISCONNECT",
            "wait for", "connect error", "post send error")
    return [ln for ln in lines if any(k in ln for k in keep)]


class Runner:
    def __init__(self, args):
        self.args = args
        self.results = []
        self.failures = []
        self.xfails = []

    def record(self, res, srv=None, mark=None, alive=True):
        name = res["scenario"]
        problems = [] if res["ok"] else [res["why"]]
        if not alive:
            problems.append("the rping server died (exit %s)" % (srv and srv.p.returncode))
        res["rping_alive"] = alive
        if srv is not None and mark is not None:
            res["server_log"] = softiwarp_lines(srv.since(mark))[-12:]
        status = "PASS"
        known = [v for (n, why), v in KNOWN_BUGS.items()
                 if n == name and not res["ok"] and res["why"].startswith(why)]
        if problems:
            if known and alive and len(problems) == 1 and not self.args.strict:
                status = "XFAIL"
                self.xfails.append((name, known[0]))
            else:
                status = "FAIL"
                self.failures.append((name, "; ".join(problems)))
        res["status"] = status
        self.results.append(res)
        print("%-28s %-5s %-80s %7.1f ms" % (name, status, "; ".join(problems or [res["why"]])[:80],
                                             res.get("elapsed_ms", 0)))
        if self.args.verbose and (status != "PASS" or self.args.verbose > 1):
            print(json.dumps({k: res.get(k) for k in ("expect", "observed", "server_log",
                                                      "local_ports")},
                             default=str, indent=1)[:5000])
        sys.stdout.flush()

    def client_check(self, srv, tag):
        ok, why = rping_client(self.args.siw_run, self.args.rping, srv.port)
        if ok and not srv.alive():
            ok, why = False, "rping server died"
        res = {"scenario": "rping_client_%s" % tag, "ok": ok, "why": why, "elapsed_ms": 0}
        self.record(res, alive=srv.alive())
        return ok

    def main_phase(self, port, names, bg_names):
        srv = RpingServer(self.args.siw_run, self.args.rping, port)
        try:
            self.client_check(srv, "before")
            bg = queue.Queue()
            threads = []
            for n in bg_names:
                during = (lambda: rping_client(self.args.siw_run, self.args.rping,
                                               srv.port)) if n == "flood_silent" else None
                th = threading.Thread(target=lambda n=n, d=during: bg.put(
                    run_one(n, srv.port, d)), daemon=True)
                th.start()
                threads.append(th)
            for i, n in enumerate(names):
                mark = srv.mark()
                res = run_one(n, srv.port)
                time.sleep(0.05)          # let rping log and clean up this connection
                self.record(res, srv, mark, srv.alive())
                if not srv.alive():
                    break
                if (i + 1) % CHECK_EVERY == 0:
                    self.client_check(srv, "after_%s" % n)
            deadline = time.monotonic() + MPA_TIMEOUT_S + 30.0
            for th in threads:
                th.join(max(0.1, deadline - time.monotonic()))
            while not bg.empty():
                self.record(bg.get(), srv, None, srv.alive())
            for th in threads:
                if th.is_alive():
                    self.failures.append(("background", "a background scenario did not end"))
            if srv.alive():
                self.client_check(srv, "at_end")
        finally:
            rc = srv.stop()
            self.server_tail = srv.since(max(0, srv.mark() - 60))
        return rc

    def fatal_phase(self, base, names):
        """Scenarios after which rping exits by its own design: a fresh server each; the
        peer's outcome is checked, and that rping exited because of RDMA_CM_EVENT_CONNECT_ERROR
        (and not by a crash)."""
        used = set()
        for n in names:
            port = pick_port(base, skip=used)
            used.add(port)
            srv = RpingServer(self.args.siw_run, self.args.rping, port)
            try:
                res = run_one(n, port)
                rc = srv.exit_after(3.0)
                lines = srv.since(0)
                res["rping_exit"] = rc
                res["server_log"] = softiwarp_lines(lines)[-12:]
                why_exit = any("RDMA_CM_EVENT_CONNECT_ERROR" in ln for ln in lines)
                if crashed(rc):
                    res["ok"] = False
                    res["why"] = "rping crashed or hung (status %d)" % rc
                elif rc is not None and not why_exit:
                    res["ok"] = False
                    res["why"] += "; rping exited %s without a CONNECT_ERROR" % rc
                elif rc is not None:
                    res["rping_note"] = "rping exited %d on RDMA_CM_EVENT_CONNECT_ERROR " \
                                        "(its cm_thread calls exit(), by design)" % rc
                self.record(res, srv, None, True)
            finally:
                srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--siw-run", default=os.environ.get("SIW_RUN"),
                    help="the build tree's bin/siw-run (default: $SIW_RUN)")
    ap.add_argument("--rping", default="rping")
    ap.add_argument("--port-base", type=int, default=26000,
                    help="ports are picked in [base, base + 1000)")
    ap.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    ap.add_argument("--report", help="write the full JSON report here")
    ap.add_argument("--strict", action="store_true", help="known bugs fail the run too")
    ap.add_argument("--child-env", action="append", default=[], metavar="VAR=VALUE",
                    help="environment for the rping processes only (repeatable)")
    ap.add_argument("--verbose", "-v", action="count", default=0)
    args = ap.parse_args()
    for kv in args.child_env:
        k, _, v = kv.partition("=")
        CHILD_ENV[k] = v
    rping = shutil.which(args.rping)
    if not rping:
        print("SKIP: %s is not installed (Debian: rdmacm-utils)" % args.rping)
        return 77
    args.rping = rping
    if not args.siw_run or not os.access(args.siw_run, os.X_OK):
        print("SKIP: siw-run not found (--siw-run or SIW_RUN)")
        return 77
    def on_signal(signum, _frame):
        for srv in SERVERS:
            srv.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.monotonic()
    r = Runner(args)
    all_names = GENERIC + RPING
    names = [n for n in all_names if not args.only or n in args.only]
    bg = [n for n in BACKGROUND if not args.only or n in args.only]
    fatal = [n for n in FATAL_TO_RPING if not args.only or n in args.only]
    unknown = set(args.only or []) - set(all_names + BACKGROUND + FATAL_TO_RPING)
    if unknown:
        ap.error("unknown scenario(s): %s" % ", ".join(sorted(unknown)))
    port = pick_port(args.port_base)
    print("rping server: %s on port %d" % (" ".join([os.path.basename(args.siw_run), "rping",
                                                      "-s -P -V -S %d" % RPING_SIZE]), port))
    rc = r.main_phase(port, names, bg)
    if crashed(rc):
        r.failures.append(("rping_server", "rping server crashed or hung (status %d)" % rc))
    if fatal:
        r.fatal_phase(args.port_base, fatal)
    elapsed = time.monotonic() - t0
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump({"results": r.results, "failures": r.failures, "xfails": r.xfails,
                       "elapsed_s": round(elapsed, 1)}, f, default=str, indent=1)
    for name, why in r.xfails:
        print("XFAIL %s: known softiwarp bug: %s" % (name, why))
    for name, why in r.failures:
        print("FAILED %s: %s" % (name, why))
    if r.failures:
        print("--- rping server output (tail) ---")
        print("\n".join(getattr(r, "server_tail", [])[-40:]))
    print("%d checks, %d failed, %d known bugs, %.1f s" % (len(r.results), len(r.failures),
                                                         len(r.xfails), elapsed))
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
