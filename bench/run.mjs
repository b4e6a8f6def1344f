#!/usr/bin/env node
// npm run bench: every benchmark, one after another, each measuring pgshelf side by side with the plain tools.
//   npm run bench -- [--size-mb 1024] [--small-mb 128] [--reps N] [--small-reps 5] [--only backup,restore,...]
//   npm run bench -- --table      (only print the table of the last run's .bench/results.json)
// Each script prints its JSON summary last on stdout; this collects them into .bench/results.json and ends with
// one table of every same-run ratio (also written to .bench/table.md): the table the README quotes.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { benchTable, machine, root } from './lib.mjs';

const resultsFile = path.join(root, '.bench', 'results.json');
if (process.argv.includes('--table')) {
  console.log(benchTable(JSON.parse(await readFile(resultsFile, 'utf8')), await machine()));
  process.exit(0);
}

const argv = process.argv.slice(2);
const onlyIndex = argv.indexOf('--only');
const only = onlyIndex >= 0 ? argv[onlyIndex + 1].split(',') : undefined;
const passThrough = onlyIndex >= 0 ? argv.filter((_, i) => i !== onlyIndex && i !== onlyIndex + 1) : argv;

const benches = ['backup', 'restore', 'scheduler', 'prune', 'memory'].filter(
  (name) => (!only || only.includes(name)) && existsSync(path.join(root, 'bench', `${name}.mjs`)),
);

function run(name) {
  return new Promise((resolve, reject) => {
    console.error(`\n=== bench: ${name}`);
    const child = spawn(
      process.execPath,
      ['--openssl-legacy-provider', path.join(root, 'bench', `${name}.mjs`), ...passThrough],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`bench ${name} exited ${code}`));
      const start = out.lastIndexOf('\n{');
      try {
        resolve(JSON.parse(start >= 0 ? out.slice(start + 1) : out));
      } catch {
        resolve({ output: out.trim() });
      }
    });
  });
}

const results = {};
let failed = false;
for (const name of benches) {
  try {
    results[name] = await run(name);
  } catch (err) {
    failed = true;
    console.error(err.message);
  }
}
await mkdir(path.join(root, '.bench'), { recursive: true });
// A partial run (--only) keeps the other benchmarks' last results, so the table stays whole.
const previous = await readFile(resultsFile, 'utf8').then(JSON.parse, () => ({}));
const merged = { ...previous, ...results };
await writeFile(resultsFile, JSON.stringify(merged, null, 2) + '\n');
console.log(JSON.stringify(results, null, 2));
const table = benchTable(merged, await machine());
await writeFile(path.join(root, '.bench', 'table.md'), table + '\n');
console.log(`\n${table}`);
process.exitCode = failed ? 1 : 0;
