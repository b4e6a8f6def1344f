import { describe, expect, it } from 'vitest';
import { TailBuffer, withoutRowData } from '../../src/postgres/child.js';

describe('row data in tool messages', () => {
  it.each([
    [
      'psql:<stdin>:42: ERROR:  invalid input syntax for type integer: "sk_live_1"',
      'psql:<stdin>:42: ERROR:  invalid input syntax for type integer: (value not shown)',
    ],
    [
      'CONTEXT:  COPY users, line 2, column id: "sk_live_1"',
      'CONTEXT:  COPY users, line 2, column id: (value not shown)',
    ],
    ['CONTEXT:  COPY users, line 7: "7\tsk_live_1\tx"', 'CONTEXT:  COPY users, line 7: (value not shown)'],
    [
      'DETAIL:  Key (email)=(sk_live_1@example.com) already exists.',
      'DETAIL:  Key (email)=(value not shown) already exists.',
    ],
    [
      'DETAIL:  Failing row contains (1, sk_live_1, null).',
      'DETAIL:  Failing row contains (value not shown).',
    ],
    ['CONTEXT:  COPY users, line 2', 'CONTEXT:  COPY users, line 2'],
    [
      'ERROR:  duplicate key value violates unique constraint "users_email_key"',
      'ERROR:  duplicate key value violates unique constraint "users_email_key"',
    ],
    [
      'ERROR:  relation "app.no_such_table" does not exist',
      'ERROR:  relation "app.no_such_table" does not exist',
    ],
  ])('%j', (line, expected) => {
    expect(withoutRowData(line)).toBe(expected);
  });

  it('applies to every line a tail gives', () => {
    const tail = new TailBuffer();
    tail.push(Buffer.from('ERROR:  bad: "secret"\nCONTEXT:  COPY t, line 3: "secret"\n'));
    expect(tail.text()).not.toContain('secret');
  });
});
