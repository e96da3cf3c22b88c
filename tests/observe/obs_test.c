// SPDX-License-Identifier: MIT
/*
 * Observability inside one process (so that ASan and TSan see it): the status socket that
 * siw-stat reads (src/engine/stat.c) and SIW_CAPTURE (src/engine/capture.c), over two engine
 * QPs connected on loopback (tests/engine/eng_pair.c).
 *
 *	stat_document		the JSON lists both QPs, connected, MPA rev 2, the counters the
 *				engine reports through eng_qp_stats
 *	stat_concurrent		documents are served while traffic flows and while the QPs are
 *				destroyed (the stat lock keeps a QP alive while it is read)
 *	capture_file		the pcap holds the connection once (both ends are in this
 *				process), handshake first, MPA request and reply, then exactly the
 *				engine's stream bytes, one FPDU per segment
 *	socket_removed		the socket file goes when the last context closes
 *	term_text		both readings of an ambiguous TERMINATE control word
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "eng_pair.h"
#include "helper_pcap.h"
#include "iwarp.h"
#include "priv.h"
#include "test.h"

static char dir[256];
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

/* Every case runs in a process of its own or after the others: the environment is set once,
 * before the first context (stat.c and capture.c read it then). */
static void setup(void)
{
	if (dir[0])
		return;
	snprintf(dir, sizeof(dir), "%s/siw-obs.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	setenv("SIW_STAT_DIR", dir, 1);
	{
		char cap[300];

		snprintf(cap, sizeof(cap), "%s/cap-%%p.pcap", dir);
		setenv("SIW_CAPTURE", cap, 1);
	}
	if ((size_t)snprintf(sock_path, sizeof(sock_path), "%.80s/%ld.sock", dir, (long)getpid()) >=
		sizeof(sock_path) ||
	    strlen(dir) > 80) {
		fprintf(stderr, "TMPDIR too long for a socket path\n");
		exit(1);
	}
}

/* The document this process serves (malloc'ed, NUL-terminated) or NULL. */
static char *fetch_doc(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memcpy(sa.sun_path, sock_path, sizeof(sa.sun_path));
	if (!buf || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		free(buf);
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			char *b = realloc(buf, cap *= 2);

			if (!b)
				break;
			buf = b;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			buf[len] = '\0';
			if (n == 0 && len && buf[len - 1] == '\n')
				return buf;
			free(buf);
			return NULL;
		}
		len += (size_t)n;
	}
	close(fd);
	free(buf);
	return NULL;
}

/* The number after "key": inside the object that starts at obj (first occurrence). */
static long long num_after(const char *obj, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\":", key);
	p = obj ? strstr(obj, k) : NULL;
	return p ? atoll(p + strlen(k)) : -1;
}

/* The QP object of qpn in doc. */
static const char *qp_obj(const char *doc, uint32_t qpn)
{
	char k[32];

	snprintf(k, sizeof(k), "{\"qpn\":%u,", qpn);
	return strstr(doc, k);
}

static struct eng_mr *reg(struct side *s, void *buf, size_t len)
{
	return eng_mr_reg(s->pd, buf, len, (uint64_t)(uintptr_t)buf, ENG_ACCESS_ALL);
}

enum { NBUF = 3, BUFSZ = 200000 };

/* SENDs of several sizes a -> b, an RDMA WRITE a -> b and an RDMA READ of b's buffer. */
static void traffic(struct side *a, struct side *b, uint8_t *ab, uint8_t *bb)
{
	static const uint32_t sizes[NBUF] = {100, 9000, 70000};
	struct eng_mr *ma = reg(a, ab, BUFSZ), *mb = reg(b, bb, BUFSZ);
	struct eng_cqe c[8];
	int bad;

	REQUIRE(ma && mb);
	for (int i = 0; i < NBUF; i++) {
		struct eng_sge rs = {(uint64_t)(uintptr_t)bb, BUFSZ, eng_mr_key(mb)};
		struct eng_recv_wr r = {.wr_id = (uint64_t)i, .sg_list = &rs, .num_sge = 1};
		struct eng_sge ss = {(uint64_t)(uintptr_t)ab, sizes[i], eng_mr_key(ma)};
		struct eng_send_wr s = {.wr_id = (uint64_t)i,
					.opcode = ENG_WR_SEND,
					.flags = ENG_SEND_SIGNALED,
					.sg_list = &ss,
					.num_sge = 1};

		REQUIRE(!eng_post_recv(b->qp, &r, 1, &bad));
		REQUIRE(!eng_post_send(a->qp, &s, 1, &bad));
		REQUIRE(poll_n(b->rcq, c, 1, 5000) == 1);
		CHECK_INT(c[0].status, ENG_WC_SUCCESS);
		CHECK_UINT(c[0].byte_len, sizes[i]);
		REQUIRE(poll_n(a->scq, c, 1, 5000) == 1);
	}
	{
		struct eng_sge ss = {(uint64_t)(uintptr_t)ab, 65536, eng_mr_key(ma)};
		struct eng_send_wr w = {.wr_id = 10,
					.opcode = ENG_WR_RDMA_WRITE,
					.flags = ENG_SEND_SIGNALED,
					.sg_list = &ss,
					.num_sge = 1,
					.remote_addr = (uint64_t)(uintptr_t)bb,
					.rkey = eng_mr_key(mb)};
		struct eng_send_wr rd = w;

		rd.wr_id = 11;
		rd.opcode = ENG_WR_RDMA_READ;
		REQUIRE(!eng_post_send(a->qp, &w, 1, &bad));
		REQUIRE(!eng_post_send(a->qp, &rd, 1, &bad));
		REQUIRE(poll_n(a->scq, c, 2, 5000) == 2);
		CHECK_INT(c[0].status, ENG_WC_SUCCESS);
		CHECK_INT(c[1].status, ENG_WC_SUCCESS);
	}
	eng_mr_dereg(ma);
	eng_mr_dereg(mb);
}

static void test_stat_document(void)
{
	struct side a, b;
	struct pair_opts o;
	struct eng_qp_stats sa, sb;
	uint8_t *ab = calloc(1, BUFSZ), *bb = calloc(1, BUFSZ);
	char *doc;
	const char *qa, *qb;

	setup();
	pair_default_opts(&o);
	o.ird = o.ord = 4;
	REQUIRE(ab && bb);
	REQUIRE(pair_connect(&a, &b, &o) == 0);
	traffic(&a, &b, ab, bb);
	doc = fetch_doc();
	REQUIRE(doc);
	eng_qp_stats(a.qp, &sa);
	eng_qp_stats(b.qp, &sb);
	CHECK_INT(num_after(doc, "siw_stat"), 1);
	CHECK_INT(num_after(doc, "pid"), getpid());
	CHECK(strstr(doc, "\"name\":\"siw_lo\""));
	CHECK_INT(num_after(strstr(doc, "\"devices\""), "contexts"), 2);
	qa = qp_obj(doc, eng_qp_num(a.qp));
	qb = qp_obj(doc, eng_qp_num(b.qp));
	REQUIRE(qa && qb);
	CHECK(!strncmp(strstr(qa, "\"state\":"), "\"state\":\"RTS\"", 13));
	CHECK(!strncmp(strstr(qa, "\"connected\":"), "\"connected\":true", 16));
	CHECK(!strncmp(strstr(qa, "\"role\":"), "\"role\":\"initiator\"", 18));
	CHECK(!strncmp(strstr(qb, "\"role\":"), "\"role\":\"responder\"", 18));
	CHECK_INT(num_after(qa, "rev"), 2);
	CHECK_INT(num_after(qa, "ird"), 4);
	CHECK_INT(num_after(qa, "ord"), 4);
	/* The counters are the engine's (traffic is over: nothing moves while we look). */
	CHECK_INT(num_after(strstr(qa, "\"tx\":"), "bytes"), sa.tx_bytes);
	CHECK_INT(num_after(strstr(qa, "\"tx\":"), "fpdus"), sa.tx_fpdus);
	CHECK_INT(num_after(strstr(qa, "\"rx\":"), "msgs"), sa.rx_msgs);
	CHECK_INT(num_after(strstr(qb, "\"rx\":"), "bytes"), sb.rx_bytes);
	CHECK_INT(num_after(strstr(qb, "\"tx\":"), "msgs"), sb.tx_msgs);
	CHECK(sa.tx_bytes > 140000 && sb.tx_bytes > 65536); /* SENDs + WRITE / READ RESPONSE */
	CHECK_INT(num_after(qa, "terms_sent"), 0);
	CHECK(strstr(qa, "\"last_term\":null"));
	CHECK_INT(num_after(strstr(doc, "\"totals\""), "qps"), 2);
	CHECK_INT(num_after(strstr(doc, "\"totals\""), "connected"), 2);
	CHECK_INT(num_after(strstr(doc, "\"totals\""), "tx_bytes"), sa.tx_bytes + sb.tx_bytes);
	free(doc);
	pair_destroy(&a, &b);
	free(ab);
	free(bb);
}

struct hammer {
	atomic_bool stop;
	atomic_int docs, fails;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;

	while (!atomic_load(&h->stop)) {
		char *d = fetch_doc();

		if (d && strstr(d, "\"totals\""))
			atomic_fetch_add(&h->docs, 1);
		else
			atomic_fetch_add(&h->fails, 1);
		free(d);
	}
	return NULL;
}

static void test_stat_concurrent(void)
{
	struct side a, b;
	struct pair_opts o;
	struct hammer h = {0};
	pthread_t t;
	uint8_t *ab = calloc(1, BUFSZ), *bb = calloc(1, BUFSZ);

	setup();
	pair_default_opts(&o);
	REQUIRE(ab && bb);
	REQUIRE(pair_connect(&a, &b, &o) == 0);
	REQUIRE(!pthread_create(&t, NULL, hammer_main, &h));
	for (int i = 0; i < 20; i++)
		traffic(&a, &b, ab, bb);
	/* Destroyed while documents are being built. */
	eng_qp_destroy(a.qp);
	a.qp = NULL;
	eng_qp_destroy(b.qp);
	b.qp = NULL;
	{
		struct timespec ts = {0, 20 * 1000000};

		nanosleep(&ts, NULL);
	}
	atomic_store(&h.stop, true);
	pthread_join(t, NULL);
	CHECK(atomic_load(&h.docs) > 0);
	CHECK_INT(atomic_load(&h.fails), 0);
	pair_destroy(&a, &b);
	free(ab);
	free(bb);
}

/* Walks an FPDU stream (no markers): the number of FPDUs in it, -1 if it does not add up. */
static long count_fpdus(const uint8_t *p, size_t len)
{
	long n = 0;

	while (len >= 2) {
		size_t ulpdu = (size_t)p[0] << 8 | p[1];
		size_t f = 2 + ulpdu + (4 - (2 + ulpdu) % 4) % 4 + 4;

		if (f > len)
			return -1;
		p += f;
		len -= f;
		n++;
	}
	return len ? -1 : n;
}

static void test_capture_file(void)
{
	struct side a, b;
	struct pair_opts o;
	struct eng_qp_info ia;
	struct eng_qp_stats sa, sb;
	uint8_t *ab = calloc(1, BUFSZ), *bb = calloc(1, BUFSZ);
	struct pc_capture *pc = calloc(1, sizeof(*pc));
	struct pc_flow *fi = NULL, *fr = NULL;
	char path[320];
	uint16_t port;

	setup();
	pair_default_opts(&o);
	o.icfg.crc = o.rcfg.crc = SIW_CRC_REQUIRE;
	REQUIRE(ab && bb && pc);
	REQUIRE(pair_connect(&a, &b, &o) == 0);
	traffic(&a, &b, ab, bb);
	eng_qp_query(a.qp, &ia);
	port = ntohs(((struct sockaddr_in *)&ia.local)->sin_port);
	eng_qp_stats(a.qp, &sa);
	eng_qp_stats(b.qp, &sb);
	pair_destroy(&a, &b); /* closes the connection: FINs, and the file is flushed */

	snprintf(path, sizeof(path), "%s/cap-%ld.pcap", dir, (long)getpid());
	REQUIRE(pc_load(pc, path) == 0);
	CHECK(!pc->truncated);
	CHECK_INT(pc->skipped, 0);
	for (unsigned i = 0; i < pc->nflows; i++) {
		struct pc_flow *f = &pc->flows[i];

		if (f->sport == port) {
			CHECK(!fi); /* the connection is written once */
			fi = f;
		} else if (f->dport == port) {
			CHECK(!fr);
			fr = f;
		}
	}
	REQUIRE(fi && fr);
	CHECK(fi->syn && fr->syn && !fi->gap && !fr->gap);
	CHECK(fr->fin); /* the end that wrote the connection closed it */
	CHECK_INT(fi->dup_bytes + fr->dup_bytes, 0);
	REQUIRE(fi->len > MPA_RR_HDR_LEN && fr->len > MPA_RR_HDR_LEN);
	CHECK_MEM(fi->data, MPA_KEY_REQ, MPA_KEY_LEN);
	CHECK_MEM(fr->data, MPA_KEY_REP, MPA_KEY_LEN);
	{
		/* The frames the pair exchanged, then exactly the engine's stream. */
		size_t qlen = MPA_RR_HDR_LEN + ((size_t)fi->data[18] << 8 | fi->data[19]);
		size_t rlen = MPA_RR_HDR_LEN + ((size_t)fr->data[18] << 8 | fr->data[19]);

		CHECK(fi->data[16] & MPA_FLAG_CRC);
		CHECK_UINT(fi->len, qlen + sa.tx_bytes);
		CHECK_UINT(fr->len, rlen + sb.tx_bytes);
		CHECK_INT(count_fpdus(fi->data + qlen, fi->len - qlen), sa.tx_fpdus);
		CHECK_INT(count_fpdus(fr->data + rlen, fr->len - rlen), sb.tx_fpdus);
	}
	pc_free(pc);
	free(pc);
	free(ab);
	free(bb);
}

static void test_socket_removed(void)
{
	struct side a, b;
	struct pair_opts o;
	struct stat st;

	setup();
	pair_default_opts(&o);
	REQUIRE(pair_connect(&a, &b, &o) == 0);
	CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 077) == 0);
	pair_destroy(&a, &b);
	CHECK(stat(sock_path, &st) < 0 && errno == ENOENT);
}

static void test_term_text(void)
{
	char out[400];
	bool found = false;

	/* A control word whose RFC and nibble-swapped readings are both registered. */
	for (unsigned l = 0; l < 16 && !found; l++)
		for (unsigned e = 0; e < 16 && !found; e++)
			for (unsigned c = 0; c < 256 && !found; c++) {
				struct siw_term_info t = {0};

				if (l == e || !siw_term_valid(l, e, c) || !siw_term_valid(e, l, c))
					continue;
				t.layer = (uint8_t)l;
				t.etype = (uint8_t)e;
				t.ecode = (uint8_t)c;
				t.rfc_valid = t.swapped_valid = true;
				t.swapped_layer = (uint8_t)e;
				t.swapped_etype = (uint8_t)l;
				eng_obs_term_text(&t, out, sizeof(out));
				CHECK(strstr(out, "kernel siw"));
				found = true;
			}
	CHECK(found);
}

static void cleanup_dir(void)
{
	DIR *d = dir[0] ? opendir(dir) : NULL;
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char p[600];

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d) {
		closedir(d);
		rmdir(dir);
	}
}

int main(int argc, char **argv)
{
	static const struct t_case cases[] = {
	    T_CASE(test_stat_document),  T_CASE(test_stat_concurrent), T_CASE(test_capture_file),
	    T_CASE(test_socket_removed), T_CASE(test_term_text),
	};
	int r = t_run(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);

	if (!getenv("OBS_KEEP"))
		cleanup_dir();
	else
		fprintf(stderr, "kept %s\n", dir);
	return r;
}
