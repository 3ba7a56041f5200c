/*
 * page.c - GET /status: the status page. Its HTML, CSS and script are server/status.html,
 * turned into the byte array server_status_html at build time (the Makefile runs xxd -i),
 * so the page ships inside the binary and needs nothing from any network.
 */
#include "server/srv.h"

#include <stdlib.h>
#include <string.h>

/* Generated from server/status.html (see the Makefile): not NUL-terminated. */
extern const unsigned char server_status_html[];
extern const unsigned int server_status_html_len;

void
srv_get_status_page(struct srv *s, struct srv_reply *r)
{
    (void)s;
    /* The reply frees its body: hand it a copy (a few tens of KiB, once per page load). */
    r->body = malloc((size_t)server_status_html_len + 1);
    if (r->body == NULL) {
        srv_reply_json(r, 500, "out of memory");
        return;
    }
    memcpy(r->body, server_status_html, server_status_html_len);
    r->body[server_status_html_len] = '\0';
    r->status = 200;
    r->content_type = "text/html; charset=utf-8";
    /* The page loads nothing from elsewhere, and nothing may frame it. */
    srv_reply_header(r, "Content-Security-Policy",
                     "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                     "img-src data:; connect-src 'self'; frame-ancestors 'none'");
}
