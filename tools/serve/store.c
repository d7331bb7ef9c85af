/*
 * The chat store on SQLite (see store.h for the guarantees). Schema changes
 * are appended to k_migrations, never edited: a database at version v has run
 * migrations 1..v, and opening it runs the rest, each in its own transaction
 * together with the user_version bump, so a crash mid-migration leaves the
 * previous version intact.
 */
#include "store.h"

#include "../../src/core/core.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const k_migrations[] = {
    /* 1: chats and messages */
    "CREATE TABLE chats("
    "  id INTEGER PRIMARY KEY,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  model TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE TABLE messages("
    "  id INTEGER PRIMARY KEY,"
    "  chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,"
    "  role TEXT NOT NULL,"
    "  content TEXT NOT NULL,"
    "  tokens INTEGER NOT NULL DEFAULT 0,"
    "  prompt_ms REAL NOT NULL DEFAULT 0,"
    "  gen_ms REAL NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX messages_by_chat ON messages(chat_id, id);",
    /* 2: why a reply ended and what it was generated from; list order */
    "ALTER TABLE messages ADD COLUMN finish TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE messages ADD COLUMN n_prompt INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX chats_by_update ON chats(updated, id);",
};

#define N_MIGRATIONS ((int)(sizeof k_migrations / sizeof k_migrations[0]))

struct store {
    sqlite3 *db;
    pthread_mutex_t mu;
    char *path;
};

int store_schema_latest(void) { return N_MIGRATIONS; }

const char *store_migration_sql(int v) { return v >= 1 && v <= N_MIGRATIONS ? k_migrations[v - 1] : NULL; }

static pl_status store_err(store *s, const char *what) {
    return pl_fail(PL_ERR_IO, "chat store %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static pl_status store_exec(store *s, const char *sql, const char *what) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return PL_OK;
    pl_status st = pl_fail(PL_ERR_IO, "chat store %s: %s: %s", s->path, what, msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
    return st;
}

static pl_status store_user_version(store *s, int *v) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK || sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        return store_err(s, "reading the schema version");
    }
    *v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return PL_OK;
}

static pl_status store_migrate(store *s) {
    int v = 0;
    pl_status st = store_user_version(s, &v);
    if (st) return st;
    if (v > N_MIGRATIONS)
        return pl_fail(PL_ERR_UNSUPPORTED, "chat store %s: schema version %d is newer than this build's %d", s->path, v,
                       N_MIGRATIONS);
    for (; v < N_MIGRATIONS; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if ((st = store_exec(s, "BEGIN IMMEDIATE", "starting a migration"))) return st;
        if ((st = store_exec(s, k_migrations[v], "migrating")) || (st = store_exec(s, bump, "migrating"))) {
            store_exec(s, "ROLLBACK", "rolling back a migration");
            return pl_fail_prefix(st, "to schema version %d", v + 1);
        }
        if ((st = store_exec(s, "COMMIT", "committing a migration"))) return st;
    }
    return PL_OK;
}

pl_status store_open(const char *path, store **out) {
    if (!path || !out) return pl_fail(PL_ERR_INVALID_ARG, "store_open: path and out are required");
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return pl_fail(PL_ERR_NOMEM, "store_open: out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    pl_status st = PL_OK;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        st = s->db ? store_err(s, "opening") : pl_fail(PL_ERR_NOMEM, "chat store %s: out of memory", path);
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* WAL: readers never block the writer; synchronous=FULL: a commit is on
     * disk before it returns. */
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &q, NULL) != SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        st = store_err(s, "switching to WAL");
        goto fail;
    }
    const char *mode = (const char *)sqlite3_column_text(q, 0);
    const int wal = mode && !strcmp(mode, "wal");
    sqlite3_finalize(q);
    if (!wal) {
        st = pl_fail(PL_ERR_IO, "chat store %s: the file system does not support WAL journaling", path);
        goto fail;
    }
    if ((st = store_exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", "setting pragmas"))) goto fail;
    if ((st = store_migrate(s))) goto fail;
    *out = s;
    return PL_OK;
fail:
    store_close(s);
    return st;
}

void store_close(store *s) {
    if (!s) return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

static char *store_dup_col(sqlite3_stmt *q, int col) {
    const unsigned char *t = sqlite3_column_text(q, col);
    return strdup(t ? (const char *)t : "");
}

pl_status store_chat_create(store *s, const char *title, const char *model, int64_t *id) {
    pthread_mutex_lock(&s->mu);
    pl_status st = PL_OK;
    sqlite3_stmt *q = NULL;
    const int64_t now = (int64_t)time(NULL);
    if (sqlite3_prepare_v2(s->db, "INSERT INTO chats(title, model, created, updated) VALUES(?, ?, ?, ?)", -1, &q,
                           NULL) != SQLITE_OK) {
        st = store_err(s, "creating a chat");
        goto out;
    }
    sqlite3_bind_text(q, 1, title ? title : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, model ? model : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, now);
    sqlite3_bind_int64(q, 4, now);
    if (sqlite3_step(q) != SQLITE_DONE) {
        st = store_err(s, "creating a chat");
        goto out;
    }
    if (id) *id = sqlite3_last_insert_rowid(s->db);
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&s->mu);
    return st;
}

static const char k_chat_cols[] =
    "SELECT c.id, c.title, c.model, c.created, c.updated, (SELECT count(*) FROM messages m WHERE m.chat_id = c.id) "
    "FROM chats c ";

static int store_read_chat(sqlite3_stmt *q, store_chat *c) {
    c->id = sqlite3_column_int64(q, 0);
    c->title = store_dup_col(q, 1);
    c->model = store_dup_col(q, 2);
    c->created = sqlite3_column_int64(q, 3);
    c->updated = sqlite3_column_int64(q, 4);
    c->n_messages = sqlite3_column_int(q, 5);
    return c->title && c->model;
}

pl_status store_chat_list(store *s, store_chat **chats, int *n) {
    *chats = NULL;
    *n = 0;
    pthread_mutex_lock(&s->mu);
    pl_status st = PL_OK;
    sqlite3_stmt *q = NULL;
    char sql[512];
    snprintf(sql, sizeof sql, "%sORDER BY c.updated DESC, c.id DESC", k_chat_cols);
    store_chat *v = NULL;
    int cnt = 0, cap = 0, rc;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        st = store_err(s, "listing chats");
        goto out;
    }
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            store_chat *nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv) goto nomem;
            v = nv;
        }
        memset(&v[cnt], 0, sizeof v[cnt]);
        if (!store_read_chat(q, &v[cnt++])) goto nomem;
    }
    if (rc != SQLITE_DONE) {
        st = store_err(s, "listing chats");
        goto out;
    }
    *chats = v;
    *n = cnt;
    v = NULL;
    goto out;
nomem:
    st = pl_fail(PL_ERR_NOMEM, "listing chats: out of memory");
out:
    store_chats_free(v, cnt);
    sqlite3_finalize(q);
    pthread_mutex_unlock(&s->mu);
    return st;
}

pl_status store_chat_get(store *s, int64_t id, store_chat *chat, store_msg **msgs, int *n) {
    memset(chat, 0, sizeof *chat);
    if (msgs) *msgs = NULL;
    if (n) *n = 0;
    pthread_mutex_lock(&s->mu);
    pl_status st = PL_OK;
    sqlite3_stmt *q = NULL;
    store_msg *v = NULL;
    int cnt = 0, cap = 0, rc;
    char sql[512];
    snprintf(sql, sizeof sql, "%sWHERE c.id = ?", k_chat_cols);
    /* One read transaction, so the chat and its messages are one snapshot. */
    if ((st = store_exec(s, "BEGIN", "reading a chat"))) goto unlock;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) goto err;
    sqlite3_bind_int64(q, 1, id);
    rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) goto out; /* no such chat */
    if (rc != SQLITE_ROW) goto err;
    if (!store_read_chat(q, chat)) goto nomem;
    sqlite3_finalize(q);
    q = NULL;
    if (!msgs) goto out;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, role, content, finish, tokens, n_prompt, prompt_ms, gen_ms, created "
                           "FROM messages WHERE chat_id = ? ORDER BY id",
                           -1, &q, NULL) != SQLITE_OK)
        goto err;
    sqlite3_bind_int64(q, 1, id);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            store_msg *nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv) goto nomem;
            v = nv;
        }
        store_msg *m = &v[cnt++];
        memset(m, 0, sizeof *m);
        m->id = sqlite3_column_int64(q, 0);
        m->role = store_dup_col(q, 1);
        m->content = store_dup_col(q, 2);
        m->finish = store_dup_col(q, 3);
        m->tokens = sqlite3_column_int(q, 4);
        m->n_prompt = sqlite3_column_int(q, 5);
        m->prompt_ms = sqlite3_column_double(q, 6);
        m->gen_ms = sqlite3_column_double(q, 7);
        m->created = sqlite3_column_int64(q, 8);
        if (!m->role || !m->content || !m->finish) goto nomem;
    }
    if (rc != SQLITE_DONE) goto err;
    *msgs = v;
    *n = cnt;
    v = NULL;
    goto out;
err:
    st = store_err(s, "reading a chat");
    goto out;
nomem:
    st = pl_fail(PL_ERR_NOMEM, "reading a chat: out of memory");
out:
    if (st) store_chat_clear(chat);
    store_msgs_free(v, cnt);
    sqlite3_finalize(q);
    store_exec(s, "COMMIT", "ending a read");
unlock:
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* Run one-row-changing statement `sql` binding (text?, id); *found = rows changed. */
static pl_status store_change(store *s, const char *sql, const char *text, int64_t id, int *found, const char *what) {
    pthread_mutex_lock(&s->mu);
    pl_status st = PL_OK;
    sqlite3_stmt *q = NULL;
    int i = 1;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        st = store_err(s, what);
        goto out;
    }
    if (text) sqlite3_bind_text(q, i++, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, i, id);
    if (sqlite3_step(q) != SQLITE_DONE) {
        st = store_err(s, what);
        goto out;
    }
    if (found) *found = sqlite3_changes(s->db) > 0;
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&s->mu);
    return st;
}

pl_status store_chat_delete(store *s, int64_t id, int *found) {
    return store_change(s, "DELETE FROM chats WHERE id = ?", NULL, id, found, "deleting a chat");
}

pl_status store_chat_rename(store *s, int64_t id, const char *title, int *found) {
    return store_change(s, "UPDATE chats SET title = ? WHERE id = ?", title ? title : "", id, found,
                        "renaming a chat");
}

/* A title from a first message: its first line, at most 48 bytes, cut on a
 * UTF-8 character boundary. */
static void store_title_from(const char *content, char *out, size_t cap) {
    size_t n = 0;
    while (content[n] && content[n] != '\n' && n < cap - 1) n++;
    while (n > 0 && n < strlen(content) && ((unsigned char)content[n] & 0xC0) == 0x80) n--;
    memcpy(out, content, n);
    out[n] = 0;
}

pl_status store_msg_add(store *s, int64_t chat_id, const store_msg *m, int64_t *id) {
    if (!m || !m->role || !m->content) return pl_fail(PL_ERR_INVALID_ARG, "store_msg_add: role and content required");
    pthread_mutex_lock(&s->mu);
    pl_status st = PL_OK;
    sqlite3_stmt *q = NULL;
    const int64_t now = (int64_t)time(NULL);
    if ((st = store_exec(s, "BEGIN IMMEDIATE", "adding a message"))) goto unlock;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO messages(chat_id, role, content, finish, tokens, n_prompt, prompt_ms, gen_ms,"
                           " created) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS"
                           " (SELECT 1 FROM chats WHERE id = ?1)",
                           -1, &q, NULL) != SQLITE_OK)
        goto err;
    sqlite3_bind_int64(q, 1, chat_id);
    sqlite3_bind_text(q, 2, m->role, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, m->content, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, m->finish ? m->finish : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 5, m->tokens);
    sqlite3_bind_int(q, 6, m->n_prompt);
    sqlite3_bind_double(q, 7, m->prompt_ms);
    sqlite3_bind_double(q, 8, m->gen_ms);
    sqlite3_bind_int64(q, 9, now);
    if (sqlite3_step(q) != SQLITE_DONE) goto err;
    if (sqlite3_changes(s->db) == 0) {
        st = pl_fail(PL_ERR_INVALID_ARG, "chat %lld does not exist", (long long)chat_id);
        goto rollback;
    }
    const int64_t msg_id = sqlite3_last_insert_rowid(s->db);
    sqlite3_finalize(q);
    q = NULL;
    char title[49];
    store_title_from(m->content, title, sizeof title);
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE chats SET updated = ?2, title = CASE WHEN title = '' AND ?3 = 'user' THEN ?4"
                           " ELSE title END WHERE id = ?1",
                           -1, &q, NULL) != SQLITE_OK)
        goto err;
    sqlite3_bind_int64(q, 1, chat_id);
    sqlite3_bind_int64(q, 2, now);
    sqlite3_bind_text(q, 3, m->role, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, title, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) != SQLITE_DONE) goto err;
    sqlite3_finalize(q);
    q = NULL;
    if ((st = store_exec(s, "COMMIT", "committing a message"))) goto rollback;
    if (id) *id = msg_id;
    goto unlock;
err:
    st = store_err(s, "adding a message");
rollback:
    sqlite3_finalize(q);
    q = NULL;
    store_exec(s, "ROLLBACK", "rolling back");
unlock:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&s->mu);
    return st;
}

void store_chat_clear(store_chat *c) {
    if (!c) return;
    free(c->title);
    free(c->model);
    memset(c, 0, sizeof *c);
}

void store_chats_free(store_chat *chats, int n) {
    for (int i = 0; chats && i < n; i++) store_chat_clear(&chats[i]);
    free(chats);
}

void store_msgs_free(store_msg *msgs, int n) {
    for (int i = 0; msgs && i < n; i++) {
        free(msgs[i].role);
        free(msgs[i].content);
        free(msgs[i].finish);
    }
    free(msgs);
}
