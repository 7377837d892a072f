/**
 * What the PostgreSQL-backed parts (the cache's L3 level, the usage records) share to make their own pool:
 * a connection string checked without ever echoing it (it may hold a password), and `pg` loaded lazily
 * (an optional peer dependency: only needed when AMAS creates the pool itself).
 */
import { InvalidOptionError, StoreUnavailableError } from '../errors.js';

const CONNECTION_URL_PROTOCOLS = ['postgres:', 'postgresql:', 'socket:'];

/** The pool `pg` creates, as far as AMAS uses it. */
export interface CreatedPgPool {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount: number | null }>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  end(): Promise<void>;
}

interface PgModule {
  Pool: new (config: { connectionString?: string; connectionTimeoutMillis?: number }) => CreatedPgPool;
}

/** `value` when it is a postgres://, postgresql:// or socket: URL; else InvalidOptionError that never prints it. */
export function checkConnectionString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  const fail = (received: string): never => {
    throw new InvalidOptionError([{ path: 'connectionString', received, expected: 'a postgres://, postgresql:// or socket: URL' }], where);
  };
  if (typeof value !== 'string') return fail(typeof value === 'object' ? (value === null ? 'null' : 'an object') : typeof value);
  let protocol: string;
  try {
    protocol = new URL(value).protocol;
  } catch {
    return fail('a string that is not a URL');
  }
  if (!CONNECTION_URL_PROTOCOLS.includes(protocol)) return fail(`a ${protocol}// URL`);
  return value;
}

/**
 * A new pool from `pg` (loaded on first use). An idle connection that breaks (a server restart) emits 'error'
 * on the pool: unheard, that would crash the process; the next query reconnects or rejects instead.
 */
export async function createPgPool(component: string, connectionString: string | undefined, connectionTimeoutMs: number): Promise<CreatedPgPool> {
  let mod: { default?: PgModule } & Partial<PgModule>;
  try {
    mod = (await import('pg')) as typeof mod;
  } catch (error) {
    throw new StoreUnavailableError(`${component} needs the "pg" package to connect: npm install pg (or pass your own pool)`, { cause: error });
  }
  const pg = mod.Pool ? (mod as PgModule) : mod.default!;
  const pool = new pg.Pool({ connectionString, connectionTimeoutMillis: connectionTimeoutMs });
  pool.on('error', () => undefined);
  return pool;
}
