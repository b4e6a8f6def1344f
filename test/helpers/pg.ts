/** Real PostgreSQL for tests: uniquely named databases, a sample schema with every kind of object, comparisons. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_HOST = process.env.TEST_POSTGRES_HOST ?? '/var/run/postgresql';
export const PG_PORT = Number(process.env.TEST_POSTGRES_PORT ?? 5432);
export const PG_USER = process.env.TEST_POSTGRES_USER ?? 'postgres';

export function uniqueName(base = 'pgshelf_t'): string {
  return `${base}_${randomBytes(4).toString('hex')}`;
}

/** A database name that is hard to get right: spaces, both quotes, a backslash, an '=', non-ASCII letters. */
export function awkwardName(): string {
  return `pgshelf t'q"é=ü\\ ${randomBytes(3).toString('hex')}`;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export async function withClient<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: PG_HOST, port: PG_PORT, user: PG_USER, database });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createDatabase(name: string, owner = PG_USER): Promise<void> {
  await withClient('postgres', (c) =>
    c.query(`CREATE DATABASE ${quoteIdent(name)} OWNER ${quoteIdent(owner)}`),
  );
}

export async function dropDatabase(name: string): Promise<void> {
  await withClient('postgres', (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`));
}

export async function databaseExists(name: string): Promise<boolean> {
  return withClient('postgres', async (c) => {
    const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return r.rowCount === 1;
  });
}

/**
 * Fills `database` with one of each kind of object a restore must bring back: tables of many types with awkward
 * values, a partitioned table, identity and serial sequences advanced past their rows, indexes (unique, partial,
 * expression), primary, foreign, check and exclusion-free unique constraints, a view and a materialized view, a
 * function and a trigger, an enum and a domain, extensions, comments.
 */
export async function createSampleSchema(database: string, rows = 500): Promise<void> {
  await withClient(database, async (c) => {
    await c.query(`
      CREATE EXTENSION IF NOT EXISTS citext;
      CREATE EXTENSION IF NOT EXISTS pgcrypto;
      CREATE SCHEMA app;
      CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
      CREATE DOMAIN app.positive AS integer CHECK (VALUE > 0);
      CREATE TABLE app.users (
        id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        email citext NOT NULL UNIQUE,
        name text,
        mood app.mood,
        score app.positive,
        created timestamptz NOT NULL DEFAULT '2020-01-01T00:00:00Z',
        tags text[],
        profile jsonb,
        avatar bytea,
        balance numeric(12,2) CHECK (balance >= 0)
      );
      COMMENT ON TABLE app.users IS 'people, with awkward values';
      CREATE TABLE app.orders (
        id bigserial PRIMARY KEY,
        user_id integer NOT NULL REFERENCES app.users(id) ON DELETE CASCADE,
        placed date NOT NULL,
        total numeric(12,2) NOT NULL,
        note text
      );
      CREATE INDEX orders_user_placed ON app.orders (user_id, placed);
      CREATE INDEX orders_big ON app.orders (total) WHERE total > 100;
      CREATE INDEX users_lower_name ON app.users (lower(name));
      CREATE TABLE app.events (id bigint NOT NULL, at date NOT NULL, payload text) PARTITION BY RANGE (at);
      CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE public."Mixed Case ""Quoted"" table" ("weird col" text, n int);
      CREATE TABLE public.empty_table (id int PRIMARY KEY);
      CREATE SEQUENCE app.ticket_seq START 1000 INCREMENT 7;
      CREATE FUNCTION app.order_count(uid integer) RETURNS bigint LANGUAGE sql STABLE
        AS $$ SELECT count(*) FROM app.orders WHERE user_id = uid $$;
      CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$;
      CREATE TRIGGER orders_touch BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();
      CREATE VIEW app.user_totals AS
        SELECT u.id, u.email, coalesce(sum(o.total), 0) AS total FROM app.users u
        LEFT JOIN app.orders o ON o.user_id = u.id GROUP BY u.id, u.email;
      CREATE MATERIALIZED VIEW app.mood_counts AS SELECT mood, count(*) AS n FROM app.users GROUP BY mood;
    `);
    await c.query(
      `INSERT INTO app.users (email, name, mood, score, tags, profile, avatar, balance)
       SELECT 'User' || i || '@Example.com',
              CASE WHEN i % 10 = 0 THEN NULL ELSE 'name ' || i || E'\\twith tab\\nand newline \\\\ backslash é ü 日本' END,
              (ARRAY['sad','ok','happy'])[1 + i % 3]::app.mood,
              1 + i % 50,
              ARRAY['t' || i % 7, 'x,y', 'q"uote'],
              jsonb_build_object('i', i, 'nested', jsonb_build_object('a', ARRAY[i, i * 2])),
              digest('row' || i, 'sha256'),
              (i * 3.17)::numeric(12,2)
       FROM generate_series(1, $1::int) AS i`,
      [rows],
    );
    await c.query(
      `INSERT INTO app.orders (user_id, placed, total, note)
       SELECT 1 + (i % $1::int), DATE '2024-01-01' + (i % 700), (i % 250) + 0.99,
              CASE WHEN i % 3 = 0 THEN NULL ELSE 'order ' || i END
       FROM generate_series(1, $1::int * 3) AS i`,
      [rows],
    );
    await c.query(
      `INSERT INTO app.events SELECT i, DATE '2024-06-01' + (i % 400), repeat('p', i % 40) FROM generate_series(1, $1::int) AS i`,
      [rows],
    );
    await c.query(
      `INSERT INTO public."Mixed Case ""Quoted"" table" VALUES (E'a\\tb', 1), (NULL, 2), ('\\.', 3)`,
    );
    await c.query(`SELECT nextval('app.ticket_seq') FROM generate_series(1, 5)`);
    // Deleting rows leaves sequences ahead of max(id): a restore must bring the sequence value, not max+1.
    await c.query(`DELETE FROM app.orders WHERE id % 17 = 0`);
    await c.query('REFRESH MATERIALIZED VIEW app.mood_counts');
  });
}

export interface TableSnapshot {
  readonly rows: number;
  readonly md5: string;
}

export interface DatabaseSnapshot {
  readonly tables: Record<string, TableSnapshot>;
  readonly sequences: Record<string, string>;
  readonly indexes: string[];
  readonly constraints: string[];
  readonly views: Record<string, string>;
  readonly functions: string[];
  readonly triggers: string[];
  readonly extensions: string[];
  readonly types: string[];
  readonly comments: string[];
}

/**
 * Everything a restore must reproduce, table by table (row count + checksum of the rows in a stable order)
 * and catalog by catalog.
 */
export async function snapshotDatabase(database: string): Promise<DatabaseSnapshot> {
  return withClient(database, async (c) => {
    const userNs = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'`;
    const rels = await c.query<{ q: string; kind: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS q, c.relkind AS kind FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'm') AND ${userNs} AND NOT EXISTS
         (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') ORDER BY 1`,
    );
    const tables: Record<string, TableSnapshot> = {};
    for (const { q } of rels.rows) {
      const r = await c.query<{ rows: string; md5: string }>(
        `SELECT count(*)::text AS rows, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS md5
         FROM ${q} AS t`,
      );
      tables[q] = { rows: Number(r.rows[0]!.rows), md5: r.rows[0]!.md5 };
    }
    const seqRows = await c.query<{ q: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS q FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'S' AND ${userNs} ORDER BY 1`,
    );
    const sequences: Record<string, string> = {};
    for (const { q } of seqRows.rows) {
      const r = await c.query<{ v: string }>(`SELECT last_value || ':' || is_called AS v FROM ${q}`);
      sequences[q] = r.rows[0]!.v;
    }
    const list = async (sql: string): Promise<string[]> =>
      (await c.query<{ x: string }>(sql)).rows.map((r) => r.x);
    const indexes = await list(
      `SELECT indexdef AS x FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
    );
    const constraints = await list(
      `SELECT format('%s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) AS x FROM pg_constraint
       WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) ORDER BY 1`,
    );
    const viewRows = await c.query<{ q: string; d: string }>(
      `SELECT format('%I.%I', schemaname, viewname) AS q, definition AS d FROM pg_views
       WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
       UNION ALL SELECT format('%I.%I', schemaname, matviewname), definition FROM pg_matviews ORDER BY 1`,
    );
    const functions = await list(
      `SELECT format('%s(%s) %s', p.oid::regproc, pg_get_function_arguments(p.oid), md5(pg_get_functiondef(p.oid))) AS x
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE ${userNs} AND p.prokind IN ('f', 'p') AND NOT EXISTS
         (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') ORDER BY 1`,
    );
    const triggers = await list(
      `SELECT pg_get_triggerdef(oid) AS x FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`,
    );
    const extensions = await list(`SELECT extname || ' ' || extversion AS x FROM pg_extension ORDER BY 1`);
    const types = await list(
      `SELECT format('%s %s', t.oid::regtype, t.typtype) AS x FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE ${userNs} AND t.typtype IN ('e', 'd') ORDER BY 1`,
    );
    const comments = await list(
      `SELECT format('%s %s', d.objoid::regclass, d.description) AS x FROM pg_description d
       JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${userNs} ORDER BY 1`,
    );
    return {
      tables,
      sequences,
      indexes,
      constraints,
      views: Object.fromEntries(viewRows.rows.map((r) => [r.q, r.d])),
      functions,
      triggers,
      extensions,
      types,
      comments,
    };
  });
}

/** The owner of a database. */
export async function databaseOwner(name: string): Promise<string | undefined> {
  return withClient('postgres', async (c) => {
    const r = await c.query<{ o: string }>(
      'SELECT pg_get_userbyid(datdba) AS o FROM pg_database WHERE datname = $1',
      [name],
    );
    return r.rows[0]?.o;
  });
}

/**
 * Holds an ACCESS EXCLUSIVE lock on `table` until release() is called: pg_dump then blocks on its first LOCK
 * TABLE, which makes "a backup is running right now" deterministic for tests of aborts and shutdowns.
 */
export async function lockTable(database: string, table: string): Promise<{ release(): Promise<void> }> {
  const client = new pg.Client({ host: PG_HOST, port: PG_PORT, user: PG_USER, database });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await client.query('ROLLBACK').catch(() => undefined);
      await client.end();
    },
  };
}

/** True while a pg_dump started by pgshelf waits for a lock in `database`. */
export async function dumpIsWaiting(database: string): Promise<boolean> {
  return withClient('postgres', async (c) => {
    const r = await c.query(
      `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgshelf' AND wait_event_type = 'Lock'`,
      [database],
    );
    return (r.rowCount ?? 0) > 0;
  });
}
