import { describe, expect, it } from 'vitest';
import { conninfoDbname } from '../../src/postgres/psql.js';

describe('conninfoDbname', () => {
  it('quotes database names for a libpq connection string', () => {
    expect(conninfoDbname("it's a\\b")).toBe("dbname='it\\'s a\\\\b'");
  });
});
