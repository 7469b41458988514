/**
 * The layout holds: src/core is pure (nothing from adapters, activities or workflows, no Node
 * module), src/workflows touches no adapter (only types cross), the folders form no cycle, and the
 * control database's tables are named in SQL only under src/adapters/control.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = 'src';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

interface Import {
  from: string;
  /** The module as written: a package, `node:…`, or a path. */
  spec: string;
  /** A relative import resolved to a path under src (without extension). */
  target?: string;
  typeOnly: boolean;
}

function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const out: Import[] = [];
  const pattern = /^\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?'([^']+)'|import\(\s*'([^']+)'\s*\)/gm;
  for (const m of text.matchAll(pattern)) {
    const spec = m[3] ?? m[4]!;
    const typeOnly = Boolean(m[2]);
    const target = spec.startsWith('.') ? normalize(join(dirname(file), spec)).replace(/\.ts$/, '').replace(/\/index$/, '') : undefined;
    out.push({ from: file, spec, target, typeOnly });
  }
  return out;
}

/** The folder a path belongs to for layering: core, adapters/<system>, activities, workflows, cli, … */
function folderOf(path: string): string {
  const parts = relative(SRC, path).split('/');
  if (parts[0] === 'adapters' && parts.length > 2) return `adapters/${parts[1]}`;
  if (parts.length === 1) return parts[0]!.replace(/\.ts$/, '');
  return parts[0]!;
}

const files = sourceFiles(SRC);
const all = files.flatMap(importsOf);
const inFolder = (folder: string) => all.filter((i) => folderOf(i.from) === folder || folderOf(i.from).startsWith(`${folder}/`));

describe('layout', () => {
  it('src/core imports nothing from adapters, activities, workflows, cli, worker or server, and no Node module', () => {
    const bad = inFolder('core').filter(
      (i) => i.spec.startsWith('node:') || (i.target && !folderOf(i.target).startsWith('core')),
    );
    expect(bad.map((i) => `${i.from} → ${i.spec}`)).toEqual([]);
  });

  it('src/workflows imports no adapter (types of activities only)', () => {
    const bad = inFolder('workflows').filter((i) => i.spec.startsWith('node:') || (i.target && (folderOf(i.target).startsWith('adapters') || (folderOf(i.target) === 'activities' && !i.typeOnly))));
    expect(bad.map((i) => `${i.from} → ${i.spec}`)).toEqual([]);
  });

  it('the folders form no cycle', () => {
    const edges = new Map<string, Set<string>>();
    for (const i of all) {
      if (!i.target) continue;
      const [a, b] = [folderOf(i.from), folderOf(i.target)];
      if (a === b) continue;
      if (!edges.has(a)) edges.set(a, new Set());
      edges.get(a)!.add(b);
    }
    const cycles: string[] = [];
    const visit = (node: string, path: string[]) => {
      if (path.includes(node)) {
        cycles.push([...path.slice(path.indexOf(node)), node].join(' → '));
        return;
      }
      for (const next of edges.get(node) ?? []) visit(next, [...path, node]);
    };
    for (const node of edges.keys()) visit(node, []);
    expect([...new Set(cycles)]).toEqual([]);
  });

  it('server processes are started only through src/adapters/mariadbd/server.ts; the dev sandbox is not a production path', () => {
    const sandbox = all.filter((i) => i.target === 'src/adapters/mariadbd/sandbox' && !['cli', 'adapters/mariadbd'].includes(folderOf(i.from)));
    expect(sandbox.map((i) => `${i.from} → ${i.spec}`)).toEqual([]);
    const spawnsServer = files.filter((f) => f !== join(SRC, 'adapters', 'mariadbd', 'server.ts') && /spawn\([^)]*'mariadbd'|requireExecutable\('mariadbd'\)|findExecutable\('mariadbd'/.test(readFileSync(f, 'utf8')));
    expect(spawnsServer).toEqual([]);
  });

  it('only src/adapters/control names the control tables in SQL', () => {
    // Every table the control migrations create (a new runbook's tables are covered the day they appear).
    const migrations = readFileSync(join(SRC, 'adapters', 'control', 'migrations.ts'), 'utf8');
    const tables = [...migrations.matchAll(/CREATE TABLE IF NOT EXISTS (\w+)/g)].map((m) => m[1]!);
    expect(tables).toEqual(expect.arrayContaining(['failover_log', 'sync_status', 'runbook_lock', 'writer_endpoint', 'consistency_chunk']));
    tables.push('schema_migrations');
    // SQL keywords are written in capitals here; prose ("the trail from failover_log") is not SQL.
    // A table may be qualified by its database (`${db}`.failover_log).
    const sql = new RegExp(`\\b(FROM|INTO|UPDATE|JOIN|TABLE)\\s+(\\S+\\.)?\`?(${tables.join('|')})\\b`);
    const bad = files.filter((f) => !f.startsWith(join(SRC, 'adapters', 'control')) && sql.test(readFileSync(f, 'utf8')));
    expect(bad).toEqual([]);
  });
});
