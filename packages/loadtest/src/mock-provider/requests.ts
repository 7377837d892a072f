/** Validation of chat completion and embeddings request bodies, with OpenAI-style 400 messages. */
import { MAX_EMBEDDING_DIMENSIONS } from './options.js';
import type { MockChatMessage } from './types.js';

export interface BadRequest {
  error: string;
  param: string;
  code: string;
}

export interface ChatRequest {
  model: string;
  messages: MockChatMessage[];
  stream: boolean;
  includeUsage: boolean;
  maxTokens: number | undefined;
}

export interface EmbeddingsRequest {
  model: string;
  inputs: string[];
  dimensions: number | undefined;
  base64: boolean;
}

const bad = (param: string, error: string, code = 'invalid_value'): BadRequest => ({ error, param, code });
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const absent = (v: unknown) => v === undefined || v === null;

function checkModel(body: Record<string, unknown>): BadRequest | undefined {
  if (absent(body.model)) return bad('model', 'You must provide a `model` parameter.', 'missing_required_parameter');
  if (typeof body.model !== 'string' || body.model.length === 0) {
    return bad('model', '`model` must be a non-empty string.', 'invalid_type');
  }
  return undefined;
}

function positiveIntParam(body: Record<string, unknown>, name: string): number | undefined | BadRequest {
  const value = body[name];
  if (absent(value)) return undefined;
  if (!Number.isInteger(value) || (value as number) < 1) return bad(name, `\`${name}\` must be an integer >= 1.`);
  return value as number;
}

export function parseChatRequest(body: Record<string, unknown>): ChatRequest | BadRequest {
  const modelError = checkModel(body);
  if (modelError) return modelError;
  const { messages } = body;
  if (absent(messages)) return bad('messages', 'You must provide a `messages` parameter.', 'missing_required_parameter');
  if (!Array.isArray(messages) || messages.length === 0) {
    return bad('messages', '`messages` must be a non-empty array of messages.', 'invalid_type');
  }
  for (let i = 0; i < messages.length; i++) {
    const m: unknown = messages[i];
    if (!isObject(m)) return bad(`messages[${i}]`, `\`messages[${i}]\` must be an object.`, 'invalid_type');
    if (typeof m.role !== 'string' || m.role.length === 0) {
      return bad(`messages[${i}].role`, `\`messages[${i}].role\` must be a non-empty string.`, 'invalid_type');
    }
    if (!absent(m.content) && typeof m.content !== 'string' && !Array.isArray(m.content)) {
      return bad(`messages[${i}].content`, `\`messages[${i}].content\` must be a string or an array of parts.`, 'invalid_type');
    }
  }
  if (!absent(body.stream) && typeof body.stream !== 'boolean') return bad('stream', '`stream` must be a boolean.', 'invalid_type');
  const streamOptions = body.stream_options;
  if (!absent(streamOptions) && !isObject(streamOptions)) {
    return bad('stream_options', '`stream_options` must be an object.', 'invalid_type');
  }
  const maxTokens = positiveIntParam(body, 'max_tokens');
  if (isBadRequest(maxTokens)) return maxTokens;
  const maxCompletionTokens = positiveIntParam(body, 'max_completion_tokens');
  if (isBadRequest(maxCompletionTokens)) return maxCompletionTokens;
  return {
    model: body.model as string,
    messages: messages as MockChatMessage[],
    stream: body.stream === true,
    includeUsage: isObject(streamOptions) && streamOptions.include_usage === true,
    maxTokens: maxCompletionTokens ?? maxTokens,
  };
}

export function parseEmbeddingsRequest(body: Record<string, unknown>): EmbeddingsRequest | BadRequest {
  const modelError = checkModel(body);
  if (modelError) return modelError;
  const { input } = body;
  if (absent(input)) return bad('input', 'You must provide an `input` parameter.', 'missing_required_parameter');
  const inputs = typeof input === 'string' ? [input] : input;
  if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((s) => typeof s === 'string' && s.length > 0)) {
    return bad('input', '`input` must be a non-empty string or a non-empty array of non-empty strings.', 'invalid_type');
  }
  const dimensions = positiveIntParam(body, 'dimensions');
  if (isBadRequest(dimensions)) return dimensions;
  if (dimensions !== undefined && dimensions > MAX_EMBEDDING_DIMENSIONS) {
    return bad('dimensions', `\`dimensions\` must be <= ${MAX_EMBEDDING_DIMENSIONS}.`);
  }
  const format = body.encoding_format;
  if (!absent(format) && format !== 'float' && format !== 'base64') {
    return bad('encoding_format', "`encoding_format` must be 'float' or 'base64'.");
  }
  return { model: body.model as string, inputs: inputs as string[], dimensions, base64: format === 'base64' };
}

export function isBadRequest(value: unknown): value is BadRequest {
  return isObject(value) && typeof value.error === 'string' && typeof value.param === 'string';
}
