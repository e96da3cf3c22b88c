/* SPDX-License-Identifier: MIT */
/*
 * A tiny unit-test harness: each tests/unit/<module>_test.c is one program with a list of
 * test functions. Asserts print both values and keep going inside a test only when it is
 * safe (CHECK_*); REQUIRE_* leave the current test at once.
 */
#ifndef SIW_TEST_H
#define SIW_TEST_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern int t_failures;
extern const char *t_current;

void t_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void t_hexdump(const char *label, const void *p, size_t len);
/* Reads a whole file into a malloc'ed buffer; returns NULL (and says why) on failure. */
uint8_t *t_read_file(const char *path, size_t *len);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			t_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                            \
	} while (0)

#define CHECK_INT(a, b)                                                                            \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b)                                                                      \
			t_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld (0x%llx != 0x%llx)",   \
			       #a, #b, _a, _b, (unsigned long long)_a, (unsigned long long)_b);     \
	} while (0)

#define CHECK_UINT(a, b)                                                                           \
	do {                                                                                       \
		unsigned long long _a = (unsigned long long)(a), _b = (unsigned long long)(b);     \
		if (_a != _b)                                                                      \
			t_fail(__FILE__, __LINE__, "%s == %s: %llu != %llu (0x%llx != 0x%llx)",   \
			       #a, #b, _a, _b, _a, _b);                                            \
	} while (0)

#define CHECK_MEM(a, b, n)                                                                         \
	do {                                                                                       \
		if (memcmp((a), (b), (n)) != 0) {                                                  \
			t_fail(__FILE__, __LINE__, "memcmp(%s, %s, %s) != 0", #a, #b, #n);         \
			t_hexdump("got", (a), (n));                                                \
			t_hexdump("want", (b), (n));                                               \
		}                                                                                  \
	} while (0)

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			t_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                          \
			return;                                                                    \
		}                                                                                  \
	} while (0)

struct t_case {
	const char *name;
	void (*fn)(void);
};

#define T_CASE(fn) {#fn, fn}

/* Runs the cases (all, or those named in argv) and returns the process exit status. */
int t_run(const struct t_case *cases, size_t n, int argc, char **argv);

#define T_MAIN(...)                                                                                \
	int main(int argc, char **argv)                                                            \
	{                                                                                          \
		static const struct t_case cases[] = {__VA_ARGS__};                                \
		return t_run(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);                 \
	}

#endif
