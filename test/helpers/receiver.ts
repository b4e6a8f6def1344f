/** A local HTTP receiver for webhooks and pings (node:http): records every request, answers as told. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { useCleanup } from './lifecycle.js';

export interface Received {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  /** The body exactly as received. */
  readonly raw: Buffer;
  readonly body: string;
}

export interface Receiver {
  /** Base URL, e.g. http://127.0.0.1:41234 (append a path of your own). */
  readonly url: string;
  readonly received: Received[];
  /** Requests received and not answered yet (a receiver told to hang). */
  open(): number;
  /** Parsed JSON bodies of the requests whose path starts with `path`. */
  json<T = Record<string, unknown>>(path?: string): T[];
}

/**
 * `answer`: the status to answer with (default 200), or 'hang' to never answer (the request stays open until
 * the test ends).
 */
export async function startReceiver(
  defer: ReturnType<typeof useCleanup>,
  answer: number | 'hang' = 200,
): Promise<Receiver> {
  const received: Received[] = [];
  let open = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      received.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        raw,
        body: raw.toString('utf8'),
      });
      if (answer === 'hang') {
        open++;
        res.on('close', () => open--);
        return;
      }
      res.writeHead(answer, { 'Content-Type': 'text/plain' }).end(answer < 300 ? 'OK' : 'nope');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    open: () => open,
    json: <T>(path = '/') =>
      received
        .filter((r) => r.path.startsWith(path) && r.body.startsWith('{'))
        .map((r) => JSON.parse(r.body) as T),
  };
}
