/* SPDX-License-Identifier: MIT */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

int t_failures;
const char *t_current;

void t_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	t_failures++;
	fprintf(stderr, "FAIL %s (%s:%d): ", t_current ? t_current : "?", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void t_hexdump(const char *label, const void *p, size_t len)
{
	const uint8_t *b = p;

	fprintf(stderr, "  %s (%zu bytes):", label, len);
	for (size_t i = 0; i < len && i < 256; i++)
		fprintf(stderr, "%s%02x", i % 16 ? " " : "\n    ", b[i]);
	fputc('\n', stderr);
}

uint8_t *t_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long sz;

	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)sz + 1);
		if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)sz;
	}
	fclose(f);
	return buf;
}

int t_run(const struct t_case *cases, size_t n, int argc, char **argv)
{
	int ran = 0;

	for (size_t i = 0; i < n; i++) {
		int before = t_failures, want = argc < 2;
		struct timespec a, b;

		for (int j = 1; j < argc; j++)
			want |= strcmp(argv[j], cases[i].name) == 0;
		if (!want)
			continue;
		t_current = cases[i].name;
		clock_gettime(CLOCK_MONOTONIC, &a);
		cases[i].fn();
		clock_gettime(CLOCK_MONOTONIC, &b);
		ran++;
		printf("%s %s (%.1f ms)\n", t_failures == before ? "ok  " : "FAIL", cases[i].name,
		       (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
	}
	if (ran == 0) {
		fprintf(stderr, "no test ran\n");
		return 1;
	}
	printf("%d test(s), %d failure(s)\n", ran, t_failures);
	return t_failures ? 1 : 0;
}
