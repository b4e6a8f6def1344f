// @ts-check
// The layers of src/ (README "Code map"): a module may import its own layer and the ones below, never above.
// `npm run lint` runs this; a cycle or an upward import fails it.
const LAYERS = [
  {
    name: 'base',
    paths: [
      'config/',
      'cron\\.ts$',
      'errors\\.ts$',
      'logger\\.ts$',
      'url\\.ts$',
      'concurrency\\.ts$',
      'names\\.ts$',
      'gc\\.ts$',
    ],
  },
  { name: 'storage, postgres', paths: ['storage/', 'postgres/'] },
  { name: 'catalog', paths: ['catalog/'] },
  { name: 'archive', paths: ['archive/'] },
  { name: 'jobs', paths: ['jobs/'] },
  {
    name: 'worker, scheduler, queues, monitor, alerts',
    paths: ['worker/', 'scheduler/', 'queues\\.ts$', 'monitor/', 'alerts/'],
  },
  { name: 'cli, http', paths: ['cli/', 'http/'] },
];

/** @param {string[]} paths */
const pattern = (paths) => `^src/(${paths.join('|')})`;

/** @type {import('dependency-cruiser').IForbiddenRuleType[]} */
const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${layer.name.replace(/, /g, '-')}`,
  comment: `${layer.name} sits below ${LAYERS.slice(i + 1)
    .map((l) => l.name)
    .join(', ')}: imports point down only`,
  severity: 'error',
  from: { path: pattern(layer.paths) },
  to: { path: pattern(LAYERS.slice(i + 1).flatMap((l) => l.paths)) },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'no-circular',
      comment: 'An import cycle makes load order matter and hides which module owns what.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'job-imports-job',
      comment:
        'A job never imports another job: what two jobs share lives in archive/, catalog/ or postgres/.',
      severity: 'error',
      from: { path: '^src/jobs/(backup|restore|verify|drill|prune)\\b' },
      to: { path: '^src/jobs/(backup|restore|verify|drill|prune)\\b', pathNot: '^src/jobs/$1\\b' },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that does not resolve would hide its edge from the rules above.',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a type cycle is still a cycle between modules.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
