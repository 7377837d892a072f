import express from 'express';
import { Counter, Histogram, Registry } from 'prom-client';
const mode = process.env.MODE;
const app = express();
app.disable('x-powered-by');
const registry = new Registry();
const c = new Counter({ name: 'c_total', help: 'h', labelNames: ['route', 'method', 'status', 'outcome'], registers: [registry] });
const h = new Histogram({ name: 'h_seconds', help: 'h', labelNames: ['route', 'method', 'outcome'], registers: [registry] });
app.use((req, res, next) => {
  if (mode === 'noop') return next();
  if (mode === 'listeners' || mode === 'all') {
    const onFinish = () => { res.removeListener('close', onClose); if (mode === 'all') { c.inc({ route: '/hello', method: 'GET', status: '200', outcome: 'success' }); h.observe({ route: '/hello', method: 'GET', outcome: 'success' }, 0.001); } };
    const onClose = () => { res.removeListener('finish', onFinish); };
    res.once('finish', onFinish); res.once('close', onClose);
  }
  if (mode === 'wrap' || mode === 'all') {
    const orig = res.writeHead;
    res.writeHead = function (...args) { res.setHeader('x-response-time', '1.000ms'); return orig.apply(this, args); };
  }
  if (mode === 'metrics') { c.inc({ route: '/hello', method: 'GET', status: '200', outcome: 'success' }); h.observe({ route: '/hello', method: 'GET', outcome: 'success' }, 0.001); }
  next();
});
app.get('/hello', (_req, res) => { res.json({ hello: 'world' }); });
app.listen(4556, '127.0.0.1');
process.once('SIGTERM', () => process.exit(0));
