/**
 * Scaling events from Kubernetes, as an event exporter posts them (kubernetes-event-exporter's webhook
 * receiver, or anything that forwards `Event` objects as JSON): core/v1 Events (`involvedObject`, `message`,
 * `count`, `lastTimestamp`) and events.k8s.io/v1 Events (`regarding`, `note`, `series`, `eventTime`).
 *
 * Understood:
 * - HPA `SuccessfulRescale` ("New size: 4; reason: cpu resource utilization (percentage of request) above
 *   target") and `FailedRescale` ("New size: 5; reason: ...; error: ..."). The HPA says only the new size:
 *   ScalingMetrics takes the old one from the previous event of the deployment. The deployment is the HPA's
 *   name (usually the target's); KEDA's HPAs (`keda-hpa-<scaledobject>`) are reported under the ScaledObject's
 *   name with trigger 'keda', which is how KEDA's 1 <-> N scaling arrives.
 * - KEDA `KEDAScaleTargetActivated` / `KEDAScaleTargetDeactivated` (0 -> 1, 1 -> 0: "Scaled
 *   apps/v1.Deployment prod/api from 0 to 1") and their `...Failed` warnings.
 * Everything else (KEDAScalersStarted, ScaledObjectReady, metric read failures, pod events...) is irrelevant:
 * `scalingEventFromKubernetes` returns undefined for it.
 */
import type { ServerResponse } from 'node:http';
import { InvalidOptionError, InvalidRequestError, StoreUnavailableError, isAmasError } from '../errors.js';
import type { ScalingEventInput, ScalingMetadata, ScalingMetrics } from './scaling-metrics.js';

export interface KubernetesEventOptions {
  /**
   * The deployment name an event is recorded under. Default: the object's name ('api'), the ScaledObject's
   * for KEDA. Return `${namespace}/${name}` to tell namespaces apart.
   */
  deploymentName?: (ref: { namespace: string | undefined; name: string; source: 'hpa' | 'keda' }) => string;
}

type Json = Record<string, unknown>;

const HPA_MESSAGE = /^New size: (\d+); reason: ([\s\S]*?)(?:; error: ([\s\S]*))?$/;
const KEDA_MESSAGE = /(?:Scaled|Deactivated|Failed to scaled?)\s+(\S+)\s+([^\s/]+)\/(\S+)\s+from\s+(\d+)\s+to\s+(\d+)/;
const KEDA_REASONS = new Set(['KEDAScaleTargetActivated', 'KEDAScaleTargetDeactivated', 'KEDAScaleTargetActivationFailed', 'KEDAScaleTargetDeactivationFailed']);
const KEDA_HPA_PREFIX = 'keda-hpa-';

/**
 * The recordEvent input for a Kubernetes Event, or undefined when the event is not a scaling action.
 * Throws InvalidRequestError for a scaling event it cannot read (a rescale whose message has no size).
 */
export function scalingEventFromKubernetes(event: unknown, options: KubernetesEventOptions = {}): ScalingEventInput | undefined {
  if (!isObject(event)) throw new InvalidRequestError(`expected a Kubernetes Event object, received ${event === null ? 'null' : Array.isArray(event) ? 'an array' : typeof event}`);
  const reason = str(event.reason);
  const involved = obj(event.involvedObject) ?? obj(event.regarding);
  if (reason === undefined || involved === undefined) return undefined;
  const kind = str(involved.kind);
  const message = str(event.message) ?? str(event.note) ?? '';
  const namespace = str(involved.namespace) ?? str(obj(event.metadata)?.namespace);

  if ((reason === 'SuccessfulRescale' || reason === 'FailedRescale') && (kind === 'HorizontalPodAutoscaler' || kind === undefined)) {
    const match = HPA_MESSAGE.exec(message.trim());
    if (!match) throw new InvalidRequestError(`${reason} event: cannot read the new size from its message ${JSON.stringify(message.slice(0, 200))} (expected "New size: <n>; reason: <why>")`);
    const hpa = str(involved.name);
    if (hpa === undefined) throw new InvalidRequestError(`${reason} event: the involved object has no name`);
    const keda = hpa.startsWith(KEDA_HPA_PREFIX) || str(obj(involved.labels)?.['app.kubernetes.io/managed-by']) === 'keda-operator';
    const name = keda && hpa.startsWith(KEDA_HPA_PREFIX) ? hpa.slice(KEDA_HPA_PREFIX.length) : hpa;
    const why = match[2]!.trim();
    const failed = reason === 'FailedRescale';
    return compact({
      deployment: deploymentName(options, namespace, name, keda ? 'keda' : 'hpa'),
      action: failed ? 'failed' : directionFromReason(why),
      toReplicas: Number(match[1]),
      trigger: keda ? 'keda' : 'hpa',
      reason: why.slice(0, 1000),
      metadata: metadataOf(event, involved, namespace, failed ? match[3]?.trim() : undefined),
      at: timeOfEvent(event),
      id: idOf(event),
    });
  }

  if (KEDA_REASONS.has(reason) && (kind === 'ScaledObject' || kind === undefined)) {
    const match = KEDA_MESSAGE.exec(message);
    if (!match) throw new InvalidRequestError(`${reason} event: cannot read the sizes from its message ${JSON.stringify(message.slice(0, 200))} (expected "... <kind> <namespace>/<name> from <n> to <m>")`);
    const fromReplicas = Number(match[4]);
    const toReplicas = Number(match[5]);
    const failed = reason.endsWith('Failed');
    return compact({
      deployment: deploymentName(options, match[2] ?? namespace, match[3]!, 'keda'),
      action: failed ? 'failed' : toReplicas > fromReplicas ? 'scale_up' : toReplicas < fromReplicas ? 'scale_down' : 'no_change',
      fromReplicas,
      toReplicas,
      trigger: 'keda',
      reason: reason === 'KEDAScaleTargetActivated' ? 'activated by KEDA (scaled from zero)' : reason === 'KEDAScaleTargetDeactivated' ? 'deactivated by KEDA (scaled to zero)' : message.slice(0, 1000),
      metadata: { ...metadataOf(event, involved, namespace, undefined), targetKind: match[1]! },
      at: timeOfEvent(event),
      id: idOf(event),
    });
  }
  return undefined;
}

export interface ReceiveScalingReport {
  /** Items in the body. */
  received: number;
  recorded: number;
  /** Recorded before (same id: a retry, or the same Kubernetes event posted twice). */
  duplicates: number;
  /** Not scaling actions (other Kubernetes events). */
  ignored: number;
  /** Items that could not be read or recorded, by index in the body. */
  rejected: Array<{ index: number; error: string }>;
}

export interface ReceiveScalingOptions extends KubernetesEventOptions {
  /** Most items one body may carry. Default 1000. */
  maxItems?: number;
}

/**
 * Records the scaling events in `body`: one event, an array of them, or a list (`{ items: [...] }`, as
 * `kubectl get events -o json` prints). Items are Kubernetes Events or recordEvent inputs (objects with
 * `deployment`). Items are recorded in order, each on its own: a bad one is listed in `rejected` and the rest
 * are still recorded. Throws InvalidRequestError for a body of none of these shapes, and StoreUnavailableError
 * when the store does not answer (the sender should retry; events with an id are then recorded once).
 */
export async function receiveScalingEvents(scaling: ScalingMetrics, body: unknown, options: ReceiveScalingOptions = {}): Promise<ReceiveScalingReport> {
  const items = itemsOf(body);
  const maxItems = options.maxItems ?? 1000;
  if (items.length > maxItems) throw new InvalidRequestError(`too many events in one body: ${items.length} (at most ${maxItems})`);
  const report: ReceiveScalingReport = { received: items.length, recorded: 0, duplicates: 0, ignored: 0, rejected: [] };
  for (let index = 0; index < items.length; index++) {
    const item = items[index];
    let input: ScalingEventInput | undefined;
    try {
      input = isObject(item) && 'deployment' in item && !('involvedObject' in item) && !('regarding' in item) ? (item as unknown as ScalingEventInput) : scalingEventFromKubernetes(item, options);
      if (input === undefined) {
        report.ignored++;
        continue;
      }
      const { recorded } = await scaling.recordEvent(input);
      if (recorded) report.recorded++;
      else report.duplicates++;
    } catch (error) {
      if (error instanceof StoreUnavailableError) throw error;
      if (!(error instanceof InvalidOptionError) && !(error instanceof InvalidRequestError)) throw error;
      report.rejected.push({ index, error: error.message });
    }
  }
  return report;
}

/**
 * A framework-neutral webhook for an event exporter: records `body` (parsed JSON, or the raw text or bytes)
 * and writes the answer to a Node response (Express's `res`, Fastify's `reply.raw`):
 * 202 with the ReceiveScalingReport when something was usable; 400 when the body is malformed or every item
 * was rejected; 503 with Retry-After when the store does not answer (the exporter retries).
 */
export async function serveScalingWebhook(scaling: ScalingMetrics, body: unknown, res: ServerResponse, options: ReceiveScalingOptions = {}): Promise<void> {
  let status: number;
  let payload: unknown;
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
  try {
    const report = await receiveScalingEvents(scaling, parseBody(body), options);
    const usable = report.recorded + report.duplicates + report.ignored;
    status = report.rejected.length > 0 && usable === 0 ? 400 : 202;
    payload = status === 400 ? { error: 'AMAS_INVALID_REQUEST', message: 'no event in the body could be recorded', ...report } : report;
  } catch (error) {
    if (error instanceof StoreUnavailableError) {
      status = 503;
      headers['retry-after'] = String(Math.max(1, Math.ceil((error.retryAfterMs ?? 1000) / 1000)));
      payload = { error: error.code, message: error.message };
    } else if (error instanceof InvalidRequestError) {
      status = 400;
      payload = { error: error.code, message: error.message };
    } else {
      status = 500;
      payload = { error: isAmasError(error) ? error.code : 'AMAS_INTERNAL', message: 'the scaling events could not be recorded' };
    }
  }
  const text = JSON.stringify(payload);
  if (res.headersSent || res.writableEnded) return;
  res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

// ---------------------------------------------------------------------------------------------------------

function parseBody(body: unknown): unknown {
  if (body === undefined || body === null || body === '') throw new InvalidRequestError('expected a JSON body (one event, an array of events, or { "items": [...] }); is a JSON body parser installed?');
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    try {
      return JSON.parse(body.toString());
    } catch {
      throw new InvalidRequestError('the body is not valid JSON');
    }
  }
  return body;
}

function itemsOf(body: unknown): unknown[] {
  if (Array.isArray(body)) return body;
  if (isObject(body)) {
    if (Array.isArray(body.items) && !('involvedObject' in body) && !('regarding' in body)) return body.items;
    return [body];
  }
  throw new InvalidRequestError(`expected one event, an array of events, or { "items": [...] }, received ${body === null ? 'null' : typeof body}`);
}

function directionFromReason(why: string): 'scale_up' | 'scale_down' | undefined {
  if (/above target|below Spec\.MinReplicas|less than the minimum|must be greater than 0/i.test(why)) return 'scale_up';
  if (/below target|above Spec\.MaxReplicas|more than the maximum/i.test(why)) return 'scale_down';
  return undefined;
}

function deploymentName(options: KubernetesEventOptions, namespace: string | undefined, name: string, source: 'hpa' | 'keda'): string {
  return options.deploymentName ? options.deploymentName({ namespace, name, source }) : name;
}

function metadataOf(event: Json, involved: Json, namespace: string | undefined, error: string | undefined): ScalingMetadata {
  const out: ScalingMetadata = { source: 'kubernetes' };
  if (namespace !== undefined) out.namespace = namespace.slice(0, 1000);
  const kind = str(involved.kind);
  if (kind !== undefined) out.kind = kind.slice(0, 1000);
  const name = str(involved.name);
  if (name !== undefined) out.object = name.slice(0, 1000);
  const type = str(event.type);
  if (type !== undefined) out.eventType = type.slice(0, 1000);
  const component = str(obj(event.source)?.component) ?? str(event.reportingController) ?? str(event.reportingComponent);
  if (component) out.component = component.slice(0, 1000);
  if (error !== undefined) out.error = error.slice(0, 1000);
  return out;
}

/** When it (last) happened: core/v1 `lastTimestamp`, events.k8s.io `series.lastObservedTime` / `eventTime`, ... */
function timeOfEvent(event: Json): number | undefined {
  const candidates = [
    event.lastTimestamp,
    obj(event.series)?.lastObservedTime,
    event.deprecatedLastTimestamp,
    event.eventTime,
    event.firstTimestamp,
    event.deprecatedFirstTimestamp,
    obj(event.metadata)?.creationTimestamp,
  ];
  for (const value of candidates) {
    if (typeof value !== 'string' || value === '') continue;
    const ms = Date.parse(value);
    if (Number.isFinite(ms) && ms > 0) return ms;
  }
  return undefined;
}

/**
 * The event's uid and occurrence: Kubernetes folds a repeated event into one object whose count grows, so
 * `uid:count` names one occurrence (posted again, it is recorded once).
 */
function idOf(event: Json): string | undefined {
  const uid = str(obj(event.metadata)?.uid);
  if (uid === undefined || !/^[\x21-\x7e]{1,150}$/.test(uid)) return undefined;
  const count = event.count ?? obj(event.series)?.count ?? event.deprecatedCount ?? 1;
  return `k8s:${uid}:${typeof count === 'number' && Number.isInteger(count) ? count : 1}`;
}

function compact(input: Record<string, unknown>): ScalingEventInput {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) if (value !== undefined) out[key] = value;
  return out as unknown as ScalingEventInput;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function obj(value: unknown): Json | undefined {
  return isObject(value) ? value : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
