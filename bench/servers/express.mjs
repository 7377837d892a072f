/** Express 5 bench server. Variants: bare | amas | express-rate-limit. */
import express from 'express';
import { amasMiddleware } from '@amas/express';
import { rateLimit } from 'express-rate-limit';
import { amasOptions, BODY, dedup, exitOnSignal, LIMIT, parseArgs, ready } from './common.mjs';

const { variant, port } = parseArgs(['bare', 'amas', 'express-rate-limit']);
const app = express();
app.disable('x-powered-by');
let amas;

if (variant === 'amas') {
  // limit + breaker + dedup + metrics, all through the middleware options.
  amas = amasMiddleware({ ...amasOptions, http: { ...amasOptions.http, dedup } });
  app.use(amas);
} else if (variant === 'express-rate-limit') {
  app.use(rateLimit({ windowMs: 60_000, limit: LIMIT, standardHeaders: 'draft-8', legacyHeaders: false }));
}

app.get('/hello', (_req, res) => {
  res.json(BODY);
});
// After the measured route: Express tries routes in order, and the scrape endpoint is not what is measured.
if (amas) app.get('/metrics', amas.metricsHandler());

const server = app.listen(port, '127.0.0.1', () => ready(server.address().port));
exitOnSignal(async () => {
  server.close();
  if (amas) await amas.close();
});
