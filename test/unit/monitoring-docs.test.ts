/** README "Monitoring" and the metrics `pgshelf serve` exports: the table lists each, the alert rules name no other. */
import { readFile } from 'node:fs/promises';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { defineGauges } from '../../src/http/metrics.js';

async function monitoringSection(): Promise<string> {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('\n## Monitoring\n');
  expect(start).toBeGreaterThan(0);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

function exported(): Set<string> {
  const registry = new Registry();
  defineGauges(registry);
  return new Set(registry.getMetricsAsArray().map((m) => m.name));
}

function yamlBlocks(section: string): unknown[] {
  return [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => parse(m[1]!) as unknown);
}

describe('README Monitoring', () => {
  it('lists every metric serve exports, and no other', async () => {
    const section = await monitoringSection();
    const documented = new Set(
      section
        .split('\n')
        .filter((line) => line.startsWith('| `pgshelf_'))
        .flatMap((line) => [...line.split('|')[1]!.matchAll(/`(pgshelf_[a-z_]+)/g)].map((m) => m[1]!)),
    );
    expect([...documented].sort()).toEqual([...exported()].sort());
  });

  it('has alert rules that parse as YAML and name only exported metrics', async () => {
    const blocks = yamlBlocks(await monitoringSection());
    const rules = blocks.flatMap((b) =>
      ((b as { groups?: { rules: { alert: string; expr: string }[] }[] }).groups ?? []).flatMap(
        (g) => g.rules,
      ),
    );
    expect(rules.length).toBeGreaterThanOrEqual(5);
    const names = exported();
    for (const rule of rules) {
      expect(rule.alert, JSON.stringify(rule)).toMatch(/^Pgshelf[A-Za-z]+$/);
      const used = [...String(rule.expr).matchAll(/pgshelf_[a-z_]+/g)].map((m) => m[0]);
      expect(used.length, rule.alert).toBeGreaterThan(0);
      expect(
        used.filter((n) => !names.has(n)),
        rule.alert,
      ).toEqual([]);
    }
    // The contract's names are all there for alerting.
    for (const name of [
      'pgshelf_backup_overdue',
      'pgshelf_backup_last_status',
      'pgshelf_backup_last_success_timestamp_seconds',
      'pgshelf_drill_last_success_timestamp_seconds',
      'pgshelf_drill_last_restore_seconds',
    ]) {
      expect(
        rules.some((r) => String(r.expr).includes(name)),
        name,
      ).toBe(true);
    }
  });
});
