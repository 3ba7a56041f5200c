/*
 * decl.c - built declarations of event types (struct dp_types, struct dp_type_decl) and the
 * names of their field types:
 * freeing, finding one by name, comparing two (what SIGHUP and the loader's schema
 * evolution ask), deep copies, and the JSON form GET /v1/types and --check-config print.
 * Building them from the configuration is decl_conf.c's.
 */
#include "decl.h"
#include "err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char *const field_type_names[] = {
    [DP_FIELD_STRING] = "string",
    [DP_FIELD_INTEGER] = "integer",
    [DP_FIELD_NUMBER] = "number",
    [DP_FIELD_BOOLEAN] = "boolean",
    [DP_FIELD_TIMESTAMP] = "timestamp",
    [DP_FIELD_IP] = "ip",
    [DP_FIELD_URL] = "url",
    [DP_FIELD_UUID] = "uuid",
    [DP_FIELD_OBJECT] = "object",
    [DP_FIELD_ARRAY] = "array",
};

#define N_FIELD_TYPES (sizeof(field_type_names) / sizeof(field_type_names[0]))

const char *
dp_field_type_name(enum dp_field_type type)
{
    return (size_t)type < N_FIELD_TYPES ? field_type_names[type] : "?";
}

int
dp_field_type_parse(const char *s, enum dp_field_type *out)
{
    for (size_t i = 0; i < N_FIELD_TYPES; i++) {
        if (strcmp(field_type_names[i], s) == 0) {
            *out = (enum dp_field_type)i;
            return 0;
        }
    }
    return DP_ERR_INVALID;
}

static void
field_free(struct dp_field_decl *f)
{
    free(f->name);
    free(f->pattern);
    for (size_t i = 0; i < f->n_enums; i++) {
        free(f->enums[i]);
    }
    free(f->enums);
}

void
dp_type_decl_free(struct dp_type_decl *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->n_fields; i++) {
        field_free(&d->fields[i]);
    }
    free(d->fields);
    free(d->name);
    memset(d, 0, sizeof(*d));
}

void
dp_types_destroy(struct dp_types *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        dp_type_decl_free(&t->types[i]);
    }
    free(t->types);
    free(t);
}

const struct dp_type_decl *
dp_types_find(const struct dp_types *t, const char *name)
{
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        if (strcmp(t->types[i].name, name) == 0) {
            return &t->types[i];
        }
    }
    return NULL;
}

static bool
str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
field_equal(const struct dp_field_decl *a, const struct dp_field_decl *b)
{
    if (strcmp(a->name, b->name) != 0 || a->type != b->type || a->required != b->required ||
        a->max_length != b->max_length || a->has_min != b->has_min || a->has_max != b->has_max ||
        a->min_int != b->min_int || a->max_int != b->max_int ||
        (a->has_min && a->min_num != b->min_num) || (a->has_max && a->max_num != b->max_num) ||
        !str_same(a->pattern, b->pattern) || a->n_enums != b->n_enums) {
        return false;
    }
    for (size_t i = 0; i < a->n_enums; i++) {
        if (strcmp(a->enums[i], b->enums[i]) != 0) {
            return false;
        }
    }
    return true;
}

bool
dp_type_decl_equal(const struct dp_type_decl *a, const struct dp_type_decl *b)
{
    if (strcmp(a->name, b->name) != 0 || a->keep_unknown != b->keep_unknown ||
        a->n_fields != b->n_fields) {
        return false;
    }
    for (size_t i = 0; i < a->n_fields; i++) {
        if (!field_equal(&a->fields[i], &b->fields[i])) {
            return false;
        }
    }
    return true;
}

static char *
dup_or_null(const char *s, bool *nomem)
{
    char *d;

    if (s == NULL) {
        return NULL;
    }
    d = strdup(s);
    *nomem = *nomem || d == NULL;
    return d;
}

static bool
field_copy(struct dp_field_decl *dst, const struct dp_field_decl *src)
{
    bool nomem = false;

    *dst = *src;
    dst->name = dup_or_null(src->name, &nomem);
    dst->pattern = dup_or_null(src->pattern, &nomem);
    dst->enums = NULL;
    dst->n_enums = 0;
    if (src->n_enums > 0) {
        dst->enums = calloc(src->n_enums, sizeof(char *));
        nomem = nomem || dst->enums == NULL;
        for (size_t i = 0; dst->enums != NULL && i < src->n_enums; i++) {
            dst->enums[i] = dup_or_null(src->enums[i], &nomem);
            dst->n_enums++;
        }
    }
    return !nomem;
}

int
dp_type_decl_copy(struct dp_type_decl *dst, const struct dp_type_decl *src)
{
    bool nomem = false;

    memset(dst, 0, sizeof(*dst));
    dst->name = dup_or_null(src->name, &nomem);
    dst->keep_unknown = src->keep_unknown;
    dst->fields = calloc(src->n_fields > 0 ? src->n_fields : 1, sizeof(*dst->fields));
    nomem = nomem || dst->fields == NULL;
    for (size_t i = 0; !nomem && i < src->n_fields; i++) {
        nomem = !field_copy(&dst->fields[i], &src->fields[i]);
        dst->n_fields++;
    }
    if (nomem) {
        dp_type_decl_free(dst);
        return DP_ERR_NOMEM;
    }
    return 0;
}

/* ---- the JSON form ------------------------------------------------------------------------- */

static json_t *
field_to_json(const struct dp_field_decl *f)
{
    json_t *o = json_object();
    json_t *e;

    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "type", json_string(dp_field_type_name(f->type)));
    json_object_set_new(o, "required", json_boolean(f->required));
    if (f->max_length > 0) {
        json_object_set_new(o, "max_length", json_integer(f->max_length));
    }
    if (f->has_min) {
        json_object_set_new(o, "min",
                            f->type == DP_FIELD_INTEGER ? json_integer(f->min_int)
                                                        : json_real(f->min_num));
    }
    if (f->has_max) {
        json_object_set_new(o, "max",
                            f->type == DP_FIELD_INTEGER ? json_integer(f->max_int)
                                                        : json_real(f->max_num));
    }
    if (f->n_enums > 0) {
        e = json_array();
        for (size_t i = 0; i < f->n_enums; i++) {
            json_array_append_new(e, json_string(f->enums[i]));
        }
        json_object_set_new(o, "enum", e);
    }
    if (f->pattern != NULL) {
        json_object_set_new(o, "pattern", json_string(f->pattern));
    }
    return o;
}

json_t *
dp_types_to_json(const struct dp_types *t)
{
    json_t *root = json_object();

    for (size_t i = 0; root != NULL && t != NULL && i < t->n; i++) {
        const struct dp_type_decl *d = &t->types[i];
        json_t *o = json_object();
        json_t *fields = json_object();

        for (size_t j = 0; fields != NULL && j < d->n_fields; j++) {
            json_object_set_new(fields, d->fields[j].name, field_to_json(&d->fields[j]));
        }
        json_object_set_new(o, "fields", fields);
        json_object_set_new(o, "unknown_fields", json_string(d->keep_unknown ? "keep" : "reject"));
        json_object_set_new(root, d->name, o);
    }
    return root;
}
