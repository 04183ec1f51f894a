/** The wire helpers of protocol.ts, and its constants against docs/protocol.md. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import {
  COMM_TARGET,
  ErrorCode,
  PROTOCOL_VERSION,
  RpcError,
  base64ToBytes,
  resolveBytes,
  toProcessEvent
} from '../src/protocol';

const SPEC = fs.readFileSync(path.resolve(__dirname, '../../../docs/protocol.md'), 'utf8');

test('base64ToBytes decodes every byte value', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(base64ToBytes(Buffer.from(all).toString('base64')), all);
  assert.deepEqual(base64ToBytes(''), new Uint8Array(0));
});

test('resolveBytes reads base64 and {buffer: i} references, views included', () => {
  assert.deepEqual(resolveBytes('aGk='), new TextEncoder().encode('hi'));
  const backing = new Uint8Array([9, 1, 2, 3, 9]);
  const view = new DataView(backing.buffer, 1, 3);
  assert.deepEqual(resolveBytes({ buffer: 1 }, [new ArrayBuffer(1), view]), new Uint8Array([1, 2, 3]));
  assert.deepEqual(resolveBytes({ buffer: 0 }, [backing.buffer]), backing);
});

test('resolveBytes names a missing buffer as a transport error', () => {
  assert.throws(
    () => resolveBytes({ buffer: 2 }, []),
    (err: unknown) => err instanceof RpcError && err.code === ErrorCode.transport && /buffer 2/.test(err.message)
  );
});

test('toProcessEvent types output, exit and close; other methods are not events', () => {
  assert.deepEqual(
    toProcessEvent({ method: 'process/output', params: { processId: 'p', seq: 3, stream: 'stderr', chunk: 'eA==' } }),
    { kind: 'output', processId: 'p', seq: 3, stream: 'stderr', data: new Uint8Array([120]) }
  );
  assert.deepEqual(
    toProcessEvent({ method: 'process/exited', params: { processId: 'p', seq: 4, exitCode: 143, signal: 'SIGTERM' } }),
    { kind: 'exited', processId: 'p', seq: 4, exitCode: 143, signal: 'SIGTERM' }
  );
  assert.deepEqual(toProcessEvent({ method: 'process/exited', params: { processId: 'p', seq: 4 } }), {
    kind: 'exited',
    processId: 'p',
    seq: 4,
    exitCode: null,
    signal: null
  });
  assert.deepEqual(toProcessEvent({ method: 'process/closed', params: { processId: 'p', seq: 5 } }), {
    kind: 'closed',
    processId: 'p',
    seq: 5
  });
  assert.equal(toProcessEvent({ method: 'session/changed', params: {} }), null);
});

test('the error codes, comm target and version are the ones docs/protocol.md gives', () => {
  for (const [name, code] of Object.entries(ErrorCode)) {
    if (name !== 'transport') {
      assert.match(SPEC, new RegExp(`^\\| ${code} \\|`, 'm'), `${name} (${code}) is in the spec's table`);
    }
  }
  assert.ok(!SPEC.includes(`| ${ErrorCode.transport} |`), 'the transport code is not a wire code');
  assert.ok(SPEC.includes(`"${PROTOCOL_VERSION}"`));
  assert.ok(SPEC.includes(`\`${COMM_TARGET}\``));
});
