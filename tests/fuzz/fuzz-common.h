/* What every fuzz target here shares: a check that aborts with its place,
 * and libFuzzer's entry points. fuzz-common.c, linked into each target,
 * makes a UBSan report end the run and sinks syslog() lines. */
#ifndef HASHI_FUZZ_COMMON_H
#define HASHI_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                               \
			abort();                                                      \
		}                                                                     \
	} while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
