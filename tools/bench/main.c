// SPDX-License-Identifier: MIT
/*
 * siw-bench: softiwarp's RDMA WRITE, READ and SEND/RECV bandwidth and latency next to plain TCP
 * on loopback, in one invocation.
 *
 * Process model: the program forks a server process first thing (before any verbs or rdma_cm
 * call), so client and server each have their own softiwarp context and progress thread. A
 * plain TCP control connection between them carries row setup, keys, synchronisation and the
 * server's results (util.c). The softiwarp connections are made with rdma_cm (siw.c); the TCP
 * measurements use fresh blocking sockets per row (tcp.c).
 *
 * Bounded: every wait has a timeout (--timeout beyond the row time), a SIGALRM watchdog covers
 * each step as a whole, the server dies with the client (PR_SET_PDEATHSIG) and the client kills
 * the server on any failure. Exit status: 0 all rows measured and verified, 1 failure, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static const char usage_text[] =
    "usage: siw-bench [options]\n"
    "\n"
    "softiwarp RDMA WRITE / READ / SEND bandwidth and latency next to plain TCP, on\n"
    "127.0.0.1, client and server in two processes of one invocation.\n"
    "\n"
    "  --sizes LIST     message sizes, comma separated, K/M suffixes (default\n"
    "                   8,32,128,512,2K,8K,32K,128K,512K,2M,4M)\n"
    "  --ops LIST       any of write,read,send (default all three)\n"
    "  --bw-only        bandwidth rows only\n"
    "  --lat-only       latency rows only\n"
    "  --depth N        send queue depth per QP of the bandwidth rows (default 64)\n"
    "  --qps N          QPs of the bandwidth rows, posted round-robin (default 1)\n"
    "  --inline N       IBV_SEND_INLINE for WRITE/SEND messages of <= N bytes (default 0)\n"
    "  --crc            MPA CRC32c: SIW_MPA_CRC=require in both processes\n"
    "  --events         wait on a completion channel instead of busy polling\n"
    "  --time SEC       time per measurement (default 0.5)\n"
    "  --short          CI sanity mode: sizes 8,4K,1M and 0.05 s per measurement\n"
    "  --tcp-only       the TCP half only (no verbs or rdma_cm call at all)\n"
    "  --csv FILE       write the rows as CSV\n"
    "  --json FILE      write settings, machine facts and rows as JSON\n"
    "  --plot FILE.png  gnuplot: bandwidth vs size, one line per op and transport\n"
    "  --port P         control port P, rdma_cm P+1, TCP data P+2 (default: ephemeral)\n"
    "  --addr A         the server's IPv4 address (default 127.0.0.1)\n"
    "  --server-netns NS  the server process runs in network namespace NS (/run/netns/NS,\n"
    "                   root), e.g. across a veth pair: --addr is then its address there\n"
    "  --timeout SEC    longest wait beyond the row time before giving up (default 30)\n"
    "  --quiet          no progress line on stderr\n"
    "  --help           this text\n"
    "\n"
    "Each row: bandwidth with a deep queue (TCP: one blocking stream, TCP_NODELAY) and\n"
    "ping-pong latency, median and p99 (WRITE: the peer polls the last byte, as\n"
    "ib_write_lat; SEND/RECV ping-pong; READ round trip; TCP: blocking ping-pong), plus\n"
    "CPU time of both processes per byte. Data is verified in every row.\n";

enum {
	OPT_SIZES = 256,
	OPT_OPS,
	OPT_BW_ONLY,
	OPT_LAT_ONLY,
	OPT_DEPTH,
	OPT_QPS,
	OPT_INLINE,
	OPT_CRC,
	OPT_EVENTS,
	OPT_TIME,
	OPT_SHORT,
	OPT_TCP_ONLY,
	OPT_CSV,
	OPT_JSON,
	OPT_PLOT,
	OPT_PORT,
	OPT_ADDR,
	OPT_NETNS,
	OPT_TIMEOUT,
	OPT_QUIET,
	OPT_HELP,
};

static const struct option long_opts[] = {
    {"sizes", required_argument, NULL, OPT_SIZES},
    {"ops", required_argument, NULL, OPT_OPS},
    {"bw-only", no_argument, NULL, OPT_BW_ONLY},
    {"lat-only", no_argument, NULL, OPT_LAT_ONLY},
    {"depth", required_argument, NULL, OPT_DEPTH},
    {"qps", required_argument, NULL, OPT_QPS},
    {"inline", required_argument, NULL, OPT_INLINE},
    {"crc", no_argument, NULL, OPT_CRC},
    {"events", no_argument, NULL, OPT_EVENTS},
    {"time", required_argument, NULL, OPT_TIME},
    {"short", no_argument, NULL, OPT_SHORT},
    {"tcp-only", no_argument, NULL, OPT_TCP_ONLY},
    {"csv", required_argument, NULL, OPT_CSV},
    {"json", required_argument, NULL, OPT_JSON},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"port", required_argument, NULL, OPT_PORT},
    {"addr", required_argument, NULL, OPT_ADDR},
    {"server-netns", required_argument, NULL, OPT_NETNS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const size_t default_sizes[] = {8,     32,     128,    512,     2048,   8192,
				       32768, 131072, 524288, 2097152, 4194304};
static const size_t short_sizes[] = {8, 4096, 1048576};
static const char *server_netns; /* --server-netns */

static void usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "siw-bench: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(siw-bench --help lists the options)\n");
	exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *opt)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "siw-bench: %s %s: expected a number from %ld to %ld\n", opt, s, lo,
			hi);
		exit(2);
	}
	return v;
}

static double parse_secs(const char *s, double lo, double hi, const char *opt)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi)) {
		fprintf(stderr, "siw-bench: %s %s: expected seconds from %g to %g\n", opt, s, lo,
			hi);
		exit(2);
	}
	return v;
}

static size_t parse_size(const char *s)
{
	unsigned long long v, mul = 1;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end == 'k' || *end == 'K')
		mul = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mul = 1024 * 1024, end++;
	else if (*end == 'g' || *end == 'G')
		mul = 1024 * 1024 * 1024, end++;
	if (errno || end == s || *end || *s == '-' || v == 0 || v > BENCH_MAX_SIZE / mul)
		usage_error("bad message size '%s' (1 byte to 1G, K/M/G suffixes)", s);
	return (size_t)(v * mul);
}

static void parse_list(char *arg, void (*each)(struct bench_opts *, const char *),
		       struct bench_opts *o)
{
	char *save, *tok;

	for (tok = strtok_r(arg, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (*tok)
			each(o, tok);
}

static void add_size(struct bench_opts *o, const char *tok)
{
	size_t v = parse_size(tok);

	for (int i = 0; i < o->nsizes; i++)
		if (o->sizes[i] == v)
			return;
	if (o->nsizes == BENCH_MAX_SIZES)
		usage_error("too many sizes (at most 64)%s", "");
	o->sizes[o->nsizes++] = v;
}

static void add_op(struct bench_opts *o, const char *tok)
{
	for (int k = 0; k < OP_COUNT; k++) {
		if (strcmp(tok, bench_op_name[k]))
			continue;
		for (int i = 0; i < o->nops; i++)
			if (o->ops[i] == k)
				return;
		o->ops[o->nops++] = k;
		return;
	}
	usage_error("unknown op '%s' (write, read, send)", tok);
}

static void parse_opts(int argc, char **argv, struct bench_opts *o)
{
	bool have_time = false, bw_only = false, lat_only = false;
	int c;

	memset(o, 0, sizeof(*o));
	o->depth = 64;
	o->qps = 1;
	o->time = 0.5;
	o->timeout = 30;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_SIZES:
			parse_list(optarg, add_size, o);
			break;
		case OPT_OPS:
			parse_list(optarg, add_op, o);
			break;
		case OPT_BW_ONLY:
			bw_only = true;
			break;
		case OPT_LAT_ONLY:
			lat_only = true;
			break;
		case OPT_DEPTH:
			o->depth = (int)parse_long(optarg, 1, BENCH_MAX_DEPTH, "--depth");
			break;
		case OPT_QPS:
			o->qps = (int)parse_long(optarg, 1, BENCH_MAX_QPS, "--qps");
			break;
		case OPT_INLINE:
			o->inline_max = (unsigned)parse_long(optarg, 0, 1 << 20, "--inline");
			break;
		case OPT_CRC:
			o->crc = true;
			break;
		case OPT_EVENTS:
			o->events = true;
			break;
		case OPT_TIME:
			o->time = parse_secs(optarg, 0.001, 3600, "--time");
			have_time = true;
			break;
		case OPT_SHORT:
			o->short_mode = true;
			break;
		case OPT_TCP_ONLY:
			o->tcp_only = true;
			break;
		case OPT_CSV:
			o->csv = optarg;
			break;
		case OPT_JSON:
			o->json = optarg;
			break;
		case OPT_PLOT:
			o->plot = optarg;
			break;
		case OPT_PORT:
			o->port = (int)parse_long(optarg, 0, 65533, "--port");
			break;
		case OPT_ADDR: {
			struct in_addr a;

			if (inet_pton(AF_INET, optarg, &a) != 1)
				usage_error("--addr: not an IPv4 address: %s", optarg);
			bench_addr = ntohl(a.s_addr);
			break;
		}
		case OPT_NETNS:
			server_netns = optarg;
			break;
		case OPT_TIMEOUT:
			o->timeout = parse_secs(optarg, 0.1, 3600, "--timeout");
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_HELP:
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		default:
			fputs("(siw-bench --help lists the options)\n", stderr);
			exit(2);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (bw_only && lat_only)
		usage_error("--bw-only and --lat-only exclude each other%s", "");
	o->bw = !lat_only;
	o->lat = !bw_only;
	if (!o->nsizes) {
		const size_t *sz = o->short_mode ? short_sizes : default_sizes;
		int n = o->short_mode ? 3 : (int)(sizeof(default_sizes) / sizeof(default_sizes[0]));

		for (int i = 0; i < n; i++)
			o->sizes[o->nsizes++] = sz[i];
	}
	if (o->short_mode && !have_time)
		o->time = 0.05;
	if (!o->nops)
		for (int k = 0; k < OP_COUNT; k++)
			o->ops[o->nops++] = k;
}

/* ---- watchdog and the child -------------------------------------------------------------- */

static volatile sig_atomic_t child_pid;

static void on_alarm(int sig)
{
	static const char msg[] = "siw-bench: watchdog: a step took far too long; giving up\n";
	ssize_t w;

	(void)sig;
	w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)w;
	if (child_pid > 0)
		kill((pid_t)child_pid, SIGKILL);
	_exit(1);
}

static void watchdog(double secs)
{
	alarm(secs > 0 ? (unsigned)(secs + 1) : 0);
}

/* Waits for the server to exit; kills it after timeout seconds. Returns its exit status. */
static int reap_child(pid_t pid, double timeout, bool kill_now)
{
	int64_t deadline = now_ns() + (int64_t)(timeout * 1e9);
	int st;

	if (kill_now)
		kill(pid, SIGKILL);
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_ns() > deadline) {
			kill(pid, SIGKILL);
			if (waitpid(pid, &st, 0) != pid)
				return -1;
			return -1;
		}
		nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	}
	child_pid = 0;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return -1;
}

/* ---- server process ------------------------------------------------------------------------ */

static int server_process(int ctl_lfd, int data_lfd, const struct bench_opts *o, size_t max_size,
			  pid_t parent)
{
	struct tcp_ctx *tcp = NULL;
	struct siw *s = NULL;
	struct ctl_msg m;
	int ctl;

	/* Die with the client, whatever happens to it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		return 1;
	ctl = tcp_accept_timeout(ctl_lfd, o->timeout);
	close(ctl_lfd);
	if (ctl < 0)
		return 1;
	tcp = tcp_ctx_new(max_size, o);
	if (!tcp)
		goto fail;
	for (;;) {
		if (ctl_recv(ctl, &m, CTL_ANY, 2 * (o->time + o->timeout)) < 0)
			goto fail;
		switch (m.type) {
		case CTL_SIW_SETUP:
			if (s) {
				err("second SIW_SETUP");
				goto fail;
			}
			s = siw_server_setup(ctl, &m, o);
			if (!s)
				goto fail;
			break;
		case CTL_ROW:
			if (m.transport == TR_TCP) {
				if (tcp_server_row(tcp, ctl, data_lfd, &m) < 0)
					goto fail;
			} else if (siw_server_row(s, ctl, &m) < 0) {
				goto fail;
			}
			break;
		case CTL_QUIT: {
			int rc = siw_teardown(s);

			s = NULL;
			if (rc < 0)
				goto fail;
			ctl_init(&m, CTL_BYE);
			ctl_send(ctl, &m);
			tcp_ctx_free(tcp);
			close(ctl);
			return 0;
		}
		default:
			err("unexpected control message %u", m.type);
			goto fail;
		}
	}
fail:
	/* The client prints it ("peer: ..."). The process exit releases the rest. */
	ctl_send_error(ctl, err_text());
	return 1;
}

/* ---- client ---------------------------------------------------------------------------------- */

static bool progress_on;

static void progress(const struct bench_opts *o, int done, int total, const struct bench_row *r,
		     const char *what)
{
	char sz[24];

	if (!progress_on || o->quiet)
		return;
	fprintf(stderr, "\r\033[K[%d/%d] %s %s: %s ...", done + 1, total, bench_op_name[r->op],
		size_str(r->size, sz, sizeof(sz)), what);
	fflush(stderr);
}

static void progress_clear(void)
{
	if (progress_on) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
}

static int run_row(struct report *rep, struct siw *s, struct tcp_ctx *tcp, int ctl, int data_port,
		   struct bench_row *row)
{
	const struct bench_opts *o = rep->o;
	int total = o->nops * o->nsizes;

	if (s && o->bw) {
		progress(o, rep->nrows - 1, total, row, "softiwarp bandwidth");
		if (siw_client_bw(s, ctl, row->op, row->size, &row->siw_bw) < 0)
			return -1;
	}
	if (s && o->lat) {
		progress(o, rep->nrows - 1, total, row, "softiwarp latency");
		if (siw_client_lat(s, ctl, row->op, row->size, &row->siw_lat) < 0)
			return -1;
	}
	if (o->bw) {
		progress(o, rep->nrows - 1, total, row, "TCP bandwidth");
		if (tcp_client_bw(tcp, ctl, data_port, row->op, row->size, &row->tcp_bw) < 0)
			return -1;
	}
	if (o->lat) {
		progress(o, rep->nrows - 1, total, row, "TCP latency");
		if (tcp_client_lat(tcp, ctl, data_port, row->op, row->size, &row->tcp_lat) < 0)
			return -1;
	}
	return 0;
}

static int client_run(struct report *rep, int ctl, int data_port, size_t max_size)
{
	const struct bench_opts *o = rep->o;
	/* A row runs four measurements; each may take its time plus a few waits. */
	double row_budget = 4 * (o->time + 4 * o->timeout) + 10;
	struct tcp_ctx *tcp = tcp_ctx_new(max_size, o);
	struct siw *s = NULL;
	struct ctl_msg m;
	int rc = -1;

	if (!tcp)
		return -1;
	if (!o->tcp_only) {
		watchdog(3 * o->timeout + 0.5 * o->qps + 10);
		s = siw_client_setup(ctl, o, max_size, &rep->siw);
		if (!s)
			goto out;
		rep->have_siw = true;
	}
	report_header(stdout, rep);
	for (int k = 0; k < o->nops; k++) {
		for (int i = 0; i < o->nsizes; i++) {
			struct bench_row *row = &rep->rows[rep->nrows++];
			int r;

			row->op = (enum bench_op)o->ops[k];
			row->size = o->sizes[i];
			watchdog(row_budget);
			r = run_row(rep, s, tcp, ctl, data_port, row);
			progress_clear();
			report_row(stdout, rep, row);
			if (r < 0)
				goto out;
		}
	}
	watchdog(3 * o->timeout + 10);
	ctl_init(&m, CTL_QUIT);
	if (ctl_send(ctl, &m) < 0)
		goto out;
	rc = siw_teardown(s);
	s = NULL;
	if (rc < 0 || ctl_recv(ctl, &m, CTL_BYE, 2 * o->timeout) < 0)
		rc = -1;
out:
	if (s) {
		/* Failed: the server goes first, so our QPs see resets instead of waiting for a
		 * graceful close. */
		if (child_pid > 0)
			kill((pid_t)child_pid, SIGKILL);
		siw_teardown(s);
	}
	tcp_ctx_free(tcp);
	return rc;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct report rep;
	int ctl_lfd, data_lfd, ctl_port, data_port, ctl, rc, st, own_ns = -1, srv_ns = -1;
	size_t max_size = 0;
	pid_t pid;

	parse_opts(argc, argv, &o);
	signal(SIGPIPE, SIG_IGN);
	/* softiwarp's CM reads this when an rdma_cm_id is created: both processes inherit it. */
	if (o.crc && setenv("SIW_MPA_CRC", "require", 1)) {
		perror("siw-bench: setenv");
		return 1;
	}
	for (int i = 0; i < o.nsizes; i++)
		if (o.sizes[i] > max_size)
			max_size = o.sizes[i];
	memset(&rep, 0, sizeof(rep));
	rep.o = &o;
	machine_facts(&rep.mach);
	rep.rows = calloc((size_t)(o.nops * o.nsizes), sizeof(*rep.rows));
	if (!rep.rows) {
		fprintf(stderr, "siw-bench: out of memory\n");
		return 1;
	}
	progress_on = isatty(STDERR_FILENO) && !o.quiet;

	/* --server-netns: the server's listening sockets, its rdma_cm listener and its engine
	 * live in that namespace (sockets keep the namespace they were created in). */
	if (server_netns) {
		char path[512];

		snprintf(path, sizeof(path), "/run/netns/%s", server_netns);
		own_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		srv_ns = open(path, O_RDONLY | O_CLOEXEC);
		if (own_ns < 0 || srv_ns < 0 || setns(srv_ns, CLONE_NEWNET) < 0) {
			fprintf(stderr, "siw-bench: --server-netns %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	ctl_lfd = tcp_listen_lo(o.port, &ctl_port);
	data_lfd = ctl_lfd < 0 ? -1 : tcp_listen_lo(o.port ? o.port + 2 : 0, &data_port);
	if (server_netns && setns(own_ns, CLONE_NEWNET) < 0) {
		fprintf(stderr, "siw-bench: back to the client's namespace: %s\n", strerror(errno));
		return 1;
	}
	if (data_lfd < 0) {
		fprintf(stderr, "siw-bench: %s\n", err_text());
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("siw-bench: fork");
		return 1;
	}
	if (pid == 0) {
		if (server_netns && setns(srv_ns, CLONE_NEWNET) < 0) {
			fprintf(stderr, "siw-bench: server: setns: %s\n", strerror(errno));
			_exit(1);
		}
		rc = server_process(ctl_lfd, data_lfd, &o, max_size, getppid());
		fflush(NULL);
		_exit(rc);
	}
	child_pid = pid;
	signal(SIGALRM, on_alarm);
	close(data_lfd);
	ctl = tcp_connect_lo(ctl_port, o.timeout);
	close(ctl_lfd);
	rc = ctl < 0 ? -1 : client_run(&rep, ctl, data_port, max_size);
	watchdog(2 * o.timeout + 10);
	if (rc < 0) {
		rep.failed = true;
		snprintf(rep.failure, sizeof(rep.failure), "%s", err_text());
		progress_clear();
		fprintf(stderr, "siw-bench: error: %s\n", err_text());
		reap_child(pid, 0, true);
	} else {
		st = reap_child(pid, o.timeout, false);
		if (st) {
			rep.failed = true;
			snprintf(rep.failure, sizeof(rep.failure), "server process exited with %d",
				 st);
			fprintf(stderr, "siw-bench: error: %s\n", rep.failure);
		}
	}
	if (ctl >= 0)
		close(ctl);
	watchdog(0);
	err_clear();
	if (o.csv && report_csv(&rep, o.csv) < 0)
		rep.failed = true;
	if (o.json && report_json(&rep, o.json) < 0)
		rep.failed = true;
	if (o.plot && report_plot(&rep, o.plot) < 0)
		rep.failed = true;
	if (err_isset())
		fprintf(stderr, "siw-bench: error: %s\n", err_text());
	free(rep.rows);
	return rep.failed ? 1 : 0;
}
