/**
 * The two reads `runbook status` makes of Temporal (describe a run, ask it a query), without
 * Temporal's client: one HTTP/2 connection, gRPC's framing, and the handful of protobuf fields the
 * two calls use, written and read with protobufjs's minimal build (its `Writer` and `Reader`: the
 * wire format, no reflection). Temporal's client builds the reflection of its whole API when it
 * loads (most of what `status` cost, issue #18); these two calls need five messages.
 *
 * Exact or not at all: it is offered only for a plaintext connection without API key or extra
 * gRPC metadata (`quickReader` returns undefined otherwise), and whatever it does not handle as
 * Temporal's client would (a transport error, a non-OK gRPC status other than a query's deadline, a
 * message protobufjs cannot read, a payload that is not plain JSON, a rejected query) it throws as `QuickReadUnavailable`: the caller
 * then asks through Temporal's client, which answers or fails in its own words. The field numbers
 * are checked against @temporalio/proto in test/unit/quickReads.test.ts.
 */
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import protobuf from 'protobufjs/minimal';

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

// ---- protobuf messages: the fields these five messages need ------------------------------------

type Reader = protobuf.Reader;
type Writer = protobuf.Writer;
const { Reader, Writer } = protobuf;

const LENGTH_DELIMITED = 2;
const VARINT = 0;
const key = (no: number, wireType: number) => (no << 3) | wireType;

/** A string field, left out when empty (as proto3 writes a default). */
function text(w: Writer, no: number, s: string): Writer {
  return s ? w.uint32(key(no, LENGTH_DELIMITED)).string(s) : w;
}
/** A sub-message field, its fields written by `fill`. */
function message(w: Writer, no: number, fill: (w: Writer) => unknown = () => undefined): Writer {
  w.uint32(key(no, LENGTH_DELIMITED)).fork();
  fill(w);
  return w.ldelim();
}

/**
 * Reads one message: `field` is handed each field's number and wire type with the reader at its
 * value, and reads the value (returning true) or returns false to have it skipped. A message the
 * reader cannot read (cut short, a wire type that does not exist) is not this module's to guess.
 */
export function readMessage(buf: Uint8Array, field: (no: number, wireType: number, r: Reader) => boolean): void {
  const r = Reader.create(buf);
  try {
    while (r.pos < r.len) {
      const k = r.uint32();
      if (!field(k >>> 3, k & 7, r)) r.skipType(k & 7);
    }
  } catch (err) {
    throw err instanceof QuickReadUnavailable ? err : new QuickReadUnavailable(`malformed protobuf: ${(err as Error).message}`);
  }
}
/** A length-delimited value as a Buffer (a view of the answer, not a copy). */
function bytes(r: Reader): Buffer {
  const u = r.bytes();
  return Buffer.from(u.buffer, u.byteOffset, u.length);
}

/** temporal.api.common.v1.WorkflowExecution { workflow_id = 1; run_id = 2 } */
const execution = (workflowId: string) => (w: Writer) => text(w, 1, workflowId);

/** DescribeWorkflowExecutionRequest { namespace = 1; execution = 2 } */
export function encodeDescribeRequest(namespace: string, workflowId: string): Uint8Array {
  const w = text(Writer.create(), 1, namespace);
  return message(w, 2, execution(workflowId)).finish();
}

/** DescribeWorkflowExecutionResponse { workflow_execution_info = 2 { execution = 1 { run_id = 2 }; status = 5 } } */
export function decodeDescribeResponse(buf: Uint8Array): { runId: string; status: number } {
  const d = { runId: '', status: 0 };
  const exec = (no: number, type: number, r: Reader) => {
    if (no !== 2 || type !== LENGTH_DELIMITED) return false;
    d.runId = r.string();
    return true;
  };
  const info = (no: number, type: number, r: Reader) => {
    if (no === 1 && type === LENGTH_DELIMITED) readMessage(r.bytes(), exec);
    else if (no === 5 && type === VARINT) d.status = r.int32();
    else return false;
    return true;
  };
  readMessage(buf, (no, type, r) => {
    if (no !== 2 || type !== LENGTH_DELIMITED) return false;
    readMessage(r.bytes(), info);
    return true;
  });
  return d;
}

/** QUERY_REJECT_CONDITION_NONE: what Temporal's client sends by default (never reject). */
const QUERY_REJECT_NONE = 1;

/**
 * QueryWorkflowRequest { namespace = 1; execution = 2; query = 3 { query_type = 1; query_args = 2
 * (Payloads, empty); header = 3 (empty) }; query_reject_condition = 4 }: what Temporal's client sends
 * for a query without arguments.
 */
export function encodeQueryRequest(namespace: string, workflowId: string, queryType: string): Uint8Array {
  const w = message(text(Writer.create(), 1, namespace), 2, execution(workflowId));
  message(w, 3, (q) => message(message(text(q, 1, queryType), 2), 3));
  return w.uint32(key(4, VARINT)).int32(QUERY_REJECT_NONE).finish();
}

export interface WirePayload {
  metadata: Record<string, Buffer>;
  data: Buffer;
  /** Held in external storage (the payload carries a reference only). */
  external: boolean;
}

/** QueryWorkflowResponse { query_result = 1 (Payloads { repeated Payload payloads = 1 }); query_rejected = 2 } */
export function decodeQueryResponse(buf: Uint8Array): { payloads: WirePayload[]; rejected: boolean } {
  const answer = { payloads: [] as WirePayload[], rejected: false };
  const payloads = (no: number, type: number, r: Reader) => {
    if (no !== 1 || type !== LENGTH_DELIMITED) return false;
    answer.payloads.push(payload(r.bytes()));
    return true;
  };
  readMessage(buf, (no, type, r) => {
    if (no === 2) answer.rejected = true; // its content is skipped
    if (no !== 1 || type !== LENGTH_DELIMITED) return false;
    readMessage(r.bytes(), payloads);
    return true;
  });
  return answer;
}

/** Payload { map<string, bytes> metadata = 1 (entries: key = 1, value = 2); data = 2; external_payloads = 3 } */
function payload(buf: Uint8Array): WirePayload {
  const p: WirePayload = { metadata: {}, data: Buffer.alloc(0), external: false };
  readMessage(buf, (no, type, r) => {
    if (no === 3) p.external = true; // its content is skipped
    if (type !== LENGTH_DELIMITED) return false;
    if (no === 1) {
      const entry: { key: string; value: Buffer } = { key: '', value: Buffer.alloc(0) };
      readMessage(r.bytes(), (no, type, r) => {
        if (type !== LENGTH_DELIMITED || (no !== 1 && no !== 2)) return false;
        if (no === 1) entry.key = r.string();
        else entry.value = bytes(r);
        return true;
      });
      p.metadata[entry.key] = entry.value;
    } else if (no === 2) p.data = bytes(r);
    else return false;
    return true;
  });
  return p;
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

function unary(session: ClientHttp2Session, method: string, body: Uint8Array, deadline?: number): Promise<Buffer> {
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
  const call = (method: string, body: Uint8Array, deadline?: number) =>
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
