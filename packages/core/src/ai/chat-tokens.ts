/**
 * Chat framing, content parts, images and tool definitions: how many prompt tokens a chat request costs.
 *
 * Sources (and where they are approximate):
 * - Message framing: OpenAI cookbook "How to count tokens with tiktoken" §6 — 3 tokens per message, +1 when a
 *   message has a `name`, +3 priming the reply. OpenAI verified it against the API (129 prompt tokens for
 *   its example on gpt-3.5-turbo / gpt-4, 124 on gpt-4o / gpt-4o-mini) and still calls it an estimate.
 * - Tools: the same cookbook §7 (function init 7 for gpt-4o-family / 10 for gpt-3.5 / gpt-4, 3 per
 *   property set, 3 per property, -3 + 3 per enum value, 12 at the end), measured against the API for a
 *   flat schema. APPROXIMATE: nested objects / arrays of objects (counted here property by property like
 *   top-level ones), `tool_choice`, `response_format` schemas, tool calls and tool results in the history.
 * - Images: OpenAI vision guide "Calculating costs" (tiles: fit 2048², short side 768, 85 + 170 per 512 px
 *   tile for gpt-4o / 4.1 / 4.5; 2833 + 5667 for gpt-4o-mini; 75 + 150 for o1 / o3; 70 + 140 for gpt-5;
 *   `low` detail = the base; patches: 32 px patches capped at 1536 times 1.62 / 2.46 / 1.72 for the
 *   mini / nano / o4-mini models). Dimensions are read from data URLs (PNG, JPEG, GIF, WebP); a remote URL
 *   is estimated as `defaultImageSize` (1024 x 1024: 765 tokens on gpt-4o) and makes the count inexact.
 * - Audio and file parts are not counted (they are billed by other meters) and make the count inexact.
 */
import { countWith, modelTokenizer, type EncodingName, type ImageRule, type ModelTokenizer } from './model-encodings.js';

/** How texts are counted for models without an exact tokenizer: o200k_base x factor, or characters / 4 x factor. */
export type Estimator = 'tokenizer' | 'chars';

export interface ImageSize {
  width: number;
  height: number;
}

export interface ChatCountOptions {
  /** `tools` of the request (`{ type: 'function', function: { name, description, parameters } }`, or Anthropic's `{ name, description, input_schema }`). */
  tools?: readonly unknown[];
  /** Legacy `functions` of the request. */
  functions?: readonly unknown[];
  /** `tool_choice` / `function_call`: a forced function adds its name (approximate). */
  toolChoice?: unknown;
  /** Size assumed for images whose size cannot be read (remote URLs). Default 1024 x 1024. */
  defaultImageSize?: ImageSize;
  /** Non-OpenAI models: 'tokenizer' (o200k_base x family factor, default) or 'chars' (characters / 4 x factor, loads no table). */
  estimator?: Estimator;
}

export interface TokenCount {
  tokens: number;
  /** True when counted with the model's own tokenizer and documented framing only (no approximated parts). */
  exact: boolean;
  /** The table counted with ('chars' when the characters / 4 estimator was used). */
  encoding: EncodingName | 'chars';
  /** 'openai', or the family the estimate was made for ('anthropic', 'google', 'meta', 'mistral', 'unknown', ...). */
  family: string;
}

const DEFAULT_IMAGE: ImageSize = { width: 1024, height: 1024 };

/** Running total: text tokens (scaled by the family factor at the end) plus fixed framing tokens. */
export class Tally {
  text = 0;
  fixed = 0;
  exact: boolean;
  readonly info: ModelTokenizer;
  readonly estimator: Estimator;
  private readonly useChars: boolean;

  constructor(model: string, estimator: Estimator = 'tokenizer') {
    this.info = modelTokenizer(model);
    this.estimator = estimator;
    this.useChars = !this.info.exact && estimator === 'chars';
    this.exact = this.info.exact;
  }

  /** Counts `text` (raw, before the factor). */
  add(text: unknown): void {
    if (typeof text !== 'string' || text === '') return;
    this.text += this.useChars ? text.length / 4 : countWith(this.info.encoding, text);
  }

  result(): TokenCount {
    const text = this.info.exact ? this.text : Math.ceil(this.text * this.info.factor);
    return {
      tokens: Math.max(0, Math.round(text + this.fixed)),
      exact: this.exact,
      encoding: this.useChars ? 'chars' : this.info.encoding,
      family: this.info.family,
    };
  }
}

/** Prompt tokens of `messages` (plus tool definitions) for `model`, including the reply priming. */
export function countChatTokens(model: string, messages: readonly unknown[], options: ChatCountOptions = {}): TokenCount {
  const tally = new Tally(model, options.estimator);
  addMessages(tally, messages, options);
  return tally.result();
}

/** Adds messages, tools and the reply priming to `tally`. */
export function addMessages(tally: Tally, messages: readonly unknown[], options: ChatCountOptions = {}): void {
  const { info } = tally;
  const list = Array.isArray(messages) ? messages : [];
  for (const message of list) addMessage(tally, message, options);
  tally.fixed += info.replyPriming;
  const tools = [...(Array.isArray(options.tools) ? options.tools : []), ...(Array.isArray(options.functions) ? options.functions : [])];
  if (tools.length > 0) addTools(tally, tools);
  addToolChoice(tally, options.toolChoice);
}

function addMessage(tally: Tally, message: unknown, options: ChatCountOptions): void {
  const { info } = tally;
  tally.fixed += info.tokensPerMessage;
  if (typeof message === 'string') {
    // A bare string where a message belongs (some SDKs accept it): counted as a user message.
    tally.add('user');
    tally.add(message);
    return;
  }
  if (message === null || typeof message !== 'object') {
    tally.exact = false;
    return;
  }
  const m = message as Record<string, unknown>;
  tally.add(typeof m.role === 'string' ? m.role : typeof m.type === 'string' && m.type !== 'message' ? '' : 'user');
  addContent(tally, m.content, options);
  if (typeof m.name === 'string' && m.name !== '') {
    tally.add(m.name);
    tally.fixed += info.tokensPerName;
  }
  if (typeof m.refusal === 'string') tally.add(m.refusal);
  // Tool calls and results in the history: their rendering is not documented (approximate, like
  // openai-chat-tokens: name + arguments + 3 per call).
  if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
    tally.exact = false;
    for (const call of m.tool_calls) {
      const fn = (call as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
      tally.add(fn?.name);
      tally.add(fn?.arguments);
      tally.fixed += 3;
    }
  }
  if (m.function_call && typeof m.function_call === 'object') {
    tally.exact = false;
    const fn = m.function_call as { name?: unknown; arguments?: unknown };
    tally.add(fn.name);
    tally.add(fn.arguments);
    tally.fixed += 3;
  }
  if (m.role === 'tool' || m.role === 'function') tally.exact = false;
  // Responses API input items that are not messages.
  if (m.type === 'function_call') {
    tally.exact = false;
    tally.add(m.name);
    tally.add(m.arguments);
  } else if (m.type === 'function_call_output') {
    tally.exact = false;
    tally.add(typeof m.output === 'string' ? m.output : safeJson(m.output));
  }
}

/** A message's `content`: a string, or an array of parts (OpenAI chat / Responses, Anthropic blocks). */
export function addContent(tally: Tally, content: unknown, options: ChatCountOptions): void {
  if (content === undefined || content === null) return;
  if (typeof content === 'string') {
    tally.add(content);
    return;
  }
  if (!Array.isArray(content)) {
    tally.exact = false;
    tally.add(safeJson(content));
    return;
  }
  for (const part of content) addPart(tally, part, options);
}

function addPart(tally: Tally, part: unknown, options: ChatCountOptions): void {
  if (typeof part === 'string') {
    tally.add(part);
    return;
  }
  if (part === null || typeof part !== 'object') return;
  const p = part as Record<string, unknown>;
  switch (p.type) {
    case 'text':
    case 'input_text':
    case 'output_text':
      tally.add(p.text);
      return;
    case 'refusal':
      tally.add(p.refusal);
      return;
    case 'image_url': {
      const image = p.image_url as { url?: unknown; detail?: unknown } | string | undefined;
      const url = typeof image === 'string' ? image : image?.url;
      addImage(tally, typeof url === 'string' ? url : undefined, typeof image === 'object' ? image?.detail : undefined, options);
      return;
    }
    case 'input_image':
      addImage(tally, typeof p.image_url === 'string' ? p.image_url : undefined, p.detail, options);
      return;
    case 'image': {
      // Anthropic: { type: 'image', source: { type: 'base64', data } | { type: 'url', url } }
      const source = p.source as { type?: unknown; data?: unknown; url?: unknown } | undefined;
      const data = source?.type === 'base64' && typeof source.data === 'string' ? `data:;base64,${source.data}` : undefined;
      addImage(tally, data ?? (typeof source?.url === 'string' ? source.url : undefined), undefined, options);
      return;
    }
    case 'tool_use':
      tally.exact = false;
      tally.add(p.name);
      tally.add(safeJson(p.input));
      return;
    case 'tool_result':
      tally.exact = false;
      addContent(tally, p.content, options);
      return;
    default:
      // input_audio, file, input_file, document, thinking, ...: billed by other meters or not documented.
      tally.exact = false;
      if (typeof p.text === 'string') tally.add(p.text);
  }
}

function addImage(tally: Tally, url: string | undefined, detail: unknown, options: ChatCountOptions): void {
  const size = url ? imageSizeFromDataUrl(url) : undefined;
  const rule = tally.info.image;
  if (rule.kind === 'tiles' && detail === 'low') {
    tally.fixed += rule.base;
    return;
  }
  if (!size) tally.exact = false;
  tally.fixed += imageTokens(rule, size ?? options.defaultImageSize ?? DEFAULT_IMAGE, detail === 'low' ? 'low' : 'high');
}

/** Tokens of one image of `size` under `rule` (see the module notes for the sources). */
export function imageTokens(rule: ImageRule, size: ImageSize, detail: 'low' | 'high' | 'auto' = 'high'): number {
  let { width: w, height: h } = size;
  if (!(w > 0 && h > 0)) return 0;
  switch (rule.kind) {
    case 'tiles': {
      if (detail === 'low') return rule.base;
      if (w > 2048 || h > 2048) {
        const s = 2048 / Math.max(w, h);
        w = Math.floor(w * s);
        h = Math.floor(h * s);
      }
      if (Math.min(w, h) > 768) {
        const s = 768 / Math.min(w, h);
        w = Math.floor(w * s);
        h = Math.floor(h * s);
      }
      return rule.base + rule.tile * Math.ceil(w / 512) * Math.ceil(h / 512);
    }
    case 'patches': {
      let patches = Math.ceil(w / 32) * Math.ceil(h / 32);
      if (patches > 1536) {
        let shrink = Math.sqrt((32 * 32 * 1536) / (w * h));
        const pw = (w * shrink) / 32;
        const ph = (h * shrink) / 32;
        shrink *= Math.min(Math.floor(pw) / pw, Math.floor(ph) / ph);
        patches = Math.min(1536, Math.ceil(Math.floor(w * shrink) / 32) * Math.ceil(Math.floor(h * shrink) / 32));
      }
      return Math.ceil(patches * rule.multiplier);
    }
    case 'anthropic': {
      const s = Math.min(1, 1568 / Math.max(w, h), Math.sqrt(1_150_000 / (w * h)));
      return Math.ceil((Math.floor(w * s) * Math.floor(h * s)) / 750);
    }
    case 'gemini': {
      if (w <= 384 && h <= 384) return 258;
      const unit = Math.min(768, Math.max(256, Math.floor(Math.min(w, h) / 1.5)));
      return 258 * Math.ceil(w / unit) * Math.ceil(h / unit);
    }
  }
}

/**
 * Width and height of a base64 `data:` URL image (PNG, GIF, WebP, JPEG), read from its header; undefined for
 * remote URLs and unreadable data.
 */
export function imageSizeFromDataUrl(url: string): ImageSize | undefined {
  if (!url.startsWith('data:')) return undefined;
  const comma = url.indexOf(',');
  if (comma < 0 || !/;base64$/i.test(url.slice(0, comma))) return undefined;
  // A JPEG's size can sit after large EXIF blocks: read up to 256 KiB of header.
  const chunk = url.slice(comma + 1, comma + 1 + 349_528);
  return imageSize(Buffer.from(chunk.slice(0, chunk.length - (chunk.length % 4)), 'base64'));
}

/** Image dimensions from the first bytes of a PNG, GIF, WebP or JPEG file. */
export function imageSize(b: Buffer): ImageSize | undefined {
  if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47) return sized(b.readUInt32BE(16), b.readUInt32BE(20));
  if (b.length >= 10 && b.toString('latin1', 0, 4) === 'GIF8') return sized(b.readUInt16LE(6), b.readUInt16LE(8));
  if (b.length >= 30 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') {
    const kind = b.toString('latin1', 12, 16);
    if (kind === 'VP8 ') return sized(b.readUInt16LE(26) & 0x3fff, b.readUInt16LE(28) & 0x3fff);
    if (kind === 'VP8L') {
      const bits = b.readUInt32LE(21);
      return sized((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
    }
    if (kind === 'VP8X') return sized(1 + b.readUIntLE(24, 3), 1 + b.readUIntLE(27, 3));
    return undefined;
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let i = 2;
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) return undefined;
      const marker = b[i + 1]!;
      if (marker === 0xff) {
        i++;
        continue;
      }
      if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) {
        i += 2;
        continue;
      }
      // SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return sized(b.readUInt16BE(i + 7), b.readUInt16BE(i + 5));
      }
      i += 2 + b.readUInt16BE(i + 2);
    }
  }
  return undefined;
}

function sized(width: number, height: number): ImageSize | undefined {
  return width > 0 && height > 0 ? { width, height } : undefined;
}

/** Tool / function definitions, per the cookbook's `num_tokens_for_tools` (see the module notes). */
function addTools(tally: Tally, tools: readonly unknown[]): void {
  const { info } = tally;
  for (const tool of tools) {
    if (tool === null || typeof tool !== 'object') continue;
    const t = tool as Record<string, unknown>;
    const fn = (t.function && typeof t.function === 'object' ? t.function : t) as Record<string, unknown>;
    if (t.type !== undefined && t.type !== 'function' && !t.function) {
      // Built-in tools (web_search, file_search, ...) are not documented: count their JSON.
      tally.exact = false;
      tally.add(safeJson(tool));
      continue;
    }
    tally.fixed += info.toolFunctionInit;
    tally.add(`${str(fn.name)}:${withoutFinalDot(str(fn.description))}`);
    const params = (fn.parameters ?? fn.input_schema) as { properties?: unknown } | undefined;
    const props = objectEntries(params?.properties);
    if (props.length > 0) {
      tally.fixed += 3;
      for (const [key, prop] of props) addProperty(tally, key, prop, 0);
    }
  }
  tally.fixed += 12;
}

function addProperty(tally: Tally, key: string, prop: unknown, depth: number): void {
  const p = (prop && typeof prop === 'object' ? prop : {}) as Record<string, unknown>;
  tally.fixed += 3;
  if (Array.isArray(p.enum)) {
    tally.fixed -= 3;
    for (const item of p.enum) {
      tally.fixed += 3;
      tally.add(typeof item === 'string' ? item : safeJson(item));
    }
  }
  const type = Array.isArray(p.type) ? p.type.map(String).join(' | ') : p.type === undefined ? 'any' : String(p.type);
  tally.add(`${key}:${type}:${withoutFinalDot(str(p.description))}`);
  // Beyond the cookbook (flat schemas only): nested properties counted like top-level ones.
  if (depth >= 8) return;
  const items = (p.items && typeof p.items === 'object' ? p.items : undefined) as Record<string, unknown> | undefined;
  const nested = [...objectEntries(p.properties), ...objectEntries(items?.properties)];
  if (nested.length > 0 || p.anyOf || p.oneOf || p.allOf || p.$ref || p.$defs) tally.exact = false;
  for (const [k, v] of nested) addProperty(tally, k, v, depth + 1);
}

function addToolChoice(tally: Tally, choice: unknown): void {
  if (choice === undefined || choice === null || choice === 'auto') return;
  tally.exact = false;
  if (choice === 'none') {
    tally.fixed += 1;
    return;
  }
  const c = choice as { name?: unknown; function?: { name?: unknown } };
  const name = c?.function?.name ?? c?.name;
  if (typeof name === 'string') {
    tally.add(name);
    tally.fixed += 4;
  }
}

function objectEntries(value: unknown): Array<[string, unknown]> {
  return value && typeof value === 'object' && !Array.isArray(value) ? Object.entries(value as Record<string, unknown>) : [];
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function withoutFinalDot(text: string): string {
  return text.endsWith('.') ? text.slice(0, -1) : text;
}

export function safeJson(value: unknown): string {
  if (value === undefined) return '';
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return '';
  }
}
