import { describe, expect, it } from 'vitest';
import { maskUrl } from '../../src/url.js';

describe('maskUrl', () => {
  it.each([
    ['redis://:s3cret@127.0.0.1:6379', 'redis://:***@127.0.0.1:6379'],
    ['rediss://default:s3cret@redis.internal:6380/2', 'rediss://default:***@redis.internal:6380/2'],
    ['redis://user:p%40ss@host', 'redis://user:***@host'],
    ['http://key:secret/with/slash@minio:9000', 'http://key:***@minio:9000'],
    ['redis//:s3cret@127.0.0.1', 'redis//:***@127.0.0.1'],
    ['redis:/u:p@ss@host', 'redis:/u:***@host'],
  ])('masks the password of %s', (raw, masked) => {
    expect(maskUrl(raw)).toBe(masked);
  });

  it.each([
    'redis://127.0.0.1:6379',
    'redis://user@host:6379',
    'https://s3.example.com:9000/x?owner=a@b',
    'not a url',
  ])('leaves %s as it is', (raw) => {
    expect(maskUrl(raw)).toBe(raw);
  });
});
