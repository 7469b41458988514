/**
 * Compiles the CLI (src/main.ts and everything it imports lazily) to JavaScript in dist/, so that
 * `runbook` starts without compiling TypeScript (issue #18: `--help` and `status` in ≤300 ms).
 *
 *   node scripts/build.mjs            build if any source is newer than the last build
 *   node scripts/build.mjs --force    build anyway
 *
 * One esbuild bundle with code splitting: the command definitions load at start, each command's
 * implementation is a chunk loaded when it runs; npm packages stay in node_modules. The worker
 * still bundles the workflows from src/ (Temporal's bundler), wherever it is started from.
 *
 * dist is a symlink to .build/<id>/, replaced atomically: a CLI that is running keeps importing its
 * own chunks (node resolves them through the real path), several CLIs may build at once (a lock
 * directory lets one build and the others wait), and a build older than a day is removed.
 */
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const builds = join(root, '.build');
const dist = join(root, 'dist');
const lock = join(builds, 'lock');
/** What a build depends on besides the sources (the same list as bin/runbook's freshness check). */
const inputs = ['src', 'package-lock.json', 'tsconfig.json', 'scripts/build.mjs'];

function newestInput() {
  let newest = 0;
  const visit = (path) => {
    const s = statSync(path);
    newest = Math.max(newest, s.mtimeMs);
    if (s.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
  };
  for (const i of inputs) if (existsSync(join(root, i))) visit(join(root, i));
  return newest;
}

function upToDate() {
  const stamp = join(dist, '.stamp');
  return existsSync(stamp) && statSync(stamp).mtimeMs >= newestInput();
}

/**
 * What goes into the bundle: the packages the CLI's quick commands load (protobufjs: status's quick
 * reads use its minimal build), with everything they import (node resolves and lexes hundreds of
 * CommonJS files otherwise: a third of `status`).
 * Every other package stays in node_modules; so do the ones a worker in this process shares state
 * with (the activity context lives in @temporalio/activity: one copy, the worker's) and native ones.
 */
const BUNDLED = new Set(['@temporalio/client', '@temporalio/common', '@temporalio/proto', '@temporalio/envconfig', '@temporalio/workflow', 'commander', 'yaml', 'zod', 'mysql2', 'cli-table3', 'protobufjs']);
const NEVER_BUNDLED = new Set(['@temporalio/worker', '@temporalio/activity', '@temporalio/testing', '@temporalio/core-bridge', '@swc/core', 'webpack']);
const packageOf = (specifier) => specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/');
const packagesOnTheStartPath = {
  name: 'packages-on-the-start-path',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('node:')) return undefined;
      const pkg = packageOf(args.path);
      const fromOurCode = !args.importer.includes(`${'/'}node_modules${'/'}`);
      if (NEVER_BUNDLED.has(pkg) || (fromOurCode && !BUNDLED.has(pkg))) return { path: args.path, external: true };
      return undefined;
    });
  },
};

/**
 * One protobufjs where npm installed the same version twice (@temporalio/common's and
 * @temporalio/proto's nested copies): every import of it resolves to the first copy of its version
 * found, so a command that loads Temporal's client compiles it once. Another version (the top-level
 * one that @grpc/proto-loader uses) stays its own.
 */
const oneProtobufPerVersion = {
  name: 'one-protobufjs-per-version',
  setup(b) {
    const firstCopy = new Map(); // version → package directory
    b.onResolve({ filter: /^protobufjs(\/|$)/ }, async (args) => {
      if (args.pluginData?.deduped) return undefined;
      const found = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: { deduped: true } });
      const at = found.path?.lastIndexOf('/node_modules/protobufjs/') ?? -1;
      if (found.errors.length || found.external || at < 0) return found.errors.length ? undefined : found;
      const dir = found.path.slice(0, at + '/node_modules/protobufjs'.length);
      const version = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
      if (!firstCopy.has(version)) firstCopy.set(version, dir);
      const home = firstCopy.get(version);
      return home === dir ? found : { path: home + found.path.slice(dir.length) };
    });
  },
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function withLock(fn) {
  mkdirSync(builds, { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      // A builder that died leaves its lock: a build takes seconds, so after two minutes it is stale.
      if (Date.now() - statSync(lock, { throwIfNoEntry: false })?.mtimeMs > 120_000) rmSync(lock, { recursive: true, force: true });
      await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** The build, as test/unit/cliStartup.test.ts checks it too. */
export function buildOptions(outdir) {
  return {
    entryPoints: [join(root, 'src', 'main.ts')],
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outdir,
    sourcemap: 'linked',
    logLevel: 'warning',
    plugins: [packagesOnTheStartPath, oneProtobufPerVersion],
    // Bundled CommonJS packages call require(); an ES module has none of its own.
    banner: { js: "// built by scripts/build.mjs from src/; do not edit\nimport { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  };
}

/**
 * The quick commands, each also built on its own into one CommonJS file, quick/<name>.cjs, that the
 * CLI runs with V8's code cache (src/cli/actions/codeCache.ts: Node 20 caches no ES module's code).
 * Only what the command loads every time is in it; what it may load besides (Temporal's client,
 * when status hands a read over) is handed in from the ES module build.
 */
export const QUICK_COMMANDS = { status: 'src/cli/actions/status.ts', log: 'src/cli/actions/log.ts' };

export function quickBuildOptions(outdir) {
  return {
    entryPoints: Object.entries(QUICK_COMMANDS).map(([name, file]) => ({ in: join(root, file), out: join('quick', name) })),
    outExtension: { '.js': '.cjs' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outdir,
    // Less to read at each start (names are kept: a stack trace still reads).
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'warning',
    plugins: [packagesOnTheStartPath],
    banner: { js: '// built by scripts/build.mjs from src/; do not edit' },
  };
}

async function main() {
  const force = process.argv.includes('--force');
  await withLock(async () => {
    if (!force && upToDate()) return;
    const startedAt = new Date();
    const id = `${startedAt.toISOString().replace(/[-:.TZ]/g, '')}-${process.pid}`;
    const out = join(builds, id);
    await Promise.all([build(buildOptions(out)), build(quickBuildOptions(out))]);
    // The stamp carries the build's start: a source saved during the build makes the next run rebuild.
    writeFileSync(join(out, '.stamp'), `${id}\n`);
    utimesSync(join(out, '.stamp'), startedAt, startedAt);
    const link = join(builds, `dist-${id}`);
    symlinkSync(join('.build', id), link);
    renameSync(link, dist);
    for (const old of readdirSync(builds)) {
      if (old === id || old === 'lock') continue;
      const path = join(builds, old);
      const s = statSync(path, { throwIfNoEntry: false });
      if (s && Date.now() - s.mtimeMs > 86_400_000) rmSync(path, { recursive: true, force: true });
    }
    console.error(`built dist/ (${id})`);
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
