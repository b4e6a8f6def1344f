#!/usr/bin/env node
// npm run bench: every benchmark, one after another, each measuring pgshelf side by side with the plain tools.
//   npm run bench -- [--size-mb 1024] [--small-mb 128] [--reps N] [--small-reps 5] [--only backup,restore,scheduler,prune]
// Each script prints its JSON summary last on stdout; this collects them into .bench/results.json.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { root } from './lib.mjs';

const argv = process.argv.slice(2);
const onlyIndex = argv.indexOf('--only');
const only = onlyIndex >= 0 ? argv[onlyIndex + 1].split(',') : undefined;
const passThrough = onlyIndex >= 0 ? argv.filter((_, i) => i !== onlyIndex && i !== onlyIndex + 1) : argv;

const benches = ['backup', 'restore', 'scheduler', 'prune'].filter(
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
await writeFile(path.join(root, '.bench', 'results.json'), JSON.stringify(results, null, 2) + '\n');
console.log(JSON.stringify(results, null, 2));
process.exitCode = failed ? 1 : 0;
