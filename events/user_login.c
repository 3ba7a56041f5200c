/*
 * user_login.c - the user_login type: who logged in, when (epoch seconds as an
 * integer or a string of digits), and optional client details.
 * Pure: processed_at comes from the loader's clock in struct ev_stored.
 */
#include "etc/err.h"
#include "events/internal.h"

/* Epoch seconds from an integer or a string of digits; 0 or DP_ERR_INVALID. */
static int
epoch_value(const json_t *v, const char *name, int64_t *out, char err[EV_ERR_MAX])
{
    /* Digits beyond this cannot be milliseconds either: stop before int64 overflows. */
    const int64_t ms_max = EV_EPOCH_MAX * 1000 + 999;
    const char *s;
    size_t n;
    size_t i;
    int64_t t = 0;

    if (json_is_real(v)) {
        return ev_epoch_real_err(err, name, v);
    }
    if (json_is_integer(v)) {
        t = json_integer_value(v);
        if (t < 0 || t > EV_EPOCH_MAX) {
            return ev_epoch_range_err(err, name, t);
        }
        *out = t;
        return 0;
    }
    if (!json_is_string(v)) {
        return ev_type_err(err, name, "integer or string of digits", v);
    }
    s = json_string_value(v);
    n = json_string_length(v);
    if (n == 0) {
        return ev_errf(err, "%s: must not be empty", name);
    }
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return ev_errf(err, "%s: not a string of digits", name);
        }
        t = t > ms_max ? t : t * 10 + (s[i] - '0');
    }
    if (t > EV_EPOCH_MAX) {
        return ev_epoch_range_err(err, name, t);
    }
    *out = t;
    return 0;
}

static int
check_epoch(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    int64_t t;

    return epoch_value(v, name, &t, err);
}

static const struct ev_field fields[] = {
    {.name = "user_id",
     .type = "string",
     .format = "non-empty",
     .required = true,
     .check = ev_check_nonempty_string},
    {.name = "timestamp",
     .type = "integer|string",
     .format = "epoch-seconds",
     .required = true,
     .check = check_epoch},
    {.name = "app_version", .type = "string", .null_ok = true, .check = ev_check_string},
    {.name = "device_type", .type = "string", .null_ok = true, .check = ev_check_string},
    {.name = "ip", .type = "ip", .null_ok = true, .check = ev_check_ip},
    {.name = "locale", .type = "string", .null_ok = true, .check = ev_check_string},
    {.name = "device_id", .type = "string", .null_ok = true, .check = ev_check_string},
};

static int
validate(const struct ev_type *t, const json_t *obj, char err[EV_ERR_MAX])
{
    (void)t;
    return ev_fields_check(obj, fields, sizeof(fields) / sizeof(fields[0]), err);
}

/* An optional string column: NULL when absent or JSON null. */
static void
row_opt_string(struct ev_row *row, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v)) {
        ev_row_null(row);
    } else {
        ev_row_text(row, json_string_value(v), json_string_length(v));
    }
}

static int
encode_row(const struct ev_type *type, const struct ev_stored *ev, const json_t *obj,
           struct ev_buf *out, char err[EV_ERR_MAX])
{
    struct ev_row row;
    int64_t t = 0;
    int rc;

    rc = validate(type, obj, err);
    if (rc != 0) {
        return rc;
    }
    rc = epoch_value(json_object_get(obj, "timestamp"), "timestamp", &t, err);
    if (rc != 0) {
        return rc;
    }
    ev_row_begin(&row, out);
    ev_row_uuid(&row, ev->uuid);
    row_opt_string(&row, obj, "user_id");
    row_opt_string(&row, obj, "app_version");
    row_opt_string(&row, obj, "device_type");
    row_opt_string(&row, obj, "ip");
    row_opt_string(&row, obj, "locale");
    row_opt_string(&row, obj, "device_id");
    ev_row_time(&row, t * 1000000);
    ev_row_time(&row, ev->now_us);
    ev_row_time(&row, ev->received_us);
    ev_row_key(&row, ev);
    ev_row_source(&row, ev);
    return ev_row_end(&row);
}

const struct ev_type ev_user_login = {
    .name = "user_login",
    .table = "user_login",
    .ddl = "CREATE TABLE IF NOT EXISTS user_login ("
           "id uuid PRIMARY KEY, "
           "user_id text NOT NULL, "
           "app_version text, "
           "device_type text, "
           "ip inet, "
           "locale text, "
           "device_id text, "
           "created_at timestamptz NOT NULL, "
           "processed_at timestamptz NOT NULL, "
           "received_at timestamptz NOT NULL, "
           "idempotency_key text, idempotency_digest bytea, "
           "source text)",
    .copy_columns = "(id, user_id, app_version, device_type, ip, locale, device_id, created_at, "
                    "processed_at, received_at, idempotency_key, idempotency_digest, source)",
    .load = EV_LOAD_APPEND,
    .keyed = true,
    .fields = fields,
    .n_fields = sizeof(fields) / sizeof(fields[0]),
    .stage_ddl = NULL,
    .upsert_sql = NULL,
    .id_kind = EV_ID_UUID,
    .get_sql = "SELECT row_to_json(t)::text FROM user_login t WHERE t.id = $1::uuid",
    .validate = validate,
    .encode_row = encode_row,
};
