import express from 'express';
import { amasMiddleware } from '@amas/express';
const cfg = JSON.parse(process.env.CFG || 'null');
const app = express();
app.disable('x-powered-by');
if (cfg) app.use(amasMiddleware(cfg));
app.get('/hello', (_req, res) => { res.json({ hello: 'world' }); });
const server = app.listen(4556, '127.0.0.1');
process.once('SIGTERM', () => process.exit(0));
