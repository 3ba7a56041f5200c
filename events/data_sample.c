/*
 * data_sample.c - the data_sample type: an RFC 3339 instant and an array of
 * numbers, stored with n, mean and population std (one stable pass) and the
 * exact bytes received. Pure; never loses the client's original text.
 */
#include <math.h>

#include "etc/err.h"
#include "events/internal.h"

static int
check_time(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    int64_t us;

    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    return ev_parse_rfc3339(json_string_value(v), json_string_length(v), name, &us, err);
}

static int
check_data(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    size_t i;
    size_t n;

    if (!json_is_array(v)) {
        return ev_type_err(err, name, "array", v);
    }
    n = json_array_size(v);
    if (n == 0) {
        return ev_errf(err, "%s: must not be empty", name);
    }
    if (n > INT32_MAX) {
        return ev_errf(err, "%s: more than %d numbers", name, INT32_MAX);
    }
    for (i = 0; i < n; i++) {
        const json_t *x = json_array_get(v, i);

        if (!json_is_number(x)) {
            return ev_errf(err, "%s[%zu]: expected number, got %s", name, i, ev_json_kind(x));
        }
    }
    return 0;
}

static const struct ev_field fields[] = {
    {.name = "time_stamp",
     .type = "string",
     .format = "date-time",
     .required = true,
     .check = check_time},
    {.name = "data",
     .type = "array",
     .format = "non-empty array of numbers",
     .required = true,
     .check = check_data},
};

static int
validate(const struct ev_type *t, const json_t *obj, char err[EV_ERR_MAX])
{
    (void)t;
    return ev_fields_check(obj, fields, sizeof(fields) / sizeof(fields[0]), err);
}

/*
 * Mean and population standard deviation in one Welford pass. The values are
 * first scaled by a power of two (exact) so that |x| <= 1, and shifted by the
 * first value: then no intermediate can overflow, whatever the magnitudes, and
 * data far from zero (1e9 + small noise) keeps the precision of its spread,
 * where the sum-of-squares formula cancels to nothing. Scaled back at the end.
 */
static void
stats(const json_t *arr, double *mean, double *std)
{
    size_t n = json_array_size(arr);
    double max_abs = 0;
    double shift;
    double m = 0;
    double m2 = 0;
    size_t i;
    int e = 0;

    for (i = 0; i < n; i++) {
        double a = fabs(json_number_value(json_array_get(arr, i)));

        if (a > max_abs) {
            max_abs = a;
        }
    }
    frexp(max_abs, &e);
    shift = ldexp(json_number_value(json_array_get(arr, 0)), -e);
    for (i = 0; i < n; i++) {
        double x = ldexp(json_number_value(json_array_get(arr, i)), -e) - shift;
        double d = x - m;

        m += d / (double)(i + 1);
        m2 += d * (x - m);
    }
    *mean = ldexp(shift + m, e);
    *std = ldexp(sqrt(m2 / (double)n), e);
}

static int
encode_row(const struct ev_type *t, const struct ev_stored *ev, const json_t *obj,
           struct ev_buf *out, char err[EV_ERR_MAX])
{
    const json_t *ts;
    const json_t *data;
    struct ev_row row;
    int64_t us = 0;
    double mean = 0;
    double std = 0;
    int rc;

    rc = validate(t, obj, err);
    if (rc != 0) {
        return rc;
    }
    ts = json_object_get(obj, "time_stamp");
    rc = ev_parse_rfc3339(json_string_value(ts), json_string_length(ts), "time_stamp", &us, err);
    if (rc != 0) {
        return rc;
    }
    data = json_object_get(obj, "data");
    stats(data, &mean, &std);
    ev_row_begin(&row, out);
    ev_row_uuid(&row, ev->uuid);
    ev_row_time(&row, us);
    ev_row_i64(&row, (int64_t)json_array_size(data));
    ev_row_f64(&row, mean);
    ev_row_f64(&row, std);
    ev_row_text(&row, ev->json, ev->json_len);
    ev_row_time(&row, ev->received_us);
    ev_row_key(&row, ev);
    ev_row_source(&row, ev);
    return ev_row_end(&row);
}

const struct ev_type ev_data_sample = {
    .name = "data_sample",
    .table = "data_sample",
    .ddl = "CREATE TABLE IF NOT EXISTS data_sample ("
           "id uuid PRIMARY KEY, "
           "time_stamp timestamptz NOT NULL, "
           "n integer NOT NULL, "
           "mean float8 NOT NULL, "
           "std float8 NOT NULL, "
           "raw json NOT NULL, "
           "received_at timestamptz NOT NULL, "
           "loaded_at timestamptz NOT NULL DEFAULT now(), "
           "idempotency_key text, idempotency_digest bytea, "
           "source text)",
    .copy_columns = "(id, time_stamp, n, mean, std, raw, received_at, idempotency_key, "
                    "idempotency_digest, source)",
    .load = EV_LOAD_APPEND,
    .keyed = true,
    .fields = fields,
    .n_fields = sizeof(fields) / sizeof(fields[0]),
    .stage_ddl = NULL,
    .upsert_sql = NULL,
    .id_kind = EV_ID_UUID,
    .get_sql = "SELECT row_to_json(t)::text FROM (SELECT id, time_stamp, n, mean, std, "
               "received_at, loaded_at FROM data_sample WHERE id = $1::uuid) t",
    .validate = validate,
    .encode_row = encode_row,
};
