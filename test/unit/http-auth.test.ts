/** http/auth.ts: which addresses are loopback, what a request's credential is, and when serve refuses to start. */
import { describe, expect, it } from 'vitest';
import { isLoopback, presentedToken, requiredToken } from '../../src/http/auth.js';
import { ConfigError } from '../../src/errors.js';

describe('isLoopback', () => {
  it('accepts 127.0.0.0/8, ::1 and localhost; refuses every other address', () => {
    for (const h of [
      '127.0.0.1',
      '127.1.2.3',
      '::1',
      '[::1]',
      'localhost',
      'LOCALHOST',
      '::ffff:127.0.0.1',
    ]) {
      expect(isLoopback(h), h).toBe(true);
    }
    for (const h of [
      '0.0.0.0',
      '::',
      '10.0.0.1',
      '192.168.1.5',
      'example.com',
      '128.0.0.1',
      '::ffff:10.0.0.1',
    ]) {
      expect(isLoopback(h), h).toBe(false);
    }
  });
});

describe('requiredToken', () => {
  it('needs no token on loopback, uses one when given, and refuses a network address without one', () => {
    expect(requiredToken('127.0.0.1', undefined)).toBeUndefined();
    expect(requiredToken('127.0.0.1', 'x'.repeat(16))).toBe('x'.repeat(16));
    expect(requiredToken('0.0.0.0', 'y'.repeat(16))).toBe('y'.repeat(16));
    expect(() => requiredToken('0.0.0.0', undefined)).toThrow(ConfigError);
    expect(() => requiredToken('10.1.2.3', undefined)).toThrow(
      /PGSHELF_HTTP_TOKEN.*PGSHELF_HTTP_HOST=127\.0\.0\.1/,
    );
  });
});

describe('presentedToken', () => {
  it('reads a bearer token, or the password of basic auth whatever the user name', () => {
    expect(presentedToken('Bearer abc.def')).toBe('abc.def');
    expect(presentedToken('bearer   abc')).toBe('abc');
    const basic = (s: string): string => `Basic ${Buffer.from(s).toString('base64')}`;
    expect(presentedToken(basic('prometheus:s3cret:with:colons'))).toBe('s3cret:with:colons');
    expect(presentedToken(basic(':only-password'))).toBe('only-password');
  });

  it('finds nothing in a missing, empty or malformed header', () => {
    expect(presentedToken(undefined)).toBeUndefined();
    expect(presentedToken('')).toBeUndefined();
    expect(presentedToken('Token abc')).toBeUndefined();
    expect(presentedToken(`Basic ${Buffer.from('no-colon').toString('base64')}`)).toBeUndefined();
    expect(presentedToken('Basic !!!')).toBeUndefined();
  });
});
