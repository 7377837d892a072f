import { describe, expect, it } from 'vitest';
import { clientAddress, normaliseAddress, resolveIdentity } from '../src/http/identity.js';
import type { NeutralRequest } from '../src/http/neutral-request.js';

const req = (over: Partial<NeutralRequest> = {}): NeutralRequest => ({ method: 'GET', url: '/', headers: {}, ip: '10.0.0.1', ...over });

describe('identity', () => {
  it('prefers the authenticated user, then the client address', () => {
    expect(resolveIdentity(req({ user: { id: 'alice' } }), {})).toBe('user:alice');
    expect(resolveIdentity(req({ user: { sub: 42 } }), {})).toBe('user:42');
    expect(resolveIdentity(req({ user: 'bob' }), {})).toBe('user:bob');
    expect(resolveIdentity(req(), {})).toBe('ip:10.0.0.1');
    expect(resolveIdentity(req({ ip: undefined }), {})).toBe('anonymous');
  });

  it('a custom key function wins; one that throws or returns garbage falls back', () => {
    expect(resolveIdentity(req({ user: 'u' }), { identity: (r) => r.headers['x-api-key'] as string })).toBe('user:u');
    expect(resolveIdentity(req({ headers: { 'x-api-key': 'k1' } }), { identity: (r) => r.headers['x-api-key'] as string })).toBe('key:k1');
    expect(resolveIdentity(req(), { identity: () => { throw new Error('boom'); } })).toBe('ip:10.0.0.1');
    expect(resolveIdentity(req(), { identity: () => ({}) as never })).toBe('ip:10.0.0.1');
  });

  it('cleans control characters and caps length', () => {
    expect(resolveIdentity(req({ user: { id: 'a\u0000b\r\nc' } }), {})).toBe('user:abc');
    expect(resolveIdentity(req({ user: { id: 'x'.repeat(5000) } }), {}).length).toBe(5 + 200);
    expect(resolveIdentity(req({ user: { id: '\u0001\u0002' } }), {})).toBe('ip:10.0.0.1');
    expect(resolveIdentity(req({ user: { id: { nested: 1 } } }), {})).toBe('ip:10.0.0.1');
  });

  it('masks IPv6 to /64 and unwraps IPv4-mapped addresses', () => {
    expect(normaliseAddress('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(normaliseAddress('2001:db8:1:2::ffff')).toBe('2001:db8:1:2::/64');
    expect(normaliseAddress('2001:0db8:0001:0002:0:0:0:1')).toBe('2001:db8:1:2::/64');
    expect(normaliseAddress('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(normaliseAddress('[::1]')).toBe('0:0:0:0::/64');
    expect(normaliseAddress('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(normaliseAddress('999.1.1.1')).toBeUndefined();
    expect(normaliseAddress('')).toBeUndefined();
  });

  it('uses X-Forwarded-For only when trust-proxy is configured', () => {
    const headers = { 'x-forwarded-for': '203.0.113.7, 10.0.0.2, 10.0.0.3' };
    expect(clientAddress(req({ headers }), false)).toBe('10.0.0.1');
    expect(clientAddress(req({ headers }), true)).toBe('203.0.113.7');
    expect(clientAddress(req({ headers }), 1)).toBe('10.0.0.3');
    expect(clientAddress(req({ headers }), 2)).toBe('10.0.0.2');
    expect(clientAddress(req({ headers }), 9)).toBe('10.0.0.1');
    expect(clientAddress(req({ headers: { 'x-forwarded-for': 'garbage, ,' } }), true)).toBe('10.0.0.1');
    expect(clientAddress(req({ headers: { 'x-forwarded-for': ['198.51.100.1', '1.1.1.1'] } }), true)).toBe('198.51.100.1');
  });
});
