/*
 * ad_event.c - the ad_event type: client IPv4 address, user agent, referring
 * URL (checked with a real URI parser), advertiser and free-form metadata.
 * Pure: no I/O; metadata is stored as the client's exact bytes.
 */
#include <arpa/inet.h>

#include "etc/err.h"
#include "events/internal.h"

static int
check_ipv4(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    struct in_addr addr;

    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    /* inet_pton takes exactly four decimal octets 0-255 and no leading zeros. */
    if (inet_pton(AF_INET, json_string_value(v), &addr) != 1) {
        return ev_errf(err, "%s: not a dotted-quad IPv4 address", name);
    }
    return 0;
}

static const struct ev_field fields[] = {
    {.name = "ip_address", .type = "ip", .format = "ipv4", .required = true, .check = check_ipv4},
    {.name = "user_agent", .type = "string", .required = true, .check = ev_check_string},
    {.name = "referring_url",
     .type = "url",
     .format = "http-url",
     .required = true,
     .check = ev_check_url},
    {.name = "advertiser_id",
     .type = "string",
     .format = "non-empty",
     .required = true,
     .check = ev_check_nonempty_string},
    {.name = "metadata", .type = "object", .required = false, .check = ev_check_object},
};

static int
validate(const struct ev_type *t, const json_t *obj, char err[EV_ERR_MAX])
{
    (void)t;
    return ev_fields_check(obj, fields, sizeof(fields) / sizeof(fields[0]), err);
}

static void
row_string(struct ev_row *row, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    ev_row_text(row, json_string_value(v), json_string_length(v));
}

static int
encode_row(const struct ev_type *t, const struct ev_stored *ev, const json_t *obj,
           struct ev_buf *out, char err[EV_ERR_MAX])
{
    const char *meta = "{}";
    size_t meta_len = 2;
    struct ev_row row;
    int rc;

    rc = validate(t, obj, err);
    if (rc != 0) {
        return rc;
    }
    /* The client's own bytes, so numbers keep their exact text in jsonb. */
    rc = ev_member_span(ev->json, ev->json_len, "metadata", &meta, &meta_len);
    if (rc == DP_ERR_NOTFOUND) {
        meta = "{}";
        meta_len = 2;
    } else if (rc != 0) {
        return rc == DP_ERR_NOMEM ? rc : ev_errf(err, "metadata: cannot locate in event");
    }
    ev_row_begin(&row, out);
    ev_row_uuid(&row, ev->uuid);
    row_string(&row, obj, "ip_address");
    row_string(&row, obj, "user_agent");
    row_string(&row, obj, "referring_url");
    row_string(&row, obj, "advertiser_id");
    ev_row_text(&row, meta, meta_len);
    ev_row_time(&row, ev->received_us);
    ev_row_key(&row, ev);
    ev_row_source(&row, ev);
    return ev_row_end(&row);
}

const struct ev_type ev_ad_event = {
    .name = "ad_event",
    .table = "ad_event",
    .ddl = "CREATE TABLE IF NOT EXISTS ad_event ("
           "id uuid PRIMARY KEY, "
           "ip_address inet NOT NULL, "
           "user_agent text NOT NULL, "
           "referring_url text NOT NULL, "
           "advertiser_id text NOT NULL, "
           "metadata jsonb NOT NULL DEFAULT '{}', "
           "received_at timestamptz NOT NULL, "
           "loaded_at timestamptz NOT NULL DEFAULT now(), "
           "idempotency_key text, idempotency_digest bytea, "
           "source text)",
    .copy_columns = "(id, ip_address, user_agent, referring_url, advertiser_id, metadata, "
                    "received_at, idempotency_key, idempotency_digest, source)",
    .load = EV_LOAD_APPEND,
    .keyed = true,
    .fields = fields,
    .n_fields = sizeof(fields) / sizeof(fields[0]),
    .stage_ddl = NULL,
    .upsert_sql = NULL,
    .id_kind = EV_ID_UUID,
    .jsonb_numbers = true,
    .get_sql = "SELECT row_to_json(t)::text FROM ad_event t WHERE t.id = $1::uuid",
    .validate = validate,
    .encode_row = encode_row,
};
