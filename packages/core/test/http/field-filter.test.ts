import { describe, expect, it } from 'vitest';
import { AmasError, InvalidFieldsError, InvalidOptionError, isAmasError, type FieldsProblem } from '../../src/errors.js';
import { applyFields, DEFAULT_FIELD_LIMITS, formatFields, parseFields, type FieldLimits, type FieldSelection } from '../../src/http/field-filter.js';
import { errorOf } from '../helpers.js';

/** The error parseFields throws, asserted to be an InvalidFieldsError. */
function fieldsError(expression: string, limits?: FieldLimits): InvalidFieldsError {
  const error = errorOf<unknown>(() => parseFields(expression, limits));
  expect(error, String(expression).slice(0, 50)).toBeInstanceOf(InvalidFieldsError);
  return error as InvalidFieldsError;
}

/** A selection as a plain object tree, for readable assertions. */
function tree(selection: FieldSelection): unknown {
  const out: Record<string, unknown> = Object.create(null);
  for (const [name, inner] of selection) out[name] = inner === true ? true : tree(inner);
  return out;
}

const pick = (expression: string, value: unknown) => applyFields(value, parseFields(expression));

describe('parseFields: syntax', () => {
  const cases: Array<[string, string]> = [
    ['id', 'id'],
    ['id,name,items.price', 'id,name,items(price)'],
    ['items(price,sku),owner.name', 'items(price,sku),owner(name)'],
    ['a(b(c,d),e)', 'a(b(c,d),e)'],
    ['a.b(c,d)', 'a(b(c,d))'],
    ['a.b.c', 'a(b(c))'],
    ['a(b),c', 'a(b),c'],
    [' id , name ', 'id,name'],
    ['\tid,\nname\r', 'id,name'],
    ['a . b', 'a(b)'],
    ['a ( b , c ) , d', 'a(b,c),d'],
    ['created_at,x-request-id,$ref,@type,0,A9', 'created_at,x-request-id,$ref,@type,0,A9'],
    ['__proto__,constructor,prototype,toString', '__proto__,constructor,prototype,toString'],
    // Repeats merge; a whole value wins over any part of it, in either order.
    ['id,id', 'id'],
    ['a,a.b', 'a'],
    ['a.b,a', 'a'],
    ['a(b),a', 'a'],
    ['a,a(b(c))', 'a'],
    ['a(b),a(c)', 'a(b,c)'],
    ['a.b.c,a.b', 'a(b)'],
    ['a.b,a.c.d,a.c', 'a(b,c)'],
    ['a(b(c)),a(b(d))', 'a(b(c,d))'],
  ];
  it.each(cases)('%j parses to %j', (expression, canonical) => {
    expect(formatFields(parseFields(expression))).toBe(canonical);
  });

  it('builds a tree of Maps: true for a whole value, a nested selection otherwise', () => {
    const selection = parseFields('id,items(price,sku),owner.name');
    expect(selection).toBeInstanceOf(Map);
    expect(tree(selection)).toEqual({ id: true, items: { price: true, sku: true }, owner: { name: true } });
  });

  it('keeps the order names first appear in', () => {
    expect([...parseFields('z,a,m(y,b)').keys()]).toEqual(['z', 'a', 'm']);
  });

  it('formatFields output parses back to the same selection', () => {
    for (const expression of ['a', 'a(b(c,d),e),f.g', ' x . y ( z ) ', 'p,q.r,q.s(t)']) {
      const once = parseFields(expression);
      expect(tree(parseFields(formatFields(once)))).toEqual(tree(once));
    }
  });

  it('joins repeated query parameters given as an array', () => {
    expect(formatFields(parseFields(['id', 'items.price']))).toBe('id,items(price)');
    expect(fieldsError([] as unknown as string).problem).toBe('empty-name');
  });
});

describe('parseFields: errors say what is wrong and where', () => {
  const cases: Array<[string, FieldsProblem, number, string]> = [
    ['id,,name', 'empty-name', 3, 'fields: empty name at position 3 in "id,,name"'],
    [',id', 'empty-name', 0, 'fields: empty name at position 0 in ",id"'],
    ['id,', 'empty-name', 3, 'fields: empty name at position 3 in "id,"'],
    ['id, ', 'empty-name', 4, 'fields: empty name at position 4 in "id, "'],
    ['a.', 'empty-name', 2, 'fields: empty name at position 2 in "a."'],
    ['.a', 'empty-name', 0, 'fields: empty name at position 0 in ".a"'],
    ['a..b', 'empty-name', 2, 'fields: empty name at position 2 in "a..b"'],
    ['a()', 'empty-name', 2, 'fields: empty name at position 2 in "a()"'],
    ['a(b,)', 'empty-name', 4, 'fields: empty name at position 4 in "a(b,)"'],
    ['(a)', 'empty-name', 0, 'fields: empty name at position 0 in "(a)"'],
    ['a.(b)', 'empty-name', 2, 'fields: empty name at position 2 in "a.(b)"'],
    ['a((b))', 'empty-name', 2, 'fields: empty name at position 2 in "a((b))"'],
    ['', 'empty-name', 0, 'fields: empty expression at position 0'],
    [' \t ', 'empty-name', 0, 'fields: empty expression at position 0'],
    ['a(b', 'unbalanced-parentheses', 1, 'fields: unbalanced parentheses, "(" never closed at position 1 in "a(b"'],
    ['a(b(c)', 'unbalanced-parentheses', 1, 'fields: unbalanced parentheses, "(" never closed at position 1 in "a(b(c)"'],
    ['a(b,c(d', 'unbalanced-parentheses', 5, 'fields: unbalanced parentheses, "(" never closed at position 5 in "a(b,c(d"'],
    ['a(b))', 'unbalanced-parentheses', 4, 'fields: unbalanced parentheses, ")" without a matching "(" at position 4 in "a(b))"'],
    [')', 'unbalanced-parentheses', 0, 'fields: unbalanced parentheses, ")" without a matching "(" at position 0 in ")"'],
    ['a,)', 'unbalanced-parentheses', 2, 'fields: unbalanced parentheses, ")" without a matching "(" at position 2 in "a,)"'],
    ['a)', 'unbalanced-parentheses', 1, 'fields: unbalanced parentheses, ")" without a matching "(" at position 1 in "a)"'],
    [
      "id,it's",
      'forbidden-character',
      5,
      `fields: name "it's" has a forbidden character "'" at position 5 in "id,it's"; names may contain only A-Z, a-z, 0-9, _, -, $ and @`,
    ],
    ['a;b', 'forbidden-character', 1, 'fields: name "a;b" has a forbidden character ";" at position 1 in "a;b"; names may contain only A-Z, a-z, 0-9, _, -, $ and @'],
    ['a"b', 'forbidden-character', 1, 'fields: name "a\\"b" has a forbidden character "\\"" at position 1 in "a\\"b"; names may contain only A-Z, a-z, 0-9, _, -, $ and @'],
    ['a\u0000', 'forbidden-character', 1, 'fields: name "a\\u0000" has a forbidden character "\\u0000" at position 1 in "a\\u0000"; names may contain only A-Z, a-z, 0-9, _, -, $ and @'],
    ['x,😀', 'forbidden-character', 2, 'fields: name "😀" has a forbidden character "😀" at position 2 in "x,😀"; names may contain only A-Z, a-z, 0-9, _, -, $ and @'],
    ['a\u00a0b', 'forbidden-character', 1, 'fields: name "a\u00a0b" has a forbidden character "\u00a0" at position 1 in "a\u00a0b"; names may contain only A-Z, a-z, 0-9, _, -, $ and @'],
    ['a b', 'unexpected-character', 2, 'fields: unexpected "b" at position 2 in "a b"; expected ".", "(", "," or the end'],
    ['a(b c)', 'unexpected-character', 4, 'fields: unexpected "c" at position 4 in "a(b c)"; expected ".", "(", "," or ")"'],
    ['a(b)c', 'unexpected-character', 4, 'fields: unexpected "c" at position 4 in "a(b)c"; expected "," or the end'],
    ['a(b).c', 'unexpected-character', 4, 'fields: unexpected "." at position 4 in "a(b).c"; expected "," or the end'],
    ['a(b)(c)', 'unexpected-character', 4, 'fields: unexpected "(" at position 4 in "a(b)(c)"; expected "," or the end'],
    ['x(a(b) c)', 'unexpected-character', 7, 'fields: unexpected "c" at position 7 in "x(a(b) c)"; expected "," or ")"'],
  ];
  it.each(cases)('%j: %s at %i', (expression, problem, position, message) => {
    const error = fieldsError(expression);
    expect([error.problem, error.position, error.message]).toEqual([problem, position, message]);
  });

  it.each(['*', 'a/b', 'a:b', 'a[0]', 'ä', 'a+b', 'a=b', 'a&b', 'a%20b', 'a\\b', 'a~', 'a!', "'a'", 'a#'])('refuses the forbidden name %j', (expression) => {
    expect(fieldsError(expression).problem).toBe('forbidden-character');
  });

  it('is a 400 AMAS error with the problem and position in its details', () => {
    const error = fieldsError('id,,name');
    expect(error).toBeInstanceOf(AmasError);
    expect(error).toBeInstanceOf(Error);
    expect(isAmasError(error)).toBe(true);
    expect([error.code, error.status, error.statusCode, error.retryAfterMs]).toEqual(['AMAS_INVALID_FIELDS', 400, 400, undefined]);
    expect(error.details).toEqual({ parameter: 'fields', problem: 'empty-name', position: 3 });
    expect(error.toJSON()).toEqual({
      error: 'AMAS_INVALID_FIELDS',
      message: 'fields: empty name at position 3 in "id,,name"',
      status: 400,
      details: { parameter: 'fields', problem: 'empty-name', position: 3 },
    });
  });

  it('shows only the part around the problem of a long expression', () => {
    const expression = `${'abc,'.repeat(50)}a;b,${'xyz,'.repeat(50)}q`;
    const error = fieldsError(expression);
    expect(error.position).toBe(201);
    expect(error.message).toBe(
      `fields: name "a;b" has a forbidden character ";" at position 201 near "…${expression.slice(161, 241)}…"; names may contain only A-Z, a-z, 0-9, _, -, $ and @`,
    );
  });

  it('clips a very long forbidden name in the message', () => {
    const error = fieldsError(`${'n'.repeat(300)}!`);
    expect(error.position).toBe(300);
    expect(error.message).toContain(`name "${'n'.repeat(64)}…" has a forbidden character "!" at position 300`);
  });

  it('refuses a value that is not text (qs objects, numbers)', () => {
    for (const value of [{ a: '1' }, 42, null, ['a', 1]]) {
      const error = fieldsError(value as unknown as string);
      expect([error.problem, error.position, error.message]).toEqual(['not-text', 0, 'fields: expected text at position 0']);
    }
  });
});

describe('parseFields: limits', () => {
  it('has documented defaults', () => {
    expect(DEFAULT_FIELD_LIMITS).toEqual({ maxLength: 2048, maxFields: 200, maxDepth: 16 });
  });

  it('accepts exactly the limits and refuses one more', () => {
    expect(formatFields(parseFields('b'.repeat(2048)))).toBe('b'.repeat(2048));
    const long = fieldsError('b'.repeat(2049));
    expect([long.problem, long.position, long.message]).toEqual(['too-long', 2048, 'fields: expression too long at position 2048 (2049 characters); the limit is 2048']);

    const names = (n: number) => Array.from({ length: n }, (_, i) => `f${i}`).join(',');
    expect(parseFields(names(200)).size).toBe(200);
    const many = fieldsError(names(201));
    expect([many.problem, many.position]).toEqual(['too-many-fields', names(200).length + 1]);
    expect(many.message).toBe(`fields: too many fields at position ${many.position} near "…${names(201).slice(many.position - 40)}"; the limit is 200 names`);

    const path = (n: number) => Array.from({ length: n }, () => 'a').join('.');
    expect(formatFields(parseFields(path(16)))).toBe(`${'a('.repeat(15)}a${')'.repeat(15)}`);
    const deep = fieldsError(path(17));
    expect([deep.problem, deep.position, deep.message]).toEqual(['too-deep', 32, `fields: path too deep at position 32 in "${path(17)}"; the limit is 16 levels`]);
  });

  it('counts every name, inside groups and repeated, towards maxFields', () => {
    expect(fieldsError('a(b,c),d', { maxFields: 3 }).position).toBe(7);
    expect(fieldsError('a,a,a', { maxFields: 2 }).position).toBe(4);
    expect(fieldsError('a.b.c', { maxFields: 2 }).position).toBe(4);
  });

  it('counts group levels and dot levels alike towards maxDepth', () => {
    expect(() => parseFields('a(b(c))', { maxDepth: 3 })).not.toThrow();
    expect(fieldsError('a(b(c(d)))', { maxDepth: 3 }).position).toBe(6);
    expect(fieldsError('a.b(c.d)', { maxDepth: 3 }).position).toBe(6);
    expect(fieldsError('a(b.c(d))', { maxDepth: 3 }).position).toBe(6);
    // Siblings after a deep group start again at the group's level.
    expect(formatFields(parseFields('a(b(c),d),e', { maxDepth: 3 }))).toBe('a(b(c),d),e');
  });

  it('takes custom limits', () => {
    expect(fieldsError('abcdef', { maxLength: 5 }).message).toBe('fields: expression too long at position 5 (6 characters); the limit is 5');
    expect(() => parseFields('a'.repeat(5000), { maxLength: 5000 })).not.toThrow();
    expect(() => parseFields('a.b.c.d', { maxDepth: 64 })).not.toThrow();
  });

  it.each<[FieldLimits, string]>([
    [{ maxLength: 0 }, 'maxLength'],
    [{ maxLength: -1 }, 'maxLength'],
    [{ maxFields: 1.5 }, 'maxFields'],
    [{ maxFields: Number.NaN }, 'maxFields'],
    [{ maxDepth: 0 }, 'maxDepth'],
    [{ maxDepth: 65 }, 'maxDepth'],
    [{ maxDepth: Infinity }, 'maxDepth'],
  ])('refuses the limits %j with an InvalidOptionError naming %s', (limits, path) => {
    const error = errorOf<InvalidOptionError>(() => parseFields('a', limits));
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error.issues[0]!.path).toBe(path);
    expect(error.message).toContain('Invalid field filter limits');
  });
});

describe('parseFields: hostile input', () => {
  it('fails 10 000 nested groups with the depth error at the 17th level, not a stack overflow', () => {
    const expression = `${'a('.repeat(10_000)}a${')'.repeat(10_000)}`;
    const error = fieldsError(expression, { maxLength: 100_000 });
    expect([error.problem, error.position]).toEqual(['too-deep', 32]);
    expect(error.message.length).toBeLessThan(300);
    // With default limits the same expression is simply too long.
    expect(fieldsError(expression).problem).toBe('too-long');
  });

  it('fails a 10 000-level dot path with the depth error', () => {
    const expression = `${'a.'.repeat(10_000)}a`;
    expect([fieldsError(expression, { maxLength: 100_000 }).problem, fieldsError(expression, { maxLength: 100_000 }).position]).toEqual(['too-deep', 32]);
  });

  it('fails a 1 MB expression with the length error before looking at its content', () => {
    // A forbidden character at position 0 would be reported first if the text were scanned.
    const expression = `;${'a'.repeat(1024 * 1024)}`;
    const error = fieldsError(expression);
    expect([error.problem, error.position]).toEqual(['too-long', 2048]);
    expect(error.message).toBe(`fields: expression too long at position 2048 (${expression.length} characters); the limit is 2048`);
  });

  it('handles 100 000 commas: too long by default, an empty name or too many fields when allowed', () => {
    const commas = ','.repeat(100_000);
    expect(fieldsError(commas).problem).toBe('too-long');
    expect([fieldsError(commas, { maxLength: 1e6 }).problem, fieldsError(commas, { maxLength: 1e6 }).position]).toEqual(['empty-name', 0]);
    const list = 'a,'.repeat(100_000) + 'a';
    const many = fieldsError(list, { maxLength: 1e6 });
    expect([many.problem, many.position]).toEqual(['too-many-fields', 400]);
    expect(formatFields(parseFields(list, { maxLength: 1e6, maxFields: 200_000 }))).toBe('a');
  });

  it('parses __proto__, constructor and prototype as plain names without touching any prototype', () => {
    const selection = parseFields('__proto__(polluted),constructor(prototype(polluted)),prototype');
    expect([...selection.keys()]).toEqual(['__proto__', 'constructor', 'prototype']);
    expect(tree(selection)).toEqual(JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"prototype":true}'));
    expect(formatFields(selection)).toBe('__proto__(polluted),constructor(prototype(polluted)),prototype');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });
});

describe('applyFields', () => {
  const order = {
    id: 'ord_1',
    status: 'paid',
    owner: { id: 'u1', name: 'Ada', email: 'ada@example.com' },
    items: [
      { sku: 'A', price: 10, qty: 1 },
      { sku: 'B', price: 20, qty: 2, tags: ['x'] },
    ],
    meta: null,
    count: 3,
  };

  const cases: Array<[string, unknown, unknown]> = [
    ['id', order, { id: 'ord_1' }],
    ['id,owner.name', order, { id: 'ord_1', owner: { name: 'Ada' } }],
    ['items(price,sku)', order, { items: [{ sku: 'A', price: 10 }, { sku: 'B', price: 20 }] }],
    ['items.price,owner(id,name)', order, { owner: { id: 'u1', name: 'Ada' }, items: [{ price: 10 }, { price: 20 }] }],
    ['items.tags', order, { items: [{}, { tags: ['x'] }] }],
    ['missing,id,owner.missing', order, { id: 'ord_1', owner: {} }],
    // A path through a primitive or null yields nothing for that key.
    ['count.x,meta.x,status.length', order, {}],
    ['meta,count', order, { meta: null, count: 3 }],
    ['owner,owner.name', order, { owner: order.owner }],
    // Arrays: the selection applies to each element; nested arrays too; non-objects stay as they are.
    ['a', [{ a: 1, b: 2 }, { b: 3 }], [{ a: 1 }, {}]],
    ['a', [[{ a: 1, b: 2 }], [[{ a: 2, c: 3 }]]], [[{ a: 1 }], [[{ a: 2 }]]]],
    ['a', [1, 'x', null, true, { a: 1, b: 1 }], [1, 'x', null, true, { a: 1 }]],
    ['tags.name', { tags: ['a', 'b'] }, { tags: ['a', 'b'] }],
    ['tags.name', { tags: [{ name: 'a', id: 1 }, 'b'] }, { tags: [{ name: 'a' }, 'b'] }],
    ['m.x', { m: [[{ x: 1, y: 1 }, 5]] }, { m: [[{ x: 1 }, 5]] }],
    // Top-level values that are not objects pass through.
    ['a', 'text', 'text'],
    ['a', 42, 42],
    ['a', null, null],
    ['a', undefined, undefined],
    ['a', [], []],
    ['a', {}, {}],
    // Integer-like keys, special names.
    ['0,1', { 0: 'zero', 1: 'one', 2: 'two' }, { 0: 'zero', 1: 'one' }],
    ['$ref,@type,x-id', { $ref: '#', '@type': 'T', 'x-id': 7, other: 1 }, { $ref: '#', '@type': 'T', 'x-id': 7 }],
  ];
  it.each(cases)('%j of %j is %j', (expression, value, expected) => {
    expect(pick(expression, value)).toEqual(expected);
  });

  it("keeps the input's key order, not the expression's", () => {
    const out = pick('m,z,a', { z: 1, a: 2, m: 3, q: 4 }) as object;
    expect(Object.keys(out)).toEqual(['z', 'a', 'm']);
    const nested = pick('o(c,a)', { o: { a: 1, b: 2, c: 3 } }) as { o: object };
    expect(Object.keys(nested.o)).toEqual(['a', 'c']);
  });

  it('selects own properties only, never inherited ones', () => {
    const inherited = Object.create({ secret: 1 }) as Record<string, unknown>;
    inherited.visible = 2;
    expect(pick('secret,visible,toString,constructor,hasOwnProperty', inherited)).toEqual({ visible: 2 });
    expect(pick('constructor.name,__proto__,toString', {})).toEqual({});
  });

  it('treats values JSON serialises through toJSON (Date, Buffer) as leaves', () => {
    const when = new Date(0);
    const bytes = Buffer.from('hi');
    expect(pick('when,bytes', { when, bytes, x: 1 })).toEqual({ when, bytes });
    expect(pick('when.getTime,bytes.length', { when, bytes })).toEqual({});
    expect(pick('a', [when])).toEqual([when]);
  });

  it('shares selected values with the input and never modifies it', () => {
    const input = deepFreeze(structuredClone(order));
    const out = pick('owner,items.sku', input) as typeof order;
    expect(out.owner).toBe(input.owner);
    expect(out.items[0]).not.toBe(input.items[0]);
    expect(input).toEqual(order);
  });

  it('copies a JSON `__proto__` key as an own property and never pollutes a prototype', () => {
    const value = JSON.parse('{"__proto__":{"polluted":1,"x":2},"constructor":{"prototype":{"polluted":true}},"id":1}');
    const out = pick('__proto__.polluted,constructor.prototype,id', value) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.keys(out)).toEqual(['__proto__', 'constructor', 'id']);
    expect(Object.getOwnPropertyDescriptor(out, '__proto__')).toEqual({ value: { polluted: 1 }, enumerable: true, writable: true, configurable: true });
    expect(JSON.stringify(out)).toBe('{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":true}},"id":1}');
    expect((out as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // Selected whole, the object is the input's own (shared) value.
    const whole = pick('__proto__', value) as Record<string, unknown>;
    expect(Object.getOwnPropertyDescriptor(whole, '__proto__')!.value).toBe(Object.getOwnPropertyDescriptor(value, '__proto__')!.value);
    expect(JSON.parse(JSON.stringify(whole))).toEqual(JSON.parse('{"__proto__":{"polluted":1,"x":2}}'));
  });

  it('walks arrays nested 100 000 deep without recursion', () => {
    let value: unknown = [{ a: 1, b: 2 }];
    for (let i = 0; i < 100_000; i++) value = [value];
    let out = pick('a', value);
    let depth = 0;
    while (Array.isArray(out) && Array.isArray(out[0])) {
      out = out[0];
      depth++;
    }
    expect(depth).toBe(100_000);
    expect(out).toEqual([{ a: 1 }]);
  });

  it('descends a deeply nested object only as far as the selection goes', () => {
    let value: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 100_000; i++) value = { a: value, noise: i };
    const out = pick('a.a.noise,noise', value) as { a: { a: { noise: number } }; noise: number };
    expect(out).toEqual({ a: { a: { noise: 99_997 } }, noise: 99_999 });
    const whole = pick('a.a', value) as { a: { a: unknown } };
    expect(whole.a.a).toBe((value.a as Record<string, unknown>).a);
  });

  it('handles a large array and a wide object', () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => ({ id: i, name: `n${i}`, extra: 'x' }));
    const out = pick('id', rows) as Array<{ id: number }>;
    expect(out).toHaveLength(200_000);
    expect(out[199_999]).toEqual({ id: 199_999 });
    const wide = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, i]));
    expect(pick('k5,k99999,nope', wide)).toEqual({ k5: 5, k99999: 99_999 });
  });

  it('follows object cycles only as deep as the selection, and refuses a cyclic array', () => {
    const node: Record<string, unknown> = { x: 1, y: 2 };
    node.self = node;
    expect(pick('self.self.x', node)).toEqual({ self: { self: { x: 1 } } });
    const loop: unknown[] = [{ a: 1 }];
    loop.push(loop);
    expect(() => pick('a', loop)).toThrow(new TypeError('applyFields: circular array'));
    // The same array twice (not a cycle) is fine.
    const shared = [{ a: 1, b: 1 }];
    expect(pick('a', [shared, shared])).toEqual([[{ a: 1 }], [{ a: 1 }]]);
  });

  it('keeps holes of sparse arrays as undefined (null once serialised)', () => {
    // eslint-disable-next-line no-sparse-arrays
    const out = pick('a', [, { a: 1 }]);
    expect(JSON.stringify(out)).toBe('[null,{"a":1}]');
  });
});

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
