/**
 * Scrapes `pgshelf serve` as Prometheus would and parses the text format with parse-prometheus-text-format (a
 * port of Prometheus' own client parser, prom2json-compatible output), never with a regex on one line.
 */
import parsePrometheusTextFormat, { type ParsedFamily } from 'parse-prometheus-text-format';

export interface Scrape {
  readonly families: ReadonlyMap<string, ParsedFamily>;
  /** The value of `name`'s one sample whose labels equal `labels`, or undefined when there is none. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Every sample of `name`, as (labels, value). */
  samples(name: string): { labels: Record<string, string>; value: number }[];
}

export function authHeader(token: string | undefined): Record<string, string> {
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

export function parseMetrics(text: string): Scrape {
  const families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  const samples = (name: string): { labels: Record<string, string>; value: number }[] => {
    const f = families.get(name);
    if (!f) return [];
    return f.metrics.map((m) => {
      const value = Number(m.value);
      // The parser takes any word for a value: a non-number is a bug in the exposition, not a sample.
      if (Number.isNaN(value) && m.value !== 'NaN')
        throw new Error(`${name}: value ${m.value} is not a number`);
      return { labels: { ...m.labels }, value };
    });
  };
  return {
    families,
    samples,
    value(name, labels = {}) {
      const same = (l: Record<string, string>): boolean =>
        Object.keys(l).length === Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => l[k] === v);
      const found = samples(name).filter((s) => same(s.labels));
      if (found.length > 1) throw new Error(`${name}${JSON.stringify(labels)} has ${found.length} samples`);
      return found[0]?.value;
    },
  };
}

export async function scrape(baseUrl: string, token?: string): Promise<Scrape> {
  const res = await fetch(new URL('metrics', baseUrl), { headers: authHeader(token) });
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${await res.text()}`);
  const type = res.headers.get('content-type') ?? '';
  if (!type.startsWith('text/plain')) throw new Error(`GET /metrics has content type ${type}`);
  return parseMetrics(await res.text());
}
