// SPDX-License-Identifier: MIT
/*
 * siw-stat: what the running softiwarp processes of this user are doing, in the spirit of
 * `rdma resource show` and `rdma statistic`.
 *
 *	siw-stat		table of every process: devices, QPs (state, peer, MPA parameters,
 *				bytes/messages/FPDUs each way, retries, errors, TERMINATEs), totals
 *	siw-stat --json		the same as one JSON document {"siw_stat":1,"processes":[...]}
 *	siw-stat -p PID		one process only
 *	siw-stat -w		watch: refresh every second, with rates (-i SEC, -n COUNT)
 *
 * Each process with a softiwarp context open serves a JSON document on a Unix domain socket
 * <dir>/<pid>.sock (src/engine/stat.c; where <dir> is: src/engine/stat_path.h). Sockets of
 * processes that died without removing theirs are deleted here. Every wait is bounded.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "stat_path.h"

#define MAX_DOC    (64u << 20) /* bytes of one process's document */
#define TIMEOUT_MS 3000        /* per process */
#define MAX_PROCS  4096

/* ---- a small JSON reader ----------------------------------------------------------------------
 */

enum jt { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	enum jt t;
	double num;
	bool b;
	char *str;       /* J_STR; the key for members of an object */
	struct jv *kids; /* J_ARR / J_OBJ: array of n values */
	size_t n;
	char *key;
};

struct jp {
	const char *p, *end;
	int depth;
};

static void jfree(struct jv *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		jfree(&v->kids[i]);
	free(v->kids);
	free(v->str);
	free(v->key);
}

static void jws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool jlit(struct jp *j, const char *lit)
{
	size_t l = strlen(lit);

	if ((size_t)(j->end - j->p) < l || memcmp(j->p, lit, l))
		return false;
	j->p += l;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static char *jstring(struct jp *j)
{
	size_t cap = 16, len = 0;
	char *s;

	if (j->p >= j->end || *j->p != '"')
		return NULL;
	j->p++;
	s = malloc(cap);
	while (s && j->p < j->end && *j->p != '"') {
		unsigned c = (unsigned char)*j->p++;

		if (c == '\\') {
			if (j->p >= j->end)
				break;
			c = (unsigned char)*j->p++;
			switch (c) {
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'u': {
				unsigned u = 0;

				for (int i = 0; i < 4; i++) {
					int h = j->p < j->end ? hexval(*j->p++) : -1;

					if (h < 0) {
						free(s);
						return NULL;
					}
					u = u << 4 | (unsigned)h;
				}
				/* Latin-1 range only (what stat.c escapes); others become '?'. */
				c = u < 0x100 ? u : '?';
				break;
			}
			default:
				break; /* \" \\ \/ */
			}
		}
		if (len + 2 > cap) {
			char *n = realloc(s, cap *= 2);

			if (!n) {
				free(s);
				return NULL;
			}
			s = n;
		}
		s[len++] = (char)c;
	}
	if (!s || j->p >= j->end) {
		free(s);
		return NULL;
	}
	j->p++;
	s[len] = '\0';
	return s;
}

static bool jvalue(struct jp *j, struct jv *v);

static bool jadd(struct jv *v, struct jv *kid)
{
	struct jv *n;

	if ((v->n & (v->n - 1)) == 0) { /* grow at powers of two */
		n = realloc(v->kids, (v->n ? 2 * v->n : 1) * sizeof(*n));
		if (!n)
			return false;
		v->kids = n;
	}
	v->kids[v->n++] = *kid;
	return true;
}

static bool jvalue(struct jp *j, struct jv *v)
{
	memset(v, 0, sizeof(*v));
	jws(j);
	if (j->p >= j->end || ++j->depth > 64)
		return false;
	switch (*j->p) {
	case '{':
	case '[': {
		char close = *j->p == '{' ? '}' : ']';

		v->t = close == '}' ? J_OBJ : J_ARR;
		j->p++;
		jws(j);
		if (j->p < j->end && *j->p == close) {
			j->p++;
			break;
		}
		for (;;) {
			struct jv kid;
			char *key = NULL;

			jws(j);
			if (v->t == J_OBJ) {
				key = jstring(j);
				jws(j);
				if (!key || j->p >= j->end || *j->p != ':') {
					free(key);
					return false;
				}
				j->p++;
			}
			if (!jvalue(j, &kid)) {
				free(key);
				jfree(&kid);
				return false;
			}
			kid.key = key;
			if (!jadd(v, &kid)) {
				jfree(&kid);
				return false;
			}
			jws(j);
			if (j->p < j->end && *j->p == ',') {
				j->p++;
				continue;
			}
			if (j->p < j->end && *j->p == close) {
				j->p++;
				break;
			}
			return false;
		}
		break;
	}
	case '"':
		v->t = J_STR;
		v->str = jstring(j);
		if (!v->str)
			return false;
		break;
	case 't':
	case 'f':
		v->t = J_BOOL;
		v->b = *j->p == 't';
		if (!jlit(j, v->b ? "true" : "false"))
			return false;
		break;
	case 'n':
		v->t = J_NULL;
		if (!jlit(j, "null"))
			return false;
		break;
	default: {
		char *e;

		v->t = J_NUM;
		v->num = strtod(j->p, &e);
		if (e == j->p || e > j->end)
			return false;
		j->p = e;
		break;
	}
	}
	j->depth--;
	return true;
}

static bool jparse(const char *s, size_t len, struct jv *v)
{
	struct jp j = {.p = s, .end = s + len};

	if (!jvalue(&j, v))
		return false;
	jws(&j);
	return j.p == j.end;
}

static const struct jv *jget(const struct jv *o, const char *key)
{
	if (!o || o->t != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		if (o->kids[i].key && !strcmp(o->kids[i].key, key))
			return &o->kids[i];
	return NULL;
}

static double jnum(const struct jv *o, const char *key)
{
	const struct jv *v = jget(o, key);

	return v && v->t == J_NUM ? v->num : 0;
}

static const char *jstr(const struct jv *o, const char *key)
{
	const struct jv *v = jget(o, key);

	return v && v->t == J_STR ? v->str : NULL;
}

static bool jbool(const struct jv *o, const char *key)
{
	const struct jv *v = jget(o, key);

	return v && v->t == J_BOOL && v->b;
}

/* ---- talking to the processes ------------------------------------------------------------------
 */

struct proc {
	long pid;
	char *raw; /* the document as served */
	size_t len;
	struct jv doc;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool pid_alive(long pid)
{
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/*
 * Fetches one process's document. Returns 1 (got it), 0 (no such live process: a stale socket
 * was removed, or none), -1 (alive but did not answer).
 */
static int fetch(const char *path, long pid, struct proc *p, bool verbose)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t cap = 65536;
	int64_t deadline = mono_ms() + TIMEOUT_MS;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		if ((e == ECONNREFUSED || e == ENOENT) && !pid_alive(pid)) {
			/* Its process died without cleaning up (killed): remove the leftover. */
			if (e == ECONNREFUSED && unlink(path) == 0 && verbose)
				fprintf(stderr, "siw-stat: removed the stale %s\n", path);
			return 0;
		}
		if (verbose)
			fprintf(stderr, "siw-stat: process %ld does not answer on %s: %s\n", pid,
				path, strerror(e));
		return e == ECONNREFUSED || e == ENOENT ? 0 : -1;
	}
	p->pid = pid;
	p->len = 0;
	p->raw = malloc(cap);
	while (p->raw) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int64_t left = deadline - mono_ms();
		ssize_t n;

		if (left <= 0 || poll(&pf, 1, (int)left) <= 0) {
			if (verbose)
				fprintf(stderr,
					"siw-stat: process %ld: no complete answer in %d ms\n", pid,
					TIMEOUT_MS);
			break;
		}
		if (p->len + 1 >= cap) {
			char *r = cap >= MAX_DOC ? NULL : realloc(p->raw, cap *= 2);

			if (!r)
				break;
			p->raw = r;
		}
		n = recv(fd, p->raw + p->len, cap - p->len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			fd = -1;
			p->raw[p->len] = '\0';
			if (n == 0 && jparse(p->raw, p->len, &p->doc) && p->doc.t == J_OBJ)
				return 1;
			jfree(&p->doc);
			if (verbose)
				fprintf(stderr, "siw-stat: process %ld sent no valid document\n",
					pid);
			break;
		}
		p->len += (size_t)n;
	}
	if (fd >= 0)
		close(fd);
	free(p->raw);
	p->raw = NULL;
	return -1;
}

static int cmp_proc(const void *a, const void *b)
{
	const struct proc *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* Every live process (or just `only`); returns the count. */
static size_t collect(struct proc *procs, long only, bool verbose)
{
	char dirs[2][256];
	int nd = siw_stat_dirs(dirs);
	size_t n = 0;

	for (int d = 0; d < nd; d++) {
		DIR *dir;
		struct dirent *e;

		if (siw_stat_dir_check(dirs[d]))
			continue; /* missing, or not ours alone: never trust its sockets */
		dir = opendir(dirs[d]);
		if (!dir)
			continue;
		while ((e = readdir(dir)) && n < MAX_PROCS) {
			char path[512], *end;
			long pid = strtol(e->d_name, &end, 10);
			bool dup = false;

			if (end == e->d_name || strcmp(end, SIW_STAT_SUFFIX) || pid <= 0 ||
			    (only && pid != only))
				continue;
			for (size_t i = 0; i < n; i++)
				dup |= procs[i].pid == pid;
			if (dup)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dirs[d], e->d_name);
			if (fetch(path, pid, &procs[n], verbose) == 1)
				n++;
		}
		closedir(dir);
	}
	qsort(procs, n, sizeof(*procs), cmp_proc);
	return n;
}

static void release(struct proc *procs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		jfree(&procs[i].doc);
		free(procs[i].raw);
	}
}

/* ---- output ------------------------------------------------------------------------------------
 */

/* Bytes: 1000 -> "1000", 2390426 -> "2.3M" (powers of 1024); counts exact below 100000. */
static const char *human(double v, bool bytes, char *buf, size_t sz)
{
	static const char units[] = "KMGTPE";
	double base = bytes ? 1024 : 1000;
	int u = -1;

	while (v >= (bytes || u >= 0 ? base : 100000) && u < 5) {
		v /= base;
		u++;
	}
	if (u < 0)
		snprintf(buf, sz, "%.0f", v);
	else
		snprintf(buf, sz, "%.1f%c", v, units[u]);
	return buf;
}

struct prev {
	long pid;
	double qpn;
	double txb, rxb, txm, rxm;
};

static struct prev *prevs;
static size_t nprev;
static int64_t prev_ms;

static const struct prev *find_prev(long pid, double qpn)
{
	for (size_t i = 0; i < nprev; i++)
		if (prevs[i].pid == pid && prevs[i].qpn == qpn)
			return &prevs[i];
	return NULL;
}

static void mpa_text(const struct jv *mpa, char *buf, size_t sz)
{
	const char *rtr = jstr(mpa, "rtr");
	bool mrx = jbool(mpa, "markers_rx"), mtx = jbool(mpa, "markers_tx");
	int o;

	if (!mpa || mpa->t != J_OBJ) {
		snprintf(buf, sz, "-");
		return;
	}
	o = snprintf(buf, sz, "v%.0f%s", jnum(mpa, "rev"), jbool(mpa, "crc") ? " crc" : "");
	if ((mrx || mtx) && o > 0 && (size_t)o < sz)
		o += snprintf(buf + o, sz - (size_t)o, " mk:%s/%s", mrx ? "rx" : "-",
			      mtx ? "tx" : "-");
	if (jbool(mpa, "p2p") && rtr && o > 0 && (size_t)o < sz)
		snprintf(buf + o, sz - (size_t)o, " rtr:%s", rtr);
}

static void print_table(const struct proc *procs, size_t n, bool rates, double dt)
{
	struct prev *next = calloc(1, sizeof(*next));
	size_t nnext = 0, cnext = 1;

	if (!n)
		printf("no softiwarp process of this user is running (or SIW_STAT=0 hides it)\n");
	for (size_t i = 0; i < n; i++) {
		const struct jv *d = &procs[i].doc, *devs = jget(d, "devices"),
				*qps = jget(d, "qps"), *tot = jget(d, "totals");
		const char *cap = jstr(d, "capture");
		char a[32], b[32], c[32], e[32], f[32], g[32];

		printf("%sPID %ld %s: %s\n", i ? "\n" : "", procs[i].pid,
		       jstr(d, "comm") ? jstr(d, "comm") : "?",
		       jstr(d, "cmdline") ? jstr(d, "cmdline") : "");
		if (jstr(d, "crc32c"))
			printf("  crc32c: %s\n", jstr(d, "crc32c"));
		printf("  devices:");
		for (size_t k = 0; devs && devs->t == J_ARR && k < devs->n; k++) {
			const struct jv *v = &devs->kids[k];

			printf("%s %s (%s, mtu %.0f, %.0f context%s, %.0f QP%s)", k ? "," : "",
			       jstr(v, "name"), jstr(v, "ifname"), jnum(v, "mtu"),
			       jnum(v, "contexts"), jnum(v, "contexts") == 1 ? "" : "s",
			       jnum(v, "qps"), jnum(v, "qps") == 1 ? "" : "s");
		}
		if (!devs || devs->t != J_ARR || !devs->n)
			printf(" none");
		printf("%s%s\n", cap ? "; capture: " : "", cap ? cap : "");
		if (!qps || qps->t != J_ARR || !qps->n) {
			printf("  no QPs\n");
			continue;
		}
		printf("  %5s %-5s %-4s %-22s %-22s %-15s %7s %8s %8s %8s %8s %8s %8s", "QPN",
		       "STATE", "ROLE", "LOCAL", "PEER", "MPA", "IRD/ORD", "TX-BYTES", "TX-MSGS",
		       "TX-FPDUS", "RX-BYTES", "RX-MSGS", "RX-FPDUS");
		if (rates)
			printf(" %8s %8s %8s %8s", "TX-B/s", "RX-B/s", "TX-MSG/s", "RX-MSG/s");
		printf(" %5s %4s %9s\n", "RETRY", "ERR", "TERM-S/R");
		for (size_t k = 0; k < qps->n; k++) {
			const struct jv *q = &qps->kids[k], *mpa = jget(q, "mpa"),
					*tx = jget(q, "tx"), *rx = jget(q, "rx");
			const char *role = jstr(q, "role");
			char mt[48], io[16], ts[24];

			mpa_text(mpa, mt, sizeof(mt));
			if (mpa && mpa->t == J_OBJ)
				snprintf(io, sizeof(io), "%.0f/%.0f", jnum(mpa, "ird"),
					 jnum(mpa, "ord"));
			else
				snprintf(io, sizeof(io), "-");
			snprintf(ts, sizeof(ts), "%.0f/%.0f", jnum(q, "terms_sent"),
				 jnum(q, "terms_recv"));
			printf("  %5.0f %-5s %-4s %-22s %-22s %-15s %7s %8s %8s %8s %8s %8s %8s",
			       jnum(q, "qpn"), jstr(q, "state") ? jstr(q, "state") : "?",
			       role ? (role[0] == 'i' ? "init" : "resp") : "-",
			       jstr(q, "local") ? jstr(q, "local") : "-",
			       jstr(q, "peer") ? jstr(q, "peer") : "-", mt, io,
			       human(jnum(tx, "bytes"), true, a, sizeof(a)),
			       human(jnum(tx, "msgs"), false, b, sizeof(b)),
			       human(jnum(tx, "fpdus"), false, c, sizeof(c)),
			       human(jnum(rx, "bytes"), true, e, sizeof(e)),
			       human(jnum(rx, "msgs"), false, f, sizeof(f)),
			       human(jnum(rx, "fpdus"), false, g, sizeof(g)));
			if (rates) {
				const struct prev *p = find_prev(procs[i].pid, jnum(q, "qpn"));
				double r[4] = {0};

				if (p && dt > 0) {
					r[0] = (jnum(tx, "bytes") - p->txb) / dt;
					r[1] = (jnum(rx, "bytes") - p->rxb) / dt;
					r[2] = (jnum(tx, "msgs") - p->txm) / dt;
					r[3] = (jnum(rx, "msgs") - p->rxm) / dt;
				}
				for (int x = 0; x < 4; x++)
					printf(" %8s",
					       p ? human(r[x] < 0 ? 0 : r[x], x < 2, a, sizeof(a))
						 : "-");
			}
			printf(" %5.0f %4.0f %9s\n", jnum(q, "retries"), jnum(q, "errors"), ts);
			if (nnext == cnext) {
				struct prev *np = realloc(next, 2 * cnext * sizeof(*np));

				if (np) {
					next = np;
					cnext *= 2;
				}
			}
			if (next && nnext < cnext)
				next[nnext++] = (struct prev){procs[i].pid,      jnum(q, "qpn"),
							      jnum(tx, "bytes"), jnum(rx, "bytes"),
							      jnum(tx, "msgs"),  jnum(rx, "msgs")};
		}
		printf("  total: %.0f QP%s (%.0f connected), sent %s bytes in %s messages / %s "
		       "FPDUs, received %s bytes in %s messages / %s FPDUs, %.0f retries, %.0f "
		       "errors, TERMINATEs %.0f sent / %.0f received\n",
		       jnum(tot, "qps"), jnum(tot, "qps") == 1 ? "" : "s", jnum(tot, "connected"),
		       human(jnum(tot, "tx_bytes"), true, a, sizeof(a)),
		       human(jnum(tot, "tx_msgs"), false, b, sizeof(b)),
		       human(jnum(tot, "tx_fpdus"), false, c, sizeof(c)),
		       human(jnum(tot, "rx_bytes"), true, e, sizeof(e)),
		       human(jnum(tot, "rx_msgs"), false, f, sizeof(f)),
		       human(jnum(tot, "rx_fpdus"), false, g, sizeof(g)), jnum(tot, "retries"),
		       jnum(tot, "errors"), jnum(tot, "terms_sent"), jnum(tot, "terms_recv"));
		/* What went wrong, in words. */
		for (size_t k = 0; k < qps->n; k++) {
			const struct jv *q = &qps->kids[k], *t = jget(q, "last_term");
			const char *err = jstr(q, "error");

			if (t && t->t == J_OBJ)
				printf("  QP %.0f: last TERMINATE %s: %s\n", jnum(q, "qpn"),
				       jstr(t, "dir"), jstr(t, "text"));
			if (err)
				printf("  QP %.0f: error: %s\n", jnum(q, "qpn"), err);
		}
	}
	free(prevs);
	prevs = next;
	nprev = nnext;
}

static void print_json(const struct proc *procs, size_t n, bool one_line)
{
	printf("{\"siw_stat\":%d,\"processes\":[", SIW_STAT_VERSION);
	for (size_t i = 0; i < n; i++) {
		size_t l = procs[i].len;

		while (l && (procs[i].raw[l - 1] == '\n' || procs[i].raw[l - 1] == ' '))
			l--;
		printf("%s%s%.*s", i ? "," : "", one_line ? "" : "\n", (int)l, procs[i].raw);
	}
	printf("%s]}\n", one_line || !n ? "" : "\n");
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: siw-stat [--json] [-p PID] [-w [-i SEC] [-n COUNT]] [-v]\n"
		"\n"
		"Shows the running softiwarp processes of this user: their devices and QPs\n"
		"(state, addresses, negotiated MPA parameters, bytes/messages/FPDUs each way,\n"
		"retries, errors, TERMINATEs) and per-process totals.\n"
		"\n"
		"  --json        one JSON document {\"siw_stat\":1,\"processes\":[...]}\n"
		"  -p, --pid PID that process only (exit status 1 if it has no status socket)\n"
		"  -w, --watch   refresh every second, with rates (--json: one document per line)\n"
		"  -i SEC        refresh interval for -w (default 1)\n"
		"  -n COUNT      stop after COUNT refreshes (-w)\n"
		"  -v            say why a process is not shown\n"
		"  -h, --help    this text\n"
		"\n"
		"Processes publish their state on <dir>/<pid>.sock, <dir> being $SIW_STAT_DIR,\n"
		"or $XDG_RUNTIME_DIR/softiwarp and /tmp/softiwarp-<uid>; SIW_STAT=0 in a\n"
		"process turns its socket off. Sockets of dead processes are removed.\n");
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},        {"pid", required_argument, NULL, 'p'},
	    {"watch", no_argument, NULL, 'w'},       {"interval", required_argument, NULL, 'i'},
	    {"count", required_argument, NULL, 'n'}, {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
	bool json = false, watch = false, verbose = false, tty = isatty(1);
	long only = 0, count = 0;
	double interval = 1;
	struct proc *procs;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "jp:wi:n:vh", opts, NULL)) != -1) {
		char *end;

		switch (c) {
		case 'j':
			json = true;
			break;
		case 'p':
			only = strtol(optarg, &end, 10);
			if (*end || only <= 0) {
				fprintf(stderr, "siw-stat: bad pid '%s'\n", optarg);
				return 2;
			}
			break;
		case 'w':
			watch = true;
			break;
		case 'i':
			interval = strtod(optarg, &end);
			if (*end || interval < 0.1 || interval > 3600) {
				fprintf(stderr, "siw-stat: bad interval '%s'\n", optarg);
				return 2;
			}
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (*end || count <= 0) {
				fprintf(stderr, "siw-stat: bad count '%s'\n", optarg);
				return 2;
			}
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	procs = calloc(MAX_PROCS, sizeof(*procs));
	if (!procs) {
		fprintf(stderr, "siw-stat: out of memory\n");
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	for (long round = 1;; round++) {
		int64_t t0 = mono_ms();
		size_t n = collect(procs, only, verbose);
		double dt = prev_ms ? (double)(t0 - prev_ms) / 1000 : 0;

		if (only && !n) {
			fprintf(
			    stderr,
			    "siw-stat: process %ld has no softiwarp status socket (not running, "
			    "no context open, another user's, or SIW_STAT=0)\n",
			    only);
			rc = 1;
		}
		if (json) {
			print_json(procs, n, watch);
		} else {
			if (watch && tty)
				printf("\033[H\033[2J");
			if (watch) {
				time_t now = time(NULL);

				printf("siw-stat every %gs, %s", interval, ctime(&now));
			}
			print_table(procs, n, watch, dt);
		}
		fflush(stdout);
		release(procs, n);
		memset(procs, 0, n * sizeof(*procs));
		prev_ms = t0;
		if (!watch || stop || (count && round >= count))
			break;
		{
			int64_t until = t0 + (int64_t)(interval * 1000);
			struct timespec ts = {0, 20 * 1000000};

			while (!stop && mono_ms() < until)
				nanosleep(&ts, NULL);
		}
		if (stop)
			break;
	}
	free(procs);
	free(prevs);
	return rc;
}
