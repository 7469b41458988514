/**
 * The worker's one Prometheus endpoint: the Temporal SDK's metrics (its own exporter, bound to a
 * private loopback port) followed by the engine's (prom-client, src/adapters/metrics/registry.ts),
 * so one scrape target serves both.
 */
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { monitorMetrics } from '../adapters/metrics/registry';

/** A loopback port free right now, for the SDK's private exporter. */
export async function freeLoopbackPort(): Promise<number> {
  const probe = createTcpServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

export async function serveMetrics(address: string, sdkAddress: string): Promise<Server> {
  const [host, port] = splitAddress(address);
  const metrics = monitorMetrics();
  const registry = metrics.registry;
  const server = createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    let sdk: string;
    try {
      sdk = await (await fetch(`http://${sdkAddress}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    } catch (err) {
      sdk = `# the Temporal SDK's metrics did not answer: ${(err as Error).message.replace(/\n/g, ' ')}\n`;
    }
    await metrics.beforeScrape();
    const ours = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType }).end(`${sdk.trimEnd()}\n${ours}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  const port = Number(address.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`RUNBOOK_METRICS_ADDRESS must be host:port, got "${address}"`);
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), port];
}
