/*
 * The chat store (SQLite): chats and their messages, for `pocketllm serve`.
 * One connection guarded by a mutex, so every call is safe from any thread;
 * every write is one transaction, committed before the call returns (WAL
 * journal, synchronous=FULL): what a call acknowledged survives a crash of the
 * process (kill -9) or of the machine. The schema carries its version in
 * PRAGMA user_version and is migrated forward at open.
 *
 * Errors are pl_status values with the message in pl_last_error().
 */
#ifndef PL_SERVE_STORE_H
#define PL_SERVE_STORE_H

#include "pocketllm.h"

#include <stdint.h>

typedef struct store store;

typedef struct store_chat {
    int64_t id;        /* 0 when a lookup found nothing */
    char *title;
    char *model;
    int64_t created;   /* unix seconds */
    int64_t updated;
    int n_messages;
} store_chat;

typedef struct store_msg {
    int64_t id;
    char *role;        /* "system", "user", "assistant" */
    char *content;
    char *finish;      /* "stop", "length", "cancelled" or "" (not a reply) */
    int tokens;        /* tokens of the content (generated ones for a reply) */
    int n_prompt;      /* prompt tokens a reply was generated from */
    double prompt_ms;  /* prompt evaluation time of a reply */
    double gen_ms;     /* generation time of a reply */
    int64_t created;
} store_msg;

/* Open (creating, migrating) the database at path. */
pl_status store_open(const char *path, store **out);
void store_close(store *s);

/* Latest schema version, and the SQL that migrates version v-1 to v (v >= 1;
 * NULL past the latest). */
int store_schema_latest(void);
const char *store_migration_sql(int v);

pl_status store_chat_create(store *s, const char *title, const char *model, int64_t *id);
/* All chats, most recently updated first. */
pl_status store_chat_list(store *s, store_chat **chats, int *n);
/* A chat and its messages in order; chat->id == 0 when there is none. msgs
 * may be NULL when only the chat is wanted. */
pl_status store_chat_get(store *s, int64_t id, store_chat *chat, store_msg **msgs, int *n);
/* *found says whether the chat existed. */
pl_status store_chat_delete(store *s, int64_t id, int *found);
pl_status store_chat_rename(store *s, int64_t id, const char *title, int *found);
/* Append a message (one transaction: the message, the chat's update time,
 * and the chat's title from its first user message when it has none).
 * PL_ERR_INVALID_ARG when the chat does not exist. */
pl_status store_msg_add(store *s, int64_t chat_id, const store_msg *m, int64_t *id);

void store_chat_clear(store_chat *c);
void store_chats_free(store_chat *chats, int n);
void store_msgs_free(store_msg *msgs, int n);

#endif
