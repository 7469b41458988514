/** A time-bounded admin connection to one managed instance, for activities; always closed. */
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, type RunbookConfig } from '../../config/load';
import { connect, instanceEndpoint, type Conn } from './connect';
import type { InstanceRef } from '../../core/types';

export async function withInstance<T>(config: RunbookConfig, ref: InstanceRef, fn: (conn: Conn) => Promise<T>): Promise<T> {
  const timeoutMs = getCluster(config, ref.cluster).thresholds.probeTimeoutSeconds * 1000;
  let conn: Conn;
  try {
    conn = await connect(instanceEndpoint(config, ref.cluster, ref.instance), { timeoutMs });
  } catch (err) {
    // Retryable: a server that is restarting answers again in a moment.
    throw ApplicationFailure.retryable(`${ref.instance} unreachable: ${(err as Error).message}`, 'InstanceUnreachable');
  }
  try {
    return await fn(conn);
  } finally {
    conn.destroy();
  }
}
