/**
 * The Kernel Processes sidebar keeps one connection to the kernel it shows,
 * however its refreshes, actions and kernel switches interleave.
 */
import './dom';

import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { SessionsSidebar } from '../src/sidebar';
import { TestPool, waitFor } from './stdiokernel';

const pool = new TestPool('k1', 'k2');
after(() => pool.shutdown());

const host = {
  openProcess: () => undefined,
  openSession: () => undefined,
  newTerminal: () => undefined,
  currentKernelId: () => null
};

test('a stale connect does not clear the newer one, so no second connection leaks', async () => {
  const sidebar = new SessionsSidebar(pool as never, host);
  const k1 = pool.kernel('k1');
  const k2 = pool.kernel('k2');
  await sidebar.showKernel('k1');
  assert.equal(k1.openComms.length, 1);
  // A process on k1, so the sidebar shows a row with actions.
  await k1.openComms[0].testRequest('process/start', { processId: 'p1', argv: ['sleep', '60'] });
  await sidebar.refresh();
  const terminate = sidebar.node.querySelector<HTMLButtonElement>('[data-process-id="p1"] [data-action="terminate"]');
  assert.ok(terminate, 'a row for p1 with a Terminate button');

  // k1's comm ends; the next refresh connects again, held up in the pool (A).
  pool.gate('k1');
  k1.openComms[0].closeFromKernel();
  const staleRefresh = sidebar.refresh();
  // The user switches to k2 (held up too) and clicks an action meanwhile (B).
  pool.gate('k2');
  const select = sidebar.node.querySelector('select')!;
  select.value = 'k2';
  select.dispatchEvent(new window.Event('change'));
  terminate.click();
  // A finishes for a kernel no longer shown; then the poll refreshes (C).
  pool.open('k1');
  await staleRefresh;
  const laterRefresh = sidebar.refresh();
  pool.open('k2');
  await laterRefresh;
  await waitFor(() => k2.openComms.length > 0, 'a connection to k2');
  await sidebar.refresh();
  // Every connect in flight has had its handshake (or was closed).
  const comms = [...k1.comms, ...k2.comms];
  await waitFor(() => comms.every(c => c.received.length > 0 || !c.isOpen), 'every connect to settle');
  assert.equal(k2.openComms.length, 1, 'exactly one connection to k2');
  assert.equal(k1.openComms.length, 0, 'none left to k1');
  assert.equal(pool.leases.get('k1') ?? 0, 0, 'k1 borrowed no more');
  assert.equal(pool.leases.get('k2'), 1, 'k2 borrowed once');

  sidebar.dispose();
  await waitFor(() => k2.openComms.length === 0, 'the connection closed on dispose');
  assert.equal(pool.leases.get('k2'), 0);
});
