// SPDX-License-Identifier: MIT
/*
 * The status socket of a process, read by tools/siw-stat (in the spirit of `rdma resource
 * show` / `rdma statistic`).
 *
 * When a process opens its first context, a small thread of ours listens on a Unix domain socket
 * <dir>/<pid>.sock (stat_path.h: $XDG_RUNTIME_DIR/softiwarp or /tmp/softiwarp-<uid>, mode
 * 0700). Each connection from the same user gets one JSON document and is closed: the process,
 * its devices, every QP (state, addresses, negotiated MPA parameters, bytes, messages and FPDUs
 * each way, TCP retransmissions, errors, TERMINATEs with the last one's text) and totals. The
 * socket goes away when the last context closes and at exit; siw-stat removes the ones of dead
 * processes. SIW_STAT=0 turns it off.
 *
 * The thread sleeps in poll() and never touches the data path: it reads each QP under its own
 * locks (rx_lock, then lock, as priv.h orders them) for a few hundred nanoseconds. A QP can
 * not be freed while a document is built: eng_qp_destroy passes through the stat lock after
 * unlinking it (eng_stat_qp_unlink), and documents are built under that lock from a snapshot
 * of the QP list taken under ctx->lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "error.h"
#include "priv.h"
#include "crc32c.h"
#include "stat_path.h"

static struct {
	pthread_mutex_t lock; /* the context list; held while a document is built */
	pthread_mutex_t life; /* server start / stop (before lock) */
	pthread_once_t once;
	bool enabled;
	struct eng_ctx **ctx;
	unsigned nctx, cap;

	/* the server (life lock) */
	bool running;
	pid_t pid;
	pthread_t thread;
	int lfd, stop_rd, stop_wr;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint64_t started_ms;
} st = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .life = PTHREAD_MUTEX_INITIALIZER,
    .once = PTHREAD_ONCE_INIT,
    .lfd = -1,
    .stop_rd = -1,
    .stop_wr = -1,
};

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

struct jb {
	char *p;
	size_t len, cap;
	bool oom;
};

static bool jb_room(struct jb *b, size_t n)
{
	if (b->oom)
		return false;
	if (b->len + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 4096;
		char *p;

		while (c < b->len + n + 1)
			c *= 2;
		p = realloc(b->p, c);
		if (!p) {
			b->oom = true;
			return false;
		}
		b->p = p;
		b->cap = c;
	}
	return true;
}

static void __attribute__((format(printf, 2, 3))) jb_printf(struct jb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !jb_room(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* A JSON string (quoted); bytes outside printable ASCII as \u00XX. */
static void jb_str(struct jb *b, const char *s)
{
	if (!s) {
		jb_printf(b, "null");
		return;
	}
	jb_printf(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			jb_printf(b, "\\%c", c);
		else if (c < 0x20 || c >= 0x7F)
			jb_printf(b, "\\u%04x", c);
		else if (jb_room(b, 1))
			b->p[b->len++] = (char)c;
	}
	jb_printf(b, "\"");
}

static void jb_key(struct jb *b, const char *k)
{
	jb_str(b, k);
	jb_printf(b, ":");
}

/* ---- snapshots ------------------------------------------------------------------------------- */

static const char *const verbs_state_name[] = {"RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR"};

struct qp_snap {
	uint32_t qpn;
	const char *dev;
	enum eng_qp_state vstate;
	enum siw_qp_state sstate;
	bool connected, ever_connected, initiator, srq, has_tcp;
	int err;
	struct sockaddr_storage local, peer;
	struct siw_mpa_result mpa;
	uint16_t ord, ird;
	struct siw_tx_stats tx;
	struct siw_rx_stats rx;
	struct eng_qp_stats qs;
	uint8_t term_dir;
	struct siw_term_info term;
	uint64_t connected_ms;
	uint32_t sq_size, sq_used, rq_size, rq_posted;
	unsigned orq, irq;
	uint32_t tcp_retrans, tcp_rtt_us, tcp_unacked;
};

static enum eng_qp_state verbs_state(const struct eng_qp *qp)
{
	switch (qp->state) {
	case SIW_QP_IDLE:
	case SIW_QP_RTR:
		return qp->user_state;
	case SIW_QP_RTS:
		return ENG_QPS_RTS;
	case SIW_QP_CLOSING:
		return ENG_QPS_SQD;
	case SIW_QP_TERMINATE:
		return ENG_QPS_SQE;
	default:
		return ENG_QPS_ERR;
	}
}

/* Reads one QP under its locks (rx_lock, then lock). */
static void qp_snapshot(struct eng_qp *qp, struct qp_snap *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&qp->rx_lock);
	pthread_mutex_lock(&qp->lock);
	s->qpn = qp->qpn;
	s->dev = qp->ctx->dev.name;
	s->vstate = verbs_state(qp);
	s->sstate = qp->state;
	s->connected = qp->connected && qp->state != SIW_QP_ERROR;
	s->ever_connected = qp->obs.connected_ms != 0;
	s->initiator = qp->initiator;
	s->err = qp->err;
	s->local = qp->local;
	s->peer = qp->peer;
	s->mpa = qp->mpa;
	s->ord = qp->ord;
	s->ird = qp->ird;
	s->tx = qp->tx.stats;
	s->rx = qp->rx.stats;
	s->qs = qp->stats;
	s->term_dir = qp->obs.term_dir;
	s->term = qp->obs.term;
	s->connected_ms = qp->obs.connected_ms;
	s->srq = qp->srq != NULL;
	s->sq_size = qp->sq_size;
	s->sq_used = qp->sq_tail - qp->sq_done;
	if (!qp->srq) {
		s->rq_size = qp->rq.size;
		s->rq_posted = atomic_load(&qp->rq.tail) - atomic_load(&qp->rq.head);
	}
	s->orq = atomic_load(&qp->orq_tail) - atomic_load(&qp->orq_head);
	s->irq = atomic_load(&qp->irq_tail) - atomic_load(&qp->irq_head);
	if (qp->fd >= 0) {
		/* The socket is closed only with both locks held: it is ours to ask here. */
		struct tcp_info ti;
		socklen_t l = sizeof(ti);

		memset(&ti, 0, sizeof(ti));
		if (getsockopt(qp->fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0) {
			s->has_tcp = true;
			s->tcp_retrans = ti.tcpi_total_retrans;
			s->tcp_rtt_us = ti.tcpi_rtt;
			s->tcp_unacked = ti.tcpi_unacked;
		}
	}
	pthread_mutex_unlock(&qp->lock);
	pthread_mutex_unlock(&qp->rx_lock);
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t sz)
{
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(buf, sz, "%s:%u", a, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, s6->sin6_addr.s6_addr + 12, a, sizeof(a));
			snprintf(buf, sz, "%s:%u", a, ntohs(s6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
			snprintf(buf, sz, "[%s]:%u", a, ntohs(s6->sin6_port));
		}
	} else {
		return NULL;
	}
	return buf;
}

char *eng_obs_term_text(const struct siw_term_info *t, char *out, size_t sz)
{
	siw_term_describe(t, out, sz);
	if (t->rfc_valid && t->swapped_valid && t->layer != t->etype) {
		/* Both readings are registered: kernel siw (nibble-swapped) may have meant this. */
		size_t n = strlen(out);
		struct siw_term_info s = *t;

		s.layer = t->swapped_layer;
		s.etype = t->swapped_etype;
		if (n + 40 < sz) {
			snprintf(out + n, sz - n,
				 "; if the peer is kernel siw (Layer/EType swapped): ");
			n = strlen(out);
			siw_term_describe(&s, out + n, sz - n);
		}
	}
	return out;
}

const char *eng_obs_err_hint(int err)
{
	unsigned layer = siw_err_term_layer(err), etype = siw_err_term_etype(err);
	unsigned code = siw_err_term_ecode(err);

	if (!siw_err_is_term(err))
		return "";
	if (layer == TERM_LAYER_LLP &&
	    (code == TERM_ECODE_LLP_CRC || code == TERM_ECODE_LLP_MARKER))
		return " (the stream was damaged on the way, or the two ends frame it differently; "
		       "SIW_CAPTURE=file.pcap records it for Wireshark)";
	if (layer == TERM_LAYER_RDMAP && etype == TERM_ETYPE_RDMAP_CATASTROPHIC)
		return ""; /* a local failure: its cause was logged where it happened */
	if (layer == TERM_LAYER_DDP && etype == TERM_ETYPE_DDP_TAGGED)
		return " (the peer used an STag or range we never granted it: a stale or wrong "
		       "rkey, or memory deregistered too early)";
	if (layer == TERM_LAYER_RDMAP && etype == TERM_ETYPE_RDMAP_REMOTE_PROT)
		return " (the peer's RDMA READ or WRITE was not allowed: access flags or range of "
		       "the memory region)";
	return " (the peer broke the protocol; SIW_CAPTURE=file.pcap records the traffic for "
	       "Wireshark)";
}

static const char *rtr_name(enum siw_rtr r)
{
	switch (r) {
	case SIW_RTR_SEND:
		return "send";
	case SIW_RTR_WRITE:
		return "write";
	case SIW_RTR_READ:
		return "read";
	default:
		return "none";
	}
}

static void json_qp(struct jb *b, const struct qp_snap *s)
{
	char a[INET6_ADDRSTRLEN + 16], t[400];

	jb_printf(b, "{\"qpn\":%u,", s->qpn);
	jb_key(b, "device");
	jb_str(b, s->dev);
	jb_printf(b, ",\"state\":\"%s\",\"siw_state\":\"%s\",\"connected\":%s,",
		  (unsigned)s->vstate < 7 ? verbs_state_name[s->vstate] : "?",
		  (unsigned)s->sstate < SIW_QP_NUM_STATES ? siw_qp_state_name[s->sstate] : "?",
		  s->connected ? "true" : "false");
	if (s->ever_connected) {
		jb_printf(b, "\"role\":\"%s\",", s->initiator ? "initiator" : "responder");
		jb_key(b, "local");
		jb_str(b, addr_str(&s->local, a, sizeof(a)));
		jb_printf(b, ",");
		jb_key(b, "peer");
		jb_str(b, addr_str(&s->peer, a, sizeof(a)));
		jb_printf(b,
			  ",\"connected_ms\":%llu,\"mpa\":{\"rev\":%u,\"crc\":%s,\"markers_rx\":%s,"
			  "\"markers_tx\":%s,\"ird\":%u,\"ord\":%u,\"p2p\":%s,\"rtr\":\"%s\","
			  "\"gso\":%s},",
			  (unsigned long long)s->connected_ms, s->mpa.rev,
			  s->mpa.crc ? "true" : "false", s->mpa.markers_rx ? "true" : "false",
			  s->mpa.markers_tx ? "true" : "false", s->ird, s->ord,
			  s->mpa.p2p ? "true" : "false", rtr_name(s->mpa.rtr),
			  s->mpa.gso ? "true" : "false");
	} else {
		jb_printf(b, "\"role\":null,\"local\":null,\"peer\":null,\"connected_ms\":null,"
			     "\"mpa\":null,");
	}
	jb_printf(b,
		  "\"tx\":{\"bytes\":%llu,\"msgs\":%llu,\"fpdus\":%llu,\"payload\":%llu},"
		  "\"rx\":{\"bytes\":%llu,\"msgs\":%llu,\"fpdus\":%llu,\"payload\":%llu},",
		  (unsigned long long)s->tx.bytes, (unsigned long long)s->tx.messages,
		  (unsigned long long)s->tx.fpdus, (unsigned long long)s->tx.payload,
		  (unsigned long long)s->rx.bytes, (unsigned long long)s->rx.messages,
		  (unsigned long long)s->rx.fpdus, (unsigned long long)s->rx.payload);
	/* iWARP itself never retries: TCP does; its retransmissions while the socket is open. */
	jb_printf(b, "\"retries\":%u,", s->has_tcp ? s->tcp_retrans : 0);
	if (s->has_tcp)
		jb_printf(b, "\"tcp\":{\"retrans\":%u,\"rtt_us\":%u,\"unacked\":%u},",
			  s->tcp_retrans, s->tcp_rtt_us, s->tcp_unacked);
	else
		jb_printf(b, "\"tcp\":null,");
	jb_printf(b, "\"errors\":%llu,\"terms_sent\":%llu,\"terms_recv\":%llu,",
		  (unsigned long long)s->qs.errors, (unsigned long long)s->qs.terms_sent,
		  (unsigned long long)s->qs.terms_recv);
	if (s->term_dir) {
		jb_printf(b,
			  "\"last_term\":{\"dir\":\"%s\",\"layer\":%u,\"etype\":%u,\"ecode\":%u,",
			  s->term_dir == 1 ? "sent" : "received", s->term.layer, s->term.etype,
			  s->term.ecode);
		jb_key(b, "text");
		jb_str(b, eng_obs_term_text(&s->term, t, sizeof(t)));
		jb_printf(b, "},");
	} else {
		jb_printf(b, "\"last_term\":null,");
	}
	jb_key(b, "error");
	jb_str(b, s->err ? siw_strerror(s->err) : NULL);
	jb_printf(b,
		  ",\"queues\":{\"sq_size\":%u,\"sq_used\":%u,\"srq\":%s,\"rq_size\":%u,"
		  "\"rq_posted\":%u,\"orq\":%u,\"irq\":%u}}",
		  s->sq_size, s->sq_used, s->srq ? "true" : "false", s->rq_size, s->rq_posted,
		  s->orq, s->irq);
}

/* /proc/self/<name> as one string (NULs of cmdline become spaces). */
static void read_proc(const char *name, char *buf, size_t sz)
{
	char path[64];
	ssize_t n;
	int fd;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/proc/self/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sz - 1);
	close(fd);
	if (n <= 0)
		return;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0'))
		n--;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
}

struct totals {
	unsigned qps, connected;
	uint64_t tx_bytes, rx_bytes, tx_msgs, rx_msgs, tx_fpdus, rx_fpdus;
	uint64_t retries, errors, terms_sent, terms_recv;
};

/* The whole document (stat lock held). */
static void build_doc(struct jb *b)
{
	char comm[64], cmdline[1024], cap_path[PATH_MAX];
	struct totals tot = {0};
	struct eng_qp **qps = NULL;
	size_t nq = 0, qcap = 0;
	bool first = true;

	read_proc("comm", comm, sizeof(comm));
	read_proc("cmdline", cmdline, sizeof(cmdline));
	jb_printf(b, "{\"siw_stat\":%d,\"pid\":%ld,\"uid\":%u,", SIW_STAT_VERSION, (long)getpid(),
		  (unsigned)geteuid());
	jb_key(b, "comm");
	jb_str(b, comm);
	jb_printf(b, ",");
	jb_key(b, "cmdline");
	jb_str(b, cmdline);
	jb_printf(b, ",\"time_ms\":%llu,\"since_ms\":%llu,", (unsigned long long)wall_ms(),
		  (unsigned long long)st.started_ms);
	jb_key(b, "capture");
	jb_str(b, eng_cap_path(cap_path, sizeof(cap_path)));
	jb_printf(b, ",");
	jb_key(b, "crc32c");
	jb_str(b, siw_crc32c_impl());
	jb_printf(b, ",\"devices\":[");
	/* Devices: one entry per device name, with its contexts and QPs. */
	for (unsigned i = 0; i < st.nctx; i++) {
		struct eng_ctx *ctx = st.ctx[i];
		unsigned nctx = 0, nqp = 0;
		bool seen = false;

		if (eng_forked(ctx))
			continue;
		for (unsigned j = 0; j < i; j++)
			if (!eng_forked(st.ctx[j]) && !strcmp(st.ctx[j]->dev.name, ctx->dev.name))
				seen = true;
		if (seen)
			continue;
		for (unsigned j = i; j < st.nctx; j++) {
			struct eng_ctx *c = st.ctx[j];

			if (eng_forked(c) || strcmp(c->dev.name, ctx->dev.name))
				continue;
			nctx++;
			pthread_mutex_lock(&c->lock);
			for (struct eng_link *l = c->qps.next; l != &c->qps; l = l->next)
				nqp++;
			pthread_mutex_unlock(&c->lock);
		}
		jb_printf(b, "%s{", first ? "" : ",");
		first = false;
		jb_key(b, "name");
		jb_str(b, ctx->dev.name);
		jb_printf(b, ",");
		jb_key(b, "ifname");
		jb_str(b, ctx->dev.ifname);
		jb_printf(b, ",\"mtu\":%u,\"contexts\":%u,\"qps\":%u}", ctx->dev.mtu, nctx, nqp);
	}
	jb_printf(b, "],\"qps\":[");

	/* QPs: pointers under each ctx->lock, then each QP under its own locks. */
	for (unsigned i = 0; i < st.nctx; i++) {
		struct eng_ctx *ctx = st.ctx[i];

		if (eng_forked(ctx))
			continue;
		pthread_mutex_lock(&ctx->lock);
		for (struct eng_link *l = ctx->qps.next; l != &ctx->qps; l = l->next) {
			if (nq == qcap) {
				size_t c = qcap ? 2 * qcap : 64;
				struct eng_qp **n = realloc(qps, c * sizeof(*qps));

				if (!n)
					break;
				qps = n;
				qcap = c;
			}
			qps[nq++] = container_of(l, struct eng_qp, link);
		}
		pthread_mutex_unlock(&ctx->lock);
	}
	for (size_t i = 0; i < nq; i++) {
		struct qp_snap s;

		qp_snapshot(qps[i], &s);
		if (i)
			jb_printf(b, ",");
		json_qp(b, &s);
		tot.qps++;
		tot.connected += s.connected;
		tot.tx_bytes += s.tx.bytes;
		tot.rx_bytes += s.rx.bytes;
		tot.tx_msgs += s.tx.messages;
		tot.rx_msgs += s.rx.messages;
		tot.tx_fpdus += s.tx.fpdus;
		tot.rx_fpdus += s.rx.fpdus;
		tot.retries += s.has_tcp ? s.tcp_retrans : 0;
		tot.errors += s.qs.errors;
		tot.terms_sent += s.qs.terms_sent;
		tot.terms_recv += s.qs.terms_recv;
	}
	free(qps);
	jb_printf(b,
		  "],\"totals\":{\"qps\":%u,\"connected\":%u,\"tx_bytes\":%llu,\"rx_bytes\":%llu,"
		  "\"tx_msgs\":%llu,\"rx_msgs\":%llu,\"tx_fpdus\":%llu,\"rx_fpdus\":%llu,"
		  "\"retries\":%llu,\"errors\":%llu,\"terms_sent\":%llu,\"terms_recv\":%llu}}\n",
		  tot.qps, tot.connected, (unsigned long long)tot.tx_bytes,
		  (unsigned long long)tot.rx_bytes, (unsigned long long)tot.tx_msgs,
		  (unsigned long long)tot.rx_msgs, (unsigned long long)tot.tx_fpdus,
		  (unsigned long long)tot.rx_fpdus, (unsigned long long)tot.retries,
		  (unsigned long long)tot.errors, (unsigned long long)tot.terms_sent,
		  (unsigned long long)tot.terms_recv);
}

/* ---- the server ------------------------------------------------------------------------------ */

static void serve(int fd)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	struct timeval tv = {.tv_sec = 2};
	struct jb b = {0};
	size_t off = 0;

	/* The directory is 0700 already; refuse other users anyway (root may look). */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0 ||
	    (cr.uid != geteuid() && cr.uid != 0))
		return;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	pthread_mutex_lock(&st.lock);
	build_doc(&b);
	pthread_mutex_unlock(&st.lock);
	if (b.oom) {
		free(b.p);
		b = (struct jb){0};
		jb_printf(&b, "{\"siw_stat\":%d,\"pid\":%ld,\"error\":\"out of memory\"}\n",
			  SIW_STAT_VERSION, (long)getpid());
	}
	while (b.p && off < b.len) {
		ssize_t n = send(fd, b.p + off, b.len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(b.p);
}

static void *stat_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = st.lfd, .events = POLLIN},
				      {.fd = st.stop_rd, .events = POLLIN}};
		int fd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			eng_err("siw-stat socket: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(st.lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
				usleep(100000); /* the backlog stays: do not spin */
			continue;
		}
		serve(fd);
		close(fd);
	}
	return NULL;
}

/* life lock held */
static void server_start(void)
{
	char dirs[2][256];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int p[2] = {-1, -1}, err;
	sigset_t all, old;

	if (!siw_stat_dirs(dirs)) {
		eng_warn("siw-stat socket: no usable directory name; SIW_STAT is off");
		return;
	}
	if (mkdir(dirs[0], 0700) < 0 && errno != EEXIST) {
		eng_warn("siw-stat socket: cannot create %s: %s (SIW_STAT=0 silences this)",
			 dirs[0], strerror(errno));
		return;
	}
	err = siw_stat_dir_check(dirs[0]);
	if (err) {
		eng_warn("siw-stat socket: %s is not a private directory of this user (%s); no "
			 "status socket",
			 dirs[0], strerror(err));
		return;
	}
	if ((size_t)snprintf(st.path, sizeof(st.path), "%s/%ld%s", dirs[0], (long)getpid(),
			     SIW_STAT_SUFFIX) >= sizeof(st.path)) {
		eng_warn("siw-stat socket: path in %s too long; no status socket", dirs[0]);
		return;
	}
	memcpy(sa.sun_path, st.path, sizeof(sa.sun_path));
	st.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (st.lfd < 0 || pipe2(p, O_CLOEXEC) < 0)
		goto fail;
	unlink(st.path); /* a socket of an earlier process with our pid */
	if (bind(st.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(st.lfd, 16) < 0)
		goto fail;
	st.stop_rd = p[0];
	st.stop_wr = p[1];
	st.pid = getpid();
	st.started_ms = wall_ms();
	/* The application's signals are not ours to take. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&st.thread, NULL, stat_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		errno = err;
		unlink(st.path);
		goto fail;
	}
	pthread_setname_np(st.thread, "siw-stat");
	st.running = true;
	eng_dbg("siw-stat socket: %s", st.path);
	return;
fail:
	eng_warn("siw-stat socket %s: %s; no status socket", st.path, strerror(errno));
	if (st.lfd >= 0)
		close(st.lfd);
	if (p[0] >= 0) {
		close(p[0]);
		close(p[1]);
	}
	st.lfd = st.stop_rd = st.stop_wr = -1;
}

/* life lock held */
static void server_stop(void)
{
	char c = 1;

	if (write(st.stop_wr, &c, 1) < 0)
		eng_warn("siw-stat socket: cannot stop its thread: %s", strerror(errno));
	pthread_join(st.thread, NULL);
	unlink(st.path);
	close(st.lfd);
	close(st.stop_rd);
	close(st.stop_wr);
	st.lfd = st.stop_rd = st.stop_wr = -1;
	st.running = false;
}

static void stat_atfork_child(void)
{
	/* No thread of ours in the child; the parent's contexts are dead here. */
	pthread_mutex_init(&st.lock, NULL);
	pthread_mutex_init(&st.life, NULL);
	if (st.running) {
		close(st.lfd);
		close(st.stop_rd);
		close(st.stop_wr);
		st.lfd = st.stop_rd = st.stop_wr = -1;
		st.running = false;
	}
	st.nctx = 0;
}

static void stat_init_once(void)
{
	const char *e = getenv("SIW_STAT");

	st.enabled = !(e && (!strcmp(e, "0") || !strcasecmp(e, "off") || !strcasecmp(e, "no")));
	pthread_atfork(NULL, NULL, stat_atfork_child);
}

__attribute__((destructor)) static void stat_fini(void)
{
	/* At exit: the socket file goes; the thread dies with the process. */
	pthread_mutex_lock(&st.life);
	if (st.running && st.pid == getpid())
		unlink(st.path);
	pthread_mutex_unlock(&st.life);
}

/* ---- hooks ----------------------------------------------------------------------------------- */

void eng_stat_ctx_open(struct eng_ctx *ctx)
{
	eng_cap_init();
	pthread_once(&st.once, stat_init_once);
	pthread_mutex_lock(&st.lock);
	if (st.nctx == st.cap) {
		unsigned c = st.cap ? 2 * st.cap : 8;
		struct eng_ctx **n = realloc(st.ctx, c * sizeof(*n));

		if (!n) {
			pthread_mutex_unlock(&st.lock);
			return; /* the context works; siw-stat does not show it */
		}
		st.ctx = n;
		st.cap = c;
	}
	st.ctx[st.nctx++] = ctx;
	pthread_mutex_unlock(&st.lock);
	if (!st.enabled)
		return;
	pthread_mutex_lock(&st.life);
	if (!st.running)
		server_start();
	pthread_mutex_unlock(&st.life);
}

void eng_stat_ctx_close(struct eng_ctx *ctx)
{
	bool last;

	pthread_mutex_lock(&st.lock);
	for (unsigned i = 0; i < st.nctx; i++) {
		if (st.ctx[i] == ctx) {
			st.ctx[i] = st.ctx[--st.nctx];
			break;
		}
	}
	pthread_mutex_unlock(&st.lock);
	pthread_mutex_lock(&st.life);
	pthread_mutex_lock(&st.lock);
	last = st.nctx == 0;
	pthread_mutex_unlock(&st.lock);
	if (last && st.running && st.pid == getpid())
		server_stop();
	pthread_mutex_unlock(&st.life);
}

void eng_stat_qp_unlink(struct eng_qp *qp)
{
	struct qp_snap s;

	/* A document being built may still read this QP: wait for it. */
	pthread_mutex_lock(&st.lock);
	pthread_mutex_unlock(&st.lock);
	if (eng_forked(qp->ctx))
		return;
	if (ENG_CAP_ON())
		eng_cap_close(qp);
	if (eng_log_level < 3)
		return;
	qp_snapshot(qp, &s);
	if (!s.ever_connected)
		return;
	eng_info("QP %u destroyed: sent %llu bytes, %llu messages, %llu FPDUs; received %llu "
		 "bytes, %llu messages, %llu FPDUs; %llu errors, %llu TERMINATEs sent, %llu "
		 "received",
		 s.qpn, (unsigned long long)s.tx.bytes, (unsigned long long)s.tx.messages,
		 (unsigned long long)s.tx.fpdus, (unsigned long long)s.rx.bytes,
		 (unsigned long long)s.rx.messages, (unsigned long long)s.rx.fpdus,
		 (unsigned long long)s.qs.errors, (unsigned long long)s.qs.terms_sent,
		 (unsigned long long)s.qs.terms_recv);
}

void eng_obs_connect(struct eng_qp *qp, const struct eng_conn *conn)
{
	qp->obs.connected_ms = wall_ms();
	qp->obs.term_dir = 0;
	if (ENG_CAP_ON())
		eng_cap_connect(qp, conn);
}

void eng_obs_term(struct eng_qp *qp, bool sent, const struct siw_term_info *t)
{
	if (sent && !qp->term_sent)
		return;
	qp->obs.term_dir = sent ? 1 : 2;
	qp->obs.term = *t;
}
