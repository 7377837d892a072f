import { describe, expect, it } from 'vitest';
import { answerFromJson, answerFromStream, completionJson, completionStream } from '../../src/http/chat-completion-answer.js';

const completion = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id: 'x', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, ...choice }], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }, ...extra });

const sse = (events: unknown[], done = true) => events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + (done ? 'data: [DONE]\n\n' : '');
const chunk = (delta: Record<string, unknown>, finish: string | null = null, index = 0) => ({ object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index, delta, finish_reason: finish }] });

describe('reading a cacheable answer', () => {
  it('from a complete JSON completion, with model and usage', () => {
    expect(answerFromJson(completion({ message: { role: 'assistant', content: 'Hi.' }, finish_reason: 'stop' }, { system_fingerprint: 'fp_1' }))).toEqual({
      content: 'Hi.',
      model: 'gpt-4o-mini',
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      systemFingerprint: 'fp_1',
    });
  });

  it('never from a truncated, tool-call, refused, multi-choice, empty or malformed JSON answer', () => {
    const never = [
      completion({ message: { role: 'assistant', content: 'Half an ans' }, finish_reason: 'length' }),
      completion({ message: { role: 'assistant', content: null, tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{}' } }] }, finish_reason: 'tool_calls' }),
      completion({ message: { role: 'assistant', content: 'x', tool_calls: [{ id: 't' }] }, finish_reason: 'stop' }),
      completion({ message: { role: 'assistant', content: 'No.', refusal: 'I cannot help with that.' }, finish_reason: 'stop' }),
      completion({ message: { role: 'assistant', content: '' }, finish_reason: 'stop' }),
      JSON.stringify({ choices: [{ index: 0, message: { content: 'a' }, finish_reason: 'stop' }, { index: 1, message: { content: 'b' }, finish_reason: 'stop' }] }),
      JSON.stringify({ error: { message: 'rate limited' } }),
      '{"choices": [',
      'null',
    ];
    for (const body of never) expect(answerFromJson(body), body).toBeUndefined();
  });

  it('from a stream that ran to [DONE] with finish_reason stop (usage chunk and comments allowed)', () => {
    const body = ': keep-alive\n\n' + sse([chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hello' }), chunk({ content: ', world.' }), chunk({}, 'stop'), { object: 'chat.completion.chunk', choices: [], usage: { total_tokens: 9 } }]);
    expect(answerFromStream(body)).toEqual({ content: 'Hello, world.', model: 'gpt-4o-mini', usage: { total_tokens: 9 } });
    // CRLF framing and "data:" without a space parse too.
    expect(answerFromStream(body.replace(/\n/g, '\r\n').replace(/data: /g, 'data:'))?.content).toBe('Hello, world.');
  });

  it('never from an unfinished, truncated, tool-call, multi-choice or error stream', () => {
    const never = [
      sse([chunk({ content: 'Hello' }), chunk({}, 'stop')], false),
      sse([chunk({ content: 'Hello' })]),
      sse([chunk({ content: 'Hello' }), chunk({}, 'length')]),
      sse([chunk({ tool_calls: [{ index: 0, id: 't', function: { name: 'f' } }] }), chunk({}, 'tool_calls')]),
      sse([chunk({ content: 'a' }), chunk({ content: 'b' }, null, 1), chunk({}, 'stop')]),
      sse([{ error: { message: 'upstream failed' } }]),
      'data: {not json\n\ndata: [DONE]\n\n',
      '',
    ];
    for (const body of never) expect(answerFromStream(body), body).toBeUndefined();
  });
});

describe('writing a cached answer', () => {
  const answer = { content: 'The quick brown fox jumps over the lazy dog, then rests under a tree for a while.', model: 'gpt-4o-mini', usage: { total_tokens: 7 } };

  it('as a chat.completion with a fresh id', () => {
    const a = JSON.parse(completionJson(answer, { model: 'ignored' }).toString());
    const b = JSON.parse(completionJson(answer, {}).toString());
    expect(a).toMatchObject({ object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: answer.content }, finish_reason: 'stop' }], usage: { total_tokens: 7 } });
    expect(a.id).not.toBe(b.id);
    expect(JSON.parse(completionJson({ content: 'x' }, { model: 'asked-model' }).toString()).model).toBe('asked-model');
  });

  it('as an event stream that reads back to the same answer, with usage only when asked', () => {
    const plain = completionStream(answer, {}).toString();
    expect(answerFromStream(plain)).toEqual({ content: answer.content, model: 'gpt-4o-mini' });
    expect(plain.split('\n\n').filter(Boolean).length).toBeGreaterThan(4); // role, several pieces, finish, [DONE]
    expect(plain).not.toContain('usage');
    const withUsage = completionStream(answer, { stream_options: { include_usage: true } }).toString();
    expect(answerFromStream(withUsage)).toEqual(answer);
  });
});
