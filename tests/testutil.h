/* testutil.h — helpers shared by the cmocka tests. */
#ifndef QUIRE_TESTUTIL_H
#define QUIRE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Path of a file under ../shared (relative to the project root); aborts the
 * test with a clear message if ../shared is missing. Returns a static buffer
 * rotated over 8 slots. */
const char *shared_path(const char *rel);
/* Reads a whole file or fails the test. Caller frees. */
void *test_read_file(const char *path, size_t *len);
/* nrmse = rms(a - ref) / std(ref). */
double nrmse(const float *a, const float *ref, size_t n);
/* Runs build/quire with the arguments (a shell string) and captures stdout;
 * returns the exit status. Caller frees *out (may pass NULL). */
int run_quire(const char *args, char **out);

#endif
