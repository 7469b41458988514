/**
 * Connections to Temporal through the standard environment configuration (TEMPORAL_ADDRESS,
 * TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and the config file),
 * read by @temporalio/envconfig, so the engine moves from the dev server to a production cluster
 * by environment alone.
 */
import { Client, Connection } from '@temporalio/client';
import { temporalSettings } from './settings';
import proto from '@temporalio/proto';
import { RUNBOOK_SEARCH_ATTRIBUTES } from '../../core/searchAttributes';

export { DEFAULT_TASK_QUEUE, temporalSettings } from './settings';

export async function connectClient(env: NodeJS.ProcessEnv = process.env): Promise<Client> {
  const s = temporalSettings(env);
  const connection = await Connection.connect({ ...s.connectionOptions, connectTimeout: '5s' });
  return new Client({ connection, namespace: s.namespace });
}

/**
 * Register the runbook search attributes where they are missing (a server not started by us).
 * The dev server gets them from its command line, so this is usually a no-op.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const known = new Set([...Object.keys(existing.customAttributes ?? {}), ...Object.keys(existing.systemAttributes ?? {})]);
  const missing = RUNBOOK_SEARCH_ATTRIBUTES.filter((k) => !known.has(k.name));
  if (missing.length) {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((k) => [k.name, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
    });
  }
  return missing.map((k) => k.name);
}
