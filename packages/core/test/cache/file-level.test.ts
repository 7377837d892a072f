import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { InvalidOptionError, StoreUnavailableError } from '../../src/errors.js';
import { FileLevel, type FileLevelOptions } from '../../src/cache/file-level.js';
import { invalidOption, settle } from '../helpers.js';
import { cacheLevelSuite } from './cache-level-suite.js';

let base: string;
let dirs = 0;
/** A fresh directory under this file's temp dir (all removed after the file). */
const freshDir = () => join(base, `d${dirs++}`);

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'amas-file-level-'));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Every path under `dir`, relative, sorted ('' when it does not exist). */
async function tree(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true })).sort();
  } catch {
    return [];
  }
}

cacheLevelSuite('FileLevel (ManualClock)', async () => {
  const clock = new ManualClock();
  const directory = freshDir();
  const level = new FileLevel({ directory, name: 'suite', clock });
  const sibling = new FileLevel({ directory, name: 'suite-sibling', clock });
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

cacheLevelSuite('FileLevel (system clock)', async () => {
  const directory = freshDir();
  const level = new FileLevel({ directory });
  const sibling = new FileLevel({ directory, name: 'other' });
  return {
    level,
    sibling,
    close: async () => {
      await level.close();
      await sibling.close();
    },
  };
});

describe('FileLevel options', () => {
  it.each([
    [{}, 'directory', 'undefined'],
    [{ directory: '' }, 'directory', '""'],
    [{ directory: 42 }, 'directory', '42'],
    [{ directory: '/tmp/x', name: '..' }, 'name', '".."'],
    [{ directory: '/tmp/x', name: '.' }, 'name', '"."'],
    [{ directory: '/tmp/x', name: 'a/b' }, 'name', '"a/b"'],
    [{ directory: '/tmp/x', name: 'a:b' }, 'name', '"a:b"'],
    [{ directory: '/tmp/x', name: '' }, 'name', '""'],
    [{ directory: '/tmp/x', sweepIntervalMs: -1 }, 'sweepIntervalMs', '-1'],
    [{ directory: '/tmp/x', sweepIntervalMs: 1e12 }, 'sweepIntervalMs', '1000000000000'],
    [{ directory: '/tmp/x', clock: {} }, 'clock', '{}'],
    [{ directory: '/tmp/x', dir: '/tmp/y' }, '', '{"directory":"/tmp/x","dir":"/tmp/y"}'],
  ])('rejects %j naming %s', (options, path, received) => {
    const error = invalidOption(() => new FileLevel(options as unknown as FileLevelOptions));
    expect(error.message).toContain('FileLevel options');
    expect(error.issues[0]!.path).toBe(path);
    expect(error.issues[0]!.received).toBe(received);
  });

  it('resolves a relative directory against the working directory; the default name is amas', () => {
    expect(new FileLevel({ directory: 'rel/cache', sweepIntervalMs: 0 }).root).toBe(join(process.cwd(), 'rel/cache/amas'));
  });
});

describe('FileLevel', () => {
  it('writes <directory>/<name>/<namespace>/<sha256(key)>: header (expiry, lengths, key) then value; 0600 files in 0700 dirs', async () => {
    const directory = freshDir();
    const clock = new ManualClock(1_000_000);
    const level = new FileLevel({ directory, name: 'shop', clock, sweepIntervalMs: 0 });
    const key = 'products:42:ünï';
    const value = Buffer.from([0, 1, 2, 255, 254]);
    await level.set(key, value, 5_000);
    const file = join(directory, 'shop', 'products', sha256(key));
    expect(level.pathOf(key)).toBe(file);
    expect(await tree(directory)).toEqual(['shop', 'shop/products', `shop/products/${sha256(key)}`]);
    const data = await readFile(file);
    const keyBytes = Buffer.from(key);
    expect(data.subarray(0, 4).toString('latin1')).toBe('AMF1');
    expect(data.readDoubleLE(4)).toBe(1_005_000);
    expect(data.readDoubleLE(12)).toBe(value.length);
    expect(data.readUInt32LE(20)).toBe(keyBytes.length);
    expect(data.subarray(24, 24 + keyBytes.length).equals(keyBytes)).toBe(true);
    expect(data.subarray(24 + keyBytes.length).equals(value)).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(directory, 'shop', 'products'))).mode & 0o777).toBe(0o700);
  });

  it('rejects keys whose namespace is not a safe directory name, and writes nothing anywhere', async () => {
    const directory = freshDir();
    const level = new FileLevel({ directory, sweepIntervalMs: 0 });
    for (const key of ['no-namespace', '..:k', '.:k', ':k', 'a/b:k', '../../etc:passwd', 'a b:k']) {
      const calls: Array<() => Promise<unknown>> = [() => level.get(key), () => level.set(key, Buffer.from('v'), 60_000), () => level.delete([key]), () => level.getMany([key])];
      for (const call of calls) {
        const { error } = await settle(call());
        expect(error, key).toBeInstanceOf(InvalidOptionError);
        expect((error as InvalidOptionError).issues[0]!.path).toBe('key');
      }
    }
    for (const namespace of ['..', '.', '', 'a/b', 'a:b']) {
      const { error } = await settle(level.clear(namespace));
      expect(error, namespace).toBeInstanceOf(InvalidOptionError);
      expect((error as InvalidOptionError).issues[0]!.path).toBe('namespace');
    }
    expect(await tree(directory)).toEqual([]);
  });

  it('get of an expired entry deletes its file', async () => {
    const directory = freshDir();
    const clock = new ManualClock();
    const level = new FileLevel({ directory, clock, sweepIntervalMs: 0 });
    await level.set('n:k', Buffer.from('v'), 1_000);
    await clock.advance(999);
    expect((await level.get('n:k'))?.toString()).toBe('v');
    await clock.advance(1);
    expect(await level.get('n:k')).toBeUndefined();
    expect(await tree(join(directory, 'amas', 'n'))).toEqual([]);
  });

  it('an expired read racing a new write never loses the new value (whichever order they land in)', async () => {
    const directory = freshDir();
    const clock = new ManualClock();
    const level = new FileLevel({ directory, clock, sweepIntervalMs: 0 });
    for (let i = 0; i < 150; i++) {
      await level.set('n:k', Buffer.from(`old ${i}`), 10);
      clock.set(clock.now() + 10);
      const [read] = await Promise.all([level.get('n:k'), level.set('n:k', Buffer.from(`new ${i}`), 60_000)]);
      // The read saw the new value or nothing; afterwards the new value is there in every interleaving.
      expect([undefined, `new ${i}`]).toContain(read?.toString());
      expect((await level.get('n:k'))?.toString()).toBe(`new ${i}`);
    }
    expect(await tree(join(directory, 'amas', 'n'))).toEqual([sha256('n:k')]);
  });

  it('many concurrent writers and readers of one key: every read is one whole written value, never a torn one', async () => {
    const directory = freshDir();
    const level = new FileLevel({ directory, sweepIntervalMs: 0 });
    const size = 512 * 1024;
    // Each write is one byte value repeated, so a mix of two writes or a short file shows at once.
    const valueOf = (fill: number) => Buffer.alloc(size, fill);
    await level.set('n:hot', valueOf(0), 60_000);
    let writing = true;
    let reads = 0;
    const problems: string[] = [];
    const writers = Array.from({ length: 6 }, async (_, w) => {
      for (let i = 0; i < 20; i++) await level.set('n:hot', valueOf(1 + w * 20 + i), 60_000);
    });
    const readers = Array.from({ length: 6 }, async () => {
      while (writing) {
        const [value] = await level.getMany(['n:hot']);
        reads++;
        if (value === undefined) problems.push('missing');
        else if (value.length !== size) problems.push(`length ${value.length}`);
        else if (value[0]! > 120 || !value.equals(valueOf(value[0]!))) problems.push(`torn (starts with ${value[0]})`);
      }
    });
    await Promise.all(writers);
    writing = false;
    await Promise.all(readers);
    expect(problems).toEqual([]);
    expect(reads).toBeGreaterThan(20);
    // No temporary files are left behind.
    expect(await tree(join(directory, 'amas', 'n'))).toEqual([sha256('n:hot')]);
  });

  it('a foreign, truncated or misplaced file reads as a miss, never as a wrong value', async () => {
    const directory = freshDir();
    const level = new FileLevel({ directory, sweepIntervalMs: 0 });
    await level.set('n:a', Buffer.from('value of a'), 60_000);
    await level.set('n:b', Buffer.from('value of b'), 60_000);
    const fileA = level.pathOf('n:a');
    const fileB = level.pathOf('n:b');
    // A's file at B's path: the key inside says it is not B.
    await copyFile(fileA, fileB);
    expect(await level.get('n:b')).toBeUndefined();
    // Cut short (a crash without fsync): the length check catches it.
    const whole = await readFile(fileA);
    await writeFile(fileA, whole.subarray(0, whole.length - 3));
    expect(await level.get('n:a')).toBeUndefined();
    // Not an entry file at all, and an empty one.
    await writeFile(fileA, 'hello, I am not a cache entry');
    expect(await level.get('n:a')).toBeUndefined();
    await writeFile(fileA, '');
    expect(await level.get('n:a')).toBeUndefined();
    // Setting again repairs it.
    await level.set('n:a', Buffer.from('repaired'), 60_000);
    expect((await level.get('n:a'))?.toString()).toBe('repaired');
  });

  it('the periodic sweep deletes expired files and leftovers of crashed writers, and keeps live ones', async () => {
    const directory = freshDir();
    const clock = new ManualClock();
    const level = new FileLevel({ directory, clock, sweepIntervalMs: 10_000 });
    await level.setMany([
      { key: 'a:short', value: Buffer.from('s'), ttlMs: 1_000 },
      { key: 'b:short', value: Buffer.from('s'), ttlMs: 5_000 },
      { key: 'b:long', value: Buffer.from('l'), ttlMs: 60_000 },
    ]);
    // Leftovers: a temp file from a writer that died 20 minutes ago, one being written right now, a broken entry.
    const old = new Date(Date.now() - 20 * 60_000);
    await writeFile(join(directory, 'amas', 'a', '~tmp-dead'), 'partial');
    await utimes(join(directory, 'amas', 'a', '~tmp-dead'), old, old);
    await writeFile(join(directory, 'amas', 'a', '~tmp-live'), 'partial');
    await writeFile(join(directory, 'amas', 'b', sha256('b:broken')), 'garbage');
    await mkdir(join(directory, 'amas', '~trash-dead'));
    await utimes(join(directory, 'amas', '~trash-dead'), old, old);
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(10_000);
    await vi.waitFor(async () => expect(await tree(join(directory, 'amas'))).toEqual(['a', 'a/~tmp-live', 'b', `b/${sha256('b:long')}`]), { timeout: 5_000 });
    expect(clock.pendingTimers).toBe(1); // rescheduled
    clock.set(clock.now() + 60_000); // without firing the timer: the sweep below is the one that finds it
    expect(await level.sweep()).toBe(1);
    expect(await tree(join(directory, 'amas'))).toEqual(['a', 'a/~tmp-live', 'b']);
    await level.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('batches of 3 000 keys (more than it opens at once) keep their order', async () => {
    const level = new FileLevel({ directory: freshDir(), sweepIntervalMs: 0 });
    const keys = Array.from({ length: 3_000 }, (_, i) => `n${i % 7}:k${i}`);
    await level.setMany(keys.filter((_, i) => i % 2 === 0).map((key) => ({ key, value: Buffer.from(key), ttlMs: 60_000 })));
    const got = await level.getMany(keys);
    expect(got.every((v, i) => (i % 2 === 0 ? v?.toString() === keys[i] : v === undefined))).toBe(true);
    await level.delete(keys);
    expect((await level.getMany(keys)).every((v) => v === undefined)).toBe(true);
  });

  it('sweep of a level that never wrote anything finds nothing', async () => {
    const level = new FileLevel({ directory: freshDir(), sweepIntervalMs: 0 });
    expect(await level.sweep()).toBe(0);
    await level.close();
  });

  it('a ttl <= 0 deletes the key; a TTL that is not finite rejects', async () => {
    const level = new FileLevel({ directory: freshDir(), sweepIntervalMs: 0 });
    await level.set('n:k', Buffer.from('v'), 60_000);
    await level.set('n:k', Buffer.from('dead'), 0);
    expect(await level.get('n:k')).toBeUndefined();
    await level.setMany([
      { key: 'n:b', value: Buffer.from('b'), ttlMs: 60_000 },
      { key: 'n:b', value: Buffer.from('gone'), ttlMs: -1 },
    ]);
    expect(await level.get('n:b')).toBeUndefined();
    for (const ttl of [Number.NaN, Infinity, -Infinity]) await expect(level.set('n:k', Buffer.from('v'), ttl)).rejects.toThrow(RangeError);
  });

  it('writes racing clear(namespace) never fail; the namespace ends up holding only writes after the clear', async () => {
    const directory = freshDir();
    const level = new FileLevel({ directory, sweepIntervalMs: 0 });
    for (let round = 0; round < 20; round++) {
      const writes = Array.from({ length: 20 }, (_, i) => level.set(`n:k${i}`, Buffer.from(`r${round}`), 60_000));
      const results = await Promise.all([...writes.map(settle), settle(level.clear('n'))]);
      expect(results.map((r) => r.error)).toEqual(results.map(() => undefined));
      const got = await level.getMany(Array.from({ length: 20 }, (_, i) => `n:k${i}`));
      expect(got.every((v) => v === undefined || v.toString() === `r${round}`)).toBe(true);
    }
    await level.clear('n');
    expect(await tree(join(directory, 'amas'))).toEqual([]);
  });

  it('close() stops the sweep, leaves the files, and the level rejects calls afterwards', async () => {
    const directory = freshDir();
    const clock = new ManualClock();
    const level = new FileLevel({ directory, clock });
    await level.set('n:k', Buffer.from('kept'), 60_000);
    await level.close();
    await level.close();
    expect(clock.pendingTimers).toBe(0);
    await expect(level.get('n:k')).rejects.toBeInstanceOf(StoreUnavailableError);
    const reopened = new FileLevel({ directory, clock, sweepIntervalMs: 0 });
    expect((await reopened.get('n:k'))?.toString()).toBe('kept');
  });
});
