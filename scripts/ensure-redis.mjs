// Makes sure a Redis answers on REDIS_URL (default 127.0.0.1:6379) before the tests run: starts a local
// redis-server (no persistence) when one is installed and none answers. Tests that need Redis fail loudly
// when it is still missing.
import net from 'node:net';
import { spawnSync } from 'node:child_process';

const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const host = url.hostname || '127.0.0.1';
const port = Number(url.port || 6379);

function ping() {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

if (await ping()) {
  console.log(`redis answers on ${host}:${port}`);
} else if (host !== '127.0.0.1' && host !== 'localhost') {
  console.error(`redis does not answer on ${host}:${port}; tests that need it will fail`);
} else {
  const r = spawnSync('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'yes'], { stdio: 'inherit' });
  if (r.error) console.error(`could not start redis-server: ${r.error.message}; tests that need Redis will fail`);
  for (let i = 0; i < 50 && !(await ping()); i++) await new Promise((res) => setTimeout(res, 100));
  console.log((await ping()) ? `started redis-server on ${host}:${port}` : 'redis still does not answer');
}
