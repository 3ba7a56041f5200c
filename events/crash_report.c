/*
 * crash_report.c - the crash_report event type: a user id, the crash time as
 * epoch seconds, and the message. Pure: no I/O, no globals written.
 */
#include "etc/err.h"
#include "events/internal.h"

static const struct ev_field fields[] = {
    {.name = "user_id", .type = "integer", .required = true, .check = ev_check_int},
    {.name = "timestamp",
     .type = "integer",
     .format = "epoch-seconds",
     .required = true,
     .check = ev_check_epoch_int},
    {.name = "message", .type = "string", .required = true, .check = ev_check_string},
};

static int
validate(const struct ev_type *t, const json_t *obj, char err[EV_ERR_MAX])
{
    (void)t;
    return ev_fields_check(obj, fields, sizeof(fields) / sizeof(fields[0]), err);
}

static int
encode_row(const struct ev_type *t, const struct ev_stored *ev, const json_t *obj,
           struct ev_buf *out, char err[EV_ERR_MAX])
{
    const json_t *msg;
    struct ev_row row;
    int rc;

    rc = validate(t, obj, err);
    if (rc != 0) {
        return rc;
    }
    msg = json_object_get(obj, "message");
    ev_row_begin(&row, out);
    ev_row_uuid(&row, ev->uuid);
    ev_row_cstr(&row, "crash_report");
    ev_row_i64(&row, json_integer_value(json_object_get(obj, "user_id")));
    ev_row_time(&row, json_integer_value(json_object_get(obj, "timestamp")) * 1000000);
    ev_row_text(&row, json_string_value(msg), json_string_length(msg));
    ev_row_time(&row, ev->received_us);
    ev_row_key(&row, ev);
    ev_row_source(&row, ev);
    return ev_row_end(&row);
}

const struct ev_type ev_crash_report = {
    .name = "crash_report",
    .table = "crash_report",
    .ddl = "CREATE TABLE IF NOT EXISTS crash_report ("
           "id uuid PRIMARY KEY, "
           "event_name text NOT NULL, "
           "user_id bigint NOT NULL, "
           "event_time timestamptz NOT NULL, "
           "message text NOT NULL, "
           "received_at timestamptz NOT NULL, "
           "loaded_at timestamptz NOT NULL DEFAULT now(), "
           "idempotency_key text, idempotency_digest bytea, "
           "source text)",
    .copy_columns = "(id, event_name, user_id, event_time, message, received_at, idempotency_key, "
                    "idempotency_digest, source)",
    .load = EV_LOAD_APPEND,
    .keyed = true,
    .copy_binary = true,
    .fields = fields,
    .n_fields = sizeof(fields) / sizeof(fields[0]),
    .stage_ddl = NULL,
    .upsert_sql = NULL,
    .id_kind = EV_ID_UUID,
    .get_sql = "SELECT row_to_json(t)::text FROM crash_report t WHERE t.id = $1::uuid",
    .validate = validate,
    .encode_row = encode_row,
};
