/**
 * The dashboard's pages as pure functions of the status report and the backups listing: HTML and a little
 * inline CSS, no script. Every value goes through `markup`, which escapes it.
 */
import { createHash } from 'node:crypto';
import type { ListedBackup } from '../catalog/backups.js';
import type { DatabaseStatus, LastDrill, StatusReport } from '../monitor/index.js';
import { formatBytes, formatDuration, shellQuote } from '../cli/format.js';
import { CSRF_FIELD } from './csrf.js';
import { markup, raw, type SafeHtml } from './html.js';

const CSS = `
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--mute:#59636e;--line:#d1d9e0;--bg:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328}
header{display:flex;gap:1.5em;align-items:baseline;padding:.7em 1.5em;background:#24292f;color:#fff}
header a{color:#fff;text-decoration:none}header .brand{font-weight:600;font-size:1.15em}
header .where{margin-left:auto;color:#c9d1d9;font-size:.9em}
main{padding:1em 1.5em;max-width:90em}
h1{font-size:1.4em;margin:.3em 0 .6em}h2{font-size:1.1em;margin:1.6em 0 .5em}
table{border-collapse:collapse;width:100%}
th,td{padding:.45em .7em;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap}
table.compact{width:auto;min-width:30em}
td.buttons{white-space:nowrap}
.sub{color:var(--mute);font-size:.88em}
.badge{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.85em;font-weight:600;border:1px solid}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.mute{color:var(--mute)}
.flash{padding:.6em 1em;border-radius:6px;margin:.5em 0 1em;border:1px solid}
.flash.ok{background:#dafbe1;border-color:#aceebb}.flash.bad{background:#ffebe9;border-color:#ffcecb}
.problems{background:#fff8c5;border:1px solid #eed888;border-radius:6px;padding:.5em 1em .5em 2em}
form.inline{display:inline}
button{font:inherit;padding:.25em .8em;border:1px solid var(--line);border-radius:6px;background:var(--bg);cursor:pointer}
button:hover{background:#eaeef2}button.primary{background:#1f883d;color:#fff;border-color:#1a7f37}
input[type=text],select{font:inherit;padding:.25em .5em;border:1px solid var(--line);border-radius:6px}
pre{background:var(--bg);padding:.6em .8em;border-radius:6px;margin:.4em 0;font-size:.9em;white-space:pre-wrap;overflow-wrap:anywhere}
td.drill{min-width:10em}
details summary{cursor:pointer;color:#0969da}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1.2em;margin:0}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0}
.actions{display:flex;gap:.6em;flex-wrap:wrap;align-items:center;margin:1em 0}
footer{padding:1em 1.5em;color:var(--mute);font-size:.85em}
`;

/** The CSP source of the one inline stylesheet: scripts, frames and everything else stay forbidden. */
export const STYLE_HASH = `'sha256-${createHash('sha256').update(CSS).digest('base64')}'`;

/** Content-Security-Policy of every dashboard page: no script at all, forms only to this server. */
export const DASHBOARD_CSP =
  `default-src 'none'; style-src ${STYLE_HASH}; img-src 'self' data:; form-action 'self'; ` +
  "frame-ancestors 'none'; base-uri 'none'";

export interface Flash {
  readonly ok: boolean;
  readonly text: string;
}

export interface PageChrome {
  /** The form token of this browser (csrf.ts). */
  readonly csrf: string;
  readonly flash?: Flash | undefined;
  /** When the report was read (shown in the footer). */
  readonly collectedAt?: Date | undefined;
  /** The report could not be refreshed: shown above the page. */
  readonly error?: string | undefined;
  readonly now: Date;
}

/** Where a database's page is. */
export function databasePath(name: string): string {
  return `/db/${encodeURIComponent(name)}`;
}

function layout(
  title: string,
  chrome: PageChrome,
  body: SafeHtml,
  options: { refresh?: number } = {},
): string {
  const flash = chrome.flash;
  return markup`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
${options.refresh ? markup`<meta http-equiv="refresh" content="${options.refresh}">` : ''}
<title>${title} · pgshelf</title><style>${raw(CSS)}</style></head>
<body><header><a class="brand" href="/">pgshelf</a><a href="/">databases</a><a href="/queues/">queues</a>
<span class="where">${title}</span></header>
<main>
${flash ? markup`<div class="flash ${flash.ok ? 'ok' : 'bad'}" role="status">${flash.text}</div>` : ''}
${chrome.error ? markup`<div class="flash bad">${chrome.error}</div>` : ''}
${body}
</main>
<footer>Status read ${chrome.collectedAt ? when(chrome.collectedAt.toISOString(), chrome.now) : 'never'}.
Reload the page for news; <a href="/queues/">queues</a> shows every job.</footer>
</body></html>
`.value;
}

/** "3 min ago" with the exact instant on hover. */
function when(iso: string, now: Date): SafeHtml {
  const ms = now.getTime() - Date.parse(iso);
  const text = Math.abs(ms) < 1000 ? 'just now' : ms > 0 ? `${ago(ms)} ago` : `in ${ago(-ms)}`;
  return markup`<time datetime="${iso}" title="${iso}">${text}</time>`;
}

function ago(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function button(action: string, label: string, csrf: string, back: string, primary = false): SafeHtml {
  return markup`<form class="inline" method="post" action="${action}"><input type="hidden" name="${CSRF_FIELD}" value="${csrf}"><input type="hidden" name="back" value="${back}"><button type="submit"${primary ? raw(' class="primary"') : ''}>${label}</button></form>`;
}

function drillText(drill: LastDrill | null, now: Date): SafeHtml {
  if (!drill) return markup`<span class="mute">never</span>`;
  return markup`<span class="${drill.verified ? 'ok' : 'bad'}">${drill.verified ? 'verified' : 'failed'}</span>
${when(drill.at, now)}<div class="sub">restore took ${formatDuration(drill.restoreMs)} · backup ${drill.backupId}</div>`;
}

function overdueBadge(db: DatabaseStatus): SafeHtml {
  if (db.missingFrom !== null) {
    return markup`<span class="badge warn" title="no longer exists on ${db.missingFrom}: no new backups are made">MISSING</span>`;
  }
  if (!db.overdue) return markup`<span class="mute">not scheduled here</span>`;
  return db.overdue.overdue
    ? markup`<span class="badge bad" title="no successful backup since the ${db.overdue.missedSlot?.local ?? ''} slot">OVERDUE</span>`
    : markup`<span class="badge ok">on time</span>`;
}

function attemptText(db: DatabaseStatus, now: Date): SafeHtml {
  const a = db.lastAttempt;
  if (!a) return markup`<span class="mute">none yet</span>`;
  const cls = a.status === 'succeeded' ? 'ok' : a.status === 'running' ? 'warn' : 'bad';
  return markup`<span class="${cls}">${a.status}</span> ${when(a.at, now)}${
    a.error ? markup`<div class="sub bad">${a.error}</div>` : ''
  }${
    a.status === 'interrupted'
      ? markup`<div class="sub">its worker stopped before recording an outcome (killed, or its host went down)</div>`
      : ''
  }`;
}

function nextSlotText(db: DatabaseStatus, now: Date): SafeHtml {
  if (!db.overdue || !db.schedule) return markup`<span class="mute">-</span>`;
  return markup`${when(db.overdue.nextSlot.at, now)}<div class="sub">${db.overdue.nextSlot.local.replace('T', ' ')} ${db.schedule.timezone}</div>`;
}

/** The flag of a database a `servers:` entry backed up and that its server no longer has. */
function missingNote(db: DatabaseStatus): SafeHtml | '' {
  return db.missingFrom === null
    ? ''
    : markup`<div class="sub warn"><b>missing from the server</b> ${db.missingFrom}, backups kept</div>`;
}

function overviewRow(db: DatabaseStatus, chrome: PageChrome): SafeHtml {
  const last = db.lastSuccess;
  const path = databasePath(db.name);
  return markup`<tr data-database="${db.name}">
<td><a href="${path}">${db.name}</a>${db.configured ? '' : markup`<div class="sub">found in storage; not configured here</div>`}${missingNote(db)}</td>
<td>${last ? markup`${when(last.finishedAt, chrome.now)}<div class="sub">${last.id}</div>` : markup`<span class="mute">never</span>`}</td>
<td class="num">${last ? formatBytes(last.bytes) : ''}</td>
<td class="num">${last ? formatDuration(last.durationMs) : ''}</td>
<td>${attemptText(db, chrome.now)}</td>
<td>${overdueBadge(db)}</td>
<td>${nextSlotText(db, chrome.now)}</td>
<td>${drillText(db.lastDrill, chrome.now)}</td>
<td class="num">${db.stored.count}<div class="sub">${formatBytes(db.stored.bytes)}</div></td>
<td class="buttons">${
    db.configured
      ? markup`${db.missingFrom === null ? button(`${path}/backup`, 'Back up now', chrome.csrf, 'overview', true) : ''} ${db.stored.count > 0 ? button(`${path}/drill`, 'Drill now', chrome.csrf, 'overview') : ''}`
      : ''
  }</td>
</tr>`;
}

function problemsList(databases: readonly DatabaseStatus[]): SafeHtml {
  const items = databases.flatMap((d) => d.problems.map((p) => markup`<li><b>${d.name}</b>: ${p}</li>`));
  return items.length ? markup`<ul class="problems">${items}</ul>` : markup``;
}

function queuesSummary(report: StatusReport): SafeHtml {
  const q = report.queues;
  if (!q.ok) return markup`<p class="bad">Queues: ${q.error}</p>`;
  const rows = Object.entries(q.counts).map(
    ([name, c]) =>
      markup`<tr><td><a href="/queues/queue/${encodeURIComponent(name)}">${name}</a></td><td class="num">${c.waiting + c.prioritized + c.paused}</td><td class="num">${c.active}</td><td class="num">${c.delayed}</td><td class="num">${c.failed}</td><td class="num">${c.completed}</td></tr>`,
  );
  const workers = q.workers.map(
    (w) => markup`<li>${w.name} <span class="sub">(${w.queues.join(', ')})</span></li>`,
  );
  return markup`<table class="compact"><thead><tr><th>queue</th><th class="num">waiting</th><th class="num">active</th><th class="num">retrying</th><th class="num">failed</th><th class="num">completed</th></tr></thead><tbody>${rows}</tbody></table>
<p>${q.workers.length} worker${q.workers.length === 1 ? '' : 's'} seen${workers.length ? markup`:</p><ul>${workers}</ul>` : markup`: start one with <code>pgshelf worker</code>.</p>`}`;
}

/** `/`: one row per database, the problems that need a person, and the queues. Refreshes itself each minute. */
export function overviewPage(report: StatusReport | undefined, chrome: PageChrome): string {
  if (!report) {
    return layout(
      'databases',
      chrome,
      markup`<h1>Databases</h1><p>No status report yet: reload in a moment.</p>`,
    );
  }
  const body = markup`<h1>Databases</h1>
<p class="sub">Storage ${report.storage}</p>
${problemsList(report.databases)}
${
  report.databases.length
    ? markup`<table id="databases"><thead><tr><th>database</th><th>last backup</th><th class="num">size</th><th class="num">took</th><th>last attempt</th><th>schedule</th><th>next slot</th><th>last drill</th><th class="num">stored</th><th></th></tr></thead>
<tbody>${report.databases.map((d) => overviewRow(d, chrome))}</tbody></table>`
    : markup`<p>No databases configured and none in storage: set POSTGRES_DB or PGSHELF_CONFIG.</p>`
}
<h2>Queues</h2>
${queuesSummary(report)}`;
  return layout('databases', chrome, body, { refresh: 60 });
}

export interface ByHandOptions {
  /** Where the archive is, as `Storage.locate` says: an absolute path or an s3:// URL. */
  readonly location: string;
  /** The role to own the new database (POSTGRES_USER). */
  readonly owner: string;
  /** S3_ENDPOINT, for `aws --endpoint-url`, when the storage is not AWS. */
  readonly s3Endpoint?: string | undefined;
  /** PGSHELF_AGE_IDENTITY_FILE (a path, never the key), for `age -d -i`; a placeholder when unset. */
  readonly identityFile?: string | undefined;
  readonly into?: string;
}

/**
 * The commands that restore one archive with PostgreSQL's own tools (README "Restoring"): createdb, then
 * gunzip into psql; the AWS CLI streams an S3 object, and `age -d` decrypts an encrypted one.
 */
export function restoreByHand(options: ByHandOptions): string {
  const into = options.into ?? 'NEW_DB';
  const loc = options.location;
  const encrypted = loc.endsWith('.age');
  const age = `age -d -i ${options.identityFile ? shellQuote(options.identityFile) : 'IDENTITY_FILE'}`;
  const psql = `psql -X -v ON_ERROR_STOP=1 -d ${shellQuote(into)}`;
  let source: string;
  if (loc.startsWith('s3://')) {
    const endpoint = options.s3Endpoint ? ` --endpoint-url ${shellQuote(options.s3Endpoint)}` : '';
    source = `aws${endpoint} s3 cp ${shellQuote(loc)} - | ${encrypted ? `${age} | ` : ''}gunzip -c`;
  } else {
    source = encrypted ? `${age} ${shellQuote(loc)} | gunzip -c` : `gunzip -c ${shellQuote(loc)}`;
  }
  return `createdb --owner=${shellQuote(options.owner)} ${shellQuote(into)}\n${source} | ${psql}`;
}

export interface DatabasePageModel {
  readonly name: string;
  /** From the status report; undefined when the database is neither configured nor in storage. */
  readonly status: DatabaseStatus | undefined;
  readonly backups: readonly ListedBackup[];
  readonly owner: string;
  readonly s3Endpoint?: string | undefined;
  readonly identityFile?: string | undefined;
  /** What the restore form shows: the name typed (after a refusal) or a suggestion. */
  readonly restoreInto: string;
  readonly restoreBackup?: string;
}

function statusCell(b: ListedBackup): SafeHtml {
  const cls = b.status === 'complete' ? 'ok' : 'bad';
  return markup`<span class="${cls}">${b.status}</span>${b.problem ? markup`<div class="sub bad">${b.problem}</div>` : ''}`;
}

function drillCell(b: ListedBackup, now: Date): SafeHtml {
  if (b.verified === null || b.verifiedAt === null) return markup`<span class="mute">not drilled</span>`;
  return markup`<span class="${b.verified ? 'ok' : 'bad'}">${b.verified ? 'verified' : 'failed'}</span> ${when(b.verifiedAt, now)}${
    b.drillRestoreMs !== null
      ? markup`<div class="sub">restore took ${formatDuration(b.drillRestoreMs)}</div>`
      : ''
  }`;
}

function backupRow(b: ListedBackup, model: DatabasePageModel, now: Date): SafeHtml {
  const byHand =
    b.archive && b.status !== 'orphan'
      ? markup`<details><summary>restore by hand</summary><pre>${restoreByHand({ location: b.archive, owner: model.owner, s3Endpoint: model.s3Endpoint, identityFile: model.identityFile })}</pre></details>`
      : '';
  return markup`<tr data-backup="${b.id}">
<td>${b.startedAt.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z')}<div class="sub">${when(b.startedAt, now)}</div></td>
<td><code>${b.id}</code></td>
<td class="num">${b.bytes !== null ? formatBytes(b.bytes) : ''}</td>
<td class="num">${b.durationMs !== null ? formatDuration(b.durationMs) : ''}</td>
<td>${statusCell(b)}</td>
<td class="drill">${drillCell(b, now)}</td>
<td>${byHand}</td>
</tr>`;
}

function restoreForm(model: DatabasePageModel, chrome: PageChrome): SafeHtml {
  const complete = model.backups.filter((b) => b.status === 'complete');
  if (complete.length === 0) return markup`<p class="mute">No complete backup to restore yet.</p>`;
  const options = [
    markup`<option value="latest">latest (${complete[0]!.id})</option>`,
    ...complete.map(
      (b) =>
        markup`<option value="${b.id}"${b.id === model.restoreBackup ? raw(' selected') : ''}>${b.id} · ${b.startedAt.replace('T', ' ').slice(0, 19)}</option>`,
    ),
  ];
  return markup`<form method="post" action="${databasePath(model.name)}/restore" class="actions">
<input type="hidden" name="${CSRF_FIELD}" value="${chrome.csrf}"><input type="hidden" name="back" value="database">
<label>Backup <select name="backup">${options}</select></label>
<label>New database <input type="text" name="into" value="${model.restoreInto}" required maxlength="63" pattern="[A-Za-z_][A-Za-z0-9_\\-]*" title="letters, digits, _ and -, starting with a letter or _"></label>
<button type="submit">Restore into a new database</button>
</form>
<p class="sub">A restore creates the new database and never touches an existing one; it fails if the name is taken.</p>`;
}

/** Why a database its server no longer has gets no "Back up now", and what still works. */
function missingExplained(name: string, server: string, drillable: boolean): SafeHtml {
  return markup`<p id="missing"><span class="badge warn">MISSING</span> <b>${name}</b> is missing from the server
${server}: it was dropped (or renamed) there, so there is nothing to back up and "Back up now" is not offered; no new
backups are made. Its backups below are kept: restore one into a new database here, or by hand.${
    drillable
      ? markup` "Drill now" still works: it restores the latest backup into a scratch database on ${server}, checks it and drops it.`
      : ''
  }</p>`;
}

/** `/db/NAME`: what the overview says of one database, its buttons, the restore form and every backup. */
export function databasePage(model: DatabasePageModel, chrome: PageChrome): string {
  const s = model.status;
  const path = databasePath(model.name);
  const facts = s
    ? markup`<dl class="facts">
<dt>last backup</dt><dd>${s.lastSuccess ? markup`${when(s.lastSuccess.finishedAt, chrome.now)} · ${formatBytes(s.lastSuccess.bytes)} in ${formatDuration(s.lastSuccess.durationMs)} · <code>${s.lastSuccess.id}</code>` : markup`<span class="mute">never</span>`}</dd>
<dt>last attempt</dt><dd>${attemptText(s, chrome.now)}</dd>
<dt>schedule</dt><dd>${s.schedule ? markup`<code>${s.schedule.schedule}</code> ${s.schedule.timezone} · ${overdueBadge(s)}` : overdueBadge(s)}</dd>
<dt>next slot</dt><dd>${nextSlotText(s, chrome.now)}</dd>
<dt>last drill</dt><dd>${drillText(s.lastDrill, chrome.now)}</dd>
<dt>stored</dt><dd>${s.stored.count} backup${s.stored.count === 1 ? '' : 's'}, ${formatBytes(s.stored.bytes)}${s.stored.orphans ? markup` · ${s.stored.orphans} orphan archives` : ''}</dd>
</dl>${problemsList([s])}`
    : markup`<p class="mute">Not in the latest status report.</p>`;
  const configured = s?.configured ?? false;
  const missingFrom = s?.missingFrom ?? null;
  const drillable = model.backups.some((b) => b.status === 'complete');
  const body = markup`<h1>${model.name}</h1>
${facts}
${
  configured
    ? markup`${missingFrom !== null ? missingExplained(model.name, missingFrom, drillable) : ''}<div class="actions">${missingFrom === null ? button(`${path}/backup`, 'Back up now', chrome.csrf, 'database', true) : ''}${drillable ? button(`${path}/drill`, 'Drill now', chrome.csrf, 'database') : ''}</div>
<h2>Restore into a new database</h2>${restoreForm(model, chrome)}`
    : markup`<p class="mute">This database is not configured in this server's settings, so it has no buttons: run
<code>pgshelf restore --db ${model.name} --into NEW_DB</code> where it is configured, or restore by hand.</p>`
}
<h2>Backups</h2>
${
  model.backups.length
    ? markup`<table id="backups"><thead><tr><th>started (UTC)</th><th>id</th><th class="num">size</th><th class="num">took</th><th>status</th><th>drill</th><th></th></tr></thead>
<tbody>${model.backups.map((b) => backupRow(b, model, chrome.now))}</tbody></table>`
    : markup`<p class="mute">No backups in storage yet.</p>`
}`;
  return layout(model.name, chrome, body);
}

/** A page for a refused request (403, 404, 400), with a way back. */
export function messagePage(title: string, message: string, chrome: PageChrome): string {
  return layout(
    title,
    chrome,
    markup`<h1>${title}</h1><p>${message}</p><p><a href="/">Back to the databases</a></p>`,
  );
}
