/*
 * apikeys.h - the API key entries of the configuration (apikeys.c), shared by the files of
 * etc/ only: config.c checks server.api_keys objects and fills struct dp_config's keys with
 * them, cfgfile.c asks what an object's member holds. Not a public header: daemons and tests
 * use etc/config.h (struct dp_api_key).
 */
#ifndef DP_APIKEYS_H
#define DP_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "etc/config.h"
#include "etc/err.h"

struct config_setting_t;
struct dp_setting;

/* A member an API key object may have ({"name", "key", "events_per_s", "burst"}). */
struct dp_api_key_member {
    const char *name;
    bool integer;  /* an integer, else a string */
    long long min; /* integers: inclusive range */
    long long max;
};

/* dp_api_key_member_find - the member called name, or NULL: not a member of a key object. */
const struct dp_api_key_member *dp_api_key_member_find(const char *name);

/*
 * dp_api_key_object_check - check API key object i (a libconfig group) of the setting o
 * (server.api_keys) read from file: every member known, well typed and in range, a name of
 * 1 to DP_API_KEY_NAME_MAX of [A-Za-z0-9_.-], a key, burst only with events_per_s.
 * Every error found is added to e ("FILE: server.api_keys[I].burst: needs events_per_s").
 * Returns true when the object is valid.
 */
bool dp_api_key_object_check(const struct dp_setting *o, size_t i, const struct config_setting_t *g,
                             const char *file, struct dp_errs *e);

/*
 * dp_api_keys_fill - set cfg->server_api_keys and cfg->server_api_key_info from the checked
 * server.api_keys array arr (NULL: none) of strings and key objects, in order. A key given
 * without a name is named by its tag ("key-" and 8 hex digits of its SHA-256); burst 0 is
 * events_per_s. Out of memory: *nomem is set (the lists hold what was added).
 */
void dp_api_keys_fill(struct dp_config *cfg, const struct config_setting_t *arr, bool *nomem);

/*
 * dp_api_keys_file_read - append the keys of cfg->server_api_keys_file (nothing when NULL)
 * to cfg's keys: one a line, "key" or "name:key" (when what stands before the first ':' is a
 * valid name and a key follows), blanks around it trimmed, lines whose first non-blank
 * character is '#' skipped. A file that cannot be read is an error added to e; out of memory
 * sets e->nomem.
 */
void dp_api_keys_file_read(struct dp_config *cfg, struct dp_errs *e);

/*
 * dp_api_keys_check - the checks across all of cfg's keys: none empty, no name given to two
 * keys (names label metrics and rows). Every error found is added to e.
 */
void dp_api_keys_check(const struct dp_config *cfg, struct dp_errs *e);

#endif
