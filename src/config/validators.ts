/**
 * Small named validators shared by the environment and the YAML file, one message each. A validator gets the raw
 * text, how to name it (`POSTGRES_PORT=` or `databases[0].port: `) and a good example, and returns the value or
 * throws a ConfigError naming the setting, the bad value and the example.
 */
import zlib from 'node:zlib';
import { ConfigError } from '../errors.js';
import { maskUrl } from '../url.js';
import { validateCron, validateTimezone } from '../cron.js';

/** How a message names a setting: the environment's `NAME=value`, or the YAML file's `where.key: value`. */
export interface Naming {
  /** What the bad value is shown after: `POSTGRES_PORT` or `databases[0].port`. */
  readonly label: string;
  /** `=` for the environment, `: ` for YAML. */
  readonly sep: string;
  /** What the example is shown after: the variable, or the bare YAML key. */
  readonly exampleKey: string;
}

export const envNaming = (name: string): Naming => ({ label: name, sep: '=', exampleKey: name });
export const yamlNaming = (label: string, key: string): Naming => ({ label, sep: ': ', exampleKey: key });

export type Validator<T> = (raw: string, n: Naming, example: string) => T;

/** The one shape of "bad value" messages. `shown` undefined: the value is secret and never printed. */
export function invalid(
  n: Naming,
  shown: string | undefined,
  expected: string,
  example: string,
): ConfigError {
  const value = shown === undefined ? '' : `${n.sep}${JSON.stringify(shown)}`;
  return new ConfigError(
    `${n.label}${value} is invalid: ${expected}, e.g. ${n.exampleKey}${n.sep}${example}`,
  );
}

export const text: Validator<string> = (raw) => raw;

export function wholeNumber(min: number, max: number): Validator<number> {
  return (raw, n, example) => {
    const trimmed = raw.trim();
    const v = Number(trimmed);
    if (!/^\d+$/.test(trimmed) || v < min || v > max) {
      throw invalid(n, raw, `expected a whole number from ${min} to ${max}`, example);
    }
    return v;
  };
}

export const port: Validator<number> = wholeNumber(1, 65535);

/** How many backups a retention rule keeps. */
export const retentionCount = (min: 0 | 1): Validator<number> => wholeNumber(min, 100_000);

/** A number of seconds, as milliseconds. */
export function seconds(min: number, max: number): Validator<number> {
  const whole = wholeNumber(min, max);
  return (raw, n, example) => whole(raw, n, example) * 1000;
}

/** A number of hours, as milliseconds. */
export function hours(min: number, max: number, whyMin: string): Validator<number> {
  const whole = wholeNumber(min, max);
  return (raw, n, example) => {
    if (/^\s*0+\s*$/.test(raw) && min > 0) throw invalid(n, raw, whyMin, example);
    return whole(raw, n, example) * 3_600_000;
  };
}

export const bool: Validator<boolean> = (raw, n, example) => {
  if (/^(true|1|yes)$/i.test(raw)) return true;
  if (/^(false|0|no)$/i.test(raw)) return false;
  throw invalid(n, raw, 'expected true or false', example);
};

/** One of `values`; `shown` lists them in the message when some accepted ones are not worth advertising. */
export function oneOf<const T extends string>(values: readonly T[], shown?: readonly string[]): Validator<T> {
  const list = shown ?? values;
  const words = `${list.slice(0, -1).join(', ')} or ${list[list.length - 1]}`;
  return (raw, n, example) => {
    if (!(values as readonly string[]).includes(raw)) throw invalid(n, raw, `expected ${words}`, example);
    return raw as T;
  };
}

/** `gzip` or `zstd`; zstd only where Node's zlib has it (22.15 / 23.8 and later), refused at start otherwise. */
export const compression: Validator<'gzip' | 'zstd'> = (raw, n, example) => {
  const value = oneOf(['gzip', 'zstd'])(raw, n, example);
  if (
    value === 'zstd' &&
    typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress !== 'function'
  ) {
    throw new ConfigError(
      `${n.label}${n.sep}zstd needs Node 22.15 (or 23.8) or later, whose zlib has zstd; this is Node ` +
        `${process.version}. Upgrade Node, or use ${n.exampleKey}${n.sep}gzip`,
    );
  }
  return value;
};

export function matching(pattern: RegExp, expected: string): Validator<string> {
  return (raw, n, example) => {
    if (!pattern.test(raw)) throw invalid(n, raw, expected, example);
    return raw;
  };
}

/** Like matching(), for a secret (a token): the message names the setting and the rule, never the value. */
export function secretMatching(pattern: RegExp, expected: string): Validator<string> {
  return (raw, n, example) => {
    if (!pattern.test(raw)) throw invalid(n, undefined, expected, example);
    return raw;
  };
}

/** A URL whose scheme matches; any password in it is masked in the message. */
export function url(scheme: RegExp, expected: string): Validator<string> {
  return (raw, n, example) => {
    if (!scheme.test(raw)) throw invalid(n, maskUrl(raw), expected, example);
    return raw;
  };
}

function isHttpUrl(u: string): boolean {
  if (/\s/.test(u)) return false;
  try {
    const parsed = new URL(u);
    return (parsed.protocol === 'http:' || parsed.protocol === 'https:') && parsed.host !== '';
  } catch {
    return false;
  }
}

/** One http(s) URL; any password masked in messages. */
export const httpUrl: Validator<string> = (raw, n, example) => {
  if (!isHttpUrl(raw.trim())) throw invalid(n, maskUrl(raw), 'expected an http(s) URL', example);
  return raw.trim();
};

/** One or more http(s) URLs, comma-separated (blanks around commas allowed); any password masked in messages. */
export const urlList: Validator<readonly string[]> = (raw, n, example) => {
  const urls = raw
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  if (urls.length === 0) throw invalid(n, raw, 'expected one or more http(s) URLs, comma-separated', example);
  const bad = urls.find((u) => !isHttpUrl(u));
  if (bad !== undefined) {
    const why =
      urls.length === 1
        ? 'expected an http(s) URL (several are comma-separated)'
        : `"${maskUrl(bad)}" is not an http(s) URL`;
    throw invalid(n, maskUrl(raw), why, example);
  }
  return Object.freeze([...new Set(urls)]);
};

/** A shared secret: long enough to resist guessing, no blanks around it; never printed in a message. */
export function secret(min: number): Validator<string> {
  return (raw, n, example) => {
    if (raw.length < min || raw.trim() !== raw) {
      const blanks = raw.trim() !== raw ? ' with leading or trailing blanks' : '';
      throw invalid(n, undefined, `it has ${raw.length} characters${blanks}; use at least ${min}`, example);
    }
    return raw;
  };
}

export const hostName: Validator<string> = (raw, n, example) => {
  const host = raw.trim();
  if (host === '' || /\s/.test(host)) {
    throw invalid(n, raw, 'expected a host name or a UNIX socket directory', example);
  }
  return host;
};

export const cron: Validator<string> = (raw, n) => {
  validateCron(raw, n.label, n.sep, n.exampleKey);
  return raw;
};

export const timezone: Validator<string> = (raw, n, example) =>
  validateTimezone(raw, n.label, example, n.sep, n.exampleKey);

/** DB_ECHO follows the published convention: `true`, `True` or `1` turn it on, and nothing else does. */
export function parseDbEcho(raw: string | undefined): boolean {
  if (raw === undefined) return false;
  if (raw === 'true' || raw === 'True' || raw === '1') return true;
  if (raw === '' || raw === 'false' || raw === 'False' || raw === '0') return false;
  throw new ConfigError(
    `DB_ECHO=${JSON.stringify(raw)} is not recognised: use true, True or 1 to log every SQL statement and ` +
      `child command, or false, False or 0 (or leave it unset) for quiet, e.g. DB_ECHO=true`,
  );
}

export const dbEcho: Validator<boolean> = (raw) => parseDbEcho(raw);

/** Long enough to resist guessing; the value itself never appears in a message. */
export const MIN_MANIFEST_KEY_LENGTH = 32;

export const manifestKey: Validator<string> = (raw, n, example) => {
  if (raw.length < MIN_MANIFEST_KEY_LENGTH || raw.trim() !== raw) {
    const blanks = raw.trim() !== raw ? ' with leading or trailing blanks' : '';
    throw invalid(
      n,
      undefined,
      `it has ${raw.length} characters${blanks}; use at least ${MIN_MANIFEST_KEY_LENGTH} random characters`,
      example,
    );
  }
  return raw;
};
