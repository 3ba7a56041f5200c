/*
 * registry.c - the one table of event types: the built-ins (one file under
 * events/ and one line here; the order is fixed and only ever appended to),
 * then the types declared in the configuration, appended at start and on
 * SIGHUP, and the message for a name it does not hold. Entries never move or go away while
 * the process runs.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "etc/decl.h"
#include "etc/err.h"
#include "events/internal.h"

extern const struct ev_type ev_crash_report;
extern const struct ev_type ev_ad_event;
extern const struct ev_type ev_user_login;
extern const struct ev_type ev_product;
extern const struct ev_type ev_data_sample;
extern const struct ev_type ev_identifies;
extern const struct ev_type ev_tracks;
extern const struct ev_type ev_pages;
extern const struct ev_type ev_screens;
extern const struct ev_type ev_groups;
extern const struct ev_type ev_aliases;
extern const struct ev_type ev_users;

#define EV_BUILTINS 12

static const struct ev_type *slots[EV_REGISTRY_MAX] = {
    &ev_crash_report, &ev_ad_event, &ev_user_login, &ev_product, &ev_data_sample, &ev_identifies,
    &ev_tracks,       &ev_pages,    &ev_screens,    &ev_groups,  &ev_aliases,     &ev_users,
};

const struct ev_type *const *const ev_registry = slots;
_Atomic size_t ev_registry_len = EV_BUILTINS;

const struct ev_type *
ev_lookup(const char *name, size_t len)
{
    size_t n = atomic_load(&ev_registry_len);
    size_t i;

    if (name == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        const char *s = slots[i]->name;

        if (strlen(s) == len && memcmp(s, name, len) == 0) {
            return slots[i];
        }
    }
    return NULL;
}

/* Report types registered but no longer declared. */
static void
note_removed(const struct dp_types *types,
             void (*note)(void *arg, const char *type, enum ev_change change), void *arg)
{
    size_t n = atomic_load(&ev_registry_len);

    for (size_t i = EV_BUILTINS; note != NULL && i < n; i++) {
        if (dp_types_find(types, slots[i]->name) == NULL) {
            note(arg, slots[i]->name, EV_CHANGE_REMOVED);
        }
    }
}

int
ev_registry_update(const struct dp_types *types,
                   void (*note)(void *arg, const char *type, enum ev_change change), void *arg)
{
    size_t n = atomic_load(&ev_registry_len);
    size_t added = 0;

    for (size_t i = 0; types != NULL && i < types->n; i++) {
        const struct dp_type_decl *d = &types->types[i];
        const struct ev_type *old = ev_lookup(d->name, strlen(d->name));

        if (old != NULL && old->decl == NULL) {
            return DP_ERR_INVALID;
        }
        if (old == NULL) {
            added++;
        }
    }
    if (n + added > EV_REGISTRY_MAX) {
        return DP_ERR_FULL;
    }
    for (size_t i = 0; types != NULL && i < types->n; i++) {
        const struct dp_type_decl *d = &types->types[i];
        const struct ev_type *old = ev_lookup(d->name, strlen(d->name));
        struct ev_type *t = NULL;
        int rc;

        if (old != NULL) {
            if (!dp_type_decl_equal(old->decl, d) && note != NULL) {
                note(arg, d->name, EV_CHANGE_CHANGED);
            }
            continue;
        }
        rc = ev_declared_create(d, &t);
        if (rc != 0) {
            return rc;
        }
        /* The slot first, then the length that makes readers look at it. */
        slots[n] = t;
        atomic_store(&ev_registry_len, ++n);
        if (note != NULL) {
            note(arg, d->name, EV_CHANGE_ADDED);
        }
    }
    note_removed(types, note, arg);
    return 0;
}

void
ev_registry_reset(void)
{
    size_t n = atomic_load(&ev_registry_len);

    atomic_store(&ev_registry_len, EV_BUILTINS);
    for (size_t i = EV_BUILTINS; i < n; i++) {
        ev_declared_destroy((struct ev_type *)(void *)slots[i]);
        slots[i] = NULL;
    }
}

void
ev_type_names(char *out, size_t cap)
{
    size_t n = atomic_load(&ev_registry_len);
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *sep = i > 0 ? ", " : "";
        size_t need = strlen(sep) + strlen(slots[i]->name);

        /* Room for this name, and for ", ..." after it unless it is the last. */
        if (used + need + (i + 1 < n ? 5 : 0) >= cap) {
            snprintf(out + used, cap - used, "%s...", sep);
            return;
        }
        used += (size_t)snprintf(out + used, cap - used, "%s%s", sep, slots[i]->name);
    }
}

void
ev_unknown_type(char out[EV_ERR_MAX], const char *name, size_t len)
{
    char q[EV_QUOTE_MAX * 4 + 8];
    char names[EV_ERR_MAX];

    ev_quote(q, sizeof(q), name, len);
    ev_type_names(names, sizeof(names));
    ev_errf(out, "unknown event type %s (valid types: %s)", q, names);
}
