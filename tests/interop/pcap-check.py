#!/usr/bin/env python3
"""pcap-check.py - check that Wireshark's iWARP dissectors decode every byte of a capture.

    pcap-check.py [--crc on|off] [--rev 1|2] [--allow-cut] [--no-rfc7306] FILE.pcap

Runs tshark twice on FILE (always with --disable-protocol rpcordma: the RPC-over-RDMA
heuristic misreads perftest's short Sends):
  -V -z expert     the full decode, kept as FILE.txt; counts MPA FPDU / DDP+RDMAP trees and
                   the "CRC check: ... (Good CRC32)" / "(Bad CRC32)" lines; then the expert
                   infos: no error (malformed) at all, and no warning except the two every MPA
                   v2 request/reply gets from a dissector that knows only RFC 5044 ("Res field
                   is NOT set to zero", "Rev field is NOT set to one") and TCP's flow-control
                   ones (receive window full, zero window)
  -T fields        per TCP connection and direction: the payload bytes on the wire must equal
                   the MPA request/reply (20 + PD_Length) plus every FPDU the dissector found
                   (2 + ULPDU_Length + pad + 4). Equal sums mean every FPDU was found, in order,
                   with no byte left undecoded.
Also: every connection has exactly one MPA request and one reply; the number of FPDU trees
equals the number of DDP/RDMAP trees; with --crc on the request or the reply has C set and
every FPDU shows "Good CRC32"; with --crc off neither has C, no CRC is verified and every
CRC field is 0; with --rev N both frames carry revision N. Every connection must also have
ended with a FIN in both directions (the capture is complete) unless --allow-cut.
RFC 7306 (docs/PROTOCOL.md 6.5): the MPA frames' reserved flag bits (iwarp_mpa.res, the low 5
bits of the flags byte) carry softiwarp's handshake, OFFER 0x04 in the Request and ACCEPT 0x02
in the Reply; each connection's summary says what they add up to ("not offered", "agreed",
"offer echoed": a Reply carrying OFFER, as kernel siw's echo of the request, reads as no,
"declined", "not offered, yet ACCEPT") and counts the RDMAP opcodes (iwarp_rdma.opcode) per direction. With --no-rfc7306
(every capture of a connection with kernel siw) no connection may have agreed and no FPDU may
carry an opcode outside RFC 5040's 0x0-0x7, i.e. none of RFC 7306's 0x8 Immediate Data, 0x9
Immediate Data with SE, 0xA Atomic Request, 0xB Atomic Response.
Prints one summary line per connection and a verdict; exit 0 only if every check passed.
"""
import argparse
import collections
import re
import subprocess
import sys

ALLOWED_WARNINGS = {
    ("IWARP_MPA", "Res field is NOT set to zero as required by RFC 5044"),
    ("IWARP_MPA", "Rev field is NOT set to one as required by RFC 5044"),
}
# TCP flow control and recovery at work (a slow receiver, a spurious retransmission that the
# byte accounting below skips), not a decoding problem
BENIGN_TCP_WARNINGS = {
    ("TCP", "D-SACK Sequence"),
    ("TCP", "TCP window specified by the receiver is now completely full"),
    ("TCP", "TCP Zero Window segment"),
    ("TCP", "TCP Zero Window Probe"),
    ("TCP", "TCP ZeroWindowProbe"),
}
FIELDS = ["frame.number", "tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.len",
          "tcp.flags.fin", "tcp.flags.reset", "tcp.analysis.retransmission",
          "iwarp_mpa.key.req", "iwarp_mpa.key.rep", "iwarp_mpa.rev", "iwarp_mpa.crc_flag",
          "iwarp_mpa.rej_flag", "iwarp_mpa.pdlength", "iwarp_mpa.ulpdulength", "iwarp_mpa.crc",
          "iwarp_rdma.opcode", "iwarp_mpa.res"]
RFC7306_OFFER, RFC7306_ACCEPT = 0x04, 0x02  # MPA Req/Rep reserved flag bits (PROTOCOL.md 6.5)


def tshark(args):
    # Heuristic dissectors first: the test ports are random, and one that a port-based
    # dissector owns (13400 is DoIP's) would otherwise not be decoded as MPA at all.
    r = subprocess.run(["tshark", "-n", "--disable-protocol", "rpcordma",
                        "-o", "tcp.try_heuristic_first:TRUE"] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if r.returncode != 0:
        sys.exit("pcap-check: tshark %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                           r.stderr.strip()[-500:]))
    return r.stdout


def ints(cell):
    return [int(x, 0) for x in cell.split(",") if x != ""]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crc", choices=["on", "off"])
    ap.add_argument("--rev", type=int, choices=[1, 2])
    ap.add_argument("--allow-cut", action="store_true")
    ap.add_argument("--no-rfc7306", action="store_true",
                    help="the peer lacks RFC 7306: no agreement, no opcode outside 0x0-0x7")
    ap.add_argument("pcap")
    a = ap.parse_args()
    bad = []

    # 1. -V: the full decode, followed by the expert infos (-z expert)
    full = tshark(["-r", a.pcap, "-V", "-z", "expert"])
    m = re.search(r"^(Errors|Warns|Notes|Chats) \(\d+\)\n=+$", full, re.M)
    text, expert_text = (full[:m.start()], full[m.start():]) if m else (full, "")
    with open(a.pcap + ".txt", "w") as f:
        f.write(full)
    n_mpa_fpdu = n_ddp = good = badcrc = 0
    crc_plain = []
    in_mpa = False
    for line in text.splitlines():
        if line.startswith("iWARP Marker Protocol data unit Aligned framing"):
            in_mpa = True
            continue
        if not line.startswith(" "):
            in_mpa = False
            if line.startswith("iWARP Direct Data Placement and Remote Direct Memory Access"):
                n_ddp += 1
            continue
        if in_mpa and line == "    FPDU":
            n_mpa_fpdu += 1
        m = re.match(r"\s+CRC check: 0x[0-9a-f]+ \((Good|Bad) CRC32\)", line)
        if m:
            if m.group(1) == "Good":
                good += 1
            else:
                badcrc += 1
        m = re.match(r"\s+CRC: (0x[0-9a-f]+)$", line)
        if m and in_mpa:
            crc_plain.append(int(m.group(1), 16))
        if "Malformed" in line or "Expert Info (Error" in line:
            bad.append("malformed/error in the decode: " + line.strip())
    if n_mpa_fpdu != n_ddp:
        bad.append("%d MPA FPDU trees but %d DDP/RDMAP trees" % (n_mpa_fpdu, n_ddp))

    # 2. expert infos
    sev = None
    experts = []
    for line in expert_text.splitlines():
        m = re.match(r"^(Errors|Warns|Notes|Chats) \(\d+\)", line)
        if m:
            sev = m.group(1)
            continue
        m = re.match(r"^\s+(\d+)\s+(\S+)\s+(\S+)\s+(.*\S)\s*$", line)
        if m and sev and m.group(1) != "Frequency":
            experts.append((sev, int(m.group(1)), m.group(3), m.group(4)))
    for s, n, proto, summary in experts:
        if s == "Errors":
            bad.append("expert error x%d: %s %s" % (n, proto, summary))
        elif s == "Warns" and (proto, summary) not in ALLOWED_WARNINGS | BENIGN_TCP_WARNINGS:
            hint = " (the capture lost packets)" if "not captured" in summary else ""
            bad.append("expert warning x%d: %s %s%s" % (n, proto, summary, hint))

    # 3. per connection and direction byte accounting
    out = tshark(["-r", a.pcap, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
                  "-E", "aggregator=,"] + sum([["-e", f] for f in FIELDS], []))
    conns = collections.OrderedDict()
    for line in out.splitlines():
        c = dict(zip(FIELDS, line.split("|")))
        if c.get("tcp.stream", "") == "":
            continue
        key = int(c["tcp.stream"])
        st = conns.setdefault(key, {"dirs": collections.OrderedDict(), "req": [], "rep": []})
        d = st["dirs"].setdefault(int(c["tcp.srcport"]), {
            "wire": 0, "mpa": 0, "fpdus": 0, "fin": False, "rst": False, "ops": collections.Counter()})
        if c["tcp.analysis.retransmission"] == "":
            d["wire"] += int(c["tcp.len"] or 0)
        d["fin"] |= c["tcp.flags.fin"] in ("1", "True")
        d["rst"] |= c["tcp.flags.reset"] in ("1", "True")
        pd = ints(c["iwarp_mpa.pdlength"])
        for kind in ("req", "rep"):
            if c["iwarp_mpa.key." + kind]:
                st[kind].append({"rev": ints(c["iwarp_mpa.rev"])[0],
                                 "crc": c["iwarp_mpa.crc_flag"] in ("1", "True"),
                                 "rej": c["iwarp_mpa.rej_flag"] in ("1", "True"),
                                 "pd": pd[0] if pd else 0, "port": int(c["tcp.srcport"]),
                                 "res": (ints(c["iwarp_mpa.res"]) or [0])[0]})
                d["mpa"] += 20 + (pd[0] if pd else 0)
        for L in ints(c["iwarp_mpa.ulpdulength"]):
            d["fpdus"] += 1
            d["mpa"] += 2 + L + (4 - (2 + L) % 4) % 4 + 4
        for op in ints(c["iwarp_rdma.opcode"]):
            d["ops"][op] += 1
        if a.crc == "off":
            crc_plain.extend(ints(c["iwarp_mpa.crc"]))

    opname = {0: "Write", 1: "ReadReq", 2: "ReadResp", 3: "Send", 4: "SendInv", 5: "SendSE",
              6: "SendSEInv", 7: "Terminate", 8: "ImmData", 9: "ImmDataSE", 10: "AtomicReq",
              11: "AtomicResp"}
    total_fpdus = 0
    if not conns:
        bad.append("no TCP connection in the capture")
    for key, st in conns.items():
        desc = []
        if len(st["req"]) != 1 or len(st["rep"]) != 1:
            bad.append("connection %d: %d MPA requests and %d replies (want 1 and 1)" %
                       (key, len(st["req"]), len(st["rep"])))
        for kind in ("req", "rep"):
            for f in st[kind]:
                desc.append("%s rev %d%s%s res 0x%02x pd %d" % (
                    kind, f["rev"], " C" if f["crc"] else "", " R" if f["rej"] else "", f["res"],
                    f["pd"]))
                if a.rev and f["rev"] != a.rev:
                    bad.append("connection %d: MPA %s has revision %d, want %d" %
                               (key, kind, f["rev"], a.rev))
        req_res = st["req"][0]["res"] if st["req"] else 0
        rep_res = st["rep"][0]["res"] if st["rep"] else 0
        if not req_res & RFC7306_OFFER:
            r7306 = "not offered" if not rep_res & RFC7306_ACCEPT else "not offered, yet ACCEPT"
        elif rep_res & RFC7306_OFFER:
            r7306 = "offer echoed"  # kernel siw's reply: the request's bits come back
        elif rep_res & RFC7306_ACCEPT and st["rep"] and not st["rep"][0]["rej"]:
            r7306 = "agreed"
        else:
            r7306 = "declined"
        desc.append("RFC 7306 " + r7306)
        if a.no_rfc7306 and r7306 in ("agreed", "not offered, yet ACCEPT"):
            bad.append("connection %d: RFC 7306 agreed in the MPA exchange (req res 0x%02x, rep "
                       "res 0x%02x) with a peer that lacks it" % (key, req_res, rep_res))
        crc_neg = any(f["crc"] for f in st["req"] + st["rep"])
        rejected = any(f["rej"] for f in st["rep"])
        if a.crc and not rejected and crc_neg != (a.crc == "on"):
            bad.append("connection %d: CRC %snegotiated, want %s" %
                       (key, "" if crc_neg else "not ", a.crc))
        for port, d in st["dirs"].items():
            total_fpdus += d["fpdus"]
            ops = ",".join("%s:%d" % (opname.get(o, str(o)), n) for o, n in sorted(d["ops"].items()))
            desc.append("from :%d %d FPDUs (%s), %d/%d bytes decoded" %
                        (port, d["fpdus"], ops or "-", d["mpa"], d["wire"]))
            ext = sorted(o for o in d["ops"] if o > 7)
            if a.no_rfc7306 and ext:
                bad.append("connection %d from :%d: RDMAP opcodes outside RFC 5040 (0x0-0x7): %s" %
                           (key, port, ", ".join("0x%x %s x%d" % (o, opname.get(o, "?"), d["ops"][o])
                                                 for o in ext)))
            if d["mpa"] != d["wire"] and not (a.allow_cut and d["mpa"] < d["wire"]):
                bad.append("connection %d from :%d: %d payload bytes on the wire, %d decoded as "
                           "MPA/FPDUs" % (key, port, d["wire"], d["mpa"]))
            if not a.allow_cut and not d["fin"]:
                bad.append("connection %d from :%d: no FIN (capture incomplete or connection "
                           "reset%s)" % (key, port, ", RST seen" if d["rst"] else ""))
        print("pcap-check %s: connection %d: %s" % (a.pcap, key, "; ".join(desc)))

    if total_fpdus != n_mpa_fpdu:
        bad.append("%d FPDU lengths in the fields output, %d FPDU trees in -V" %
                   (total_fpdus, n_mpa_fpdu))
    if a.crc == "on":
        if badcrc or good != n_mpa_fpdu:
            bad.append("CRC on: %d Good CRC32 and %d Bad CRC32 for %d FPDUs" %
                       (good, badcrc, n_mpa_fpdu))
    elif a.crc == "off":
        if good or badcrc:
            bad.append("CRC off but %d CRCs were verified" % (good + badcrc))
        if any(crc_plain):
            bad.append("CRC off but %d FPDUs carry a non-zero CRC field" %
                       sum(1 for x in crc_plain if x))
    mpa_warn = sum(n for s, n, p, t in experts if s == "Warns" and (p, t) in ALLOWED_WARNINGS)
    tcp_warn = sum(n for s, n, p, t in experts if s == "Warns" and (p, t) in BENIGN_TCP_WARNINGS)
    other_warn = sum(n for s, n, _, _ in experts if s == "Warns") - mpa_warn - tcp_warn
    print("pcap-check %s: %d connections, %d FPDUs = %d DDP/RDMAP trees, CRC %s, expert: %d "
          "errors, %d MPA v2 Res/Rev warnings, %d TCP flow-control/recovery warnings, %d other warnings" %
          (a.pcap, len(conns), n_mpa_fpdu, n_ddp,
           "%d Good/%d Bad" % (good, badcrc) if good or badcrc else "not verified",
           sum(n for s, n, _, _ in experts if s == "Errors"), mpa_warn, tcp_warn, other_warn))
    for b in bad:
        print("pcap-check %s: FAIL: %s" % (a.pcap, b))
    print("pcap-check %s: %s" % (a.pcap, "ok" if not bad else "FAIL (%d)" % len(bad)))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
