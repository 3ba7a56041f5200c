/*
 * registry.c - the one table of event types. Adding a type is one file under
 * events/ and one line here; the order is fixed and only ever appended to.
 */
#include <stdio.h>
#include <string.h>

#include "events/events.h"

extern const struct ev_type ev_crash_report;
extern const struct ev_type ev_ad_event;
extern const struct ev_type ev_user_login;
extern const struct ev_type ev_product;
extern const struct ev_type ev_data_sample;

const struct ev_type *const ev_registry[] = {
    &ev_crash_report,
    &ev_ad_event,
    &ev_user_login,
    &ev_product,
    &ev_data_sample,
};

const size_t ev_registry_len = sizeof(ev_registry) / sizeof(ev_registry[0]);

const struct ev_type *
ev_lookup(const char *name, size_t len)
{
    size_t i;

    if (name == NULL) {
        return NULL;
    }
    for (i = 0; i < ev_registry_len; i++) {
        const char *n = ev_registry[i]->name;

        if (strlen(n) == len && memcmp(n, name, len) == 0) {
            return ev_registry[i];
        }
    }
    return NULL;
}

void
ev_type_names(char *out, size_t cap)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < ev_registry_len; i++) {
        const char *sep = i > 0 ? ", " : "";
        size_t need = strlen(sep) + strlen(ev_registry[i]->name);

        /* Room for this name, and for ", ..." after it unless it is the last. */
        if (used + need + (i + 1 < ev_registry_len ? 5 : 0) >= cap) {
            snprintf(out + used, cap - used, "%s...", sep);
            return;
        }
        used += (size_t)snprintf(out + used, cap - used, "%s%s", sep, ev_registry[i]->name);
    }
}
