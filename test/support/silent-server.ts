import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A real HTTP server that takes requests and never answers them (a stalled provider). */
export interface SilentServer {
  readonly url: string;
  /** Requests it holds right now. */
  readonly held: number;
  /** Requests the client closed before any answer (a caller's deadline or abort). */
  readonly abortedByClient: number;
  /** Destroys what it holds and closes (idle keep-alive sockets included). */
  close(): Promise<void>;
}

/**
 * Starts a silent server on 127.0.0.1. A request with `x-stall-stream: 1` gets event-stream headers and then
 * nothing, like a stream that never sends its first chunk.
 */
export async function startSilentServer(): Promise<SilentServer> {
  const open = new Set<ServerResponse>();
  let abortedByClient = 0;
  const server = createServer((req, res) => {
    open.add(res);
    req.resume();
    if (req.headers['x-stall-stream'] === '1') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
    }
    res.on('close', () => {
      open.delete(res);
      if (!res.writableEnded) abortedByClient++;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get held() {
      return open.size;
    },
    get abortedByClient() {
      return abortedByClient;
    },
    async close() {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
