/**
 * Token counting against values published by others, not the library's own output:
 * - [CB] OpenAI cookbook "How to count tokens with tiktoken" (examples/How_to_count_tokens_with_tiktoken.ipynb):
 *   token ids / counts of its example strings for cl100k_base and o200k_base (§3, §5); the chat example
 *   (§6) that the OpenAI API counted as 129 prompt tokens on gpt-3.5-turbo / gpt-4-0613 / gpt-4 and 124 on
 *   gpt-4o / gpt-4o-mini (127 on gpt-3.5-turbo-0301 in the notebook's earlier revision); the tools example
 *   (§7) counted by the API as 105 (gpt-3.5-turbo, gpt-4) and 101 (gpt-4o, gpt-4o-mini).
 * - [HM] hmarr/openai-chat-tokens tests/token-counts.test.ts: prompt_tokens the gpt-3.5-turbo API returned
 *   for small chats ("hello" -> 8, "hello world" -> 9, a three-message chat -> 27).
 * - [VG] OpenAI vision guide "Calculating costs": 1024x1024 high -> 765, 2048x4096 high -> 1105, low -> 85
 *   (gpt-4o); 32 px patches: 1024x1024 -> 1024 patches, 1800x2400 -> 1452 patches.
 * - [PC] OpenAI prompt-caching guide's usage example: prompt_tokens 2006, completion_tokens 300,
 *   cached_tokens 1920.
 */
import { describe, expect, test } from 'vitest';
import { encodeWith, loadedEncodings, modelTokenizer } from '../../src/ai/model-encodings.js';
import {
  countChatTokens,
  countTextTokens,
  estimateRequestTokens,
  imageSizeFromDataUrl,
  imageTokens,
  requestKind,
  StreamUsageCounter,
  usageFromResponse,
  usageFromStreamChunks,
} from '../../src/ai/token-counter.js';
import { imageSize } from '../../src/ai/chat-tokens.js';

// Must stay the first test of the file (each test file runs in its own process): tables load lazily, one
// encoding at a time.
test('a table loads only when a model needs it, and only that one', () => {
  expect(loadedEncodings()).toEqual([]);
  modelTokenizer('gpt-4o'); // resolving a model loads nothing
  expect(loadedEncodings()).toEqual([]);
  countTextTokens('gpt-4', 'hello');
  expect(loadedEncodings()).toEqual(['cl100k_base']);
  countTextTokens('gpt-4o', 'hello');
  expect(loadedEncodings().sort()).toEqual(['cl100k_base', 'o200k_base']);
});

describe('text', () => {
  // [CB] §3 and §5: token ids per encoding.
  const cases: Array<[string, number[], number[]]> = [
    ['tiktoken is great!', [83, 1609, 5963, 374, 2294, 0], [83, 8251, 2488, 382, 2212, 0]],
    ['antidisestablishmentarianism', [519, 85342, 34500, 479, 8997, 2191], [493, 129901, 376, 160388, 21203, 2367]],
    ['2 + 2 = 4', [17, 489, 220, 17, 284, 220, 19], [17, 659, 220, 17, 314, 220, 19]],
    ['お誕生日おめでとう', [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699], [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]],
  ];
  test.each(cases)('%s: the cookbook ids in cl100k_base and o200k_base', (text, cl100k, o200k) => {
    expect(encodeWith('cl100k_base', text)).toEqual(cl100k);
    expect(encodeWith('o200k_base', text)).toEqual(o200k);
    expect(countTextTokens('gpt-4', text)).toEqual({ tokens: cl100k.length, exact: true, encoding: 'cl100k_base', family: 'openai' });
    expect(countTextTokens('gpt-4o', text)).toEqual({ tokens: o200k.length, exact: true, encoding: 'o200k_base', family: 'openai' });
  });

  test('special-token strings in user text are plain text, never a special token or a throw', () => {
    const count = countTextTokens('gpt-4o', 'a <|endoftext|> b');
    expect(count.tokens).toBeGreaterThan(3); // "<|endoftext|>" spelled out takes several tokens
    expect(countTextTokens('gpt-4', '<|im_start|>').tokens).toBeGreaterThan(1);
  });

  test('empty and non-string input', () => {
    expect(countTextTokens('gpt-4o', '').tokens).toBe(0);
    expect(countTextTokens('gpt-4o', undefined as unknown as string).tokens).toBe(0);
    expect(countTextTokens('gpt-4o', 42 as unknown as string).tokens).toBe(1);
  });

  test('other families are estimates: o200k x family factor, or characters / 4 x factor', () => {
    // "tiktoken is great!" is 6 o200k tokens [CB]; Claude's factor is 1.2 -> ceil(7.2) = 8.
    expect(countTextTokens('claude-3-5-sonnet-20241022', 'tiktoken is great!')).toEqual({ tokens: 8, exact: false, encoding: 'o200k_base', family: 'anthropic' });
    // 18 characters / 4 = 4.5, x 1.2 = 5.4 -> 6.
    expect(countTextTokens('claude-sonnet-4', 'tiktoken is great!', { estimator: 'chars' })).toEqual({ tokens: 6, exact: false, encoding: 'chars', family: 'anthropic' });
    expect(countTextTokens('gemini-2.5-pro', 'x').family).toBe('google');
    expect(countTextTokens('meta-llama/Llama-3.3-70B-Instruct-Turbo', 'x').family).toBe('meta');
    expect(countTextTokens('mistral-large-latest', 'x').family).toBe('mistral');
    expect(countTextTokens('some-new-model', 'x')).toMatchObject({ exact: false, family: 'unknown' });
  });
});

describe('model -> encoding', () => {
  const o200k = [
    'gpt-4o', 'gpt-4o-2024-08-06', 'gpt-4o-mini', 'chatgpt-4o-latest', 'gpt-4.1', 'gpt-4.1-mini-2025-04-14', 'gpt-4.1-nano',
    'o1', 'o1-mini', 'o3', 'o3-mini-2025-01-31', 'o4-mini', 'gpt-5', 'gpt-5-mini', 'gpt-5-nano', 'gpt-5.1', 'gpt-oss-120b',
    'ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123', 'azure/gpt-4o', 'openai/gpt-4.1', 'GPT-4O',
  ];
  const cl100k = [
    'gpt-4', 'gpt-4-0613', 'gpt-4-32k', 'gpt-4-turbo', 'gpt-4-turbo-2024-04-09', 'gpt-3.5-turbo', 'gpt-3.5-turbo-0125',
    'gpt-35-turbo', 'text-embedding-3-small', 'text-embedding-3-large', 'text-embedding-ada-002', 'ft:gpt-3.5-turbo-0125:org::x',
  ];
  test.each(o200k)('%s -> o200k_base (exact)', (model) => {
    expect(modelTokenizer(model)).toMatchObject({ encoding: 'o200k_base', exact: true, family: 'openai' });
  });
  test.each(cl100k)('%s -> cl100k_base (exact)', (model) => {
    expect(modelTokenizer(model)).toMatchObject({ encoding: 'cl100k_base', exact: true, family: 'openai' });
  });
  test('snapshots and fine-tunes resolve to their base model', () => {
    expect(modelTokenizer('gpt-4o-2024-08-06').base).toBe('gpt-4o');
    expect(modelTokenizer('ft:gpt-4o-mini-2024-07-18:org::id').base).toBe('gpt-4o-mini');
    expect(modelTokenizer('anthropic.claude-3-5-sonnet-20241022-v2:0').base).toBe('claude-3-5-sonnet');
    expect(modelTokenizer('deepseek-v3').base).toBe('deepseek-v3');
  });
});

describe('chat', () => {
  // [CB] §6 example_messages.
  const example = [
    { role: 'system', content: 'You are a helpful, pattern-following assistant that translates corporate jargon into plain English.' },
    { role: 'system', name: 'example_user', content: 'New synergies will help drive top-line growth.' },
    { role: 'system', name: 'example_assistant', content: 'Things working well together will increase revenue.' },
    { role: 'system', name: 'example_user', content: "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage." },
    { role: 'system', name: 'example_assistant', content: "Let's talk later when we're less busy about how to do better." },
    { role: 'user', content: "This late pivot means we don't have time to boil the ocean for the client deliverable." },
  ];

  test.each([
    ['gpt-3.5-turbo', 129],
    ['gpt-3.5-turbo-0125', 129],
    ['gpt-4-0613', 129],
    ['gpt-4', 129],
    ['gpt-4o', 124],
    ['gpt-4o-2024-08-06', 124],
    ['gpt-4o-mini', 124],
    ['gpt-3.5-turbo-0301', 127],
  ] as const)('the cookbook example on %s: %i prompt tokens (as the API counted)', (model, expected) => {
    expect(countChatTokens(model, example)).toMatchObject({ tokens: expected, exact: true });
  });

  test('small chats the gpt-3.5-turbo API counted [HM]', () => {
    expect(countChatTokens('gpt-3.5-turbo', [{ role: 'user', content: 'hello' }]).tokens).toBe(8);
    expect(countChatTokens('gpt-3.5-turbo', [{ role: 'user', content: 'hello world' }]).tokens).toBe(9);
    expect(countChatTokens('gpt-3.5-turbo', [{ role: 'system', content: 'hello' }]).tokens).toBe(8);
    expect(
      countChatTokens('gpt-3.5-turbo', [
        { role: 'system', content: "# Important: you're the best robot" },
        { role: 'user', content: 'hello robot' },
        { role: 'assistant', content: 'hello world' },
      ]).tokens,
    ).toBe(27);
  });

  test('content arrays of text parts count like the joined text parts', () => {
    // 3 per message + "user" (1) + "hello" (1) + " world" (1) + 3 priming = 9, as "hello world" [HM].
    expect(countChatTokens('gpt-3.5-turbo', [{ role: 'user', content: [{ type: 'text', text: 'hello' }, { type: 'text', text: ' world' }] }])).toMatchObject({ tokens: 9, exact: true });
  });

  test('a name adds its tokens plus one', () => {
    // 3 + "user" 1 + "hello" 1 + name "x" 1 + 1 + 3 = 10
    expect(countChatTokens('gpt-4o', [{ role: 'user', name: 'x', content: 'hello' }]).tokens).toBe(10);
  });

  test('the cookbook tools example: 105 on gpt-3.5-turbo / gpt-4, 101 on gpt-4o / gpt-4o-mini', () => {
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_current_weather',
          description: 'Get the current weather in a given location',
          parameters: {
            type: 'object',
            properties: {
              location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' },
              unit: { type: 'string', description: 'The unit of temperature to return', enum: ['celsius', 'fahrenheit'] },
            },
            required: ['location'],
          },
        },
      },
    ];
    const messages = [
      { role: 'system', content: 'You are a helpful assistant that can answer to questions about the weather.' },
      { role: 'user', content: "What's the weather like in San Francisco?" },
    ];
    expect(countChatTokens('gpt-3.5-turbo', messages, { tools }).tokens).toBe(105);
    expect(countChatTokens('gpt-4', messages, { tools }).tokens).toBe(105);
    expect(countChatTokens('gpt-4o', messages, { tools }).tokens).toBe(101);
    expect(countChatTokens('gpt-4o-mini', messages, { tools }).tokens).toBe(101);
    // The same definitions as a chat request body.
    expect(estimateRequestTokens('gpt-4o', { model: 'gpt-4o', messages, tools })).toMatchObject({ inputTokens: 101, kind: 'chat' });
  });

  test('nested tool schemas, tool calls and tool results are counted but marked approximate', () => {
    const nested = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'object', properties: { b: { type: 'string' } } } } } } }];
    const base = countChatTokens('gpt-4o', [{ role: 'user', content: 'hi' }]);
    const withNested = countChatTokens('gpt-4o', [{ role: 'user', content: 'hi' }], { tools: nested });
    expect(withNested.exact).toBe(false);
    expect(withNested.tokens).toBeGreaterThan(base.tokens + 12);
    const history = countChatTokens('gpt-4o', [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: '{"temp":21}' },
    ]);
    expect(history.exact).toBe(false);
    expect(history.tokens).toBeGreaterThan(20);
  });

  test('bad shapes do not throw: they count what they can and say it is not exact', () => {
    expect(countChatTokens('gpt-4o', null as unknown as unknown[])).toMatchObject({ tokens: 3, exact: true });
    expect(countChatTokens('gpt-4o', [null, 5, { role: 'user', content: { weird: true } }, { role: 'user', content: [null, 7, { type: 'input_audio', input_audio: { data: 'x' } }] }])).toMatchObject({ exact: false });
    const cyclic: Record<string, unknown> = { role: 'user' };
    cyclic.content = { self: cyclic };
    expect(() => countChatTokens('gpt-4o', [cyclic])).not.toThrow();
  });
});

describe('images', () => {
  const gpt4o = { kind: 'tiles', base: 85, tile: 170 } as const;

  test('tile formula: the vision guide examples [VG]', () => {
    expect(imageTokens(gpt4o, { width: 1024, height: 1024 })).toBe(765);
    expect(imageTokens(gpt4o, { width: 2048, height: 4096 })).toBe(1105);
    expect(imageTokens(gpt4o, { width: 4096, height: 8192 }, 'low')).toBe(85);
    // 500 x 500 fits one tile: 85 + 170.
    expect(imageTokens(gpt4o, { width: 500, height: 500 })).toBe(255);
  });

  test('patch formula: the vision guide examples [VG]', () => {
    expect(imageTokens({ kind: 'patches', multiplier: 1 }, { width: 1024, height: 1024 })).toBe(1024);
    expect(imageTokens({ kind: 'patches', multiplier: 1 }, { width: 1800, height: 2400 })).toBe(1452);
    // gpt-4.1-mini's multiplier 1.62: 1024 x 1.62 = 1658.88 -> 1659.
    expect(imageTokens(modelTokenizer('gpt-4.1-mini').image, { width: 1024, height: 1024 })).toBe(1659);
  });

  test('per-model image rules', () => {
    expect(modelTokenizer('gpt-4o-mini').image).toEqual({ kind: 'tiles', base: 2833, tile: 5667 });
    expect(modelTokenizer('gpt-4.1').image).toEqual(gpt4o);
    expect(modelTokenizer('o1').image).toEqual({ kind: 'tiles', base: 75, tile: 150 });
    expect(modelTokenizer('o4-mini').image).toEqual({ kind: 'patches', multiplier: 1.72 });
    expect(modelTokenizer('gpt-5').image).toEqual({ kind: 'tiles', base: 70, tile: 140 });
    expect(modelTokenizer('gpt-5-nano').image).toEqual({ kind: 'patches', multiplier: 2.46 });
  });

  const png = (width: number, height: number) => {
    const b = Buffer.alloc(33);
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0);
    b.writeUInt32BE(13, 8);
    b.write('IHDR', 12, 'latin1');
    b.writeUInt32BE(width, 16);
    b.writeUInt32BE(height, 20);
    return b;
  };
  const jpeg = (width: number, height: number) => {
    const app0 = Buffer.concat([Buffer.from([0xff, 0xe0, 0x00, 0x10]), Buffer.alloc(14)]);
    const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 0xff, width >> 8, width & 0xff, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    return Buffer.concat([Buffer.from([0xff, 0xd8]), app0, sof, Buffer.alloc(16)]);
  };

  test('dimensions are read from PNG, JPEG, GIF and WebP data', () => {
    expect(imageSize(png(1024, 768))).toEqual({ width: 1024, height: 768 });
    expect(imageSize(jpeg(640, 480))).toEqual({ width: 640, height: 480 });
    const gif = Buffer.alloc(16);
    gif.write('GIF89a', 0, 'latin1');
    gif.writeUInt16LE(320, 6);
    gif.writeUInt16LE(200, 8);
    expect(imageSize(gif)).toEqual({ width: 320, height: 200 });
    const webp = Buffer.alloc(32);
    webp.write('RIFF', 0, 'latin1');
    webp.write('WEBPVP8X', 8, 'latin1');
    webp.writeUIntLE(799, 24, 3);
    webp.writeUIntLE(599, 27, 3);
    expect(imageSize(webp)).toEqual({ width: 800, height: 600 });
    expect(imageSize(Buffer.from('not an image'))).toBeUndefined();
    expect(imageSizeFromDataUrl(`data:image/jpeg;base64,${jpeg(3000, 2000).toString('base64')}`)).toEqual({ width: 3000, height: 2000 });
    expect(imageSizeFromDataUrl('https://example.com/cat.png')).toBeUndefined();
    expect(imageSizeFromDataUrl('data:text/plain,hello')).toBeUndefined();
  });

  test('image parts in chat: data URLs exact, remote URLs estimated', () => {
    const image = (url: string, detail?: string) => [{ role: 'user', content: [{ type: 'image_url', image_url: { url, ...(detail ? { detail } : {}) } }] }];
    const dataUrl = `data:image/png;base64,${png(1024, 1024).toString('base64')}`;
    // 3 per message + "user" 1 + 765 [VG] + 3 priming
    expect(countChatTokens('gpt-4o', image(dataUrl))).toMatchObject({ tokens: 772, exact: true });
    expect(countChatTokens('gpt-4o', image(dataUrl, 'low'))).toMatchObject({ tokens: 92, exact: true });
    expect(countChatTokens('gpt-4o', image('https://example.com/cat.png'))).toMatchObject({ tokens: 772, exact: false });
    expect(countChatTokens('gpt-4o', image('https://example.com/cat.png', 'low'))).toMatchObject({ tokens: 92, exact: true });
    expect(countChatTokens('gpt-4o', image('https://example.com/cat.png'), { defaultImageSize: { width: 2048, height: 4096 } }).tokens).toBe(3 + 1 + 1105 + 3);
  });
});

describe('request bodies', () => {
  const hello = [{ role: 'user', content: 'hello' }];

  test('chat: input + max_completion_tokens (or max_tokens) x n, for budget reservation', () => {
    // 8 prompt tokens for "hello" [HM]
    expect(estimateRequestTokens('gpt-3.5-turbo', { model: 'gpt-3.5-turbo', messages: hello, max_tokens: 100 })).toMatchObject({
      kind: 'chat',
      inputTokens: 8,
      maxOutputTokens: 100,
      outputCapped: true,
      reserveTokens: 108,
      exact: true,
    });
    expect(estimateRequestTokens('gpt-3.5-turbo', { messages: hello, max_tokens: 100, max_completion_tokens: 50, n: 3 })).toMatchObject({ maxOutputTokens: 150, reserveTokens: 158 });
    expect(estimateRequestTokens('gpt-3.5-turbo', { messages: hello })).toMatchObject({ maxOutputTokens: 0, outputCapped: false, reserveTokens: 8 });
    expect(estimateRequestTokens('gpt-3.5-turbo', { messages: hello }, { defaultMaxOutputTokens: 1000 })).toMatchObject({ reserveTokens: 1008 });
  });

  test('embeddings: the texts, no framing and no output', () => {
    // [CB]: 6 + 7 cl100k tokens
    expect(estimateRequestTokens('text-embedding-3-small', { model: 'text-embedding-3-small', input: ['tiktoken is great!', '2 + 2 = 4'] })).toMatchObject({
      kind: 'embeddings',
      inputTokens: 13,
      maxOutputTokens: 0,
      reserveTokens: 13,
      exact: true,
    });
    expect(estimateRequestTokens('text-embedding-3-small', { input: 'tiktoken is great!' }).inputTokens).toBe(6);
    // Token-id input counts its ids.
    expect(estimateRequestTokens('text-embedding-3-small', { input: [[1, 2, 3], [4]] }).inputTokens).toBe(4);
    expect(estimateRequestTokens('text-embedding-3-small', { input: [83, 1609] }).inputTokens).toBe(2);
  });

  test('Responses API, legacy completions, Anthropic and Gemini bodies', () => {
    // instructions as a developer message: 3 + "developer" (1) + "hello" (1), input: 3 + "user" 1 + "hello" 1, + 3
    const responses = estimateRequestTokens('gpt-4o', { model: 'gpt-4o', instructions: 'hello', input: 'hello', max_output_tokens: 64 });
    expect(responses).toMatchObject({ kind: 'responses', maxOutputTokens: 64 });
    expect(responses.inputTokens).toBe(countChatTokens('gpt-4o', [{ role: 'developer', content: 'hello' }, { role: 'user', content: 'hello' }]).tokens);
    expect(estimateRequestTokens('gpt-3.5-turbo-instruct', { prompt: 'tiktoken is great!' })).toMatchObject({ kind: 'completions', inputTokens: 6, maxOutputTokens: 16 });
    const anthropic = estimateRequestTokens('claude-sonnet-4-5', { model: 'claude-sonnet-4-5', system: 'Be brief.', messages: hello, max_tokens: 256 });
    expect(anthropic).toMatchObject({ kind: 'anthropic', exact: false, maxOutputTokens: 256 });
    expect(anthropic.inputTokens).toBeGreaterThan(countChatTokens('claude-sonnet-4-5', hello).tokens);
    const gemini = estimateRequestTokens('gemini-2.5-flash', { contents: [{ role: 'user', parts: [{ text: 'hello' }] }], generationConfig: { maxOutputTokens: 10 } });
    expect(gemini).toMatchObject({ kind: 'gemini', exact: false, maxOutputTokens: 10 });
    expect(requestKind('gpt-4o', { input: 'x', dimensions: 256 })).toBe('embeddings');
    expect(requestKind('gpt-4o', 'nonsense')).toBe('unknown');
  });

  test('bad bodies give an inexact estimate instead of throwing', () => {
    expect(estimateRequestTokens('gpt-4o', null)).toMatchObject({ kind: 'unknown', exact: false });
    expect(estimateRequestTokens('gpt-4o', { messages: hello, max_tokens: -5, n: 'x' })).toMatchObject({ maxOutputTokens: 0 });
    expect(estimateRequestTokens('gpt-4o', { messages: 'not an array' }).kind).toBe('unknown');
  });
});

describe('reported usage', () => {
  test('OpenAI chat usage with cached tokens [PC]', () => {
    const body = { usage: { prompt_tokens: 2006, completion_tokens: 300, total_tokens: 2306, prompt_tokens_details: { cached_tokens: 1920 } } };
    const expected = { inputTokens: 2006, outputTokens: 300, cachedInputTokens: 1920 };
    expect(usageFromResponse(body)).toEqual(expected);
    expect(usageFromResponse(JSON.stringify(body))).toEqual(expected);
    expect(usageFromResponse(Buffer.from(JSON.stringify(body)))).toEqual(expected);
  });

  test('embeddings, Responses API, Anthropic and Gemini usage', () => {
    expect(usageFromResponse({ usage: { prompt_tokens: 8, total_tokens: 8 } })).toEqual({ inputTokens: 8, outputTokens: 0 });
    expect(usageFromResponse({ usage: { input_tokens: 100, input_tokens_details: { cached_tokens: 64 }, output_tokens: 20, output_tokens_details: { reasoning_tokens: 12 } } })).toEqual({
      inputTokens: 100,
      outputTokens: 20,
      cachedInputTokens: 64,
    });
    // Anthropic's input_tokens excludes cache reads and writes: all three are input.
    expect(usageFromResponse({ usage: { input_tokens: 50, cache_read_input_tokens: 1000, cache_creation_input_tokens: 200, output_tokens: 30 } })).toEqual({
      inputTokens: 1250,
      outputTokens: 30,
      cachedInputTokens: 1000,
    });
    // Gemini: thinking tokens are billed as output.
    expect(usageFromResponse({ usageMetadata: { promptTokenCount: 100, candidatesTokenCount: 20, thoughtsTokenCount: 5, cachedContentTokenCount: 40 } })).toEqual({
      inputTokens: 100,
      outputTokens: 25,
      cachedInputTokens: 40,
    });
  });

  test('no usage, bad JSON and bad values give undefined or zeros, never a throw', () => {
    expect(usageFromResponse({ choices: [] })).toBeUndefined();
    expect(usageFromResponse('{not json')).toBeUndefined();
    expect(usageFromResponse(null)).toBeUndefined();
    expect(usageFromResponse({ usage: { prompt_tokens: -1, completion_tokens: 'x' } })).toBeUndefined();
  });
});

describe('streams', () => {
  const request = {
    model: 'gpt-4o',
    stream: true,
    messages: [{ role: 'user', content: 'hello' }],
  };
  const chunk = (content: string, extra: Record<string, unknown> = {}) => ({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }], ...extra });

  test('the usage chunk wins when the stream has one', () => {
    const result = usageFromStreamChunks(
      [chunk('tiktoken'), chunk(' is great!'), { choices: [], usage: { prompt_tokens: 9, completion_tokens: 6, prompt_tokens_details: { cached_tokens: 0 } } }],
      { model: 'gpt-4o', request },
    );
    expect(result).toEqual({ usage: { inputTokens: 9, outputTokens: 6 }, reported: true, exact: true });
  });

  test('without a usage chunk the streamed text is counted, input from the request', () => {
    // "tiktoken is great!" is 6 o200k tokens [CB]; the request is 3 + 1 + 1 + 3 = 8.
    const result = usageFromStreamChunks([chunk('tiktoken'), chunk(' is great!'), { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }], { model: 'gpt-4o', request });
    expect(result).toEqual({ usage: { inputTokens: 8, outputTokens: 6 }, reported: false, exact: false });
    expect(usageFromStreamChunks([chunk('tiktoken')], { model: 'gpt-4o', inputTokens: 500 }).usage.inputTokens).toBe(500);
  });

  test('an aborted stream is billed for what was produced', () => {
    const counter = new StreamUsageCounter({ model: 'gpt-4o', request });
    // SSE bytes, split mid-event: the partial event is read when its end arrives (or when the stream ends).
    counter.push(Buffer.from(`data: ${JSON.stringify(chunk('tiktoken'))}\n\ndata: ${JSON.stringify(chunk(' is'))}`));
    counter.push(`\n\ndata: ${JSON.stringify(chunk(' great!')).slice(0, 20)}`); // cut off: never completes
    expect(counter.text).toBe('tiktoken is');
    const result = counter.result();
    expect(result.reported).toBe(false);
    expect(result.usage).toEqual({ inputTokens: 8, outputTokens: encodeWith('o200k_base', 'tiktoken is').length });
  });

  test('SSE text with [DONE] and several choices (each counted on its own)', () => {
    const sse = [chunk('tiktoken is great!'), { choices: [{ index: 1, delta: { content: '2 + 2 = 4' } }] }].map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n';
    expect(usageFromStreamChunks(sse, { model: 'gpt-4o', inputTokens: 1 }).usage.outputTokens).toBe(6 + 7);
  });

  test('Anthropic events: message_start input, message_delta output; a cut stream counts its text', () => {
    const start = { type: 'message_start', message: { usage: { input_tokens: 25, cache_read_input_tokens: 0, cache_creation_input_tokens: 0, output_tokens: 1 } } };
    const delta = { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'tiktoken is great!' } };
    const end = { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 15 } };
    expect(usageFromStreamChunks([start, delta, end], { model: 'claude-sonnet-4-5' })).toEqual({ usage: { inputTokens: 25, outputTokens: 15 }, reported: true, exact: true });
    // Cut before message_delta: the reported input stays; the output is the text estimated (8, see the estimate test).
    expect(usageFromStreamChunks([start, delta], { model: 'claude-sonnet-4-5' })).toEqual({ usage: { inputTokens: 25, outputTokens: 8 }, reported: false, exact: false });
  });

  test('Responses API and Gemini streams', () => {
    const completed = { type: 'response.completed', response: { usage: { input_tokens: 12, output_tokens: 6, input_tokens_details: { cached_tokens: 0 } } } };
    expect(usageFromStreamChunks([{ type: 'response.output_text.delta', delta: 'tiktoken is great!' }, completed], { model: 'gpt-4o' }).usage).toEqual({ inputTokens: 12, outputTokens: 6 });
    expect(usageFromStreamChunks([{ type: 'response.output_text.delta', delta: 'tiktoken is great!' }], { model: 'gpt-4o' }).usage.outputTokens).toBe(6);
    const gemini = [
      { candidates: [{ content: { parts: [{ text: 'hi' }] } }], usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 1 } },
      { candidates: [{ content: { parts: [{ text: ' there' }] } }], usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 2 } },
    ];
    expect(usageFromStreamChunks(gemini, { model: 'gemini-2.5-flash' })).toMatchObject({ usage: { inputTokens: 4, outputTokens: 2 }, reported: true });
  });

  test('garbage chunks are ignored', () => {
    expect(usageFromStreamChunks([null, 7, 'data: {broken\n\n', ': comment\n\n', '[DONE]'], { model: 'gpt-4o' })).toEqual({ usage: { inputTokens: 0, outputTokens: 0 }, reported: false, exact: false });
  });
});
