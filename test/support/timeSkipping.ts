/**
 * Temporal's time-skipping test environment, for tests of long timers (approval timeouts and
 * reminders): minutes of workflow time pass at once, while activities still run for real against
 * the sandbox. The SDK would download the test server as a native binary, which this network
 * cannot reach; the same server is published to Maven Central as a jar, so it runs on the JVM:
 * its classpath is resolved once with Maven (`test/support/timeSkipping/pom.xml`) and cached under
 * .sandbox/. Java and Maven are required; without them this fails and says what is missing.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import proto from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { findExecutable } from '../../src/adapters/process/processes';
import { freePort } from '../../src/adapters/temporal/devServer';
import { eventually } from './sandbox';
import { RUNBOOK_SEARCH_ATTRIBUTES } from '../../src/core/searchAttributes';

const POM = resolve('test/support/timeSkipping/pom.xml');
const DIR = resolve('.sandbox/time-skipping');

/** A launcher for the Java test server, resolving its classpath with Maven the first time. */
function testServerLauncher(): string {
  const launcher = join(DIR, 'test-server');
  const recorded = join(DIR, 'classpath');
  // Reused while every jar it names is still there (a wiped ~/.m2 resolves it again).
  if (existsSync(launcher) && existsSync(recorded) && readFileSync(recorded, 'utf8').trim().split(':').every((jar) => existsSync(jar))) return launcher;
  const java = findExecutable('java');
  const mvn = findExecutable('mvn');
  if (!java || !mvn) throw new Error(`the time-skipping test server needs ${[java ? '' : 'java', mvn ? '' : 'mvn'].filter(Boolean).join(' and ')} on PATH (apt-get install default-jre-headless maven)`);
  mkdirSync(DIR, { recursive: true });
  const classpath = join(DIR, `classpath.${process.pid}`);
  execFileSync(mvn, ['-q', '-f', POM, 'dependency:build-classpath', `-Dmdep.outputFile=${classpath}`], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tmp = `${launcher}.${process.pid}`;
  writeFileSync(tmp, `#!/bin/sh\n# Temporal's time-skipping test server on the JVM (args: <port> --enable-time-skipping)\nexec '${java}' -cp '${readFileSync(classpath, 'utf8').trim()}' io.temporal.testserver.TestServer "$@"\n`);
  chmodSync(tmp, 0o755);
  renameSync(tmp, launcher); // whole or not at all, should two test files race here
  renameSync(classpath, recorded);
  return launcher;
}

/** Until something accepts TCP connections on `port` (the project's one poll), or the server process has ended. */
async function waitUntilListening(port: number, server: ChildProcess, timeoutMs: number): Promise<void> {
  const exited = new Promise<never>((_, fail) =>
    server.once('exit', (code, signal) => fail(new Error(`the time-skipping test server exited (${signal ?? code}) before it listened on ${port}`))),
  );
  const listening = eventually(`the time-skipping test server to listen on ${port}`, () =>
    new Promise<boolean>((done) => {
      const socket = connect(port, '127.0.0.1', () => (socket.destroy(), done(true)));
      socket.once('error', () => done(false));
    }), timeoutMs);
  await Promise.race([listening, exited]);
}

/**
 * A time-skipping environment that knows the runbooks' search attributes.
 *
 * The server is started here, not by the SDK: the SDK gives an ephemeral server 5 s to answer (a
 * constant in its native core), and a JVM on a loaded 2-core machine can take longer than that to
 * start. The SDK then connects to it as to an existing server, with its time-skipping service.
 */
export async function timeSkippingEnvironment(): Promise<TestWorkflowEnvironment> {
  const port = await freePort();
  const server = spawn(testServerLauncher(), [String(port)], { stdio: 'ignore' });
  try {
    await waitUntilListening(port, server, 120_000);
    // `create` is the one constructor that takes both an existing server and time skipping.
    const create = (TestWorkflowEnvironment as unknown as { create(opts: object): Promise<TestWorkflowEnvironment> }).create.bind(TestWorkflowEnvironment);
    const env = await create({ server: { type: 'existing' }, address: `127.0.0.1:${port}`, supportsTimeSkipping: true });
    const teardown = env.teardown.bind(env);
    env.teardown = async () => {
      await teardown();
      server.kill('SIGKILL');
    };
    await env.connection.operatorService.addSearchAttributes({
      namespace: 'default',
      searchAttributes: Object.fromEntries(RUNBOOK_SEARCH_ATTRIBUTES.map((k) => [k.name, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
    });
    return env;
  } catch (err) {
    server.kill('SIGKILL');
    throw err;
  }
}
