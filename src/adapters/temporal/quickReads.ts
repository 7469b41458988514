/**
 * The two reads `runbook status` makes of Temporal (describe a run, ask it a query), without
 * Temporal's client: one HTTP/2 connection, gRPC's framing, and the handful of protobuf fields the
 * two calls use, written and read by hand. Temporal's client builds the reflection of its whole API
 * when it loads (most of what `status` cost, issue #18); these two calls need five messages.
 *
 * Exact or not at all: it is offered only for a plaintext connection without API key or extra
 * gRPC metadata (`quickReader` returns undefined otherwise), and whatever it does not handle as
 * Temporal's client would (a transport error, a non-OK gRPC status other than a query's deadline, a
 * payload that is not plain JSON, a rejected query) it throws as `QuickReadUnavailable`: the caller
 * then asks through Temporal's client, which answers or fails in its own words. The field numbers
 * are checked against @temporalio/proto in test/unit/quickReads.test.ts.
 */
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';

/** This read cannot be made exactly here: ask Temporal's client instead. */
export class QuickReadUnavailable extends Error {}

/** A gRPC status other than OK, as the server (or the deadline) gave it. */
export class GrpcStatusError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${code} ${details}`);
  }
}

export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_CANCELLED = 1;

// ---- protobuf wire format: what these five messages need -------------------------------------

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited field (string, bytes, sub-message). */
function lengthDelimited(no: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...varint((no << 3) | 2), ...varint(bytes.length)]), bytes]);
}
const text = (no: number, s: string | undefined) => (s ? lengthDelimited(no, Buffer.from(s, 'utf8')) : Buffer.alloc(0));
const enumField = (no: number, v: number) => Buffer.from([...varint(no << 3), ...varint(v)]);

interface Field {
  no: number;
  /** A varint's value (wire type 0), else undefined. */
  int?: number;
  /** A length-delimited field's bytes (wire type 2), else undefined. */
  bytes?: Buffer;
}

/** The fields of one message, in order; fixed-width fields are skipped, groups refused. */
export function readFields(buf: Buffer): Field[] {
  const fields: Field[] = [];
  let at = 0;
  const readVarint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (at >= buf.length || scale > 2 ** 63) throw new QuickReadUnavailable('malformed protobuf varint');
      const b = buf[at++]!;
      value += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) return value;
    }
  };
  while (at < buf.length) {
    const key = readVarint();
    const no = Math.floor(key / 8);
    const wireType = key % 8;
    if (wireType === 0) fields.push({ no, int: readVarint() });
    else if (wireType === 2) {
      const length = readVarint();
      if (at + length > buf.length) throw new QuickReadUnavailable('malformed protobuf length');
      fields.push({ no, bytes: buf.subarray(at, at + length) });
      at += length;
    } else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else throw new QuickReadUnavailable(`protobuf wire type ${wireType}`);
  }
  if (at > buf.length) throw new QuickReadUnavailable('malformed protobuf fixed-width field');
  return fields;
}
const first = (fields: Field[], no: number) => fields.find((f) => f.no === no);

/** temporal.api.common.v1.WorkflowExecution { workflow_id = 1; run_id = 2 } */
const execution = (workflowId: string, runId?: string) => Buffer.concat([text(1, workflowId), text(2, runId)]);

/** DescribeWorkflowExecutionRequest { namespace = 1; execution = 2 } */
export function encodeDescribeRequest(namespace: string, workflowId: string): Buffer {
  return Buffer.concat([text(1, namespace), lengthDelimited(2, execution(workflowId))]);
}

/** DescribeWorkflowExecutionResponse { workflow_execution_info = 2 { execution = 1 { run_id = 2 }; status = 5 } } */
export function decodeDescribeResponse(buf: Buffer): { runId: string; status: number } {
  const info = readFields(first(readFields(buf), 2)?.bytes ?? Buffer.alloc(0));
  const exec = readFields(first(info, 1)?.bytes ?? Buffer.alloc(0));
  return { runId: first(exec, 2)?.bytes?.toString('utf8') ?? '', status: first(info, 5)?.int ?? 0 };
}

/** QUERY_REJECT_CONDITION_NONE: what Temporal's client sends by default (never reject). */
const QUERY_REJECT_NONE = 1;

/**
 * QueryWorkflowRequest { namespace = 1; execution = 2; query = 3 { query_type = 1; query_args = 2
 * (Payloads, empty); header = 3 (empty) }; query_reject_condition = 4 }: what Temporal's client sends
 * for a query without arguments.
 */
export function encodeQueryRequest(namespace: string, workflowId: string, queryType: string): Buffer {
  const query = Buffer.concat([text(1, queryType), lengthDelimited(2, Buffer.alloc(0)), lengthDelimited(3, Buffer.alloc(0))]);
  return Buffer.concat([text(1, namespace), lengthDelimited(2, execution(workflowId)), lengthDelimited(3, query), enumField(4, QUERY_REJECT_NONE)]);
}

export interface WirePayload {
  metadata: Record<string, Buffer>;
  data: Buffer;
  /** Held in external storage (the payload carries a reference only). */
  external: boolean;
}

/** QueryWorkflowResponse { query_result = 1 (Payloads { repeated Payload payloads = 1 }); query_rejected = 2 } */
export function decodeQueryResponse(buf: Buffer): { payloads: WirePayload[]; rejected: boolean } {
  const fields = readFields(buf);
  const result = readFields(first(fields, 1)?.bytes ?? Buffer.alloc(0));
  const payloads = result
    .filter((f) => f.no === 1 && f.bytes)
    .map((f) => {
      // Payload { map<string, bytes> metadata = 1 (entries: key = 1, value = 2); data = 2; external_payloads = 3 }
      const p = readFields(f.bytes!);
      const metadata: Record<string, Buffer> = {};
      for (const entry of p.filter((x) => x.no === 1 && x.bytes)) {
        const kv = readFields(entry.bytes!);
        metadata[first(kv, 1)?.bytes?.toString('utf8') ?? ''] = first(kv, 2)?.bytes ?? Buffer.alloc(0);
      }
      return { metadata, data: first(p, 2)?.bytes ?? Buffer.alloc(0), external: p.some((x) => x.no === 3) };
    });
  return { payloads, rejected: first(fields, 2) !== undefined };
}

/**
 * The value of a query's first payload, as Temporal's default data converter reads it: none or
 * `binary/null` is undefined, `json/plain` is JSON. Any other encoding is not this module's to guess.
 */
export function payloadValue(payloads: WirePayload[]): unknown {
  const p = payloads[0];
  if (!p) return undefined;
  const encoding = p.metadata.encoding?.toString('utf8');
  if (p.external) throw new QuickReadUnavailable('payload in external storage');
  if (encoding === 'binary/null') return undefined;
  if (encoding === 'json/plain') return JSON.parse(p.data.toString('utf8'));
  throw new QuickReadUnavailable(`payload encoding ${encoding}`);
}

/** WorkflowExecutionStatus as Temporal's client names it (`description.status.name`). */
const STATUS_NAMES = ['UNSPECIFIED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'CONTINUED_AS_NEW', 'TIMED_OUT', 'PAUSED'];
export const statusName = (code: number): string => STATUS_NAMES[code] ?? 'UNKNOWN';

// ---- gRPC over HTTP/2 --------------------------------------------------------------------------

const SERVICE = '/temporal.api.workflowservice.v1.WorkflowService';

function unary(session: ClientHttp2Session, method: string, body: Buffer, deadline?: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ':method': 'POST', ':path': `${SERVICE}/${method}`, 'content-type': 'application/grpc', te: 'trailers' };
    // The server learns the deadline as the client's gRPC library would tell it.
    if (deadline !== undefined) headers['grpc-timeout'] = `${Math.max(1, deadline - Date.now())}m`;
    const req = session.request(headers);
    const chunks: Buffer[] = [];
    let status: number | undefined;
    let details = '';
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer =
      deadline === undefined
        ? undefined
        : setTimeout(() => {
            settle(() => reject(new GrpcStatusError(GRPC_DEADLINE_EXCEEDED, 'Deadline exceeded')));
            req.close(constants.NGHTTP2_CANCEL);
          }, Math.max(0, deadline - Date.now()));
    const statusFrom = (h: IncomingHttpHeaders) => {
      if (h['grpc-status'] === undefined) return;
      status = Number(h['grpc-status']);
      details = decodeURIComponent(String(h['grpc-message'] ?? ''));
    };
    req.on('response', (h) => {
      if (h[':status'] !== 200 || !String(h['content-type'] ?? '').startsWith('application/grpc')) settle(() => reject(new QuickReadUnavailable(`HTTP ${h[':status']} ${h['content-type'] ?? ''}`)));
      statusFrom(h); // a trailers-only answer (an error) carries its status here
    });
    req.on('trailers', statusFrom);
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', (err) => settle(() => reject(new QuickReadUnavailable(err.message))));
    req.on('close', () =>
      settle(() => {
        if (status === undefined) return reject(new QuickReadUnavailable(`no gRPC status (HTTP/2 stream closed, code ${req.rstCode})`));
        if (status !== 0) return reject(new GrpcStatusError(status, details));
        // One length-prefixed message: a compression flag (we asked for none), four bytes of length.
        const frame = Buffer.concat(chunks);
        if (frame.length < 5 || frame[0] !== 0 || frame.readUInt32BE(1) !== frame.length - 5) return reject(new QuickReadUnavailable('unexpected gRPC framing'));
        resolve(frame.subarray(5));
      }),
    );
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(body.length, 1);
    req.end(Buffer.concat([prefix, body]));
  });
}

/** How long a describe may take before the read is handed to Temporal's client (its connect timeout is as long). */
const DESCRIBE_TIMEOUT_MS = 5_000;

export interface QuickReader {
  /** Temporal's description of the run: its run id and status, named as Temporal's client names it. */
  describe(workflowId: string): Promise<{ runId: string; status: string }>;
  /** A query without arguments, answered by a worker before `deadline` (ms since the epoch). */
  query(workflowId: string, queryType: string, deadline: number): Promise<unknown>;
  close(): void;
}

/**
 * A reader for these settings, or undefined when the connection needs what only Temporal's client
 * does (TLS, an API key, gRPC metadata from the environment configuration).
 */
export function quickReader(s: { address: string; namespace: string; connectionOptions: { tls?: unknown; apiKey?: unknown; metadata?: Record<string, unknown> } }): QuickReader | undefined {
  const o = s.connectionOptions;
  if (o.tls || o.apiKey || Object.keys(o.metadata ?? {}).length) return undefined;
  let session: ClientHttp2Session | undefined;
  const open = () => {
    if (!session) {
      session = connect(`http://${s.address}`);
      session.on('error', () => undefined); // each call's stream reports it (as QuickReadUnavailable)
    }
    return session;
  };
  const call = (method: string, body: Buffer, deadline?: number) =>
    unary(open(), method, body, deadline).catch((err) => {
      throw err instanceof GrpcStatusError || err instanceof QuickReadUnavailable ? err : new QuickReadUnavailable(String(err));
    });
  return {
    async describe(workflowId) {
      // Any refusal (not found, a namespace that does not exist…) is Temporal's client's to word, and
      // so is a server that does not answer in time (the client gives up connecting after 5 s).
      const answer = await call('DescribeWorkflowExecution', encodeDescribeRequest(s.namespace, workflowId), Date.now() + DESCRIBE_TIMEOUT_MS).catch((err) => {
        throw err instanceof GrpcStatusError ? new QuickReadUnavailable(err.message) : err;
      });
      const d = decodeDescribeResponse(answer);
      return { runId: d.runId, status: statusName(d.status) };
    },
    async query(workflowId, queryType, deadline) {
      let answer: Buffer;
      try {
        answer = await call('QueryWorkflow', encodeQueryRequest(s.namespace, workflowId, queryType), deadline);
      } catch (err) {
        // No worker answered in time: said in the words Temporal's client uses, its gRPC error as cause.
        if (err instanceof GrpcStatusError && (err.code === GRPC_DEADLINE_EXCEEDED || err.code === GRPC_CANCELLED)) throw new Error('Failed to query Workflow', { cause: err });
        throw err instanceof GrpcStatusError ? new QuickReadUnavailable(err.message) : err;
      }
      const r = decodeQueryResponse(answer);
      if (r.rejected) throw new QuickReadUnavailable('query rejected');
      return payloadValue(r.payloads);
    },
    close() {
      session?.close();
    },
  };
}
