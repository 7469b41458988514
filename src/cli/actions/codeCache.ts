/**
 * A quick command built on its own into one CommonJS file (scripts/build.mjs: quick/<name>.cjs
 * beside the CLI's chunks), run with V8's code cache. Node 20 has no compile cache for modules
 * (`module.enableCompileCache` came in 22), so this does what v8-compile-cache does: compile the
 * file as a script with the cached data of the last run, and after the command has run, store the
 * cache again if there was none or V8 refused it (another Node, other flags), with every function
 * the run compiled. A build is a new directory (dist → .build/<id>/), so a cache never outlives
 * its source; a tree the user cannot write just goes without.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

/**
 * Run a quick command: `run` gets its module, from quick/<name>.cjs with the code cache when the CLI
 * runs from its build, else (from source, through tsx) from `fallback`, its ES module.
 */
export async function runQuickCommand<T, R>(name: string, fallback: () => Promise<T>, run: (module: T) => Promise<R>): Promise<R> {
  const command = await quickCommand(name, fallback);
  try {
    return await run(command.module);
  } finally {
    command.done(); // after the run: the cache then holds every function it compiled
  }
}

async function quickCommand<T>(name: string, fallback: () => Promise<T>): Promise<{ module: T; done(): void }> {
  const file = fileURLToPath(new URL(`./quick/${name}.cjs`, import.meta.url));
  if (!existsSync(file)) return { module: await fallback(), done: () => undefined };
  const cacheFile = `${file}.v8cache`;
  const cachedData = existsSync(cacheFile) ? readFileSync(cacheFile) : undefined;
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`, { filename: file, cachedData });
  const module = { exports: {} as T };
  script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file));
  return {
    module: module.exports,
    done() {
      if (cachedData && !script.cachedDataRejected) return;
      try {
        const tmp = `${cacheFile}.${process.pid}`;
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, cacheFile); // whole or not at all, whoever writes last
      } catch {
        // not writable: the next run compiles again, nothing else changes
      }
    },
  };
}
