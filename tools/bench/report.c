// SPDX-License-Identifier: MIT
/*
 * siw-bench output: the table on stdout, CSV, JSON and a gnuplot PNG.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "bench.h"

const char *size_str(size_t size, char *buf, size_t len)
{
	if (size >= (1u << 20) && size % (1u << 20) == 0)
		snprintf(buf, len, "%zuM", size >> 20);
	else if (size >= 1024 && size % 1024 == 0)
		snprintf(buf, len, "%zuK", size >> 10);
	else
		snprintf(buf, len, "%zu", size);
	return buf;
}

static const char *mode_str(const struct bench_opts *o)
{
	return o->events ? "completion events (progress mode)" : "busy polling";
}

void report_header(FILE *f, const struct report *rep)
{
	const struct bench_opts *o = rep->o;

	fprintf(f, "# siw-bench: softiwarp next to TCP on loopback (127.0.0.1), client and server "
		   "in separate processes\n");
	fprintf(f, "# machine: %s, %d cores, %s\n", rep->mach.cpu, rep->mach.cores,
		rep->mach.kernel);
	if (rep->have_siw) {
		fprintf(f, "# settings: CRC %s, depth %d, qps %d, inline %d", o->crc ? "on" : "off",
			o->depth, o->qps, rep->siw.inline_max);
		if ((unsigned)rep->siw.inline_max != o->inline_max)
			fprintf(f, " (asked %u)", o->inline_max);
		fprintf(f, ", ORD/IRD %d, %s, %.2f s per measurement\n", rep->siw.ord, mode_str(o),
			o->time);
		fprintf(f, "# softiwarp: device %s, libibverbs %s\n", rep->siw.device,
			rep->siw.libverbs[0] ? rep->siw.libverbs : "?");
	} else {
		fprintf(f, "# settings: TCP only (--tcp-only), %.2f s per measurement\n", o->time);
	}
	fprintf(f,
		"# bandwidth: one direction, GB/s = 1e9 B/s; cpu: user+sys time of both "
		"processes (all threads) per byte moved%s\n",
		o->events ? "" : " (busy polling counts)");
	fprintf(f, "# latency: us; write/send = half the ping-pong round trip, read = the READ "
		   "round trip (TCP: 8-byte request, answer); ratios are siw/TCP\n");
	fprintf(f, "%-6s %6s | %9s %9s %7s | %8s %8s | %9s %9s %9s %9s %7s\n", "op", "size",
		"siw GB/s", "TCP GB/s", "ratio", "siw cpu", "TCP cpu", "siw med", "siw p99",
		"TCP med", "TCP p99", "ratio");
	fprintf(f, "%-6s %6s | %9s %9s %7s | %8s %8s | %9s %9s %9s %9s %7s\n", "", "", "", "", "",
		"ns/B", "ns/B", "us", "us", "us", "us", "");
	fflush(f);
}

static void num(char *buf, size_t len, bool ok, const char *fmt, double v)
{
	if (ok)
		snprintf(buf, len, fmt, v);
	else
		snprintf(buf, len, "-");
}

void report_row(FILE *f, const struct report *rep, const struct bench_row *row)
{
	char sz[24], c[11][32];
	const struct bw_result *sb = &row->siw_bw, *tb = &row->tcp_bw;
	const struct lat_result *sl = &row->siw_lat, *tl = &row->tcp_lat;

	(void)rep;
	num(c[0], sizeof(c[0]), sb->done, "%.3f", sb->gbps);
	num(c[1], sizeof(c[1]), tb->done, "%.3f", tb->gbps);
	num(c[2], sizeof(c[2]), sb->done && tb->done && tb->gbps > 0, "%.2fx",
	    tb->gbps > 0 ? sb->gbps / tb->gbps : 0);
	num(c[3], sizeof(c[3]), sb->done, "%.3g", sb->cpu_ns_b);
	num(c[4], sizeof(c[4]), tb->done, "%.3g", tb->cpu_ns_b);
	num(c[5], sizeof(c[5]), sl->done, "%.2f", sl->med_us);
	num(c[6], sizeof(c[6]), sl->done, "%.2f", sl->p99_us);
	num(c[7], sizeof(c[7]), tl->done, "%.2f", tl->med_us);
	num(c[8], sizeof(c[8]), tl->done, "%.2f", tl->p99_us);
	num(c[9], sizeof(c[9]), sl->done && tl->done && tl->med_us > 0, "%.2fx",
	    tl->med_us > 0 ? sl->med_us / tl->med_us : 0);
	fprintf(f, "%-6s %6s | %9s %9s %7s | %8s %8s | %9s %9s %9s %9s %7s\n",
		bench_op_name[row->op], size_str(row->size, sz, sizeof(sz)), c[0], c[1], c[2], c[3],
		c[4], c[5], c[6], c[7], c[8], c[9]);
	fflush(f);
}

/* ---- CSV ---------------------------------------------------------------------------------- */

static void csv_num(FILE *f, bool ok, const char *fmt, double v)
{
	fputc(',', f);
	if (ok)
		fprintf(f, fmt, v);
}

int report_csv(const struct report *rep, const char *path)
{
	const struct bench_opts *o = rep->o;
	FILE *f = fopen(path, "w");

	if (!f)
		return err("cannot write %s: %s", path, strerror(errno));
	fprintf(f, "op,size,siw_gbps,tcp_gbps,bw_ratio,siw_cpu_ns_per_byte,tcp_cpu_ns_per_byte,"
		   "siw_lat_med_us,siw_lat_p99_us,tcp_lat_med_us,tcp_lat_p99_us,lat_ratio,"
		   "siw_bw_msgs,tcp_bw_msgs,siw_lat_iters,tcp_lat_iters,crc,depth,qps,inline,"
		   "events\n");
	for (int i = 0; i < rep->nrows; i++) {
		const struct bench_row *r = &rep->rows[i];

		fprintf(f, "%s,%zu", bench_op_name[r->op], r->size);
		csv_num(f, r->siw_bw.done, "%.6f", r->siw_bw.gbps);
		csv_num(f, r->tcp_bw.done, "%.6f", r->tcp_bw.gbps);
		csv_num(f, r->siw_bw.done && r->tcp_bw.done && r->tcp_bw.gbps > 0, "%.4f",
			r->tcp_bw.gbps > 0 ? r->siw_bw.gbps / r->tcp_bw.gbps : 0);
		csv_num(f, r->siw_bw.done, "%.4f", r->siw_bw.cpu_ns_b);
		csv_num(f, r->tcp_bw.done, "%.4f", r->tcp_bw.cpu_ns_b);
		csv_num(f, r->siw_lat.done, "%.3f", r->siw_lat.med_us);
		csv_num(f, r->siw_lat.done, "%.3f", r->siw_lat.p99_us);
		csv_num(f, r->tcp_lat.done, "%.3f", r->tcp_lat.med_us);
		csv_num(f, r->tcp_lat.done, "%.3f", r->tcp_lat.p99_us);
		csv_num(f, r->siw_lat.done && r->tcp_lat.done && r->tcp_lat.med_us > 0, "%.4f",
			r->tcp_lat.med_us > 0 ? r->siw_lat.med_us / r->tcp_lat.med_us : 0);
		csv_num(f, r->siw_bw.done, "%.0f", (double)r->siw_bw.msgs);
		csv_num(f, r->tcp_bw.done, "%.0f", (double)r->tcp_bw.msgs);
		csv_num(f, r->siw_lat.done, "%.0f", (double)r->siw_lat.iters);
		csv_num(f, r->tcp_lat.done, "%.0f", (double)r->tcp_lat.iters);
		fprintf(f, ",%s,%d,%d,%d,%d\n", o->crc ? "on" : "off", o->depth, o->qps,
			rep->have_siw ? rep->siw.inline_max : (int)o->inline_max, o->events);
	}
	if (fclose(f))
		return err("cannot write %s: %s", path, strerror(errno));
	return 0;
}

/* ---- JSON --------------------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, const char *key, bool ok, double v, bool last)
{
	fprintf(f, "\"%s\": ", key);
	if (ok)
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
	fputs(last ? "" : ", ", f);
}

int report_json(const struct report *rep, const char *path)
{
	const struct bench_opts *o = rep->o;
	FILE *f = fopen(path, "w");

	if (!f)
		return err("cannot write %s: %s", path, strerror(errno));
	fputs("{\n  \"tool\": \"siw-bench\",\n  \"machine\": {\"cpu\": ", f);
	json_str(f, rep->mach.cpu);
	fprintf(f, ", \"cores\": %d, \"kernel\": ", rep->mach.cores);
	json_str(f, rep->mach.kernel);
	fputs("},\n  \"settings\": {", f);
	fprintf(f, "\"crc\": %s, \"depth\": %d, \"qps\": %d, \"inline\": %d, ",
		o->crc ? "true" : "false", o->depth, o->qps,
		rep->have_siw ? rep->siw.inline_max : (int)o->inline_max);
	fprintf(f, "\"inline_requested\": %u, \"events\": %s, \"time\": %g, ", o->inline_max,
		o->events ? "true" : "false", o->time);
	fprintf(f, "\"tcp_only\": %s, \"ord\": %d, \"device\": ", o->tcp_only ? "true" : "false",
		rep->have_siw ? rep->siw.ord : 0);
	json_str(f, rep->have_siw ? rep->siw.device : "");
	fputs(", \"libibverbs\": ", f);
	json_str(f, rep->have_siw ? rep->siw.libverbs : "");
	fputs("},\n  \"units\": {\"bandwidth\": \"1e9 B/s\", \"cpu\": \"ns per byte, both "
	      "processes\", \"latency\": \"us; write/send half round trip, read round trip\"},\n",
	      f);
	fprintf(f, "  \"ok\": %s,\n  \"failure\": ", rep->failed ? "false" : "true");
	json_str(f, rep->failed ? rep->failure : "");
	fputs(",\n  \"rows\": [", f);
	for (int i = 0; i < rep->nrows; i++) {
		const struct bench_row *r = &rep->rows[i];

		fprintf(f, "%s\n    {\"op\": \"%s\", \"size\": %zu, ", i ? "," : "",
			bench_op_name[r->op], r->size);
		json_num(f, "siw_gbps", r->siw_bw.done, r->siw_bw.gbps, false);
		json_num(f, "tcp_gbps", r->tcp_bw.done, r->tcp_bw.gbps, false);
		json_num(f, "bw_ratio", r->siw_bw.done && r->tcp_bw.done && r->tcp_bw.gbps > 0,
			 r->tcp_bw.gbps > 0 ? r->siw_bw.gbps / r->tcp_bw.gbps : 0, false);
		json_num(f, "siw_cpu_ns_per_byte", r->siw_bw.done, r->siw_bw.cpu_ns_b, false);
		json_num(f, "tcp_cpu_ns_per_byte", r->tcp_bw.done, r->tcp_bw.cpu_ns_b, false);
		json_num(f, "siw_bw_msgs", r->siw_bw.done, (double)r->siw_bw.msgs, false);
		json_num(f, "tcp_bw_msgs", r->tcp_bw.done, (double)r->tcp_bw.msgs, false);
		json_num(f, "siw_lat_med_us", r->siw_lat.done, r->siw_lat.med_us, false);
		json_num(f, "siw_lat_p99_us", r->siw_lat.done, r->siw_lat.p99_us, false);
		json_num(f, "tcp_lat_med_us", r->tcp_lat.done, r->tcp_lat.med_us, false);
		json_num(f, "tcp_lat_p99_us", r->tcp_lat.done, r->tcp_lat.p99_us, false);
		json_num(f, "lat_ratio",
			 r->siw_lat.done && r->tcp_lat.done && r->tcp_lat.med_us > 0,
			 r->tcp_lat.med_us > 0 ? r->siw_lat.med_us / r->tcp_lat.med_us : 0, false);
		json_num(f, "siw_lat_iters", r->siw_lat.done, (double)r->siw_lat.iters, false);
		json_num(f, "tcp_lat_iters", r->tcp_lat.done, (double)r->tcp_lat.iters, true);
		fputc('}', f);
	}
	fputs("\n  ]\n}\n", f);
	if (fclose(f))
		return err("cannot write %s: %s", path, strerror(errno));
	return 0;
}

/* ---- gnuplot ------------------------------------------------------------------------------ */

static int run_gnuplot(const struct report *rep, const char *path, const char *terminal)
{
	const struct bench_opts *o = rep->o;
	char sz[24];
	FILE *g;
	int st, lines = 0;

	g = popen("gnuplot 2>&1", "w");
	if (!g)
		return err("cannot run gnuplot: %s", strerror(errno));
	fprintf(g, "set terminal %s size 1100,700\n", terminal);
	fputs("set output '", g);
	for (const char *p = path; *p; p++) {
		if (*p == '\'')
			fputc('\'', g); /* gnuplot: '' inside '...' */
		fputc(*p, g);
	}
	fputs("'\n", g);
	fprintf(g,
		"set title 'softiwarp vs TCP bandwidth on loopback (depth %d, qps %d, CRC %s, "
		"%s)' noenhanced\n",
		o->depth, o->qps, o->crc ? "on" : "off", o->events ? "events" : "polling");
	fputs("set xlabel 'message size (bytes)'\nset ylabel 'GB/s (1e9 B/s)'\n"
	      "set logscale x 2\nset grid\nset key left top\nset datafile missing 'NaN'\n",
	      g);
	fputs("set xtics (", g);
	for (int i = 0; i < o->nsizes; i++)
		fprintf(g, "%s\"%s\" %zu", i ? ", " : "", size_str(o->sizes[i], sz, sizeof(sz)),
			o->sizes[i]);
	fputs(")\n", g);
	for (int k = 0; k < o->nops; k++) {
		fprintf(g, "$%s << EOD\n", bench_op_name[o->ops[k]]);
		for (int i = 0; i < rep->nrows; i++) {
			const struct bench_row *r = &rep->rows[i];

			if ((int)r->op != o->ops[k])
				continue;
			fprintf(g, "%zu ", r->size);
			if (r->siw_bw.done)
				fprintf(g, "%.6f ", r->siw_bw.gbps);
			else
				fputs("NaN ", g);
			if (r->tcp_bw.done)
				fprintf(g, "%.6f\n", r->tcp_bw.gbps);
			else
				fputs("NaN\n", g);
		}
		fputs("EOD\n", g);
	}
	fputs("plot ", g);
	for (int k = 0; k < o->nops; k++) {
		const char *n = bench_op_name[o->ops[k]];

		if (rep->have_siw)
			fprintf(g,
				"%s$%s using 1:2 with linespoints lw 2 lc %d pt 7 title '%s "
				"(softiwarp)'",
				lines++ ? ", " : "", n, k + 1, n);
		fprintf(g, "%s$%s using 1:3 with linespoints lw 2 dt 2 lc %d pt 6 title '%s (TCP)'",
			lines++ ? ", " : "", n, k + 1, n);
	}
	fputs("\n", g);
	st = pclose(g);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))
		return -1;
	return 0;
}

int report_plot(const struct report *rep, const char *path)
{
	if (!rep->nrows)
		return err("no rows to plot");
	if (run_gnuplot(rep, path, "pngcairo") == 0)
		return 0;
	/* gnuplot builds without cairo have libgd's png terminal. */
	if (run_gnuplot(rep, path, "png") == 0)
		return 0;
	return err("gnuplot failed to write %s (is gnuplot installed?)", path);
}
