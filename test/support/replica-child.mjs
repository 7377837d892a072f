// Child side of test/support/replicas.ts. A fixture does its set-up, then calls
//
//   serve({ async incr(msg) { ... return value; }, ... });
//
// Each request from the parent is `{ id, type, ...fields }`; serve() calls `handlers[type](message)` and
// replies `{ id, ok: true, result }` or `{ id, ok: false, error: { name, message, code, stack } }`.
// serve() tells the parent it is ready, and exits the process when the parent goes away (IPC disconnect),
// so a crashed or killed test process does not leave replicas behind. `onDisconnect` may close resources
// first (it gets at most 2 s).

export const READY_TYPE = '__amas_replica_ready';

function send(message) {
  try {
    process.send?.(message);
    return true;
  } catch {
    return false;
  }
}

function toWireError(err) {
  if (err instanceof Error) {
    return { name: err.name, message: err.message, code: err.code, stack: err.stack };
  }
  return { name: 'Error', message: String(err) };
}

/**
 * @param {Record<string, (message: any) => unknown>} handlers
 * @param {{ onDisconnect?: () => unknown }} [options]
 */
export function serve(handlers, options = {}) {
  if (typeof process.send !== 'function') {
    throw new Error('serve() must run in a process started with an IPC channel (child_process.fork / startReplicas)');
  }
  process.on('message', async (message) => {
    if (!message || typeof message !== 'object' || message.id === undefined) return;
    const { id, type } = message;
    let reply;
    try {
      const handler = Object.hasOwn(handlers, type) ? handlers[type] : undefined;
      if (typeof handler !== 'function') {
        throw new Error(`replica pid ${process.pid} has no handler for type ${JSON.stringify(type)} (handlers: ${Object.keys(handlers).join(', ')})`);
      }
      reply = { id, ok: true, result: await handler(message) };
    } catch (err) {
      reply = { id, ok: false, error: toWireError(err) };
    }
    try {
      process.send(reply);
    } catch (err) {
      // e.g. a result that cannot be serialized: still answer, with the reason
      if (reply.ok) send({ id, ok: false, error: toWireError(new Error(`could not send the result of ${JSON.stringify(type)}: ${err?.message ?? err}`)) });
    }
  });
  process.on('disconnect', () => {
    const done = () => process.exit(0);
    if (!options.onDisconnect) return done();
    setTimeout(done, 2000).unref();
    Promise.resolve()
      .then(options.onDisconnect)
      .catch(() => {})
      .finally(done);
  });
  send({ type: READY_TYPE, pid: process.pid });
}
