/*
 * apikeys.c - the API key entries of the configuration: server.api_keys objects (members,
 * names, limits) checked, server.api_keys and the keys file's lines ("key" or "name:key")
 * into struct dp_config with their names and limits, and the checks across all keys (none
 * empty, names unique). Never prints or logs a key.
 */
#include "etc/apikeys.h"
#include "etc/err.h"
#include "etc/settings.h"

#include <errno.h>
#include <libconfig.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A keys-file line holds at most this many bytes with its newline: longer is refused. */
#define DP_KEYS_LINE_MAX 4096

/* The members an API key object may have, and what each holds. */
static const struct dp_api_key_member key_members[] = {
    {"name", false, 0, 0},
    {"key", false, 0, 0},
    {"events_per_s", true, 1, 1000000000LL},
    {"burst", true, 1, 1000000000000LL},
};

const struct dp_api_key_member *
dp_api_key_member_find(const char *name)
{
    for (size_t i = 0; i < sizeof(key_members) / sizeof(key_members[0]); i++) {
        if (strcmp(key_members[i].name, name) == 0) {
            return &key_members[i];
        }
    }
    return NULL;
}

/* Whether name may name an API key: 1 to DP_API_KEY_NAME_MAX of [A-Za-z0-9_.-]. */
static bool
key_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > DP_API_KEY_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-')) {
            return false;
        }
    }
    return true;
}

/* One member of API key object i of o: known, well typed, in range. Errors go to e. */
static bool
key_member_check(const struct dp_setting *o, size_t i, const config_setting_t *m, const char *file,
                 struct dp_errs *e)
{
    const char *mname = config_setting_name(m);
    const struct dp_api_key_member *km = dp_api_key_member_find(mname);
    int t = config_setting_type(m);

    if (km == NULL) {
        dp_errs_add(e, "%s: %s[%zu].%s: unknown key", file, o->path, i, mname);
        return false;
    }
    if (km->integer && t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
        dp_errs_add(e, "%s: %s[%zu].%s: expected integer, got %s", file, o->path, i, mname,
                    dp_setting_kind_name(m));
        return false;
    }
    if (!km->integer && t != CONFIG_TYPE_STRING) {
        dp_errs_add(e, "%s: %s[%zu].%s: expected string, got %s", file, o->path, i, mname,
                    dp_setting_kind_name(m));
        return false;
    }
    if (km->integer &&
        (config_setting_get_int64(m) < km->min || config_setting_get_int64(m) > km->max)) {
        dp_errs_add(e, "%s: %s[%zu].%s: must be %lld..%lld", file, o->path, i, mname, km->min,
                    km->max);
        return false;
    }
    if (strcmp(mname, "name") == 0 &&
        !key_name_ok(config_setting_get_string(m), strlen(config_setting_get_string(m)))) {
        dp_errs_add(e, "%s: %s[%zu].name: 1 to %d letters, digits, '_', '.' or '-'", file, o->path,
                    i, DP_API_KEY_NAME_MAX);
        return false;
    }
    return true;
}

bool
dp_api_key_object_check(const struct dp_setting *o, size_t i, const config_setting_t *g,
                        const char *file, struct dp_errs *e)
{
    bool ok = true;

    for (int j = 0; j < config_setting_length(g); j++) {
        ok &= key_member_check(o, i, config_setting_get_elem(g, (unsigned)j), file, e);
    }
    if (config_setting_get_member(g, "key") == NULL) {
        dp_errs_add(e, "%s: %s[%zu].key: required", file, o->path, i);
        ok = false;
    }
    if (config_setting_get_member(g, "burst") != NULL &&
        config_setting_get_member(g, "events_per_s") == NULL) {
        dp_errs_add(e, "%s: %s[%zu].burst: needs events_per_s", file, o->path, i);
        ok = false;
    }
    return ok;
}

/* The name of a key given without one: "key-" and the first 8 hex digits of its SHA-256. */
static void
key_tag(const char *key, char out[16])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(key, strlen(key), md, &n, EVP_sha256(), NULL) != 1 || n < 4) {
        memset(md, 0, 4);
    }
    snprintf(out, 16, "key-%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
}

/*
 * Append key to server.api_keys with what is known of it: name (NULL: its tag, see
 * key_tag), events_per_s (0: no limit) and burst (0: events_per_s). Returns 0 or
 * DP_ERR_NOMEM.
 */
static int
api_key_add(struct dp_config *cfg, const char *key, const char *name, size_t name_len,
            int64_t events_per_s, int64_t burst)
{
    struct dp_api_key *info;
    struct dp_api_key *k;
    char tag[16];

    info = realloc(cfg->server_api_key_info, (cfg->server_api_keys_len + 1) * sizeof(*info));
    if (info == NULL) {
        return DP_ERR_NOMEM;
    }
    cfg->server_api_key_info = info;
    k = &info[cfg->server_api_keys_len];
    if (name == NULL) {
        key_tag(key, tag);
        name = tag;
        name_len = strlen(tag);
    }
    k->name = strndup(name, name_len);
    k->events_per_s = events_per_s;
    k->burst = burst > 0 ? burst : events_per_s;
    if (k->name == NULL ||
        dp_config_list_append(&cfg->server_api_keys, &cfg->server_api_keys_len, key) != 0) {
        free(k->name);
        return DP_ERR_NOMEM;
    }
    return 0;
}

void
dp_api_keys_fill(struct dp_config *cfg, const config_setting_t *arr, bool *nomem)
{
    cfg->server_api_keys = calloc(1, sizeof(char *));
    if (cfg->server_api_keys == NULL) {
        *nomem = true;
        return;
    }
    for (int j = 0; arr != NULL && j < config_setting_length(arr); j++) {
        const config_setting_t *el = config_setting_get_elem(arr, (unsigned)j);
        const char *key = NULL;
        const char *name = NULL;
        long long eps = 0;
        long long burst = 0;
        int rc;

        if (config_setting_type(el) == CONFIG_TYPE_GROUP) {
            config_setting_lookup_string(el, "key", &key);
            config_setting_lookup_string(el, "name", &name);
            config_setting_lookup_int64(el, "events_per_s", &eps);
            config_setting_lookup_int64(el, "burst", &burst);
        } else {
            key = config_setting_get_string(el);
        }
        rc = api_key_add(cfg, key != NULL ? key : "", name, name != NULL ? strlen(name) : 0, eps,
                         burst);
        if (rc != 0) {
            *nomem = true;
        }
    }
}

/*
 * One trimmed line of the keys file (n > 0 bytes): "name:key" when what stands before the
 * first ':' is a valid name and a key follows, else the whole line is the key (named by its
 * tag). A key holding ':' is therefore written with a name.
 */
static void
keys_file_entry(struct dp_config *cfg, const char *line, size_t n, struct dp_errs *e)
{
    const char *colon = memchr(line, ':', n);
    const char *name = NULL;
    size_t name_len = 0;

    if (colon != NULL && colon + 1 < line + n && key_name_ok(line, (size_t)(colon - line))) {
        name = line;
        name_len = (size_t)(colon - line);
        line = colon + 1;
    }
    if (api_key_add(cfg, line, name, name_len, 0, 0) != 0) {
        e->nomem = true;
    }
}

void
dp_api_keys_file_read(struct dp_config *cfg, struct dp_errs *e)
{
    FILE *f;
    char line[DP_KEYS_LINE_MAX + 1];
    size_t lineno = 0;
    bool cut = false;

    if (cfg->server_api_keys_file == NULL) {
        return;
    }
    f = fopen(cfg->server_api_keys_file, "r");
    if (f == NULL) {
        dp_errs_add(e, "server.api_keys_file: cannot read %s: %s", cfg->server_api_keys_file,
                    strerror(errno));
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = line;
        size_t n = strlen(line);

        /* The rest of a line too long for the buffer: read and dropped, never a key. */
        if (cut) {
            cut = n > 0 && line[n - 1] != '\n';
            continue;
        }
        lineno++;
        if (n == DP_KEYS_LINE_MAX && line[n - 1] != '\n') {
            dp_errs_add(e, "server.api_keys_file: line %zu is longer than %d bytes", lineno,
                        DP_KEYS_LINE_MAX - 1);
            cut = true;
            continue;
        }
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '#') {
            continue;
        }
        n = strlen(p);
        while (n > 0 &&
               (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t')) {
            p[--n] = '\0';
        }
        if (n > 0) {
            keys_file_entry(cfg, p, n, e);
        }
    }
    fclose(f);
}

void
dp_api_keys_check(const struct dp_config *cfg, struct dp_errs *e)
{
    for (size_t i = 0; i < cfg->server_api_keys_len; i++) {
        if (cfg->server_api_keys[i][0] == '\0') {
            dp_errs_add(e, "server.api_keys[%zu]: must not be empty", i);
        }
        /* Names label metrics and rows: one key each. */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->server_api_key_info[i].name, cfg->server_api_key_info[j].name) == 0) {
                dp_errs_add(e,
                            "server.api_keys[%zu].name: %s is the name of server.api_keys[%zu] "
                            "too",
                            i, cfg->server_api_key_info[i].name, j);
                break;
            }
        }
    }
}
