/**
 * What an adapter tells the pipeline about a request. Adapters fill it from their framework's request;
 * the pipeline never sees a framework object.
 */
export type IncomingHeaders = Record<string, string | string[] | undefined>;

export interface NeutralRequest {
  method: string;
  /** Path and query as received, e.g. `/v1/chat?x=1`. */
  url: string;
  /** The route pattern the framework matched, e.g. `/users/:id` (bounded set, used for metrics and keys). */
  route?: string;
  /** Lower-cased header names (Node's IncomingMessage.headers form). */
  headers: IncomingHeaders;
  /** The socket's remote address. */
  ip?: string;
  /** The authenticated user's id when the app exposes one (e.g. `req.user.id`). */
  user?: unknown;
  /** The parsed body when the framework parsed one (used for dedup keys). */
  body?: unknown;
}

/** First value of a header, or undefined. Never throws on odd shapes. */
export function headerValue(headers: IncomingHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name];
  if (Array.isArray(value)) return typeof value[0] === 'string' ? value[0] : undefined;
  return typeof value === 'string' ? value : undefined;
}
