/*
 * product.c - the product type: any document with an "id"; loaded as an
 * upsert where the latest received version wins and an identical doc writes
 * nothing. Pure: the SQL below runs in the loader, never here.
 */

#include "etc/err.h"
#include "events/internal.h"

static int
check_id(const json_t *id, const char *name, char err[EV_ERR_MAX])
{
    if (json_is_integer(id)) {
        return 0;
    }
    if (!json_is_string(id)) {
        return ev_type_err(err, name, "string or integer", id);
    }
    if (json_string_length(id) == 0) {
        return ev_errf(err, "%s: must not be empty", name);
    }
    return 0;
}

/* The one field checked; the rest of the document is taken as it is (the type is open). */
static const struct ev_field fields[] = {
    {.name = "id",
     .type = "string|integer",
     .format = "non-empty",
     .required = true,
     .check = check_id},
};

static int
validate(const struct ev_type *t, const json_t *obj, char err[EV_ERR_MAX])
{
    const json_t *id = json_object_get(obj, fields[0].name);

    (void)t;
    if (id == NULL) {
        return ev_errf(err, "%s: required field missing", fields[0].name);
    }
    return fields[0].check(id, fields[0].name, err);
}

static int
encode_row(const struct ev_type *t, const struct ev_stored *ev, const json_t *obj,
           struct ev_buf *out, char err[EV_ERR_MAX])
{
    const json_t *id;
    struct ev_row row;
    int rc;

    rc = validate(t, obj, err);
    if (rc != 0) {
        return rc;
    }
    id = json_object_get(obj, "id");
    ev_row_begin(&row, out);
    if (json_is_integer(id)) {
        ev_row_i64(&row, json_integer_value(id));
    } else {
        ev_row_text(&row, json_string_value(id), json_string_length(id));
    }
    ev_row_text(&row, ev->json, ev->json_len);
    ev_row_time(&row, ev->received_us);
    ev_row_i64(&row, (int64_t)ev->seq);
    ev_row_source(&row, ev);
    return ev_row_end(&row);
}

/*
 * The staging table is the COPY target. The upsert empties it as it reads it
 * (so it may run again in the same transaction), keeps one row per id - the
 * newest by received_at, then by queue seq - and replaces a stored doc only
 * when the incoming one differs and is not older.
 */
const struct ev_type ev_product = {
    .name = "product",
    .table = "product",
    .ddl = "CREATE TABLE IF NOT EXISTS product ("
           "id text PRIMARY KEY, "
           "doc jsonb NOT NULL, "
           "received_at timestamptz NOT NULL, "
           "updated_at timestamptz NOT NULL DEFAULT now(), "
           "source text)",
    .copy_columns = "(id, doc, received_at, seq, source)",
    .load = EV_LOAD_UPSERT,
    .fields = fields,
    .n_fields = sizeof(fields) / sizeof(fields[0]),
    .open = true,
    .stage_ddl = "CREATE TEMP TABLE IF NOT EXISTS product_stage ("
                 "id text NOT NULL, "
                 "doc jsonb NOT NULL, "
                 "received_at timestamptz NOT NULL, "
                 "seq bigint NOT NULL, "
                 "source text) ON COMMIT DROP",
    .upsert_sql = "WITH s AS (DELETE FROM product_stage RETURNING id, doc, received_at, seq, "
                  "source) "
                  "INSERT INTO product AS p (id, doc, received_at, updated_at, source) "
                  "SELECT DISTINCT ON (id) id, doc, received_at, now(), source FROM s "
                  "ORDER BY id, received_at DESC, seq DESC "
                  "ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, "
                  "received_at = EXCLUDED.received_at, updated_at = EXCLUDED.updated_at, "
                  "source = EXCLUDED.source "
                  "WHERE p.doc IS DISTINCT FROM EXCLUDED.doc "
                  "AND p.received_at <= EXCLUDED.received_at",
    .id_kind = EV_ID_TEXT,
    .jsonb_numbers = true,
    .get_sql = "SELECT doc::text FROM product WHERE id = $1",
    .validate = validate,
    .encode_row = encode_row,
};
