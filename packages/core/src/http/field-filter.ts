import { InvalidFieldsError, InvalidOptionError, type FieldsProblem } from '../errors.js';

/**
 * `?fields=` partial responses: a client names the parts of a JSON response it wants, and gets only those.
 *
 * Syntax: a comma-separated list of dot paths, `id,name,items.price`, with a group form for several fields
 * under one parent, `items(price,sku),owner.name`; groups nest (`a(b(c,d),e)`) and may follow a dot path
 * (`a.b(c,d)`). Spaces, tabs, CR and LF around names, dots, commas and parentheses are ignored.
 *
 * Names are 1 or more of `A-Z a-z 0-9 _ - $ @` (ASCII only), so `created_at`, `x-request-id`, `$ref` and
 * `@type` work. Anything else (quotes, `*`, `/`, `:`, non-ASCII letters, control characters) is refused: a
 * key containing such characters cannot be selected. There is no escape syntax and no wildcard.
 *
 * Positions in error messages are 0-based offsets in UTF-16 code units, as in `JSON.parse` errors.
 */

/** A parsed expression: each selected name maps to `true` (the whole value) or to the selection inside it. */
export type FieldSelection = ReadonlyMap<string, FieldSelection | true>;

export interface FieldLimits {
  /** Longest expression accepted, in characters (default 2048). Checked before anything is scanned. */
  maxLength?: number;
  /** Most names an expression may contain, counting repeats and names inside groups (default 200). */
  maxFields?: number;
  /** Most levels a path may go down: `a.b.c` and `a(b(c))` are 3 (default 16, at most 64). */
  maxDepth?: number;
}

export const DEFAULT_FIELD_LIMITS: Readonly<Required<FieldLimits>> = Object.freeze({ maxLength: 2048, maxFields: 200, maxDepth: 16 });

/** applyFields recurses once per selection level, so this bounds its stack use whatever the options say. */
const MAX_DEPTH_CEILING = 64;

const COMMA = 0x2c;
const DOT = 0x2e;
const OPEN = 0x28;
const CLOSE = 0x29;

type MutableSelection = Map<string, MutableSelection | true>;

interface OpenGroup {
  /** The selection the group's owner path lives in, restored when the group closes. */
  outer: MutableSelection;
  outerDepth: number;
  /** Where the `(` is, for the "never closed" message. */
  position: number;
}

/**
 * Parses a `fields` expression. Throws InvalidFieldsError (400) naming the problem and its position when
 * the expression is malformed or exceeds a limit; never recurses, so hostile nesting fails with the depth
 * error after at most `maxDepth` levels. Repeated query parameters may be passed as an array: they are
 * joined with `,`.
 */
export function parseFields(expression: string | readonly string[], limits: FieldLimits = {}): FieldSelection {
  const { maxLength, maxFields, maxDepth } = resolveLimits(limits);
  const text = typeof expression === 'string' ? expression : joinParts(expression);
  if (text.length > maxLength) {
    throw new InvalidFieldsError(
      `fields: expression too long at position ${maxLength} (${text.length} characters); the limit is ${maxLength}`,
      'too-long',
      maxLength,
    );
  }
  if (isBlank(text)) throw new InvalidFieldsError('fields: empty expression at position 0', 'empty-name', 0);

  const root: MutableSelection = new Map();
  const groups: OpenGroup[] = [];
  const end = text.length;
  // The selection the current list item goes into (the root, or the innermost open group's owner).
  let list: MutableSelection = root;
  let listDepth = 0;
  // Where the next name of the current path goes, and how deep that path already is.
  let parent: MutableSelection = root;
  let depth = 0;
  let expectName = true;
  // Right after a name a "." or "(" may follow; after a group's ")" only "," or another ")".
  let afterName = false;
  let names = 0;
  let i = 0;

  for (;;) {
    i = skipSpace(text, i);
    if (expectName) {
      const start = i;
      while (i < end && !isDelimiter(text.charCodeAt(i))) i++;
      if (i === start) {
        if (text.charCodeAt(i) === CLOSE && groups.length === 0) throw unmatchedClose(text, i);
        throw fail(text, 'empty-name', 'empty name', start);
      }
      checkName(text, start, i);
      if (++depth > maxDepth) {
        throw fail(text, 'too-deep', 'path too deep', start, `the limit is ${maxDepth} levels`);
      }
      if (++names > maxFields) {
        throw fail(text, 'too-many-fields', 'too many fields', start, `the limit is ${maxFields} names`);
      }
      const name = text.slice(start, i);
      i = skipSpace(text, i);
      const next = text.charCodeAt(i);
      if (next === DOT) {
        parent = descend(parent, name);
        i++;
      } else if (next === OPEN) {
        groups.push({ outer: list, outerDepth: listDepth, position: i });
        list = parent = descend(parent, name);
        listDepth = depth;
        i++;
      } else {
        parent.set(name, true); // a leaf wins over any deeper selection of the same path
        expectName = false;
        afterName = true;
      }
      continue;
    }
    if (i >= end) {
      const unclosed = groups[groups.length - 1];
      if (unclosed) {
        throw fail(text, 'unbalanced-parentheses', 'unbalanced parentheses, "(" never closed', unclosed.position);
      }
      return root;
    }
    const c = text.charCodeAt(i);
    if (c === COMMA) {
      parent = list;
      depth = listDepth;
      expectName = true;
      i++;
    } else if (c === CLOSE) {
      const group = groups.pop();
      if (!group) throw unmatchedClose(text, i);
      list = group.outer;
      listDepth = group.outerDepth;
      afterName = false;
      i++;
    } else {
      const expected = [...(afterName ? ['"."', '"("'] : []), '","', ...(groups.length ? ['")"'] : ['the end'])];
      const choices = `${expected.slice(0, -1).join(', ')} or ${expected[expected.length - 1]}`;
      throw fail(text, 'unexpected-character', `unexpected ${quoteChar(text, i)}`, i, `expected ${choices}`);
    }
  }
}

/**
 * The fields of `value` that `selection` names. On an array the selection applies to each element
 * (nested arrays included); objects keep their own keys in their original order. A selected key missing
 * from the input is absent from the output; a deeper path through a value that is not an object (a
 * primitive, null, or something with a `toJSON` such as a Date or Buffer) leaves that key out. Such values
 * as array elements, or as the top-level value, are returned as they are: the selection describes object
 * fields, and dropping elements would shift array positions.
 *
 * Selected values are shared with the input, not copied. A key named `__proto__` (JSON.parse makes it an own
 * property) is copied as an own property with defineProperty: it never changes the output's prototype.
 * Recursion is bounded by the selection's depth; nested arrays are walked with an explicit stack, so a
 * deeply nested or huge value cannot overflow the stack.
 */
export function applyFields(value: unknown, selection: FieldSelection): unknown {
  if (Array.isArray(value)) return selectEach(value, selection);
  if (isObject(value)) return selectObject(value, selection);
  return value;
}

/** The canonical text of a selection (`a,b(c,d)`): parsing it gives the same selection. For logs and keys. */
export function formatFields(selection: FieldSelection): string {
  const parts: string[] = [];
  for (const [name, inner] of selection) parts.push(inner === true ? name : `${name}(${formatFields(inner)})`);
  return parts.join(',');
}

function selectObject(source: object, selection: FieldSelection): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(source)) {
    const inner = selection.get(key);
    if (inner === undefined) continue;
    const value = (source as Record<string, unknown>)[key];
    if (inner === true) define(out, key, value);
    else if (Array.isArray(value)) define(out, key, selectEach(value, inner));
    else if (isObject(value)) define(out, key, selectObject(value, inner));
  }
  return out;
}

interface ArrayFrame {
  source: readonly unknown[];
  target: unknown[];
  next: number;
}

/** Applies `selection` to every element, descending nested arrays with a heap stack instead of recursion. */
function selectEach(array: readonly unknown[], selection: FieldSelection): unknown[] {
  const out: unknown[] = [];
  const stack: ArrayFrame[] = [{ source: array, target: out, next: 0 }];
  const open = new Set<readonly unknown[]>([array]);
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.next >= frame.source.length) {
      stack.pop();
      open.delete(frame.source);
      continue;
    }
    const item = frame.source[frame.next++];
    if (Array.isArray(item)) {
      // JSON cannot hold a cycle; one here is a bug in the handler's value, and walking it would never end.
      if (open.has(item)) throw new TypeError('applyFields: circular array');
      const target: unknown[] = [];
      frame.target.push(target);
      stack.push({ source: item, target, next: 0 });
      open.add(item);
    } else {
      frame.target.push(isObject(item) ? selectObject(item, selection) : item);
    }
  }
  return out;
}

/** An object the filter descends into: not an array, not a value JSON serialises through `toJSON`. */
function isObject(value: unknown): value is object {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { toJSON?: unknown }).toJSON !== 'function'
  );
}

/** Assignment, except that `__proto__` becomes an own property instead of calling the prototype setter. */
function define(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

/** The selection under `name`, created when missing; a throwaway one when `name` is already selected whole. */
function descend(parent: MutableSelection, name: string): MutableSelection {
  const existing = parent.get(name);
  if (existing === true) return new Map(); // `a` already means all of `a`: what follows is parsed and dropped
  if (existing) return existing;
  const created: MutableSelection = new Map();
  parent.set(name, created);
  return created;
}

function resolveLimits(limits: FieldLimits): Required<FieldLimits> {
  const resolved = { ...DEFAULT_FIELD_LIMITS };
  for (const key of ['maxLength', 'maxFields', 'maxDepth'] as const) {
    const value = limits[key];
    if (value === undefined) continue;
    const ceiling = key === 'maxDepth' ? MAX_DEPTH_CEILING : Number.MAX_SAFE_INTEGER;
    if (!Number.isInteger(value) || value < 1 || value > ceiling) {
      throw new InvalidOptionError(
        [{ path: key, received: String(value), expected: `an integer from 1 to ${key === 'maxDepth' ? ceiling : 'any size'}` }],
        'field filter limits',
      );
    }
    resolved[key] = value;
  }
  return resolved;
}

function joinParts(parts: readonly string[]): string {
  if (!Array.isArray(parts) || !parts.every((part) => typeof part === 'string')) {
    throw new InvalidFieldsError('fields: expected text at position 0', 'not-text', 0);
  }
  return parts.join(',');
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

function isDelimiter(code: number): boolean {
  return code === COMMA || code === DOT || code === OPEN || code === CLOSE || isSpace(code);
}

function isNameChar(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x5f || // _
    code === 0x2d || // -
    code === 0x24 || // $
    code === 0x40 // @
  );
}

function isBlank(text: string): boolean {
  return skipSpace(text, 0) === text.length;
}

function skipSpace(text: string, from: number): number {
  let i = from;
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

function checkName(text: string, start: number, end: number): void {
  for (let i = start; i < end; i++) {
    if (isNameChar(text.charCodeAt(i))) continue;
    throw fail(
      text,
      'forbidden-character',
      `name ${clip(text.slice(start, end), 64)} has a forbidden character ${quoteChar(text, i)}`,
      i,
      'names may contain only A-Z, a-z, 0-9, _, -, $ and @',
    );
  }
}

function unmatchedClose(text: string, position: number): InvalidFieldsError {
  return fail(text, 'unbalanced-parentheses', 'unbalanced parentheses, ")" without a matching "("', position);
}

/**
 * `fields: <what> at position <n> in "<expression>"[; <hint>]`. A long expression is shown as the part
 * around the problem; JSON quoting keeps control characters and quotes readable in logs and bodies.
 */
function fail(text: string, problem: FieldsProblem, what: string, position: number, hint?: string): InvalidFieldsError {
  const where = text.length <= 100 ? `in ${JSON.stringify(text)}` : `near ${excerpt(text, position)}`;
  return new InvalidFieldsError(`fields: ${what} at position ${position} ${where}${hint ? `; ${hint}` : ''}`, problem, position);
}

/** The character (whole code point) at `i`, JSON-quoted so control characters stay readable. */
function quoteChar(text: string, i: number): string {
  return JSON.stringify(String.fromCodePoint(text.codePointAt(i)!));
}

function clip(value: string, max: number): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

function excerpt(text: string, position: number): string {
  const from = Math.max(0, position - 40);
  const to = Math.min(text.length, position + 40);
  return JSON.stringify(`${from > 0 ? '…' : ''}${text.slice(from, to)}${to < text.length ? '…' : ''}`);
}
