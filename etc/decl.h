/*
 * decl.h - event types declared in the configuration's "types" key (docs/event-types.md):
 * how etc/ reads, checks and keeps the declarations. Every error
 * names its key path ("types.page_view.fields.url.type: ..."). What an event
 * of a declared type must look like is said here; events/ checks the events.
 */
#ifndef DP_DECL_H
#define DP_DECL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_TYPE_NAME_MAX 63    /* bytes of a type or field name (a PostgreSQL identifier) */
#define DP_TYPES_MAX 64        /* declared types in one configuration */
#define DP_TYPE_FIELDS_MAX 200 /* fields of one declared type */
#define DP_ENUM_MAX 256        /* values of one field's enum */

struct config_setting_t;
struct json_t;

/* What a declared field holds, and its PostgreSQL column type. */
enum dp_field_type {
    DP_FIELD_STRING,    /* JSON string; text */
    DP_FIELD_INTEGER,   /* JSON integer (64-bit); bigint */
    DP_FIELD_NUMBER,    /* JSON number; double precision */
    DP_FIELD_BOOLEAN,   /* true or false; boolean */
    DP_FIELD_TIMESTAMP, /* epoch seconds (integer) or RFC 3339 with offset; timestamptz */
    DP_FIELD_IP,        /* IPv4 or IPv6 address string; inet */
    DP_FIELD_URL,       /* absolute http(s) URL with a host; text */
    DP_FIELD_UUID,      /* canonical 8-4-4-4-12 hex string; uuid */
    DP_FIELD_OBJECT,    /* JSON object; jsonb */
    DP_FIELD_ARRAY,     /* JSON array; jsonb */
};

/* One declared field. Every string is owned by the declaration. */
struct dp_field_decl {
    char *name; /* the event's key and the column's name */
    enum dp_field_type type;
    bool required;      /* absent or null is an error (else stored as NULL) */
    int64_t max_length; /* string, url: most characters (code points); 0: no limit */
    bool has_min;
    bool has_max;
    int64_t min_int; /* integer fields: inclusive bounds */
    int64_t max_int;
    double min_num; /* number fields: inclusive bounds */
    double max_num;
    char **enums; /* string fields: the allowed values, n_enums of them; or NULL */
    size_t n_enums;
    char *pattern; /* string, url: POSIX extended regex (unanchored), or NULL */
};

/* One declared type. */
struct dp_type_decl {
    char *name;                   /* the type's name and its table's name */
    struct dp_field_decl *fields; /* in declaration order: the table's column order */
    size_t n_fields;
    bool keep_unknown; /* unknown_fields "keep": kept in the extra jsonb column */
};

/* Every declared type of a configuration, in declaration order. */
struct dp_types {
    struct dp_type_decl *types;
    size_t n;
};

/*
 * dp_types_check - check the "types" setting s of one file (a libconfig
 * group). For every error calls err(arg, text) with a text such as
 * "types.page_view.fields.url.type: unknown field type \"urll\"".
 * Returns the number of errors (0: s is valid).
 */
int dp_types_check(const struct config_setting_t *s, void (*err)(void *arg, const char *text),
                   void *arg);

/*
 * dp_types_merge - copy each type of the checked group from into the group
 * into, replacing a type of the same name as a whole (a later file's
 * declaration wins over an earlier one's). Returns 0 or DP_ERR_NOMEM.
 */
int dp_types_merge(struct config_setting_t *into, const struct config_setting_t *from);

/*
 * dp_types_build - the declarations of a checked "types" group (NULL: none).
 *   out: receives them; free with dp_types_destroy().
 * Returns 0, DP_ERR_CONFIG (s does not pass dp_types_check), DP_ERR_NOMEM.
 */
int dp_types_build(const struct config_setting_t *s, struct dp_types **out);

/* dp_types_destroy - free everything. NULL-safe. */
void dp_types_destroy(struct dp_types *t);

/* dp_types_find - the declaration named name, or NULL. t may be NULL. */
const struct dp_type_decl *dp_types_find(const struct dp_types *t, const char *name);

/* dp_type_decl_equal - true when a and b declare the same type exactly. */
bool dp_type_decl_equal(const struct dp_type_decl *a, const struct dp_type_decl *b);

/*
 * dp_type_decl_copy - a deep copy of src into *dst (whose old contents are
 * not freed). Returns 0 or DP_ERR_NOMEM (dst then holds nothing to free).
 */
int dp_type_decl_copy(struct dp_type_decl *dst, const struct dp_type_decl *src);

/* dp_type_decl_free - free what a declaration holds (not d itself). NULL-safe. */
void dp_type_decl_free(struct dp_type_decl *d);

/*
 * dp_types_to_json - the declarations as a JSON object (what --check-config
 * prints under "types"). Returns a new reference, or NULL when out of memory.
 */
struct json_t *dp_types_to_json(const struct dp_types *t);

/* dp_field_type_name - "string", "integer", ...: the name used in declarations. */
const char *dp_field_type_name(enum dp_field_type type);

/* dp_field_type_parse - the field type named s into *out: 0, or DP_ERR_INVALID. */
int dp_field_type_parse(const char *s, enum dp_field_type *out);

/*
 * dp_types_name_reserved - why name cannot be a declared type, or NULL if it
 * can: the built-in event types and the appliance's own tables are taken.
 */
const char *dp_types_name_reserved(const char *name);

/*
 * The objects datapipe names in PostgreSQL besides its tables: each name is one of these
 * prefixes and a hash of the table's or type's name, so that none is longer than 63 bytes,
 * two tables never share one, and no declared type can be called the same (names beginning
 * with DP_PG_PREFIX are refused as type names).
 */
#define DP_PG_PREFIX "dp_"
#define DP_PG_KEY_INDEX "dp_key_"     /* the unique index over a table's idempotency_key */
#define DP_PG_PRIMARY_KEY "dp_pk_"    /* a declared type's primary key constraint */
#define DP_PG_KEYED_TEMP "dp_keyed_"  /* the keyed rows' temporary table (pg_temp) */
#define DP_PG_KEY_TABLE "dp_keys_"    /* a partitioned table's keys, unique (loader/part.c) */
#define DP_PG_KEY_TABLE_PK "dp_kpk_"  /* the key table's primary key */
#define DP_PG_KEY_TABLE_AT "dp_kat_"  /* the key table's index over received_at */
#define DP_PG_FRESH_TABLE "dp_fresh_" /* a new table while it becomes partitioned */
/* A day's partition: DP_PG_PARTITION, the day as YYYYMMDD, "_", the table's 16 hex digits. */
#define DP_PG_PARTITION "dp_p"

/*
 * dp_pg_derived_name - prefix followed by the 16 hex digits of the 64-bit FNV-1a hash of
 * name (a table's or type's name, unquoted) into out: at most 25 bytes with a prefix above.
 */
void dp_pg_derived_name(char out[DP_TYPE_NAME_MAX + 1], const char *prefix, const char *name);

#endif
