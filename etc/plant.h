/*
 * plant.h - bugs planted back on purpose, so that a test can show the model checker
 * (tests/model/dpcheck.py) catches each one (tests/e2e/test_model_plant.sh). Compiled in only
 * by `make PLANT=1` (-DDP_PLANTS, its own build tree); in every other build DP_PLANTED() is
 * the constant false and each seam is dead code the compiler drops. Never enable it anywhere
 * but that test.
 */
#ifndef DP_PLANT_H
#define DP_PLANT_H

#include <stdbool.h>

#ifdef DP_PLANTS
#include <stdlib.h>
#include <string.h>

/*
 * dp_planted - true when the bug named name is planted in this process: $DP_PLANT names
 * it (one name). Read at every call: a seam is on a test's path only, never a hot one.
 */
static inline bool
dp_planted(const char *name)
{
    const char *p = getenv("DP_PLANT");

    return p != NULL && strcmp(p, name) == 0;
}
#define DP_PLANTED(name) dp_planted(name)
#else
#define DP_PLANTED(name) false
#endif

#endif
