/**
 * CSRF protection of the dashboard's buttons: a signed double-submit token plus a same-origin check.
 *
 * The browser holds a random value in an HttpOnly, SameSite=Strict cookie; each form carries
 * HMAC(secret, that value). A page on another site can make the browser send the cookie (or, on an old browser,
 * plant one of its own) but can neither read it nor compute its HMAC, so it cannot fill in the form field. The
 * Origin (or Referer) of a POST, when the browser sends one, must also name this server.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

export const CSRF_COOKIE = 'pgshelf_csrf';
export const CSRF_FIELD = '_csrf';

export interface CsrfKeys {
  readonly secret: Buffer;
}

/**
 * The signing secret: derived from PGSHELF_HTTP_TOKEN when there is one, so tokens stay valid across restarts
 * and replicas of `serve` behind one name; else random for this process (a restart asks for a reload).
 */
export function csrfKeys(httpToken: string | undefined): CsrfKeys {
  const secret = httpToken
    ? createHmac('sha256', httpToken).update('pgshelf dashboard csrf v1').digest()
    : randomBytes(32);
  return { secret };
}

export function newCsrfCookieValue(): string {
  return randomBytes(18).toString('base64url');
}

/** The form token for the browser whose cookie holds `cookieValue`. */
export function csrfToken(keys: CsrfKeys, cookieValue: string): string {
  return createHmac('sha256', keys.secret).update(`csrf:${cookieValue}`).digest('base64url');
}

/** Whether `formToken` is the token of the cookie's value (constant time). */
export function csrfTokenValid(keys: CsrfKeys, cookieValue: string | undefined, formToken: unknown): boolean {
  if (!cookieValue || typeof formToken !== 'string' || formToken.length === 0) return false;
  const expected = Buffer.from(csrfToken(keys, cookieValue));
  const given = Buffer.from(formToken);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** One cookie's value from a Cookie header; undefined when absent or malformed. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    const value = part.slice(eq + 1).trim();
    return /^[A-Za-z0-9_-]{16,64}$/.test(value) ? value : undefined;
  }
  return undefined;
}

/** The Set-Cookie value that gives a browser its CSRF cookie (Secure when the page came over TLS). */
export function csrfCookieHeader(value: string, secure: boolean): string {
  return `${CSRF_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/**
 * Whether the request's Origin (else its Referer) names the host it was sent to: true, false, or undefined when
 * the client sent neither (not a browser submitting a form: curl, a script; the token still decides).
 */
export function sameOrigin(headers: IncomingHttpHeaders): boolean | undefined {
  const host = headers.host;
  const from = headers.origin ?? headers.referer;
  if (from === undefined) return undefined;
  if (!host || from === 'null') return false;
  try {
    return new URL(from).host === host.toLowerCase();
  } catch {
    return false;
  }
}
