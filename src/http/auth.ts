/**
 * Who may read `pgshelf serve`: on a loopback address anyone who can reach it (the host's own users); on any
 * other address, PGSHELF_HTTP_TOKEN is required to start, and every route but /healthz asks for it, as a bearer
 * token or as the password of HTTP basic auth (what a browser's prompt and Prometheus' basic_auth send).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import { ConfigError } from '../errors.js';

/** 127.0.0.0/8, ::1, and the name localhost: only this host can connect. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (h.startsWith('::ffff:')) return isLoopback(h.slice(7));
  return isIP(h) === 4 && h.startsWith('127.');
}

/**
 * The token `serve` must use on `host`, or undefined when none is needed. Throws ConfigError off loopback
 * without one: an open dashboard with POST buttons on a network address is not a default anyone wants.
 */
export function requiredToken(host: string, token: string | undefined): string | undefined {
  if (token !== undefined) return token;
  if (isLoopback(host)) return undefined;
  throw new ConfigError(
    `PGSHELF_HTTP_HOST=${host} is not a loopback address, so \`pgshelf serve\` needs PGSHELF_HTTP_TOKEN: set it ` +
      'to a random secret of 16 characters or more (e.g. PGSHELF_HTTP_TOKEN=$(openssl rand -hex 24)), or listen ' +
      'on PGSHELF_HTTP_HOST=127.0.0.1',
  );
}

/** Compares in constant time (over digests, so the lengths do not leak either). */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The credential a request carries: a bearer token, or the password of basic auth (any user name). */
export function presentedToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const bearer = /^Bearer\s+(.+)$/i.exec(authorization);
  if (bearer) return bearer[1]!.trim();
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(authorization.trim());
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon === -1 ? undefined : decoded.slice(colon + 1);
  }
  return undefined;
}

/** Middleware: passes requests that carry `token`; answers 401 with WWW-Authenticate otherwise. */
export function requireToken(token: string | undefined) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (token === undefined) return next();
    const given = presentedToken(req.headers.authorization);
    if (given !== undefined && sameSecret(given, token)) return next();
    res
      .status(401)
      .set('WWW-Authenticate', 'Basic realm="pgshelf", charset="UTF-8", Bearer realm="pgshelf"')
      .json({
        error:
          given === undefined
            ? 'authentication required: send PGSHELF_HTTP_TOKEN as "Authorization: Bearer <token>" or as the basic-auth password'
            : 'wrong token',
      });
  };
}

/**
 * Without PGSHELF_HTTP_TOKEN (a loopback address), answers only requests addressed to a loopback name: a web
 * page whose own host name an attacker points at 127.0.0.1 (DNS rebinding) would otherwise be same-origin with
 * the dashboard and could read its forms.
 */
export function loopbackHostOnly(token: string | undefined, bindHost: string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (token !== undefined) return next();
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (isLoopback(host) || host.toLowerCase() === bindHost.toLowerCase()) return next();
    res
      .status(403)
      .type('text/plain')
      .send(
        `pgshelf serve runs without PGSHELF_HTTP_TOKEN, so it answers only requests addressed to a loopback name ` +
          `(localhost, 127.0.0.1, [::1]); this one was addressed to "${host}". Open it as http://127.0.0.1:PORT/, or ` +
          'set PGSHELF_HTTP_TOKEN to serve it under another name.\n',
      );
  };
}
