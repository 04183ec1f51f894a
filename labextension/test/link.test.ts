/**
 * KernelLink: one connection per link however connects interleave, nothing
 * left behind by a dispose, and a new connection after a lost one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { IDisconnect } from '../src/connection';
import { KernelGoneError } from '../src/kernels';
import { KernelLink, LinkClosedError } from '../src/link';
import { TestPool, waitFor } from './stdiokernel';

function link(pool: TestPool, reconnect = false): KernelLink {
  return new KernelLink({ pool, kernelId: 'k', clientName: 'unit-test', loadExtension: false, reconnect });
}

test('connects made while one is in flight share it', async () => {
  const pool = new TestPool('k');
  try {
    const l = link(pool);
    pool.gate('k');
    const calls = [l.connect(), l.connect(), l.connect()];
    pool.open('k');
    const conns = await Promise.all(calls);
    assert.ok(conns.every(c => c === conns[0]));
    assert.equal(await l.connect(), conns[0]);
    assert.equal(pool.kernel('k').comms.length, 1);
    assert.equal(pool.leases.get('k'), 1);
    l.dispose();
    assert.equal(pool.leases.get('k'), 0);
    await waitFor(() => pool.kernel('k').openComms.length === 0, 'the comm closed');
  } finally {
    await pool.shutdown();
  }
});

test('a link disposed while borrowing the kernel gives the lease back and opens nothing', async () => {
  const pool = new TestPool('k');
  try {
    const l = link(pool);
    pool.gate('k');
    const connecting = l.connect();
    l.dispose();
    pool.open('k');
    await assert.rejects(connecting, LinkClosedError);
    assert.equal(pool.leases.get('k'), 0);
    assert.equal(pool.kernel('k').comms.length, 0);
    await assert.rejects(l.connect(), LinkClosedError);
  } finally {
    await pool.shutdown();
  }
});

test('a link disposed during the handshake closes the comm it opened', async () => {
  const pool = new TestPool('k');
  try {
    const l = link(pool);
    const connecting = l.connect();
    await waitFor(() => pool.kernel('k').comms.length === 1, 'the comm to open');
    l.dispose();
    await assert.rejects(connecting, LinkClosedError);
    await waitFor(() => pool.kernel('k').openComms.length === 0, 'the comm closed');
    assert.equal(pool.leases.get('k'), 0);
  } finally {
    await pool.shutdown();
  }
});

test('a lost comm is replaced, after a failed attempt, by a working one', async () => {
  const pool = new TestPool('k');
  try {
    const l = link(pool, true);
    const first = await l.connect();
    const lost: IDisconnect[] = [];
    l.lost.connect((_, info) => lost.push(info));
    let reconnected = null as unknown;
    l.reconnected.connect((_, conn) => (reconnected = conn));
    // The next open fails once (backoff), then works.
    pool.kernel('k').isDisposed = true; // the link borrows the kernel afresh...
    pool.fail('k', 1); // ...and the first try fails
    pool.kernel('k').comms[0].closeFromKernel();
    assert.equal(lost.length, 1);
    assert.equal(lost[0].processesLost, false);
    pool.kernel('k').isDisposed = false;
    await waitFor(() => reconnected !== null, 'the reconnect');
    assert.notEqual(reconnected, first);
    assert.equal(l.connection, reconnected);
    const list = await l.connection!.request<{ processes: unknown[] }>('process/list', {});
    assert.deepEqual(list.processes, []);
    assert.equal(pool.leases.get('k'), 1);
    l.dispose();
  } finally {
    await pool.shutdown();
  }
});

test('a kernel gone from the server ends the reconnecting with KernelGoneError', async () => {
  const pool = new TestPool('k');
  try {
    const l = link(pool, true);
    await l.connect();
    let gone: unknown = null;
    l.gone.connect((_, err) => (gone = err));
    const kernel = pool.kernel('k');
    kernel.isDisposed = true;
    pool.kernels.delete('k');
    kernel.comms[0].closeFromKernel();
    await waitFor(() => gone !== null, 'gone');
    assert.ok(gone instanceof KernelGoneError);
    assert.equal((gone as KernelGoneError).kernelId, 'k');
    l.dispose();
    await kernel.shutdown();
  } finally {
    await pool.shutdown();
  }
});

test('a kernel restart loses the processes: no reconnect, and the next connect borrows afresh', async () => {
  const pool = new TestPool('k');
  try {
    const l = link(pool, true);
    await l.connect();
    const lost: IDisconnect[] = [];
    l.lost.connect((_, info) => lost.push(info));
    pool.kernel('k').statusChanged.emit('restarting');
    assert.equal(lost.length, 1);
    assert.equal(lost[0].processesLost, true);
    assert.equal(pool.leases.get('k'), 0, 'the lease went back with the restart');
    assert.equal(l.lease, null);
    const again = await l.connect();
    assert.equal(again.disconnect, null);
    assert.equal(pool.leases.get('k'), 1);
    l.dispose();
  } finally {
    await pool.shutdown();
  }
});
