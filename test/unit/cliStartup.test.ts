/**
 * The CLI answers at once (issue #18): what loads before a command runs is the command
 * definitions and commander, nothing else. Checked on the real build (scripts/build.mjs), by
 * walking the chunks main.js imports statically: a command's implementation, the config loader,
 * Temporal's client or mysql2 reached that way would load on every `runbook --help`.
 */
import { build, type Metafile } from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script, without types
import { buildOptions, quickBuildOptions } from '../../scripts/build.mjs';

const out = mkdtempSync(join(tmpdir(), 'runbook-cli-build-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/**
 * Every input (source file or bundled package file) that loads before any command runs: main.js,
 * the command definitions the registry loads at start (src/cli/<runbook>.ts), and what they import.
 */
function loadedAtStart(meta: Metafile): { inputs: string[]; externals: string[] } {
  const outputs = meta.outputs;
  const atStart = Object.keys(outputs).filter((o) => /^src\/(main\.ts|cli\/[a-z]+\.ts)$/.test(outputs[o]!.entryPoint ?? ''));
  const seen = new Set<string>();
  const externals = new Set<string>();
  const visit = (o: string) => {
    if (seen.has(o)) return;
    seen.add(o);
    for (const i of outputs[o]!.imports) {
      if (i.kind !== 'import-statement') continue; // dynamic import(): loaded when a command runs
      if (i.external) externals.add(i.path);
      else visit(i.path);
    }
  };
  expect(atStart.length, 'main.js and the command definitions').toBeGreaterThan(5);
  atStart.forEach(visit);
  const inputs = [...seen].flatMap((o) => Object.keys(outputs[o]!.inputs));
  return { inputs, externals: [...externals] };
}

// Each test bundles the whole CLI with esbuild: seconds on a loaded 2-core machine, not the unit default 5 s.
describe('CLI start-up', { timeout: 60_000 }, () => {
  it('loads only the command definitions and commander before a command runs', async () => {
    const result = await build({ ...buildOptions(out), write: false, metafile: true, logLevel: 'silent' });
    const { inputs, externals } = loadedAtStart(result.metafile!);
    const packages = [...new Set(inputs.filter((i) => i.includes('node_modules/')).map((i) => i.split('node_modules/')[1]!.split('/').slice(0, i.includes('node_modules/@') ? 2 : 1).join('/')))];
    expect(packages).toEqual(['commander']);
    expect(externals.filter((e) => !e.startsWith('node:'))).toEqual([]);
    const sources = inputs.filter((i) => !i.includes('node_modules/'));
    // The definitions: the registry, each runbook's commands, the shared context and the input bounds.
    for (const s of sources) expect(s, `${s} loads on every command`).toMatch(/^src\/(main|registry)\.ts$|^src\/cli\/(?!actions\/)[a-z]+\.ts$|^src\/core\/inputs\.ts$/);
    expect(sources).not.toContain('src/cli/follow.ts');
    expect(sources).not.toContain('src/cli/common.ts');
  });

  it('builds every command implementation as its own chunk, loaded when the command runs', async () => {
    const result = await build({ ...buildOptions(out), write: false, metafile: true, logLevel: 'silent' });
    const dynamic = Object.values(result.metafile!.outputs).flatMap((o) => o.imports.filter((i) => i.kind === 'dynamic-import').map((i) => i.path));
    const entries = Object.values(result.metafile!.outputs).map((o) => o.entryPoint).filter(Boolean);
    for (const action of ['src/cli/actions/runs.ts', 'src/cli/actions/failover.ts', 'src/cli/actions/restore.ts', 'src/cli/actions/builtin.ts', 'src/worker/main.ts']) expect(entries).toContain(action);
    expect(dynamic.length).toBeGreaterThan(5);
  });

  it('builds status on its own with only what it loads every time: no Temporal client, no protobuf reflection, nothing external', async () => {
    const result = await build({ ...quickBuildOptions(out), write: false, metafile: true, logLevel: 'silent' });
    const status = Object.entries(result.metafile!.outputs).find(([, o]) => o.entryPoint === 'src/cli/actions/status.ts');
    expect(status?.[0]).toMatch(/quick\/status\.cjs$/);
    const inputs = Object.keys(status![1].inputs);
    for (const heavy of ['@temporalio/client', '@temporalio/proto', '@temporalio/workflow', '@grpc/grpc-js', '@grpc/proto-loader', 'src/cli/actions/statusClient.ts', 'src/cli/actions/follow.ts']) {
      expect(inputs.filter((i) => i.includes(heavy)), heavy).toEqual([]);
    }
    // Protobuf's wire format for the quick reads (src/adapters/temporal/quickReads.ts): protobufjs's
    // minimal build (Writer, Reader and their helpers), one copy, and none of its reflection
    // (index-light/index: Root, Type, Field…; codegen), which is what made Temporal's client slow to load.
    const protobuf = inputs.filter((i) => /node_modules\/(@protobufjs|protobufjs)\//.test(i));
    const minimalBuild = /(^|\/)node_modules\/protobufjs\/(minimal\.js|src\/(index-minimal|reader|reader_buffer|writer|writer_buffer|roots|rpc|rpc\/service|util\/minimal|util\/longbits)\.js)$|(^|\/)node_modules\/@protobufjs\/(aspromise|base64|eventemitter|float|pool|utf8)\//;
    expect(protobuf.filter((i) => !minimalBuild.test(i) || /node_modules\/.*node_modules\/(@protobufjs|protobufjs)\//.test(i)), 'protobufjs beyond one copy of its minimal build').toEqual([]);
    expect(protobuf.filter((i) => i.endsWith('node_modules/protobufjs/minimal.js'))).toHaveLength(1);
    // Besides Node's built-ins, only mysql2's optional SQL highlighter for its debug output (required inside a try, absent here).
    const optional = ['cardinal'];
    expect(status![1].imports.map((i) => i.path).filter((path) => !builtinModules.includes(path.replace(/^node:/, '')) && !optional.includes(path))).toEqual([]);
  });
});
