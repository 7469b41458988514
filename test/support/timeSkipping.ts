/**
 * Temporal's time-skipping test environment, for tests of long timers (approval timeouts and
 * reminders): minutes of workflow time pass at once, while activities still run for real against
 * the sandbox. The SDK would download the test server as a native binary, which this network
 * cannot reach; the same server is published to Maven Central as a jar, so it runs on the JVM:
 * its classpath is resolved once with Maven (`test/support/timeSkipping/pom.xml`) and cached under
 * .sandbox/. Java and Maven are required; without them this fails and says what is missing.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import proto from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { findExecutable } from '../../src/adapters/process/processes';
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

/** A time-skipping environment that knows the runbooks' search attributes. */
export async function timeSkippingEnvironment(): Promise<TestWorkflowEnvironment> {
  const env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: testServerLauncher() } } });
  await env.connection.operatorService.addSearchAttributes({
    namespace: 'default',
    searchAttributes: Object.fromEntries(RUNBOOK_SEARCH_ATTRIBUTES.map((k) => [k.name, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
  });
  return env;
}
