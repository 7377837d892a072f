/**
 * Validation of the mock provider's options. Hand-written rather than zod because @amas/loadtest does not
 * depend on zod; it still throws the same InvalidOptionError (naming each bad option) as the rest of AMAS.
 */
import { InvalidOptionError, describeValue, type OptionIssue } from '@amas/core';
import type { MockChatMessage, MockLatency, MockOutageWindow, MockProviderOptions } from './types.js';

export interface ResolvedOutageWindow {
  startMs: number;
  endMs: number;
  status: number;
  retryAfterSeconds: number | undefined;
}

export interface ResolvedMockOptions {
  port: number;
  latency: { min: number; max: number };
  chunkDelayMs: number;
  failureRate: number;
  failureStatus: number;
  outages: ResolvedOutageWindow[];
  seed: number;
  reply: ((messages: MockChatMessage[], model: string) => string) | undefined;
  embeddingDimensions: number;
}

export const MAX_EMBEDDING_DIMENSIONS = 8192;
const WHERE = 'mock provider options';
const KNOWN = new Set([
  'port', 'latencyMs', 'chunkDelayMs', 'failureRate', 'failureStatus', 'outages', 'seed', 'reply',
  'embeddingDimensions',
]);

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => Number.isInteger(v);
const issue = (path: string, value: unknown, expected: string): OptionIssue => ({
  path,
  received: describeValue(value),
  expected,
});

function checkLatency(value: unknown, path: string, issues: OptionIssue[]): { min: number; max: number } {
  if (isNum(value) && value >= 0) return { min: value, max: value };
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const { min, max } = value as { min?: unknown; max?: unknown };
    const before = issues.length;
    if (!isNum(min) || min < 0) issues.push(issue(`${path}.min`, min, 'a number >= 0'));
    if (!isNum(max) || max < 0) issues.push(issue(`${path}.max`, max, 'a number >= 0'));
    else if (isNum(min) && max < min) issues.push(issue(`${path}.max`, max, `a number >= min (${min})`));
    if (issues.length === before) return { min: min as number, max: max as number };
    return { min: 0, max: 0 };
  }
  issues.push(issue(path, value, 'a number >= 0 or { min, max }'));
  return { min: 0, max: 0 };
}

function checkStatus(value: unknown, path: string, issues: OptionIssue[]): void {
  if (!isInt(value) || value < 400 || value > 599) issues.push(issue(path, value, 'an HTTP error status 400..599'));
}

function checkRetryAfter(value: unknown, path: string, issues: OptionIssue[]): void {
  if (value !== undefined && (!isNum(value) || value < 0)) issues.push(issue(path, value, 'a number of seconds >= 0'));
}

export function resolveMockOptions(input: MockProviderOptions | undefined): ResolvedMockOptions {
  const issues: OptionIssue[] = [];
  if (input !== undefined && (input === null || typeof input !== 'object' || Array.isArray(input))) {
    throw new InvalidOptionError([issue('', input, 'an options object')], WHERE);
  }
  const o = (input ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN.has(key)) issues.push(issue(key, o[key], `no unknown option (known: ${[...KNOWN].join(', ')})`));
  }
  const { port = 0, chunkDelayMs = 5, failureRate = 0, failureStatus = 500, embeddingDimensions = 16 } = o;
  if (!isInt(port) || port < 0 || port > 65535) issues.push(issue('port', port, 'an integer 0..65535'));
  const latency = o.latencyMs === undefined ? { min: 0, max: 0 } : checkLatency(o.latencyMs, 'latencyMs', issues);
  if (!isNum(chunkDelayMs) || chunkDelayMs < 0) issues.push(issue('chunkDelayMs', chunkDelayMs, 'a number >= 0'));
  if (!isNum(failureRate) || failureRate < 0 || failureRate > 1) {
    issues.push(issue('failureRate', failureRate, 'a number between 0 and 1'));
  }
  checkStatus(failureStatus, 'failureStatus', issues);
  if (o.seed !== undefined && !isInt(o.seed)) issues.push(issue('seed', o.seed, 'an integer'));
  if (o.reply !== undefined && typeof o.reply !== 'function') issues.push(issue('reply', o.reply, 'a function'));
  if (!isInt(embeddingDimensions) || embeddingDimensions < 1 || embeddingDimensions > MAX_EMBEDDING_DIMENSIONS) {
    issues.push(issue('embeddingDimensions', embeddingDimensions, `an integer 1..${MAX_EMBEDDING_DIMENSIONS}`));
  }

  const outages: ResolvedOutageWindow[] = [];
  if (o.outages !== undefined && !Array.isArray(o.outages)) {
    issues.push(issue('outages', o.outages, 'an array of { startMs, durationMs, status?, retryAfterSeconds? }'));
  } else if (Array.isArray(o.outages)) {
    o.outages.forEach((raw: unknown, i) => {
      const path = `outages.${i}`;
      if (raw === null || typeof raw !== 'object') {
        issues.push(issue(path, raw, '{ startMs, durationMs, status?, retryAfterSeconds? }'));
        return;
      }
      const w = raw as Partial<MockOutageWindow>;
      const before = issues.length;
      if (!isNum(w.startMs) || w.startMs < 0) issues.push(issue(`${path}.startMs`, w.startMs, 'a number >= 0'));
      if (!isNum(w.durationMs) || w.durationMs < 0) issues.push(issue(`${path}.durationMs`, w.durationMs, 'a number >= 0'));
      if (w.status !== undefined) checkStatus(w.status, `${path}.status`, issues);
      checkRetryAfter(w.retryAfterSeconds, `${path}.retryAfterSeconds`, issues);
      if (issues.length === before) {
        outages.push({
          startMs: w.startMs!,
          endMs: w.startMs! + w.durationMs!,
          status: w.status ?? 503,
          retryAfterSeconds: w.retryAfterSeconds,
        });
      }
    });
  }
  if (issues.length) throw new InvalidOptionError(issues, WHERE);

  return {
    port: port as number,
    latency,
    chunkDelayMs: chunkDelayMs as number,
    failureRate: failureRate as number,
    failureStatus: failureStatus as number,
    outages,
    // Unseeded servers still use the PRNG, just with an arbitrary seed.
    seed: o.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : (o.seed as number),
    reply: o.reply as ResolvedMockOptions['reply'],
    embeddingDimensions: embeddingDimensions as number,
  };
}

export function resolveLatency(value: MockLatency, where = 'setLatency'): { min: number; max: number } {
  const issues: OptionIssue[] = [];
  const latency = checkLatency(value, 'latencyMs', issues);
  if (issues.length) throw new InvalidOptionError(issues, where);
  return latency;
}

export interface ManualOutage {
  status: number;
  retryAfterSeconds: number | undefined;
}

/** `setOutage` argument -> the active manual outage, or undefined for "off". */
export function resolveManualOutage(value: unknown, where = 'setOutage'): ManualOutage | undefined {
  if (value === false) return undefined;
  if (value === true) return { status: 503, retryAfterSeconds: undefined };
  const issues: OptionIssue[] = [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    issues.push(issue('outage', value, 'a boolean or { status?, retryAfterSeconds? }'));
  } else {
    const { status, retryAfterSeconds } = value as { status?: unknown; retryAfterSeconds?: unknown };
    if (status !== undefined) checkStatus(status, 'outage.status', issues);
    checkRetryAfter(retryAfterSeconds, 'outage.retryAfterSeconds', issues);
    if (!issues.length) {
      return { status: (status as number | undefined) ?? 503, retryAfterSeconds: retryAfterSeconds as number | undefined };
    }
  }
  throw new InvalidOptionError(issues, where);
}
