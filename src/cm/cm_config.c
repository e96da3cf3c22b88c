// SPDX-License-Identifier: MIT
/*
 * Configuration of the connection manager, read from the environment (rdma-core style: no
 * config file, one variable per knob). Each rdma_cm_id takes a snapshot when it is created
 * (children of a listener inherit the listener's), so a program can change the environment
 * between connections and a running connection never sees a change.
 *
 * The defaults are chosen so that softiwarp talks to Linux kernel siw out of the box (kernel
 * siw's compile-time defaults: MPA revision 2, CRC not required, no markers, the initiator does
 * not ask for peer-to-peer mode; see docs/PROTOCOL.md §1-2).
 *
 *   SIW_MPA_REV=1|2          MPA revision we send as initiator and the highest we answer with
 *                            as responder. 2 (default) = RFC 6581 enhanced setup: IRD/ORD are
 *                            exchanged, peer-to-peer mode is possible. 1 = plain RFC 5044
 *                            (for old peers; IRD/ORD are then whatever the application set).
 *   SIW_MPA_CRC=off|request|require
 *                            off (default): don't ask for CRC32c, use it when the peer asks
 *                            (RFC 5044: CRC runs when either side asks). request: ask for it,
 *                            accept a reply that drops it. require: ask, and fail connections
 *                            whose peer does not confirm CRC. Hardware iWARP (Chelsio, Intel)
 *                            usually asks for CRC itself.
 *   SIW_MPA_MARKERS=0|1      ask the peer to insert MPA markers into what it sends us, and
 *                            agree to insert them when asked (default 0: markers refused, as
 *                            kernel siw does).
 *   SIW_MPA_P2P=0|1          initiator: request peer-to-peer mode (we send a zero-length RTR
 *                            message first). Default 0 (kernel siw default). Responders always
 *                            honour a peer's P2P request with one of SIW_MPA_RTR.
 *   SIW_MPA_RTR=write,read,send
 *                            RTR message types we offer (initiator) or accept (responder),
 *                            comma separated. Default "write,read" (what kernel siw offers;
 *                            a SEND RTR would consume a receive the application posted).
 *   SIW_MPA_TIMEOUT_MS=N     how long to wait for the peer during connection setup: the
 *                            initiator for TCP connect plus the MPA reply (default 10000, kernel
 *                            siw's value), the responder for the MPA request after accepting
 *                            the TCP connection (default 5000). Setting it sets both.
 *   SIW_MPA_GSO=0|1          set kernel siw's private "GSO" flag (large FPDUs spanning several
 *                            TCP segments when both ends set it). Default 0: hardware peers
 *                            expect one FPDU per segment.
 *   SIW_RFC7306=auto|on|off  RFC 7306 immediate data and atomics (docs/PROTOCOL.md §6.5).
 *                            auto (default): offer them in the MPA request/reply (two reserved
 *                            flag bits) and use them only when the peer confirms, which only
 *                            another softiwarp does; toward kernel siw or hardware they stay
 *                            off. on: use them on every connection, confirmed or not (a peer
 *                            known to implement RFC 7306 by other means). off: neither offer
 *                            nor accept them.
 *   SIW_LOG_LEVEL=N          0 none, 1 errors (default), 2 warnings, 3 info, 4 debug; the names
 *                            error|warn|info|debug work too. Messages go to stderr, prefixed
 *                            "softiwarp cm:". Shared with the engine.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cm.h"

int cm_log_level = CM_LOG_ERR;

static int parse_level(const char *s)
{
	static const char *const names[] = {"none", "error", "warn", "info", "debug"};
	char *end;
	long v;

	for (int i = 0; i < 5; i++)
		if (!strcasecmp(s, names[i]))
			return i;
	v = strtol(s, &end, 10);
	if (end == s || *end || v < 0)
		return -1;
	return v > CM_LOG_DBG ? CM_LOG_DBG : (int)v;
}

void cm_log_init(void)
{
	const char *s = getenv("SIW_LOG_LEVEL");
	int v;

	if (!s || !*s)
		return;
	v = parse_level(s);
	if (v < 0) {
		cm_log(CM_LOG_ERR,
		       "SIW_LOG_LEVEL=%s is not a level (0-4 or none|error|warn|info|debug); "
		       "using 1 (errors)",
		       s);
		return;
	}
	cm_log_level = v;
}

void cm_log(int level, const char *fmt, ...)
{
	static const char *const tag[] = {"", "error: ", "warning: ", "", "debug: "};
	char line[1024];
	va_list ap;
	int n;

	if (level > cm_log_level)
		return;
	n = snprintf(line, sizeof(line), "softiwarp cm: %s", tag[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* One write per message, so lines of several threads do not interleave. */
	fprintf(stderr, "%s\n", line);
}

const char *cm_addr_str(const struct sockaddr *sa, char *buf)
{
	char ip[INET6_ADDRSTRLEN];

	if (!sa) {
		snprintf(buf, CM_ADDRSTRLEN, "?");
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;

		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		snprintf(buf, CM_ADDRSTRLEN, "%s:%u", ip, ntohs(s->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)sa;

		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		snprintf(buf, CM_ADDRSTRLEN, "[%s]:%u", ip, ntohs(s->sin6_port));
	} else {
		snprintf(buf, CM_ADDRSTRLEN, "(family %d)", sa->sa_family);
	}
	return buf;
}

/* ---- environment ---------------------------------------------------------------------------- */

static bool env_bool(const char *name, bool def)
{
	const char *s = getenv(name);

	if (!s || !*s)
		return def;
	if (!strcmp(s, "1") || !strcasecmp(s, "on") || !strcasecmp(s, "yes") ||
	    !strcasecmp(s, "true"))
		return true;
	if (!strcmp(s, "0") || !strcasecmp(s, "off") || !strcasecmp(s, "no") ||
	    !strcasecmp(s, "false"))
		return false;
	cm_err("%s=%s is not 0 or 1; using %d", name, s, def);
	return def;
}

static uint16_t env_rtr(uint16_t def)
{
	const char *s = getenv("SIW_MPA_RTR");
	uint16_t set = 0;
	char buf[64], *tok, *save;

	if (!s || !*s)
		return def;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (!strcasecmp(tok, "write"))
			set |= 1u << SIW_RTR_WRITE;
		else if (!strcasecmp(tok, "read"))
			set |= 1u << SIW_RTR_READ;
		else if (!strcasecmp(tok, "send"))
			set |= 1u << SIW_RTR_SEND;
		else
			goto bad;
	}
	if (set)
		return set;
bad:
	cm_err("SIW_MPA_RTR=%s: expected a comma separated list of write, read, send; "
	       "using write,read",
	       s);
	return def;
}

void cm_config_load(struct cm_cfg *cfg)
{
	const char *s;

	memset(cfg, 0, sizeof(*cfg));
	cfg->mpa.rev = MPA_REV_2;
	cfg->mpa.crc = SIW_CRC_OFF;
	/* RFC 6581 relaxed IRD/ORD negotiation, as kernel siw and cxgb4 do by default. */
	cfg->mpa.relaxed_ird = true;
	cfg->mpa.rtr_types = 1u << SIW_RTR_WRITE | 1u << SIW_RTR_READ;
	cfg->req_timeout_ms = SIW_MPA_REQ_TIMEOUT_MS;
	cfg->rep_timeout_ms = SIW_MPA_REP_TIMEOUT_MS;

	s = getenv("SIW_MPA_REV");
	if (s && *s) {
		if (!strcmp(s, "1"))
			cfg->mpa.rev = MPA_REV_1;
		else if (strcmp(s, "2"))
			cm_err("SIW_MPA_REV=%s: only 1 and 2 exist; using 2", s);
	}
	s = getenv("SIW_MPA_CRC");
	if (s && *s) {
		if (!strcasecmp(s, "request") || !strcmp(s, "1"))
			cfg->mpa.crc = SIW_CRC_REQUEST;
		else if (!strcasecmp(s, "require") || !strcmp(s, "2"))
			cfg->mpa.crc = SIW_CRC_REQUIRE;
		else if (strcasecmp(s, "off") && strcmp(s, "0"))
			cm_err("SIW_MPA_CRC=%s: expected off, request or require; using off", s);
	}
	cfg->mpa.markers = env_bool("SIW_MPA_MARKERS", false);
	cfg->mpa.accept_markers = cfg->mpa.markers;
	cfg->mpa.p2p = env_bool("SIW_MPA_P2P", false);
	cfg->mpa.gso = env_bool("SIW_MPA_GSO", false);
	cfg->mpa.rtr_types = env_rtr(cfg->mpa.rtr_types);
	switch (eng_rfc7306_env()) {
	case ENG_RFC7306_OFF:
		break;
	case ENG_RFC7306_ON:
		cfg->rfc7306_force = true;
		/* fall through */
	default:
		cfg->mpa.rfc7306 = true;
		break;
	}

	s = getenv("SIW_MPA_TIMEOUT_MS");
	if (s && *s) {
		char *end;
		long v = strtol(s, &end, 10);

		if (end == s || *end || v <= 0 || v > 3600000)
			cm_err("SIW_MPA_TIMEOUT_MS=%s: expected milliseconds (1-3600000); using "
			       "the defaults (%d initiator, %d responder)",
			       s, SIW_MPA_REP_TIMEOUT_MS, SIW_MPA_REQ_TIMEOUT_MS);
		else
			cfg->req_timeout_ms = cfg->rep_timeout_ms = (int)v;
	}
}
