/**
 * The Express app of `pgshelf serve`: /healthz (open), then the token check (README "Monitoring"), then
 * /readyz, /metrics, /api/status and the dashboard (dashboard.ts, mounted last so it may own `/`).
 */
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { errorMessage } from '../errors.js';
import type { Monitor } from '../monitor/index.js';
import { loopbackHostOnly, requireToken } from './auth.js';
import { mountDashboard } from './dashboard.js';
import { createMetrics, type Metrics } from './metrics.js';

export interface AppDeps {
  readonly monitor: Monitor;
  /** Required on every route but /healthz when set (see auth.ts requiredToken). */
  readonly token: string | undefined;
}

export interface App {
  readonly app: Express;
  readonly metrics: Metrics;
}

export function createApp(deps: AppDeps): App {
  const { monitor } = deps;
  const app = express();
  app.disable('x-powered-by');
  const metrics = createMetrics(monitor);

  // Liveness for a load balancer or an orchestrator: the services this process reads answer. No token needed,
  // and nothing but ok/why is said.
  app.get('/healthz', async (_req, res) => {
    const health = await monitor.health();
    res.status(health.ok ? 200 : 503).json(health);
  });

  app.use(requireToken(deps.token));
  // Without a token, only requests addressed to a loopback name: /metrics and /api/status too, not just the pages.
  app.use(loopbackHostOnly(deps.token, monitor.config.http.host));

  // Ready: Redis and storage answer, and a status report has been read from storage (so /metrics has data).
  app.get('/readyz', async (_req, res) => {
    const [health, snap] = await Promise.all([monitor.health(), monitor.status()]);
    const reasons = [health.redis.error, health.storage.error].filter((e): e is string => e !== undefined);
    if (snap.value === undefined) {
      reasons.push(`no status report yet${snap.error ? `: ${snap.error}` : ''}`);
    } else if (snap.error !== undefined) {
      reasons.push(`the latest status refresh failed: ${snap.error}`);
    }
    res.status(reasons.length === 0 ? 200 : 503).json({
      ok: reasons.length === 0,
      ...(reasons.length ? { reasons } : {}),
      redis: health.redis,
      storage: health.storage,
      statusCollectedAt: snap.collectedAt?.toISOString() ?? null,
    });
  });

  app.get('/metrics', async (_req, res) => {
    const text = await metrics.render();
    res.set('Content-Type', metrics.registry.contentType).send(text);
  });

  // The report the dashboard and `pgshelf status` show, as JSON.
  app.get('/api/status', async (_req, res) => {
    const snap = await monitor.status();
    if (!snap.value) {
      res.status(503).json({ ok: false, error: snap.error ?? 'no status report yet' });
      return;
    }
    res.json({
      ok: snap.error === undefined,
      ...(snap.error ? { error: `the latest refresh failed (this report is older): ${snap.error}` } : {}),
      ...snap.value,
    });
  });

  mountDashboard(app, { monitor });

  app.use((_req: Request, res: Response) => {
    res
      .status(404)
      .json({ error: 'not found: the routes are /healthz, /readyz, /metrics, /api/status and /' });
  });
  // Express 5 passes a rejected handler here: answer with why, log it, never print a stack to the client.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    monitor.logger.error({ err: errorMessage(err), path: req.path }, 'request failed');
    if (!res.headersSent) res.status(500).json({ error: errorMessage(err) });
  });
  return { app, metrics };
}
