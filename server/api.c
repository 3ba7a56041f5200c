/*
 * api.c - what the appliance accepts, for clients to discover: GET /v1/types (the registry
 * as JSON) and GET /v1/openapi.json (an OpenAPI 3.1 document). Both are built on each request
 * from the route table and the registry, never kept by hand: a new route or type shows at
 * once. Read-only; touches neither the queue nor the database.
 */
#include "server/srv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API_PATH_MAX 256 /* a route's path with {type} filled in, bytes with NUL */

/* Content types a POST body may have (ingest.c takes these), the JSON one first. */
static const char *const body_types[] = {
    "application/json",
    "application/x-ndjson",
    "application/jsonl",
    "text/plain",
    "application/x-www-form-urlencoded",
};

/* Does path hold "{name}"? */
static bool
has_param(const char *path, const char *name)
{
    return strstr(path, name) != NULL;
}

/* path with "{type}" replaced by name, into out. */
static void
path_fill(const char *path, const char *name, char out[API_PATH_MAX])
{
    const char *at = strstr(path, "{type}");

    if (at == NULL) {
        snprintf(out, API_PATH_MAX, "%s", path);
        return;
    }
    snprintf(out, API_PATH_MAX, "%.*s%s%s", (int)(at - path), path, name, at + 6);
}

/* The first route with one of methods whose path has {type}, filled with t's name; or NULL. */
static json_t *
type_endpoint(const struct srv_route *routes, size_t n_routes, const struct ev_type *t,
              unsigned methods)
{
    char path[API_PATH_MAX];

    for (size_t i = 0; i < n_routes; i++) {
        if ((routes[i].methods & methods) != 0 && has_param(routes[i].path, "{type}")) {
            path_fill(routes[i].path, t->name, path);
            return json_string(path);
        }
    }
    return json_null();
}

static json_t *
field_json(const struct ev_field *f)
{
    json_t *o = json_object();

    json_object_set_new(o, "name", json_string(f->name));
    json_object_set_new(o, "type", json_string(f->type != NULL ? f->type : "any"));
    if (f->format != NULL) {
        json_object_set_new(o, "format", json_string(f->format));
    }
    json_object_set_new(o, "required", json_boolean(f->required));
    if (f->null_ok) {
        json_object_set_new(o, "nullable", json_true());
    }
    return o;
}

static json_t *
type_json(const struct srv *s, const struct srv_route *routes, size_t n_routes,
          const struct ev_type *t)
{
    json_t *o = json_object();
    json_t *fields = json_array();
    const char *name = t->table;
    size_t len = strlen(name);
    char table[256];

    /* A declared type's table is a quoted identifier; its name needs no quotes to be read. */
    if (len >= 2 && name[0] == '"' && name[len - 1] == '"') {
        name++;
        len -= 2;
    }
    snprintf(table, sizeof(table), "%s.%.*s", s->cfg->database_schema, (int)len, name);
    for (size_t i = 0; i < t->n_fields; i++) {
        json_array_append_new(fields, field_json(&t->fields[i]));
    }
    json_object_set_new(o, "name", json_string(t->name));
    json_object_set_new(o, "endpoint", type_endpoint(routes, n_routes, t, SRV_POST));
    json_object_set_new(o, "read", type_endpoint(routes, n_routes, t, SRV_GET));
    json_object_set_new(o, "table", json_string(table));
    json_object_set_new(o, "load", json_string(t->load == EV_LOAD_UPSERT ? "upsert" : "append"));
    json_object_set_new(o, "fields", fields);
    /* In the words of a declared type's "unknown_fields". */
    json_object_set_new(o, "unknown_fields", json_string(t->open ? "keep" : "reject"));
    return o;
}

void
srv_get_types(struct srv *s, const struct srv_route *routes, size_t n_routes, struct srv_reply *r)
{
    json_t *o = srv_reply_object(200, NULL);
    json_t *types = json_array();

    for (size_t i = 0; i < ev_registry_len; i++) {
        json_array_append_new(types, type_json(s, routes, n_routes, ev_registry[i]));
    }
    json_object_set_new(o, "types", types);
    srv_reply_set(r, 200, o);
    if (r->body == NULL) {
        srv_reply_json(r, 500, "out of memory");
    }
}

/* ---- the OpenAPI document ------------------------------------------------------------- */

/* One word of a field's type as a JSON Schema (declared types' words included). */
static json_t *
word_schema(const char *w, size_t n)
{
    static const struct {
        const char *word;
        const char *type;
        const char *format;
    } words[] = {
        {"string", "string", NULL},   {"integer", "integer", NULL}, {"number", "number", NULL},
        {"boolean", "boolean", NULL}, {"object", "object", NULL},   {"array", "array", NULL},
        {"ip", "string", NULL},       {"url", "string", "uri"},     {"uuid", "string", "uuid"},
    };

    if (n == 9 && memcmp(w, "timestamp", 9) == 0) {
        /* A declared timestamp: epoch seconds, or RFC 3339 text. */
        return json_pack("{s:[{s:s}, {s:s, s:s}]}", "anyOf", "type", "integer", "type", "string",
                         "format", "date-time");
    }
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strlen(words[i].word) == n && memcmp(words[i].word, w, n) == 0) {
            return words[i].format != NULL
                       ? json_pack("{s:s, s:s}", "type", words[i].type, "format", words[i].format)
                       : json_pack("{s:s}", "type", words[i].type);
        }
    }
    return json_object(); /* a word this document does not know: any value */
}

static json_t *
field_schema(const struct ev_field *f)
{
    const char *t = f->type != NULL ? f->type : "";
    json_t *any = json_array();
    json_t *o;

    while (*t != '\0') {
        size_t n = strcspn(t, "|");

        json_array_append_new(any, word_schema(t, n));
        t += n + (t[n] == '|');
    }
    if (f->null_ok) {
        json_array_append_new(any, json_pack("{s:s}", "type", "null"));
    }
    if (json_array_size(any) == 1) {
        o = json_incref(json_array_get(any, 0));
        json_decref(any);
    } else if (json_array_size(any) == 0) {
        json_decref(any);
        o = json_object();
    } else {
        o = json_pack("{s:o}", "anyOf", any);
    }
    if (f->format == NULL) {
        return o;
    }
    /* A JSON Schema format where it is one and applies; our own words as a description. */
    if ((strcmp(f->format, "date-time") == 0 || strcmp(f->format, "ipv4") == 0) &&
        json_is_string(json_object_get(o, "type"))) {
        json_object_set_new(o, "format", json_string(f->format));
    } else {
        json_object_set_new(o, "description", json_string(f->format));
    }
    return o;
}

/* A type's event as a JSON Schema: its fields, and event_name equal to its name. */
static json_t *
type_schema(const struct ev_type *t)
{
    json_t *props = json_object();
    json_t *req = json_array();

    json_object_set_new(props, "event_name", json_pack("{s:s}", "const", t->name));
    /* Every type takes a key: the dispatcher checks it before the type sees the event. */
    json_object_set_new(props, EV_KEY_FIELD,
                        json_pack("{s:s, s:i, s:i, s:s}", "type", "string", "minLength", 1,
                                  "maxLength", EV_KEY_MAX, "description",
                                  "idempotency key: 1 to 255 bytes of UTF-8 without control "
                                  "characters; a repeat within the dedup window is answered "
                                  "as the first time"));
    for (size_t i = 0; i < t->n_fields; i++) {
        json_object_set_new(props, t->fields[i].name, field_schema(&t->fields[i]));
        if (t->fields[i].required) {
            json_array_append_new(req, json_string(t->fields[i].name));
        }
    }
    return json_pack("{s:s, s:o, s:o, s:b}", "type", "object", "properties", props, "required", req,
                     "additionalProperties", t->open);
}

static json_t *
ref(const char *name)
{
    char r[128];

    snprintf(r, sizeof(r), "#/components/schemas/%s", name);
    return json_pack("{s:s}", "$ref", r);
}

/* The answer body: status, an event's id, a batch's counts, ids in input order, errors. */
static json_t *
answer_schema(void)
{
    json_t *props = json_object();

    json_object_set_new(props, "status_code", json_pack("{s:s}", "type", "integer"));
    json_object_set_new(props, "status_message", json_pack("{s:s}", "type", "string"));
    json_object_set_new(props, "id", json_pack("{s:s, s:s}", "type", "string", "format", "uuid"));
    json_object_set_new(props, "duplicate",
                        json_pack("{s:s, s:s}", "type", "boolean", "description",
                                  "one event: a repeat of a key, answered as the first time"));
    json_object_set_new(props, "accepted", json_pack("{s:s}", "type", "integer"));
    json_object_set_new(props, "rejected", json_pack("{s:s}", "type", "integer"));
    json_object_set_new(props, "duplicates",
                        json_pack("{s:s, s:s}", "type", "integer", "description",
                                  "repeats of keys the queue already held (among accepted)"));
    json_object_set_new(
        props, "ids",
        json_pack("{s:s, s:{s:[{s:s, s:s}, {s:s}]}, s:s}", "type", "array", "items", "anyOf",
                  "type", "string", "format", "uuid", "type", "null", "description",
                  "one per input event in input order: its id (a repeat: the first event's), "
                  "or null when it was rejected"));
    json_object_set_new(props, "errors",
                        json_pack("{s:s, s:{s:s, s:{s:{s:s}, s:{s:s}}}}", "type", "array", "items",
                                  "type", "object", "properties", "index", "type", "integer",
                                  "error", "type", "string"));
    return json_pack("{s:s, s:[s, s], s:o}", "type", "object", "required", "status_code",
                     "status_message", "properties", props);
}

/* components: a schema per type, Event (any type, named), the answer body, API keys. */
static json_t *
components(void)
{
    json_t *schemas = json_object();
    json_t *named = json_array();

    for (size_t i = 0; i < ev_registry_len; i++) {
        const struct ev_type *t = ev_registry[i];

        json_object_set_new(schemas, t->name, type_schema(t));
        json_array_append_new(
            named, json_pack("{s:[o, {s:[s]}]}", "allOf", ref(t->name), "required", "event_name"));
    }
    json_object_set_new(schemas, "Event", json_pack("{s:o}", "anyOf", named));
    json_object_set_new(schemas, "Answer", answer_schema());
    return json_pack("{s:o, s:{s:{s:s, s:s}, s:{s:s, s:s, s:s}}}", "schemas", schemas,
                     "securitySchemes", "bearer", "type", "http", "scheme", "bearer", "apiKey",
                     "type", "apiKey", "in", "header", "name", "X-API-Key");
}

/* A POST's body: one event or an array of them, or events one a line. */
static json_t *
request_body(const struct ev_type *t)
{
    json_t *content = json_object();
    json_t *one = t != NULL ? ref(t->name) : ref("Event");
    json_t *many = json_pack("{s:s, s:O}", "type", "array", "items", one);

    json_object_set_new(content, body_types[0],
                        json_pack("{s:{s:[o, o]}}", "schema", "anyOf", one, many));
    for (size_t i = 1; i < sizeof(body_types) / sizeof(body_types[0]); i++) {
        json_object_set_new(content, body_types[i],
                            json_pack("{s:{s:s, s:s}}", "schema", "type", "string", "description",
                                      "JSON events separated by whitespace"));
    }
    return json_pack("{s:b, s:s, s:o}", "required", 1, "description",
                     "events: JSON values separated by whitespace (NDJSON), an object, or an "
                     "array; gzip with Content-Encoding: gzip",
                     "content", content);
}

static void
answer(json_t *responses, int status, const char *what, const struct srv_route *rt, bool head)
{
    char code[8];
    json_t *o = json_pack("{s:s}", "description", what);

    snprintf(code, sizeof(code), "%d", status);
    if (head || status == 204) {
        /* No body. */
    } else if (status < 300 && rt->media_type != NULL) {
        json_object_set_new(o, "content",
                            json_pack("{s:{s:{s:s}}}", rt->media_type, "schema", "type", "string"));
    } else if (status < 300 && (rt->methods & SRV_POST) == 0) {
        json_object_set_new(
            o, "content",
            json_pack("{s:{s:{s:s}}}", "application/json", "schema", "type", "object"));
    } else {
        json_object_set_new(o, "content",
                            json_pack("{s:{s:o}}", "application/json", "schema", ref("Answer")));
    }
    json_object_set_new(responses, code, o);
}

/* The answers of one operation: the handler's (from the row), then the dispatcher's. */
static json_t *
responses(const struct srv_route *rt, const char *method)
{
    json_t *o = json_object();
    bool head = strcmp(method, "head") == 0;

    if (rt->answers == NULL) {
        answer(o, 200, rt->summary, rt, head);
    }
    for (const struct srv_answer *a = rt->answers; a != NULL && a->status != 0; a++) {
        answer(o, a->status, a->what, rt, head);
    }
    if (rt->needs_key) {
        answer(o, 401, "no or wrong API key (only when keys are configured)", rt, head);
    }
    if (rt->needs_key && strcmp(method, "post") == 0) {
        answer(o, 429,
               "the API key is over its rate limit (events_per_s): Retry-After says "
               "when to send again",
               rt, head);
    }
    if (has_param(rt->path, "{type}")) {
        answer(o, 404, "unknown event type: the answer lists the valid ones", rt, head);
    }
    answer(o, 405, "method not allowed: Allow lists the methods", rt, head);
    return o;
}

/* "post_v1_events_crash_report__id_": the method and the path, unique per operation. */
static json_t *
operation_id(const char *method, const char *path)
{
    char id[API_PATH_MAX + 16];
    size_t n = (size_t)snprintf(id, sizeof(id), "%s_", method);

    for (const char *p = path + 1; *p != '\0' && n + 1 < sizeof(id); p++) {
        id[n++] = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ? *p : '_';
    }
    id[n] = '\0';
    return json_string(id);
}

static json_t *
operation(const struct srv_route *rt, const struct ev_type *t, const char *method, const char *path)
{
    json_t *op = json_object();
    json_t *params = json_array();
    char summary[256];

    snprintf(summary, sizeof(summary), "%s%s%s%s", rt->summary, t != NULL ? " (" : "",
             t != NULL ? t->name : "", t != NULL ? ")" : "");
    json_object_set_new(op, "summary", json_string(summary));
    json_object_set_new(op, "operationId", operation_id(method, path));
    if (has_param(rt->path, "{id}")) {
        json_t *schema = t != NULL && t->id_kind == EV_ID_UUID
                             ? json_pack("{s:s, s:s}", "type", "string", "format", "uuid")
                             : json_pack("{s:s}", "type", "string");

        json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:o}", "name", "id", "in", "path",
                                                "required", 1, "schema", schema));
    }
    if (json_array_size(params) > 0) {
        json_object_set_new(op, "parameters", params);
    } else {
        json_decref(params);
    }
    if (strcmp(method, "post") == 0) {
        json_object_set_new(op, "requestBody", request_body(t));
    }
    if (rt->needs_key) {
        json_object_set_new(op, "security", json_pack("[{s:[]}, {s:[]}]", "bearer", "apiKey"));
    }
    json_object_set_new(op, "responses", responses(rt, method));
    return op;
}

/* Every operation of one row for one path (t: the type the path stands for, or NULL). */
static void
path_item(json_t *paths, const struct srv_route *rt, const struct ev_type *t, const char *path)
{
    json_t *item = json_object();

    if ((rt->methods & SRV_GET) != 0) {
        json_object_set_new(item, "get", operation(rt, t, "get", path));
    }
    if ((rt->methods & SRV_HEAD) != 0) {
        json_object_set_new(item, "head", operation(rt, t, "head", path));
    }
    if ((rt->methods & SRV_POST) != 0) {
        json_object_set_new(item, "post", operation(rt, t, "post", path));
    }
    json_object_set_new(item, "options",
                        json_pack("{s:s, s:o, s:{s:{s:s}}}", "summary",
                                  "the methods (Allow), and a CORS preflight's answer",
                                  "operationId", operation_id("options", path), "responses", "204",
                                  "description", "Allow lists the methods"));
    json_object_set_new(paths, path, item);
}

void
srv_get_openapi(struct srv *s, const struct srv_route *routes, size_t n_routes, struct srv_reply *r)
{
    json_t *paths = json_object();
    json_t *doc;
    char path[API_PATH_MAX];

    (void)s;
    for (size_t i = 0; i < n_routes; i++) {
        const struct srv_route *rt = &routes[i];

        if (!has_param(rt->path, "{type}")) {
            path_item(paths, rt,
                      rt->event_type != NULL ? ev_lookup(rt->event_type, strlen(rt->event_type))
                                             : NULL,
                      rt->path);
            continue;
        }
        /* One path per type, so that each carries its type's schema. */
        for (size_t k = 0; k < ev_registry_len; k++) {
            path_fill(rt->path, ev_registry[k]->name, path);
            path_item(paths, rt, ev_registry[k], path);
        }
    }
    doc = json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:o}", "openapi", "3.1.0", "info", "title",
                    "datapipe", "version", DP_VERSION, "description",
                    "Events over HTTP into PostgreSQL, exactly once. Generated by the running "
                    "server from its route table and its event types.",
                    "paths", paths, "components", components());
    if (doc == NULL) {
        srv_reply_json(r, 500, "out of memory");
        return;
    }
    free(r->body);
    r->status = 200;
    r->body = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (r->body == NULL) {
        srv_reply_json(r, 500, "out of memory");
    }
}
