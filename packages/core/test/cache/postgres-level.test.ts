import { createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { InvalidOptionError, StoreUnavailableError } from '../../src/errors.js';
import { escapeLike, PostgresLevel, type PostgresLevelOptions } from '../../src/cache/postgres-level.js';
import { invalidOption, settle } from '../helpers.js';
import { cacheLevelSuite } from './cache-level-suite.js';

const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** Unique per test file run: tables and schemas below are created under it and dropped after. */
const RUN = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const TABLE = `amas_cache_t_${RUN}`;
const SCHEMA = `amas_cache_s_${RUN}`;

let admin: pg.Pool;
const tables = new Set<string>([TABLE]);
/** A fresh table name, dropped after the file. */
const freshTable = (tag: string) => {
  const name = `amas_cache_${tag}_${RUN}`;
  tables.add(name);
  return name;
};

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: PG_URL, max: 3 });
  await admin.query('SELECT 1');
});

afterAll(async () => {
  for (const table of tables) await admin.query(`DROP TABLE IF EXISTS "${table}"`);
  await admin.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
  await admin.end();
});

async function rowsOf(table: string): Promise<Array<{ key: string; value: Buffer; expires_at: string }>> {
  const { rows } = await admin.query(`SELECT key, value, expires_at FROM ${table} ORDER BY key`);
  return rows;
}

/** A TCP port on 127.0.0.1 nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

cacheLevelSuite('PostgresLevel (own pool, ManualClock)', async () => {
  const clock = new ManualClock();
  const level = new PostgresLevel({ connectionString: PG_URL, table: TABLE, name: 'suite', clock });
  const sibling = new PostgresLevel({ connectionString: PG_URL, table: TABLE, name: 'suite-sibling', clock });
  return {
    level,
    sibling,
    clock,
    close: async () => {
      await level.close();
      await sibling.close();
    },
  };
});

cacheLevelSuite('PostgresLevel (your pool, system clock)', async () => {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4 });
  const level = new PostgresLevel({ pool, table: TABLE, name: 'suite-real' });
  const sibling = new PostgresLevel({ pool, table: TABLE, name: 'suite-real-sibling' });
  return {
    level,
    sibling,
    close: async () => {
      await level.close();
      await sibling.close();
      await pool.end();
    },
  };
});

describe('PostgresLevel options', () => {
  const pool = { query: async () => ({ rows: [], rowCount: 0 }) };

  it.each([
    [{}, 'pool', 'neither'],
    [{ pool, connectionString: PG_URL }, 'pool', 'both'],
    [{ pool: {} }, 'pool', '{}'],
    [{ pool, table: 'x; DROP TABLE users' }, 'table', '"x; DROP TABLE users"'],
    [{ pool, table: '1abc' }, 'table', '"1abc"'],
    [{ pool, table: 'a.b.c' }, 'table', '"a.b.c"'],
    [{ pool, table: 'public."quoted"' }, 'table', '"public.\\"quoted\\""'],
    [{ pool, table: '' }, 'table', '""'],
    [{ pool, table: 'a'.repeat(49) }, 'table', JSON.stringify('a'.repeat(49))],
    [{ pool, name: 'a:b' }, 'name', '"a:b"'],
    [{ pool, name: '' }, 'name', '""'],
    [{ pool, name: 'with space' }, 'name', '"with space"'],
    [{ pool, sweepIntervalMs: -1 }, 'sweepIntervalMs', '-1'],
    [{ pool, sweepIntervalMs: 1e10 }, 'sweepIntervalMs', '10000000000'],
    [{ pool, connectionTimeoutMs: 500 }, 'connectionTimeoutMs', '500'],
    [{ connectionString: PG_URL, connectionTimeoutMs: 0 }, 'connectionTimeoutMs', '0'],
    [{ pool, clock: Date }, 'clock', 'a function'],
    [{ pool, tableName: 'x' }, '', '{"pool":{},"tableName":"x"}'],
    [{ connectionString: 42 }, 'connectionString', 'number'],
    [{ connectionString: 'not a url' }, 'connectionString', 'a string that is not a URL'],
  ])('rejects %j naming %s', (options, path, received) => {
    const error = invalidOption(() => new PostgresLevel(options as unknown as PostgresLevelOptions));
    expect(error.message).toContain('PostgresLevel options');
    expect(error.issues[0]!.path).toBe(path);
    expect(error.issues[0]!.received).toBe(received);
  });

  it('never prints a connection string (it may hold a password) in an error', () => {
    const error = invalidOption(() => new PostgresLevel({ connectionString: 'mysql://admin:hunter2@db.internal/app' }));
    expect(error.issues[0]).toEqual({ path: 'connectionString', received: 'a mysql:// URL', expected: 'a postgres://, postgresql:// or socket: URL' });
    expect(JSON.stringify(error.toJSON())).not.toContain('hunter2');
    expect(error.message).not.toContain('hunter2');
  });

  it('accepts plain, mixed-case and schema-qualified table names of up to 48 characters', () => {
    for (const table of ['amas_cache', 'Cache_2', '_t', 'my_schema.my_table', 'a'.repeat(48), `${'s'.repeat(63)}.t`]) {
      expect(new PostgresLevel({ pool, table }).table).toBe(table);
    }
  });

  it('escapeLike escapes %, _ and the escape character itself', () => {
    expect(escapeLike('a%b_c\\d')).toBe('a\\%b\\_c\\\\d');
    expect(escapeLike('plain-name.1')).toBe('plain-name.1');
  });
});

describe('PostgresLevel', () => {
  it('creates the table on first use (not at construction), with the documented shape', async () => {
    const table = freshTable('shape');
    const level = new PostgresLevel({ connectionString: PG_URL, table });
    try {
      expect((await admin.query('SELECT to_regclass($1) AS t', [table])).rows[0].t).toBeNull();
      await level.ready();
      const { rows: columns } = await admin.query(
        `SELECT column_name, data_type, collation_name, is_nullable FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
        [table],
      );
      expect(columns).toEqual([
        { column_name: 'key', data_type: 'text', collation_name: 'C', is_nullable: 'NO' },
        { column_name: 'value', data_type: 'bytea', collation_name: null, is_nullable: 'NO' },
        { column_name: 'expires_at', data_type: 'bigint', collation_name: null, is_nullable: 'NO' },
      ]);
      const { rows: indexes } = await admin.query('SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname', [table]);
      expect(indexes.map((i) => i.indexname)).toEqual([`${table}_expires_at_idx`, `${table}_pkey`]);
      expect(indexes[0].indexdef).toContain('(expires_at)');
    } finally {
      await level.close();
    }
  });

  it('stores rows as <name>:<namespace>:<key> with expires_at = now + ttl', async () => {
    const table = freshTable('rows');
    const clock = new ManualClock(1_000_000);
    const level = new PostgresLevel({ connectionString: PG_URL, table, name: 'shop', clock });
    try {
      await level.set('products:42', Buffer.from([0, 1, 2, 255]), 5_000);
      await level.setMany([{ key: 'products:43', value: Buffer.from('x'), ttlMs: 7_500.2 }]);
      const rows = await rowsOf(`"${table}"`);
      expect(rows.map((r) => [r.key, [...r.value], r.expires_at])).toEqual([
        ['shop:products:42', [0, 1, 2, 255], '1005000'],
        ['shop:products:43', [120], '1007501'],
      ]);
    } finally {
      await level.close();
    }
  });

  it('ignores expired rows on read and deletes them in the periodic sweep (its own cache only)', async () => {
    const table = freshTable('sweep');
    const clock = new ManualClock();
    const level = new PostgresLevel({ connectionString: PG_URL, table, name: 'mine', clock, sweepIntervalMs: 10_000 });
    const other = new PostgresLevel({ connectionString: PG_URL, table, name: 'other', clock, sweepIntervalMs: 0 });
    try {
      await level.setMany([
        { key: 'n:short1', value: Buffer.from('a'), ttlMs: 1_000 },
        { key: 'n:short2', value: Buffer.from('b'), ttlMs: 1_000 },
        { key: 'n:long', value: Buffer.from('c'), ttlMs: 60_000 },
      ]);
      await other.set('n:short1', Buffer.from('o'), 1_000);
      expect(clock.pendingTimers).toBe(1); // mine's sweep; other has none
      await clock.advance(1_000);
      expect(await level.getMany(['n:short1', 'n:short2', 'n:long'])).toEqual([undefined, undefined, Buffer.from('c')]);
      expect((await rowsOf(`"${table}"`)).length).toBe(4); // still there until the sweep
      await clock.advance(9_000); // the sweep fires
      await vi.waitFor(async () => expect((await rowsOf(`"${table}"`)).map((r) => r.key)).toEqual(['mine:n:long', 'other:n:short1']), { timeout: 5_000 });
      expect(clock.pendingTimers).toBe(1); // rescheduled
      await clock.advance(60_000);
      // Mine's periodic sweep (due during that advance) may take its row before this explicit one does.
      await level.sweep();
      await vi.waitFor(async () => expect((await rowsOf(`"${table}"`)).map((r) => r.key)).toEqual(['other:n:short1']), { timeout: 5_000 });
      expect(await other.sweep()).toBe(1); // other has no timer: only its explicit sweep removes its row
      expect(await rowsOf(`"${table}"`)).toEqual([]);
    } finally {
      await level.close();
      await other.close();
    }
    expect(clock.pendingTimers).toBe(0);
  });

  it('five levels using a fresh table at once all succeed (the CREATE TABLE race is handled)', async () => {
    for (let round = 0; round < 3; round++) {
      const table = freshTable(`race${round}`);
      const levels = Array.from({ length: 5 }, (_, i) => new PostgresLevel({ connectionString: PG_URL, table, name: `p${i}` }));
      try {
        const results = await Promise.all(levels.map((level, i) => settle(level.set(`n:k`, Buffer.from(`from ${i}`), 60_000))));
        expect(results.map((r) => r.error)).toEqual([undefined, undefined, undefined, undefined, undefined]);
        const got = await Promise.all(levels.map((level) => level.get('n:k')));
        expect(got.map((v) => v?.toString())).toEqual(['from 0', 'from 1', 'from 2', 'from 3', 'from 4']);
        const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = $1', [table]);
        expect(rows[0].n).toBe(2);
      } finally {
        await Promise.all(levels.map((level) => level.close()));
      }
    }
  });

  it('works in a schema-qualified, mixed-case table', async () => {
    await admin.query(`CREATE SCHEMA IF NOT EXISTS "${SCHEMA}"`);
    const level = new PostgresLevel({ connectionString: PG_URL, table: `${SCHEMA}.Mixed_Cache` });
    try {
      await level.set('n:k', Buffer.from('v'), 60_000);
      expect((await level.get('n:k'))?.toString()).toBe('v');
      const { rows } = await admin.query(`SELECT key FROM "${SCHEMA}"."Mixed_Cache"`);
      expect(rows).toEqual([{ key: 'amas:n:k' }]);
    } finally {
      await level.close();
    }
  });

  it('a failed first use (the schema is missing) is retried by the next call, not remembered', async () => {
    const schema = `${SCHEMA}_late`;
    const level = new PostgresLevel({ connectionString: PG_URL, table: `${schema}.late` });
    try {
      const first = await settle(level.get('n:k'));
      expect((first.error as { code?: string }).code).toBe('3F000'); // invalid_schema_name
      await admin.query(`CREATE SCHEMA "${schema}"`);
      await level.set('n:k', Buffer.from('v'), 60_000);
      expect((await level.get('n:k'))?.toString()).toBe('v');
    } finally {
      await level.close();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it('cache names with LIKE metacharacters do not match other names (a_b vs aXb)', async () => {
    const table = freshTable('likename');
    const underscore = new PostgresLevel({ connectionString: PG_URL, table, name: 'a_b' });
    const x = new PostgresLevel({ connectionString: PG_URL, table, name: 'aXb' });
    try {
      await underscore.set('n:k', Buffer.from('underscore'), 60_000);
      await x.set('n:k', Buffer.from('x'), 60_000);
      await underscore.clear('n');
      expect((await x.get('n:k'))?.toString()).toBe('x');
      await underscore.set('n:k', Buffer.from('underscore'), 60_000);
      await underscore.clear();
      expect((await x.get('n:k'))?.toString()).toBe('x');
      expect((await rowsOf(`"${table}"`)).map((r) => r.key)).toEqual(['aXb:n:k']);
    } finally {
      await underscore.close();
      await x.close();
    }
  });

  it('clear rejects a namespace that is not one (":" or "%" inside, empty) and deletes nothing', async () => {
    const level = new PostgresLevel({ connectionString: PG_URL, table: TABLE, name: 'badns' });
    try {
      await level.set('a:b:c', Buffer.from('v'), 60_000);
      for (const namespace of ['a:b', 'a%', '', 'a b']) {
        const { error } = await settle(level.clear(namespace));
        expect(error, namespace).toBeInstanceOf(InvalidOptionError);
        expect((error as InvalidOptionError).issues[0]!.path).toBe('namespace');
      }
      expect((await level.get('a:b:c'))?.toString()).toBe('v');
    } finally {
      await level.close();
    }
  });

  it('a ttl <= 0 deletes the key; a TTL that is not finite rejects', async () => {
    const level = new PostgresLevel({ connectionString: PG_URL, table: TABLE, name: 'ttl' });
    try {
      await level.set('n:k', Buffer.from('v'), 60_000);
      await level.set('n:k', Buffer.from('dead'), 0);
      expect(await level.get('n:k')).toBeUndefined();
      await level.setMany([
        { key: 'n:a', value: Buffer.from('alive'), ttlMs: 60_000 },
        { key: 'n:b', value: Buffer.from('b'), ttlMs: 60_000 },
        { key: 'n:b', value: Buffer.from('gone'), ttlMs: -5 },
      ]);
      expect((await level.getMany(['n:a', 'n:b'])).map((v) => v?.toString())).toEqual(['alive', undefined]);
      for (const ttl of [Number.NaN, Infinity, -Infinity]) {
        await expect(level.set('n:k', Buffer.from('v'), ttl)).rejects.toThrow(RangeError);
      }
    } finally {
      await level.close();
    }
  });

  it('setMany writes more rows than one INSERT takes (10 050) and reads them back with one getMany', async () => {
    const level = new PostgresLevel({ connectionString: PG_URL, table: TABLE, name: 'bulk' });
    try {
      const entries = Array.from({ length: 10_050 }, (_, i) => ({ key: `n:k${i}`, value: Buffer.from(String(i)), ttlMs: 60_000 }));
      await level.setMany(entries);
      const got = await level.getMany(entries.map((e) => e.key));
      expect(got.every((v, i) => v?.toString() === String(i))).toBe(true);
    } finally {
      await level.clear();
      await level.close();
    }
  });

  it('a database that refuses connections (closed port) rejects at once; close() still resolves', async () => {
    const port = await freePort();
    const level = new PostgresLevel({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`, table: TABLE });
    const started = Date.now();
    const results = await Promise.all([settle(level.get('n:k')), settle(level.set('n:k', Buffer.from('v'), 1_000)), settle(level.ready())]);
    expect(Date.now() - started).toBeLessThan(3_000);
    for (const r of results) expect((r.error as { code?: string }).code).toBe('ECONNREFUSED');
    await level.close();
  });

  it('a server that accepts but never answers rejects after the default 2 s connect timeout instead of hanging', async () => {
    const sockets = new Set<Socket>();
    const server: Server = createServer((socket) => {
      // Read (and ignore) what the client sends, so the client's FIN is seen and the socket closes.
      socket.resume();
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const level = new PostgresLevel({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`, table: TABLE });
    try {
      const started = Date.now();
      const { error } = await settle(level.get('n:k'));
      const elapsed = Date.now() - started;
      expect(String((error as Error).message)).toMatch(/timeout/i);
      expect(elapsed).toBeGreaterThanOrEqual(1_900);
      expect(elapsed).toBeLessThan(5_000);
      // The pool gave the socket up: nothing is left open to keep the process alive.
      await vi.waitFor(() => expect(sockets.size).toBe(0), { timeout: 3_000 });
    } finally {
      await level.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('connectionTimeoutMs shortens the connect timeout', async () => {
    const server = createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const level = new PostgresLevel({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`, connectionTimeoutMs: 300 });
    try {
      const started = Date.now();
      await expect(level.get('n:k')).rejects.toThrow(/timeout/i);
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      await level.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('close() leaves your pool open and usable; the level rejects calls after close', async () => {
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    const level = new PostgresLevel({ pool, table: TABLE, name: 'yours' });
    try {
      await level.set('n:k', Buffer.from('v'), 60_000);
      await level.close();
      expect(pool.ended).toBe(false);
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await expect(level.get('n:k')).rejects.toBeInstanceOf(StoreUnavailableError);
      await level.close(); // twice is fine
    } finally {
      await pool.end();
    }
  });

  it('close() ends the pool the level created (its connections leave the server)', async () => {
    const app = `amas_close_${RUN}`;
    const level = new PostgresLevel({ connectionString: `${PG_URL}?application_name=${app}`, table: TABLE, name: 'owned' });
    const connections = async () => (await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [app])).rows[0].n as number;
    await Promise.all([level.get('n:a'), level.get('n:b'), level.get('n:c')]);
    expect(await connections()).toBeGreaterThan(0);
    await level.close();
    await vi.waitFor(async () => expect(await connections()).toBe(0), { timeout: 5_000 });
    await expect(level.get('n:a')).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
