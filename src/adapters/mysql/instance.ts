/** A time-bounded admin connection to one managed instance, for activities; always closed. */
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, type RunbookConfig } from '../../config/load';
import { connect, instanceEndpoint, type Conn } from './connect';
import type { InstanceRef } from '../../core/types';

/** An admin connection to one instance within the cluster's probe timeout; the caller closes it. */
export async function openInstanceConnection(config: RunbookConfig, ref: InstanceRef): Promise<Conn> {
  const timeoutMs = getCluster(config, ref.cluster).thresholds.probeTimeoutSeconds * 1000;
  try {
    return await connect(instanceEndpoint(config, ref.cluster, ref.instance), { timeoutMs });
  } catch (err) {
    // Retryable: a server that is restarting answers again in a moment.
    throw ApplicationFailure.retryable(`${ref.instance} unreachable: ${(err as Error).message}`, 'InstanceUnreachable');
  }
}

export async function withInstance<T>(config: RunbookConfig, ref: InstanceRef, fn: (conn: Conn) => Promise<T>): Promise<T> {
  const conn = await openInstanceConnection(config, ref);
  try {
    return await fn(conn);
  } finally {
    conn.destroy();
  }
}
