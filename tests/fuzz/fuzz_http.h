/*
 * fuzz_http.h - fuzz_http's entry points: libFuzzer calls the first two; the seed replay of
 * make check (tests/unit/check_fuzz_seeds.c) calls them without libFuzzer, and asks the
 * server for a status with the third. Test code only.
 */
#ifndef DP_TESTS_FUZZ_HTTP_H
#define DP_TESTS_FUZZ_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* Start the server (once a process) on a free loopback port, a queue in a temporary
 * directory; aborts when it cannot. Returns 0. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* One input: raw bytes of a connection, or (first byte 0x80 or more) grammar choices. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Send request to the running server on a fresh connection; the answer's status code, or 0
 * when there was no status line. */
int fuzz_http_status(const char *request);

#endif
