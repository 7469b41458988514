/**
 * `runbook status` reads Temporal without its client (src/adapters/temporal/quickReads.ts): the
 * messages it writes and reads by hand must be the ones Temporal's own protobuf definitions write
 * and read, field for field, and a status or payload must come out as Temporal's client gives it.
 */
import { describe, expect, it } from 'vitest';
import { temporal } from '@temporalio/proto';
import { defaultDataConverter, defaultPayloadConverter } from '@temporalio/common';
import { executionInfoFromRaw } from '@temporalio/client/lib/helpers';
import {
  decodeDescribeResponse,
  decodeQueryResponse,
  encodeDescribeRequest,
  encodeQueryRequest,
  payloadValue,
  quickReader,
  QuickReadUnavailable,
  readMessage,
  statusName,
} from '../../src/adapters/temporal/quickReads';
import { RUNBOOK_STATE_QUERY } from '../../src/core/stateQuery';
import { temporalSettings } from '../../src/adapters/temporal/settings';
import { runbookStateQuery } from '../../src/core/runbookDefinitions';

const api = temporal.api;
const bytes = (u: Uint8Array) => Buffer.from(u);
/** An int64 field's value: protobufjs takes a number where its types say Long. */
const int64 = (n: number): never => n as never;

describe('quick reads of Temporal', () => {
  it('writes the describe request Temporal decodes as the client would send it', () => {
    const sent = api.workflowservice.v1.DescribeWorkflowExecutionRequest.decode(encodeDescribeRequest('default', 'failover-orders-INC-1'));
    expect(sent.toJSON()).toEqual({ namespace: 'default', execution: { workflowId: 'failover-orders-INC-1' } });
  });

  it('writes the query request Temporal decodes as the client would send it: no arguments, empty header, never rejected', () => {
    const sent = api.workflowservice.v1.QueryWorkflowRequest.decode(encodeQueryRequest('ns-1', 'restore-orders-INC-2', RUNBOOK_STATE_QUERY));
    expect(sent.toJSON()).toEqual({
      namespace: 'ns-1',
      execution: { workflowId: 'restore-orders-INC-2' },
      query: { queryType: 'runbookState', queryArgs: {}, header: {} },
      queryRejectCondition: 'QUERY_REJECT_CONDITION_NONE',
    });
    expect(RUNBOOK_STATE_QUERY).toBe(runbookStateQuery.name);
  });

  it('reads a run id and status from a full describe answer, skipping every other field', () => {
    const answer = api.workflowservice.v1.DescribeWorkflowExecutionResponse.encode({
      executionConfig: { taskQueue: { name: 'runbooks' }, workflowRunTimeout: { seconds: int64(3600) } },
      workflowExecutionInfo: {
        execution: { workflowId: 'failover-orders-INC-1', runId: '0190-run' },
        type: { name: 'failover' },
        startTime: { seconds: int64(1_800_000_000), nanos: 5 },
        status: api.enums.v1.WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED,
        historyLength: int64(2 ** 40),
        stateTransitionCount: int64(-1), // a negative int64: ten varint bytes
        memo: { fields: { a: { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('1') } } },
        taskQueue: 'runbooks',
      },
      pendingActivities: [{ activityId: '1', attempt: 3, heartbeatDetails: { payloads: [{ data: Buffer.from('x') }] } }],
    }).finish();
    expect(decodeDescribeResponse(bytes(answer))).toEqual({ runId: '0190-run', status: 5 });
  });

  it('names every status as Temporal\'s client does', async () => {
    const fromRaw = executionInfoFromRaw as (...a: unknown[]) => Promise<{ status: { name: string } }>;
    for (let code = 0; code <= 10; code++) {
      const info = { execution: { workflowId: 'w', runId: 'r' }, type: { name: 't' }, status: code, startTime: { seconds: int64(1) }, historyLength: int64(3), historySizeBytes: int64(4) };
      const raw = api.workflow.v1.WorkflowExecutionInfo.decode(api.workflow.v1.WorkflowExecutionInfo.encode(info).finish());
      expect(statusName(code), `status ${code}`).toBe((await fromRaw(raw, defaultDataConverter, raw, 'default')).status.name);
    }
  });

  it('reads the query answer as the default data converter does', () => {
    const state = { status: 'running', currentStep: 'preflight', steps: [{ seq: 1, name: 'load policy ✔', startedAt: 1 }], details: { n: 2 ** 53 - 1 } };
    const answer = (value: unknown) => bytes(api.workflowservice.v1.QueryWorkflowResponse.encode({ queryResult: { payloads: [defaultPayloadConverter.toPayload(value)] } }).finish());
    expect(payloadValue(decodeQueryResponse(answer(state)).payloads)).toEqual(state);
    expect(payloadValue(decodeQueryResponse(answer(undefined)).payloads)).toBeUndefined();
    expect(payloadValue(decodeQueryResponse(bytes(api.workflowservice.v1.QueryWorkflowResponse.encode({}).finish())).payloads)).toBeUndefined();
    const rejected = api.workflowservice.v1.QueryWorkflowResponse.encode({ queryRejected: { status: 2 } }).finish();
    expect(decodeQueryResponse(bytes(rejected)).rejected).toBe(true);
  });

  it('leaves to Temporal\'s client what it cannot read exactly', () => {
    const encoded = (p: object) => decodeQueryResponse(bytes(api.workflowservice.v1.QueryWorkflowResponse.encode({ queryResult: { payloads: [p] } }).finish())).payloads;
    expect(() => payloadValue(encoded(defaultPayloadConverter.toPayload(new Uint8Array([1, 2]))))).toThrow(QuickReadUnavailable); // binary/plain
    expect(() => payloadValue(encoded({ metadata: { encoding: Buffer.from('binary/encrypted') }, data: Buffer.from('x') }))).toThrow(QuickReadUnavailable);
    expect(() => readMessage(Buffer.from([0x0b]), () => false)).toThrow(QuickReadUnavailable); // a group never ended
    expect(() => readMessage(Buffer.from([0x0f]), () => false)).toThrow(QuickReadUnavailable); // wire type 7: none such
    expect(() => decodeQueryResponse(Buffer.from([0x0a, 0x05, 0x01]))).toThrow(QuickReadUnavailable); // cut short
    expect(() => decodeDescribeResponse(Buffer.from([0x12, 0x02, 0x28]))).toThrow(QuickReadUnavailable); // a varint cut short
    // Connections that need what only the client does (TLS, an API key, gRPC metadata).
    const at = { address: '127.0.0.1:7233', namespace: 'default' };
    expect(quickReader({ ...at, connectionOptions: {} })).toBeDefined();
    expect(quickReader({ ...at, connectionOptions: { tls: true } })).toBeUndefined();
    expect(quickReader({ ...at, connectionOptions: { apiKey: 'k' } })).toBeUndefined();
    expect(quickReader({ ...at, connectionOptions: { metadata: { 'x-team': 'dba' } } })).toBeUndefined();
    // As the environment configuration gives them.
    expect(quickReader(temporalSettings({ TEMPORAL_ADDRESS: '127.0.0.1:7233' }))).toBeDefined();
    expect(quickReader(temporalSettings({ TEMPORAL_ADDRESS: '127.0.0.1:7233', TEMPORAL_GRPC_META_X_TEAM: 'dba' }))).toBeUndefined();
    expect(quickReader(temporalSettings({ TEMPORAL_ADDRESS: '127.0.0.1:7233', TEMPORAL_API_KEY: 'k' }))).toBeUndefined();
    expect(quickReader(temporalSettings({ TEMPORAL_ADDRESS: '127.0.0.1:7233', TEMPORAL_TLS: 'true' }))).toBeUndefined();
  });
});
