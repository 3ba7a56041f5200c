/*
 * settings.h - the one table of settings (docs/configuration.md), shared by the files of etc/ only:
 * config.c loads files against it (cfgfile.c reads them, apikeys.c fills the API keys),
 * settings.c walks it over a struct dp_config, cli.c prints it for --help. Not a public
 * header: daemons and tests use etc/config.h.
 */
#ifndef DP_SETTINGS_H
#define DP_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "etc/config.h"

enum dp_setting_kind {
    DP_SETTING_INT,   /* fits in int */
    DP_SETTING_INT64, /* 64-bit integer */
    DP_SETTING_BOOL,
    DP_SETTING_STRING,
    DP_SETTING_STRING_NULL, /* string, or null (JSON) / "" meaning unset */
    DP_SETTING_STRING_LIST, /* array of strings */
};

/* One row of the table. Rows are built with designated initializers: unset fields are 0. */
struct dp_setting {
    const char *path; /* "section.key" */
    enum dp_setting_kind kind;
    const char *def_str; /* DP_SETTING_STRING* default (NULL: unset) */
    long long def_int;   /* DP_SETTING_INT, _INT64, _BOOL default */
    long long min;       /* inclusive range for integers */
    long long max;
    const char *const *choices; /* allowed strings, NULL-terminated, or NULL */
    size_t offset;              /* of the field in struct dp_config */
    size_t len_offset;          /* DP_SETTING_STRING_LIST: of its length field */
    unsigned used_by;           /* enum dp_daemon bits: the daemons that read it */
    bool reloadable;            /* SIGHUP applies it in a running daemon */
    bool secret;                /* never printed (only how many, for a list) */
    bool key_objects;           /* STRING_LIST whose elements may be API key objects */
    bool conninfo;              /* a libpq connection string: printed with passwords ***'d */
    const char *help;           /* one line, for --help and docs/configuration.md */
    const char *doc;            /* more for docs/configuration.md only, or NULL */
};

extern const struct dp_setting dp_settings[];
extern const size_t dp_settings_len;

/* dp_setting_find - the row of path ("section.key"), or NULL. */
const struct dp_setting *dp_setting_find(const char *path);

/* dp_setting_section - copy path's section name ("server") into buf; returns buf. */
char *dp_setting_section(const struct dp_setting *s, char *buf, size_t len);

/* dp_setting_key - path's key within its section ("listen"): a view into s->path. */
const char *dp_setting_key(const struct dp_setting *s);

/*
 * dp_setting_kind_name - what a libconfig value is, in the words of JSON ("integer", "number",
 * "string", "boolean", "array", "object"): for "expected X, got Y" messages.
 */
struct config_setting_t;
const char *dp_setting_kind_name(const struct config_setting_t *s);

/*
 * dp_config_list_append - append a copy of s to the NULL-terminated list *list of *len
 * strings (*list may be NULL), and count it in *len. On failure the list stays valid and
 * NULL-terminated, *len unchanged. Returns 0 or DP_ERR_NOMEM.
 */
int dp_config_list_append(char ***list, size_t *len, const char *s);

/* dp_settings_help - print "key default meaning" for every setting to f (--help). */
void dp_settings_help(FILE *f);

/*
 * dp_settings_describe - print every setting to f as the rows of a Markdown table: key,
 * default, range or choices, whether SIGHUP applies it, the daemons that read it, and its
 * meaning (help, then doc). docs/configuration.md holds this output (--describe-config).
 */
void dp_settings_describe(FILE *f);

#endif
