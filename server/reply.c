/*
 * reply.c - building and sending an answer: the JSON status body, extra
 * header lines, and one write per answer. Knows HTTP, never what a route
 * means: it calls no other file of server/.
 */
#include "server/reply.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *
status_text(int status)
{
    switch (status) {
    case 200:
        return "ok";
    case 202:
        return "accepted";
    case 204:
        return "no content";
    case 400:
        return "bad request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not found";
    case 405:
        return "method not allowed";
    case 409:
        return "conflict";
    case 413:
        return "payload too large";
    case 415:
        return "unsupported media type";
    case 503:
        return "service unavailable";
    default:
        return "internal server error";
    }
}

void
srv_reply_header(struct srv_reply *r, const char *name, const char *value)
{
    size_t used = strlen(r->headers);

    snprintf(r->headers + used, sizeof(r->headers) - used, "%s: %s\r\n", name, value);
}

json_t *
srv_reply_object(int status, const char *message)
{
    json_t *o = json_object();

    json_object_set_new(o, "status_code", json_integer(status));
    json_object_set_new(o, "status_message", json_string(message ? message : status_text(status)));
    return o;
}

void
srv_reply_set(struct srv_reply *r, int status, json_t *o)
{
    free(r->body);
    r->status = status;
    r->body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
}

void
srv_reply_json(struct srv_reply *r, int status, const char *message)
{
    srv_reply_set(r, status, srv_reply_object(status, message));
}

/*
 * Write the whole answer (status line, headers, body) with one mg_write: on
 * loopback each write is a packet the client must wake for, so headers and
 * body in separate writes cost a third of the server's time per request.
 */
void
srv_reply_send(struct mg_connection *c, struct srv_reply *r)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    size_t blen = r->body != NULL ? strlen(r->body) + 1 : 0; /* the body and its newline */
    char ctype[160] = "";
    char clen[48] = "";
    char head[1024];
    char small[2048];
    char *buf = NULL;
    int hn;

    if (ri->http_version != NULL && strcmp(ri->http_version, "1.0") == 0 &&
        strstr(r->headers, "Connection: close") == NULL) {
        /* An HTTP/1.0 client expects the server to close. */
        srv_reply_header(r, "Connection", "close");
        mg_disable_connection_keep_alive(c);
    }
    if (r->body != NULL) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s\r\n",
                 r->content_type != NULL ? r->content_type : "application/json");
    }
    if (r->status != 204) {
        snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", blen);
    }
    hn = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s%sCache-Control: no-store\r\n%s\r\n",
                  r->status, mg_get_response_code_text(c, r->status), ctype, clen, r->headers);
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 500 Internal Server Error\r\n"
                      "Content-Length: 0\r\nConnection: close\r\n\r\n");
        mg_disable_connection_keep_alive(c);
        blen = 0;
    }
    /* Most answers fit on the stack; only large bodies (metrics, rows) allocate. */
    buf = (size_t)hn + blen <= sizeof(small) ? small : malloc((size_t)hn + blen);
    if (buf == NULL) {
        mg_disable_connection_keep_alive(c);
        return;
    }
    memcpy(buf, head, (size_t)hn);
    if (blen > 0) {
        memcpy(buf + hn, r->body, blen - 1);
        buf[(size_t)hn + blen - 1] = '\n';
    }
    /* A HEAD answer has the headers of the GET, never a body. */
    mg_write(c, buf, (size_t)hn + (strcmp(ri->request_method, "HEAD") == 0 ? 0 : blen));
    if (buf != small) {
        free(buf);
    }
}
