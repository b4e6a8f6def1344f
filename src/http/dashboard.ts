/**
 * The dashboard of `pgshelf serve`: `/` (every database), `/db/NAME` (its backups, with the commands that
 * restore each by hand), the buttons "back up now", "drill now" and "restore into a new database", and
 * bull-board, BullMQ's own queue UI, under `/queues`. Mounted by createApp after the token check and before its
 * JSON 404 handler, so all of it is behind PGSHELF_HTTP_TOKEN when there is one.
 *
 * Pages are server-rendered without script (views.ts) under a CSP that forbids scripts. The buttons are POST
 * forms with a CSRF token (csrf.ts) and an Origin check; they queue jobs as the CLI does (actions.ts).
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import os from 'node:os';
import { listBackups } from '../catalog/backups.js';
import { knownTarget, resolveTarget } from '../config/index.js';
import { errorMessage } from '../errors.js';
import type { Monitor } from '../monitor/index.js';
import {
  checkNewDatabaseName,
  enqueueNow,
  enqueueRestore,
  suggestedRestoreName,
  type Enqueued,
} from './actions.js';
import {
  CSRF_COOKIE,
  CSRF_FIELD,
  csrfCookieHeader,
  csrfKeys,
  csrfToken,
  csrfTokenValid,
  newCsrfCookieValue,
  readCookie,
  sameOrigin,
} from './csrf.js';
import {
  DASHBOARD_CSP,
  databasePage,
  databasePath,
  messagePage,
  overviewPage,
  type Flash,
  type PageChrome,
} from './views.js';

export interface DashboardDeps {
  readonly monitor: Monitor;
}

const FLASH_COOKIE = 'pgshelf_flash';

/**
 * bull-board's React UI loads its scripts and styles from /queues/static and sets inline styles; nothing from
 * elsewhere (its Google fonts fall back to the system's).
 */
const QUEUES_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function securityHeaders(csp: string) {
  return (_req: Request, res: Response, next: NextFunction): void => {
    res.set({
      'Content-Security-Policy': csp,
      'X-Frame-Options': 'DENY',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    });
    next();
  };
}

/** A browser sending an unsafe request from another origin is refused, whatever it carries. */
function sameOriginWrites(req: Request, res: Response, next: NextFunction): void {
  if (UNSAFE_METHODS.has(req.method) && sameOrigin(req.headers) === false) {
    res.status(403).type('text/plain').send('cross-origin request refused\n');
    return;
  }
  next();
}

function encodeFlash(flash: Flash): string {
  return Buffer.from(JSON.stringify(flash)).toString('base64url');
}

function decodeFlash(value: string | undefined): Flash | undefined {
  if (!value) return undefined;
  try {
    const f = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as Partial<Flash>;
    return typeof f.text === 'string' && typeof f.ok === 'boolean'
      ? { ok: f.ok, text: f.text.slice(0, 500) }
      : undefined;
  } catch {
    return undefined;
  }
}

function rawCookie(header: string | undefined, name: string): string | undefined {
  const part = header?.split(';').find((p) => p.trim().startsWith(`${name}=`));
  return part?.slice(part.indexOf('=') + 1).trim();
}

/** What a queued (or joined) job's flash message says. */
export function queuedMessage(e: Enqueued): string {
  const what = e.kind === 'backup' ? 'Backup' : e.kind === 'drill' ? 'Drill' : 'Restore';
  return e.existing
    ? `${what} of "${e.database}" is already ${e.state === 'active' ? 'running' : 'queued'} as job ${e.jobId}: ` +
        'no second one was queued.'
    : `${what} of "${e.database}" queued as job ${e.jobId}.`;
}

export function mountDashboard(app: Express, deps: DashboardDeps): void {
  const { monitor } = deps;
  const { config } = monitor;
  const token = config.http.token;
  const keys = csrfKeys(token);
  const router = express.Router();
  router.use(sameOriginWrites);

  // bull-board: its own Express app under /queues, over the monitor's queues (one Redis connection set).
  const board = new ExpressAdapter();
  board.setBasePath('/queues');
  createBullBoard({
    queues: [...monitor.queues.values()].map((q) => new BullMQAdapter(q)),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'pgshelf' } },
  });
  router.use('/queues', securityHeaders(QUEUES_CSP), board.getRouter() as express.Router);

  router.use(securityHeaders(DASHBOARD_CSP));

  /** The chrome of a page for this browser: its CSRF token (setting the cookie on first sight) and flash. */
  const chrome = (req: Request, res: Response, extra: Partial<PageChrome> = {}): PageChrome => {
    let cookie = readCookie(req.headers.cookie, CSRF_COOKIE);
    if (!cookie) {
      cookie = newCsrfCookieValue();
      res.append('Set-Cookie', csrfCookieHeader(cookie, req.secure));
    }
    const flash = decodeFlash(rawCookie(req.headers.cookie, FLASH_COOKIE));
    if (flash) res.append('Set-Cookie', `${FLASH_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`);
    return { csrf: csrfToken(keys, cookie), flash, now: new Date(), ...extra };
  };

  router.get('/', async (req, res) => {
    const snap = await monitor.status();
    res
      .type('html')
      .send(overviewPage(snap.value, chrome(req, res, { collectedAt: snap.collectedAt, error: snap.error })));
  });

  /** What a database's page shows; storage that does not answer is said on the page, not a bare 500. */
  const readDatabase = async (name: string) => {
    const [snap, listed] = await Promise.all([
      monitor.status(),
      listBackups(monitor.storage, config, name).then(
        (backups) => ({ backups, error: undefined }),
        (err: unknown) => ({ backups: [], error: `cannot list the backups: ${errorMessage(err)}` }),
      ),
    ]);
    return {
      status: snap.value?.databases.find((d) => d.name === name),
      backups: listed.backups,
      chrome: { collectedAt: snap.collectedAt, error: listed.error ?? snap.error },
    };
  };

  router.get('/db/:name', async (req, res) => {
    const name = req.params['name'];
    const { status, backups, chrome: extra } = await readDatabase(name);
    const page = chrome(req, res, extra);
    if (!status && backups.length === 0 && !config.databases.some((d) => d.name === name) && !extra.error) {
      res
        .status(404)
        .type('html')
        .send(messagePage('Not found', `No database "${name}" here.`, page));
      return;
    }
    res.type('html').send(databasePage(pageModel(name, status, backups), page));
  });

  const pageModel = (
    name: string,
    status: Parameters<typeof databasePage>[0]['status'],
    backups: Awaited<ReturnType<typeof listBackups>>,
    restore: { into?: string; backup?: string } = {},
  ): Parameters<typeof databasePage>[0] => {
    const target = resolveTarget(config, name);
    return {
      name,
      status,
      backups,
      owner: target.postgres.user ?? os.userInfo().username,
      s3Endpoint: config.storage.kind === 's3' ? config.storage.endpoint : undefined,
      identityFile: config.age.identityFile,
      restoreInto: restore.into ?? suggestedRestoreName(name),
      ...(restore.backup !== undefined ? { restoreBackup: restore.backup } : {}),
    };
  };

  const forms = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 10 });

  /** Refuses (403, nothing queued) a form without this browser's token; else the form's fields. */
  const checkForm = (req: Request, res: Response): Record<string, unknown> | undefined => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (!csrfTokenValid(keys, readCookie(req.headers.cookie, CSRF_COOKIE), body[CSRF_FIELD])) {
      res
        .status(403)
        .type('html')
        .send(
          messagePage(
            'Refused',
            "This form's security token is missing or out of date (the server restarted, or the form came from " +
              'another site). Nothing was queued: reload the page and press the button again.',
            chrome(req, res),
          ),
        );
      return undefined;
    }
    return body;
  };

  /**
   * The database a button names, when this server's settings know it: listed, or taken by a `servers:` entry's
   * globs, as a worker's are (it would refuse another).
   */
  const configured = (req: Request, res: Response): string | undefined => {
    const name = req.params['name'] as string;
    if (knownTarget(config, name) !== undefined) return name;
    res
      .status(404)
      .type('html')
      .send(
        messagePage(
          'Not configured',
          `"${name}" is not among the databases this server is configured with, so nothing was queued.`,
          chrome(req, res),
        ),
      );
    return undefined;
  };

  const redirectWith = (req: Request, res: Response, body: Record<string, unknown>, flash: Flash): void => {
    res.append(
      'Set-Cookie',
      `${FLASH_COOKIE}=${encodeFlash(flash)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=120`,
    );
    const name = req.params['name'] as string;
    res.redirect(303, body['back'] === 'database' ? databasePath(name) : '/');
  };

  const queueButton =
    (kind: 'backup' | 'drill') =>
    async (req: Request, res: Response): Promise<void> => {
      const body = checkForm(req, res);
      if (!body) return;
      const name = configured(req, res);
      if (!name) return;
      let flash: Flash;
      const missingFrom = (await monitor.status()).value?.databases.find((d) => d.name === name)?.missingFrom;
      if (kind === 'backup' && missingFrom) {
        // The page offers no such button; a form sent from an older page queues nothing that must fail.
        flash = {
          ok: false,
          text: `"${name}" no longer exists on ${missingFrom}: there is nothing to back up.`,
        };
        redirectWith(req, res, body, flash);
        return;
      }
      try {
        const queued = await enqueueNow(config, monitor.queues.get(kind)!, kind, name);
        monitor.logger.info(
          { jobId: queued.jobId, database: name, existing: queued.existing },
          `dashboard: ${kind} now`,
        );
        flash = { ok: true, text: queuedMessage(queued) };
      } catch (err) {
        flash = { ok: false, text: `Could not queue the ${kind} of "${name}": ${errorMessage(err)}` };
      }
      redirectWith(req, res, body, flash);
    };

  router.post('/db/:name/backup', forms, queueButton('backup'));
  router.post('/db/:name/drill', forms, queueButton('drill'));

  router.post('/db/:name/restore', forms, async (req, res) => {
    const body = checkForm(req, res);
    if (!body) return;
    const name = configured(req, res);
    if (!name) return;
    const into = typeof body['into'] === 'string' ? body['into'].trim() : '';
    const backup = typeof body['backup'] === 'string' && body['backup'] !== '' ? body['backup'] : 'latest';
    const problem =
      checkNewDatabaseName(into, name) ??
      (backup === 'latest' || /^[0-9a-f]{8}$/.test(backup) ? undefined : `"${backup}" is not a backup id`);
    if (problem) {
      // The form again, with what was typed and why it was refused.
      const { status, backups, chrome: extra } = await readDatabase(name);
      res
        .status(400)
        .type('html')
        .send(
          databasePage(
            pageModel(name, status, backups, { into, backup }),
            chrome(req, res, { ...extra, flash: { ok: false, text: `Nothing was queued: ${problem}.` } }),
          ),
        );
      return;
    }
    let flash: Flash;
    try {
      const queued = await enqueueRestore(config, monitor.queues.get('restore')!, name, backup, into);
      monitor.logger.info({ jobId: queued.jobId, database: name, into, backup }, 'dashboard: restore');
      flash = {
        ok: true,
        text: `${queuedMessage(queued)} It creates "${into}" from backup ${backup}; follow it under Queues.`,
      };
    } catch (err) {
      flash = { ok: false, text: `Could not queue the restore of "${name}": ${errorMessage(err)}` };
    }
    redirectWith(req, res, body, flash);
  });

  app.use(router);
}
