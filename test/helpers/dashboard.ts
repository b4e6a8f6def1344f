/** `pgshelf serve` started in the test's process on a free port, and an HTTP client that keeps its cookies. */
import http from 'node:http';
import type { Env } from '../../src/config/index.js';
import { startServer, type HttpServer } from '../../src/http/server.js';
import { silentLogger } from '../../src/logger.js';
import { createMonitor, type Monitor } from '../../src/monitor/index.js';
import { createStorage } from '../../src/storage/index.js';
import { testConfig } from './env.js';
import type { useCleanup } from './lifecycle.js';

export interface RunningServe {
  readonly url: string;
  readonly port: number;
  readonly monitor: Monitor;
  readonly http: HttpServer;
}

/** The app on 127.0.0.1 with the monitor `pgshelf serve` builds; its status report is cached `ttlMs` only. */
export async function startServe(
  env: Env,
  defer: ReturnType<typeof useCleanup>,
  options: { ttlMs?: number } = {},
): Promise<RunningServe> {
  const config = testConfig(env);
  const storage = createStorage(config.storage);
  await storage.open();
  const monitor = createMonitor({ config, storage, logger: silentLogger(), ttlMs: options.ttlMs ?? 200 });
  const http = await startServer({ monitor, host: '127.0.0.1', port: 0, token: config.http.token });
  defer(async () => {
    await http.close(1000);
    await monitor.close();
    await storage.close();
  });
  return { url: http.url.replace(/\/$/, ''), port: http.port, monitor, http };
}

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
}

/** A browser's worth of HTTP: cookies kept across requests, redirects not followed (so they can be read). */
export class Session {
  private readonly cookies = new Map<string, string>();

  constructor(
    readonly base: string,
    private readonly headers: Record<string, string> = {},
  ) {}

  async request(path: string, init: RequestInit = {}): Promise<Reply> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(this.base + path, {
      ...init,
      redirect: 'manual',
      headers: {
        ...this.headers,
        ...(cookie ? { cookie } : {}),
        ...(init.headers as Record<string, string>),
      },
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      if (attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return { status: res.status, headers: res.headers, body: await res.text() };
  }

  get(path: string): Promise<Reply> {
    return this.request(path);
  }

  /** POSTs a form (urlencoded), from this server's own origin unless `origin` says otherwise. */
  post(path: string, fields: Record<string, string>, origin: string | null = this.base): Promise<Reply> {
    return this.request(path, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(origin !== null ? { origin } : {}),
      },
      body: new URLSearchParams(fields).toString(),
    });
  }

  cookie(name: string): string | undefined {
    return this.cookies.get(name);
  }
}

/** The CSRF token a page's forms carry. */
export function formToken(page: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(page);
  if (!m) throw new Error('no CSRF token in the page');
  return m[1]!;
}

/** HTML's character references, back to the characters. */
export function unescapeHtml(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&#96;/g, '`')
    .replace(/&amp;/g, '&');
}

/** What a person reads of an HTML fragment: tags (and the stylesheet) removed, whitespace collapsed. */
export function textOf(fragment: string): string {
  return unescapeHtml(
    fragment
      .replace(/<style>[\s\S]*?<\/style>/g, ' ')
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim(),
  );
}

/** A GET with a Host header of our choosing (fetch keeps its own), as a browser on a rebound name sends. */
export function getWithHost(url: string, host: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { ...headers, host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        resolve({ status: res.statusCode ?? 0, headers: h, body });
      });
    });
    req.on('error', reject);
  });
}
